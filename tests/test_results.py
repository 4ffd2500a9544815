"""The reference runs in book/results/: each JSON is complete and consistent with itself, and its
weights, evaluated again here on the whole CIFAR-10 test split, give the test error it records.

Oracle: the evaluation is independent of the run (a fresh model built from the JSON's name, the
weights loaded strictly, every test image counted again); kernels differ across CPUs, so the
count may differ by at most 3 images of 10,000.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_tutorial import data
from resnet_tutorial.train import build_model, evaluate

RESULTS = Path(__file__).resolve().parent.parent / "book" / "results"
JSONS = sorted(RESULTS.glob("*.json"))
FIELDS = (
    "name", "model", "final_test_error", "history", "config", "total_seconds", "device",
    "device_name", "threads", "torch", "git_commit", "seed", "data_source", "train_images",
    "test_images", "command", "weights",
)  # fmt: skip
CURVES = ("epoch", "train_loss", "train_error", "test_loss", "test_error", "lr", "seconds")


def test_every_result_has_its_weights_and_every_weight_file_its_result():
    assert {p.stem for p in RESULTS.glob("*.pt")} == {p.stem for p in JSONS}


@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_a_result_is_complete_and_consistent(path):
    result = json.loads(path.read_text())
    missing = [field for field in FIELDS if field not in result]
    assert not missing, f"{path.name} lacks {missing}"
    history = result["history"]
    assert sorted(history) == sorted(CURVES)
    epochs = len(history["epoch"])
    assert epochs == result["config"]["epochs"] and history["epoch"] == list(range(1, epochs + 1))
    assert all(len(history[curve]) == epochs for curve in CURVES)
    assert history["test_error"][-1] == result["final_test_error"]
    assert result["weights"] == path.with_suffix(".pt").name
    assert result["name"] == path.stem
    assert abs(sum(history["seconds"]) - result["total_seconds"]) < 1e-6 * epochs + 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("path", JSONS, ids=[p.stem for p in JSONS])
def test_the_weights_give_the_recorded_test_error(path):
    result = json.loads(path.read_text())
    test = data.cifar10("test")
    if ("ImageFolder" in test.source) != ("ImageFolder" in result["data_source"]):
        pytest.skip(f"this machine's CIFAR-10 ({test.source}) is not the copy the run tested on "
                    f"({result['data_source']}): the two differ by a few points")  # fmt: skip
    assert len(test) == result["test_images"]
    model = build_model(result["model"])
    state = torch.load(path.with_suffix(".pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    config = result["config"]
    _, error = evaluate(model, test, mean=config["mean"], std=config["std"])
    wrong, recorded = round(error * len(test)), round(result["final_test_error"] * len(test))
    assert abs(wrong - recorded) <= 3, (wrong, recorded)
