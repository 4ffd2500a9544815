# The README's commands. Every target creates .venv from requirements.txt when it is missing
# or older than requirements.txt / pyproject.toml.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))
# `make test-gpu SYSTEM_PYTHON=python3` uses a machine's own Python (say, a GPU box without
# PyPI access that already has torch and the test tools) instead of building .venv.
ifdef SYSTEM_PYTHON
PY := $(SYSTEM_PYTHON)
STAMP :=
endif
# Stored outputs are made at the quick scale on the CPU, so that CI reproduces them.
QUICK := RESNET_TUTORIAL_SCALE=quick CUDA_VISIBLE_DEVICES=
# Kernels draw figures inline (as in Jupyter), whatever MPLBACKEND the shell has.
KERNEL_ENV := MPLBACKEND=module://matplotlib_inline.backend_inline
NBVAL := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider
# make test runs two notebooks at once, so each kernel gets half the cores: torch thread pools
# that share cores spin against each other (chapter 1 on 2 busy cores: 12 min of CPU time with
# 2 threads, 3 min with 1).
NB_THREADS := $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n / 2 > 1 ? n / 2 : 1 )))

.PHONY: test test-unit test-notebooks test-full-path test-oldest-torch test-site lint book notebooks bench test-gpu device-data clean \
	results results-paper results-fast results-fast-depths results-fast-ablations results-transfer

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: lint test-unit test-notebooks test-full-path test-site

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The torchrun test starts two processes of its own, so it runs after the others, not beside them.
test-unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup --ignore tests/test_ddp.py tests
	$(PY) -m pytest tests/test_ddp.py

test-notebooks: $(STAMP)
ifneq ($(NOTEBOOKS),)
	$(QUICK) $(KERNEL_ENV) OMP_NUM_THREADS=$(NB_THREADS) \
		$(PY) -m pytest -n 2 --dist loadfile $(NBVAL) $(NOTEBOOKS)
endif

# The full-scale branches (what a Colab GPU runs), on the CPU with every fit capped to 2 optimizer
# steps and every data set to 10 images per class: every line runs, no output is compared, and
# only AssertionErrors (claims about trained results) are allowed (.ci/full_path.py).
FULL_PATH := RESNET_TUTORIAL_SCALE=full RESNET_TUTORIAL_MAX_STEPS=2 RESNET_TUTORIAL_MAX_PER_CLASS=10 \
	CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=$(NB_THREADS)

test-full-path: $(STAMP)
ifneq ($(NOTEBOOKS),)
	$(FULL_PATH) $(KERNEL_ENV) $(PY) .ci/full_path.py $(NOTEBOOKS)
endif

# The unit tests on the oldest torch/torchvision that pyproject.toml allows, in .venv-oldest.
# Not part of make test (over 4 minutes of downloads and installs); the GitHub workflow runs it.
test-oldest-torch:
	bash .ci/oldest-torch

test-site: book
	$(PY) .ci/check_site.py _build/html

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . -W --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

notebooks: $(STAMP)
ifneq ($(NOTEBOOKS),)
	$(QUICK) $(KERNEL_ENV) $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 --ExecutePreprocessor.record_timing=False $(NOTEBOOKS)
endif

bench: $(STAMP)
	set -e; for f in benchmarks/bench_*.py; do $(PY) $$f; done

# Reference runs (hours; never part of make test): each writes book/results/<name>.json and the
# final weights <name>.pt, with its checkpoint in runs/<name>/. Run again after an interruption and
# each run resumes from its checkpoint. On the CPU, `make results RESULTS_PRECISION=bf16` is about
# 1.6x faster where the CPU computes bf16 natively; test errors are measured in fp32 either way.
# RESULTS_JOBS runs at once, each with RESULTS_THREADS torch threads.
RESULTS_PRECISION ?= auto
RESULTS_JOBS ?= 2
RESULTS_THREADS ?= 1
TRAIN_CLI = OMP_NUM_THREADS=$(RESULTS_THREADS) PYTHONUNBUFFERED=1 $(PY) -m resnet_tutorial \
	--precision $(RESULTS_PRECISION) --progress

results: results-paper results-fast results-fast-depths results-fast-ablations results-transfer

# Table 6, the ResNet-20 row: ResNet-20 with the paper's recipe, 64k iterations on all 50,000 images:
# 164 epochs of 391 steps (64,124 steps, lr / 10 at steps 32,062 and 48,093). Resume it with the
# settings it started with, RESULTS_PRECISION too (this run: bf16); a changed setting is reported
# when it resumes, and the run then no longer matches an uninterrupted one.
results-paper: $(STAMP)
	$(MAKE) book/results/paper_resnet20.json

book/results/paper_resnet20.json:
	$(TRAIN_CLI) --model cifar_resnet20 --iterations 64000 --out runs/paper_resnet20 --result $@ \
		$$(test -f runs/paper_resnet20/checkpoint.pt && echo --resume)

# The fast recipe (`--recipe fast`, config.RECIPES, chapter 5): one run at a time with both
# cores (FAST_THREADS), so that each run's seconds are its own. The ResNet-20 seeds are the
# headline: run them on an otherwise idle machine. Each run first measures the paper recipe's
# training speed for 30 s (speedup_over_paper). A run resumes after an interruption, but a
# resumed run's seconds are no longer one sitting's.
FAST_THREADS ?= 2
FAST_CLI = OMP_NUM_THREADS=$(FAST_THREADS) PYTHONUNBUFFERED=1 $(PY) -m resnet_tutorial \
	--recipe fast --progress
