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

.PHONY: test test-unit test-notebooks test-site lint book notebooks bench test-gpu device-data clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: lint test-unit test-notebooks test-site

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The torchrun test starts two processes of its own, so it runs after the others, not beside them.
test-unit: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile --ignore tests/test_ddp.py tests
	$(PY) -m pytest tests/test_ddp.py

test-notebooks: $(STAMP)
ifneq ($(NOTEBOOKS),)
	$(QUICK) $(KERNEL_ENV) OMP_NUM_THREADS=$(NB_THREADS) \
		$(PY) -m pytest -n 2 --dist loadfile $(NBVAL) $(NOTEBOOKS)
endif

test-site: book
	$(PY) tests/check_site.py _build/html

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
