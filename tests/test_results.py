"""The reference runs in book/results/: each JSON is complete and consistent with itself, and its
weights, evaluated again here on the whole CIFAR-10 test split, give the test error it records.

Oracle: the evaluation is independent of the run (a fresh model built from the JSON's name, the
weights loaded strictly, every test image counted again); kernels differ across CPUs, so the
count may differ by at most 3 images of 10,000.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from resnet_tutorial import data, results

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"
GRIDS = ("transfer_grid",)  # not a training run: a table of rows (test_transfer_grid.py)
JSONS = sorted(p for p in RESULTS.glob("*.json") if p.stem not in GRIDS)
FIELDS = (
    "name", "model", "final_test_error", "history", "config", "total_seconds", "device",
    "device_name", "threads", "torch", "git_commit", "seed", "data_source", "train_images",
    "test_images", "command", "weights",
)  # fmt: skip
CURVES = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "seconds")
# Runs made since the provenance fields were added (the fast recipe's) must hold them all.
NEW_FIELDS = (
    "recipe", "split", "precision", "epoch_seconds", "git_commits",
    "paper_recipe_images_per_second", "speedup_over_paper", "final_test_error_flip",
)  # fmt: skip
TESTED_ON = {"test": "test", "val5k": "val5k"}  # --split: the split the run tested on


def planned_epochs(result: dict) -> int:
    """The epochs of the run's config: `epochs`, or `iterations` rounded up to whole epochs of
    ceil(ceil(train_images / world_size) / batch_size) steps (by hand, not with the package)."""
    config = result["config"]
    if config.get("epochs") is not None:
        return config["epochs"]
    per_rank = math.ceil(result["train_images"] / result.get("world_size", 1))
    return math.ceil(config["iterations"] / math.ceil(per_rank / config["batch_size"]))


def test_every_result_has_its_weights_and_every_weight_file_its_result():
    assert {p.stem for p in RESULTS.glob("*.pt")} == {p.stem for p in JSONS}


def test_every_weight_file_fits_the_repository():
    sizes = {p.name: p.stat().st_size for p in RESULTS.glob("*.pt")}
    assert {n: s for n, s in sizes.items() if s > results.MAX_WEIGHTS_BYTES} == {}


def test_store_half_rewrites_the_weights_in_float16_and_records_their_own_errors(tmp_path):
    torch.manual_seed(0)
    model = results.build_model("cifar_resnet8").eval()
    torch.save(model.state_dict(), tmp_path / "run.pt")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    fields = {"name": "run", "model": "cifar_resnet8", "final_test_error": 0.5,
              "config": {"mean": mean, "std": std}}  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(fields))
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (40,))
    stored = results.store_half("run", (images, labels), folder=tmp_path)
    state = torch.load(tmp_path / "run.pt", weights_only=True)
    assert {v.dtype for v in state.values()} == {torch.float16, torch.int64}  # + BN's counters
    # the oracle: the original weights rounded to float16 by hand, the errors counted by hand
    with torch.no_grad():
        for p in list(model.parameters()) + list(model.buffers()):
            if p.is_floating_point():
                p.copy_(p.half().float())
        x = (images.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
            :, None, None
        ]
        logits = model(x)
    assert stored["test_error"] == pytest.approx(float((logits.argmax(1) != labels).float().mean()))
    flipped = logits + model(x.flip(-1)).detach()
    assert stored["test_error_flip"] == pytest.approx(
        float((flipped.argmax(1) != labels).float().mean())
    )
    written = json.loads((tmp_path / "run.json").read_text())
    assert written["stored_weights"] == stored and written["final_test_error"] == 0.5  # kept
    with pytest.raises(ValueError, match="already float16"):
        results.store_half("run", (images, labels), folder=tmp_path)


@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_a_result_is_complete_and_consistent(path):
    result = json.loads(path.read_text())
    missing = [field for field in FIELDS if field not in result]
    assert not missing, f"{path.name} lacks {missing}"
    history = result["history"]
    assert sorted(history) == sorted(CURVES)
    epochs = len(history["epoch"])
    assert epochs == planned_epochs(result) and history["epoch"] == list(range(1, epochs + 1))
    assert all(len(history[curve]) == epochs for curve in CURVES)
    assert history["test_error"][-1] == result["final_test_error"]
    assert result["weights"] == path.with_suffix(".pt").name
    assert result["name"] == path.stem
    assert abs(sum(history["seconds"]) - result["total_seconds"]) < 1e-6 * epochs + 1e-6
    if "recipe" in result:
        missing = [field for field in NEW_FIELDS if field not in result]
        assert not missing, f"{path.name} lacks {missing}"
        assert not result["git_commit"].endswith("+dirty"), "a result from uncommitted code"
        assert result["git_commits"][-1] == result["git_commit"]
        assert not re.search(r"(^|\s)/", result["data_source"]["source"])  # no absolute path
        if "tree_sha256" in result["data_source"]:  # recorded since the book's copy is pinned
            assert result["data_source"]["tree_sha256"] == data.BOOK_CIFAR10_SHA256


def evaluation_cost(item) -> int:
    """About what re-evaluating a run costs: its depth times its test images, views counted."""
    result = json.loads(item.callspec.params["path"].read_text())
    depth = int(re.search(r"\d+$", result["model"])[0])
    return depth * result["test_images"] * (2 if "final_test_error_flip" in result else 1)


@pytest.mark.slow
@pytest.mark.spread(cost=evaluation_cost)
@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_the_weights_give_the_recorded_test_error(path):
    result = json.loads(path.read_text())
    test = data.cifar10(TESTED_ON[result.get("split", "test")])
    if "classes" in result:  # a run on some of CIFAR-10's classes (--classes)
        test = data.select_classes(test, [data.CIFAR10_CLASSES.index(c) for c in result["classes"]])
    source = results.load(path.stem).data_source
    if ("ImageFolder" in test.source) != ("ImageFolder" in source):
        pytest.skip(f"this machine's CIFAR-10 ({test.source}) is not the copy the run tested on "
                    f"({source}): the two differ by a few points")  # fmt: skip
    assert len(test) == result["test_images"]
    model = results.load(path.stem).model().eval()  # weights_only=True, strict
    config = result["config"]
    # The errors counted here, not by rt.evaluate: each image's logits, and with the flip view
    # the mean of its and its mirror's (the same forward passes give both).
    flip = "final_test_error_flip" in result
    loader = data.DeviceLoader((test.images, test.labels), 500, train=False, augment=False,
                               mean=config["mean"], std=config["std"], device="cpu")  # fmt: skip
    wrong = wrong_flip = 0
    with torch.no_grad():
        for x, y in loader:
            logits = model(x)
            wrong += int((logits.argmax(1) != y).sum())
            if flip:
                wrong_flip += int(((logits + model(x.flip(-1))).argmax(1) != y).sum())
    # float16 weights (a run too large for the repository in fp32) record their own errors
    own = {"test_error": result["final_test_error"],
           "test_error_flip": result.get("final_test_error_flip")}  # fmt: skip
    recorded = result.get("stored_weights", own)
    assert abs(wrong - round(recorded["test_error"] * len(test))) <= 3, wrong
    if flip:
        assert abs(wrong_flip - round(recorded["test_error_flip"] * len(test))) <= 3


def test_results_download_once_where_the_checkout_has_none(tmp_path, monkeypatch):
    # As on Colab: no book/results/ beside the package; the files come from RESULTS_URL (here a
    # local folder through a file:// URL) into the cache, once.
    remote = tmp_path / "remote"
    remote.mkdir()
    fields = {"name": "toy", "final_test_error": 0.25, "history": {
        "epoch": [1], "train_loss": [1.0], "train_error": [0.5], "test_loss": [1.1],
        "test_error": [0.25], "lr": [0.1], "seconds": [2.0]}}  # fmt: skip
    (remote / "toy.json").write_text(json.dumps(fields))
    monkeypatch.setattr(results, "CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(results, "RESULTS_URL", remote.as_uri() + "/")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    loaded = results.load("toy")
    assert loaded.final_test_error == 0.25 and loaded.history.test_error == [0.25]
    assert (tmp_path / "home/.cache/resnet_tutorial/results/toy.json").exists()
    (remote / "toy.json").unlink()
    assert results.load("toy").final_test_error == 0.25  # from the cache now
    with pytest.raises(FileNotFoundError, match="no reference run file 'other.json'"):
        results.load("other")


@pytest.mark.parametrize(
    ("name", "parameters"),
    # He et al. 2016, Table 6: 0.27M, 0.85M and 1.7M; a plain net has the same count (option A
    # shortcuts have no parameters).
    [("cifar_resnet20", 0.27e6), ("cifar_resnet56", 0.85e6), ("cifar_resnet110", 1.7e6),
     ("cifar_plain20", 0.27e6), ("cifar_preact_resnet20", 0.27e6)],
)  # fmt: skip
def test_build_model_makes_the_network_a_run_names(name, parameters):
    model = results.build_model(name)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(parameters, rel=0.02)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert results.build_model(name, 100).fc.out_features == 100


def test_build_model_names_the_kind_of_block():
    from resnet_tutorial.blocks import BasicBlock, PreActBasicBlock

    blocks = {kind: {type(b) for s in results.build_model(f"cifar_{kind}20").stages for b in s}
              for kind in ("resnet", "plain", "preact_resnet")}  # fmt: skip
    assert blocks == {"resnet": {BasicBlock}, "plain": {BasicBlock},
                      "preact_resnet": {PreActBasicBlock}}  # fmt: skip
    assert not results.build_model("cifar_plain20").layer1[0].residual


def test_build_model_refuses_other_names():
    with pytest.raises(ValueError, match="unknown model 'resnet20': use cifar_resnetN"):
        results.build_model("resnet20")


def test_glue_hands_the_value_to_myst_nb_and_runs_without_it(monkeypatch, capsys):
    import sys

    import myst_nb

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda *args, **kwargs: calls.append((args, kwargs)))
    results.glue("error", 12.5)
    assert calls == [(("error", 12.5), {"display": False})]  # the book's build: hidden, glued
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # Colab: myst-nb not installed
    assert results.glue("error", 12.5) is None
    assert len(calls) == 1 and capsys.readouterr().out == ""


# --- numbers the chapters glue into their prose ---------------------------------------------


def glued(notebook: Path) -> dict[str, float]:
    """The numbers a stored notebook glued (myst-nb's `glue`), by name."""
    values = {}
    for cell in json.loads(notebook.read_text())["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                text = next(v for k, v in output["data"].items() if k.endswith("text/plain"))
                values[name] = float(text)
    return values


def test_chapter_5_glues_the_fast_runs_numbers_from_their_json():
    # Some of these are glued in cells whose output nbval does not compare (seconds): here they
    # are recomputed from the JSON files, by hand, so that a stale page fails.
    runs = [json.loads((RESULTS / f"fast_resnet20_seed{s}.json").read_text()) for s in range(3)]
    paper = json.loads((RESULTS / "paper_resnet20.json").read_text())

    paper_epochs = len(paper["history"]["epoch"])  # 164

    def median(key):
        return sorted(run[key] for run in runs)[1]

    epochs = [(e, s) for run in runs for e, s in zip(run["history"]["epoch"],
                                                    run["history"]["seconds"])]  # fmt: skip
    untested = [s for e, s in epochs if e % 5]
    tested = [s for e, s in epochs if e % 5 == 0]
    epoch_seconds = sum(untested) / len(untested)
    val_fast = json.loads((RESULTS / "val5k_fast.json").read_text())["final_test_error"]
    expected = {
        "fast_median_error": 100 * median("final_test_error"),
        "fast_min_error": 100 * min(run["final_test_error"] for run in runs),
        "fast_max_error": 100 * max(run["final_test_error"] for run in runs),
        "fast_median_flip": 100 * median("final_test_error_flip"),
        "paper_run_error": 100 * paper["final_test_error"],
        "fast_gap": 100 * (median("final_test_error") - paper["final_test_error"]),
        "fast_median_seconds": median("total_seconds"),
        "fast_max_seconds": max(run["total_seconds"] for run in runs),
        "fast_median_speedup": median("speedup_over_paper"),
        "paper_recipe_hours": median("paper_recipe_seconds") / 3600,
        "fast_epoch_seconds": epoch_seconds,
        "fast_test_pass_seconds": sum(tested) / len(tested) - epoch_seconds,
        "per_epoch_factor": median("paper_recipe_seconds") / paper_epochs / epoch_seconds,
        "paper_epochs_by_then": max(run["total_seconds"] for run in runs)
        / (median("paper_recipe_seconds") / paper_epochs),
        "fast_seed_spread": 100
        * (
            max(run["final_test_error"] for run in runs)
            - min(run["final_test_error"] for run in runs)
        ),  # fmt: skip
        "val_fast_error": 100
        * json.loads((RESULTS / "val5k_fast.json").read_text())["final_test_error"],  # fmt: skip
        "val_standard_error": 100 * math.sqrt(val_fast * (1 - val_fast) / 5000),
        "val_difference_se": 100 * math.sqrt(2 * val_fast * (1 - val_fast) / 5000),
        "val_paper_step_error": 100
        * json.loads((RESULTS / "val5k_paper_step.json").read_text())[
            "final_test_error"
        ],  # fmt: skip
    }
    # the reference runs the rest of the chapter glues: the whole recipe, and bf16 against fp32
    paper_test = paper["history"]["test_error"]
    best = min(range(paper_epochs), key=paper_test.__getitem__)  # the first on a tie
    seconds = sorted(paper["history"]["seconds"])
    bf16_run, fp32_run = (json.loads((RESULTS / f"{name}.json").read_text())
                          for name in ("val5k_fast", "val5k_no_bf16"))  # fmt: skip
    bf16, fp32 = bf16_run["final_test_error"], fp32_run["final_test_error"]
    expected |= {
        "paper_best_error": 100 * paper_test[best],
        "paper_best_epoch": paper["history"]["epoch"][best],
        "paper_gap": 100 * paper["final_test_error"] - 8.75,  # He et al. 2016a, Table 6
        **{f"paper_error_{e}": 100 * paper_test[e - 1] for e in (82, 83, 123, 124)},
        "paper_hours": paper["total_seconds"] / 3600,
        "paper_median_seconds": seconds[len(seconds) // 2],
        "paper_slowest_minutes": seconds[-1] / 60,
        "paper_median_hours": len(seconds) * seconds[len(seconds) // 2] / 3600,
        "bf16_error": 100 * bf16,
        "fp32_error": 100 * fp32,
        "bf16_fp32_images": round(abs(bf16 - fp32) * fp32_run["test_images"]),
        "val_two_se": 2 * 100 * math.sqrt(2 * val_fast * (1 - val_fast) / 5000),
    }
    values = glued(Path(__file__).resolve().parent.parent / "book" / "ch05_training.ipynb")
    for name, value in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