FAST_SEEDS := 0 1 2
FAST_DEPTHS := resnet32 resnet44 resnet56 resnet110 plain20 plain56 preact_resnet20

results-fast: $(STAMP)
	$(MAKE) -j1 $(foreach s,$(FAST_SEEDS),book/results/fast_resnet20_seed$(s).json)

# Table 6's depths, Fig. 6's plain nets and the pre-activation ResNet-20 (He et al. 2016b, chapter
# 4) with the same recipe, one seed each.
results-fast-depths: $(STAMP)
	$(MAKE) -j1 $(foreach m,$(FAST_DEPTHS),book/results/fast_$(m).json)

book/results/fast_resnet20_seed%.json:
	$(FAST_CLI) --model cifar_resnet20 --seed $* --out runs/fast_resnet20_seed$* --result $@ \
		$$(test -f runs/fast_resnet20_seed$*/checkpoint.pt && echo --resume)

book/results/fast_%.json:
	$(FAST_CLI) --model cifar_$* --out runs/fast_$* --result $@ \
		$$(test -f runs/fast_$*/checkpoint.pt && echo --resume)

# ResNet-110's fp32 weights (6.9 MB) are over the repository's 4 MB: stored in float16, with the
# test errors of the stored weights recorded beside the run's own (rt.results.store_half).
book/results/fast_resnet110.json:
	$(FAST_CLI) --model cifar_resnet110 --out runs/fast_resnet110 --result $@ \
		$$(test -f runs/fast_resnet110/checkpoint.pt && echo --resume)
	$(PY) -c "from resnet_tutorial import data, results; \
		print(results.store_half('fast_resnet110', data.cifar10('test')))"

# The ablation, judged on the 45k/5k split (--split val5k), as the recipe was checked: the
# paper's step schedule compressed to the fast budget (bf16, 25 epochs), then one ingredient
# added at a time up to the fast recipe, then each one taken out of it.
ABLATION_paper_step := --schedule step --lr 0.1 --no-nesterov --label-smoothing 0 \
	--weight-decay 1e-4 --decay-bn-and-bias
ABLATION_plus_nesterov := --schedule step --lr 0.1 --label-smoothing 0 --weight-decay 1e-4 \
	--decay-bn-and-bias
ABLATION_plus_onecycle := --label-smoothing 0 --weight-decay 1e-4 --decay-bn-and-bias
ABLATION_plus_smoothing := --weight-decay 1e-4 --decay-bn-and-bias
ABLATION_fast :=
ABLATION_no_nesterov := --no-nesterov
ABLATION_no_onecycle := --schedule step --lr 0.1
ABLATION_no_smoothing := --label-smoothing 0
ABLATION_no_weights_only_decay := --weight-decay 1e-4 --decay-bn-and-bias
ABLATION_no_bf16 := --precision fp32
# In this order: the two ends first, then each ingredient taken out, then added in.
ABLATIONS := paper_step fast no_onecycle no_smoothing no_nesterov no_weights_only_decay \
	no_bf16 plus_nesterov plus_onecycle plus_smoothing

results-fast-ablations: $(STAMP)
	$(MAKE) -j1 $(foreach a,$(ABLATIONS),book/results/val5k_$(a).json)

book/results/val5k_%.json:
	$(FAST_CLI) --model cifar_resnet20 --split val5k $(ABLATION_$*) --out runs/val5k_$* \
		--result $@ $$(test -f runs/val5k_$*/checkpoint.pt && echo --resume)

# Chapter 6's transfer grid: the source, ResNet-20 with the fast recipe on CIFAR-10's labels 0-4
# (25,000 training images, a 5-way head), then every row of book/results/transfer_grid.py's grid
# (near domain: labels 5-9; far: Fashion-MNIST), which resumes where it stopped.
results-transfer: $(STAMP)
	$(MAKE) book/results/cifar5_source.json
	OMP_NUM_THREADS=$(FAST_THREADS) PYTHONUNBUFFERED=1 $(PY) book/results/transfer_grid.py

book/results/cifar5_source.json:
	$(FAST_CLI) --model cifar_resnet20 --classes 0 1 2 3 4 --out runs/cifar5_source --result $@ \
		$$(test -f runs/cifar5_source/checkpoint.pt && echo --resume)

# On a machine with CUDA: the CUDA-only unit tests and the notebooks under nbval on the GPU, at
# the quick scale unless RESNET_TUTORIAL_SCALE=full. .ci/run-gpu runs it on a machine without
# internet, with the data that `make device-data` packed.
test-gpu: $(STAMP)
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'test-gpu: no CUDA device')"
	$(PY) -m pytest -p no:cacheprovider -m cuda tests
ifneq ($(NOTEBOOKS),)
	RESNET_TUTORIAL_SCALE=$${RESNET_TUTORIAL_SCALE:-quick} $(KERNEL_ENV) \
		$(PY) -m pytest $(NBVAL) $(NOTEBOOKS)
endif

device-data:
	bash .ci/pack-device-data

clean:
	rm -rf _build .pytest_cache .ruff_cache
