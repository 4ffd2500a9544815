"""Tests of resnet_tutorial.config, .train, .checkpoint and the command line
(`python -m resnet_tutorial`): recipe, schedules, evaluation, checkpoints, resume (also of the
previous checkpoint format), CLI.

Oracles: the schedules' factors computed by hand from the papers (`paper_factor`), runs that
were not interrupted, the code of an earlier commit (from git), counts done by hand.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import resnet_tutorial.__main__ as cli
from resnet_tutorial import checkpoint, data, results
from resnet_tutorial._util import atomic_save
from resnet_tutorial.checkpoint import load_checkpoint
from resnet_tutorial.config import (
    TrainConfig,
    learning_rates,
    make_optimizer,
    make_scheduler,
    pick_precision,
    recipe,
    scale,
)
from resnet_tutorial.train import (
    History,
    NonFiniteLossError,
    evaluate,
    fit,
    predict,
    training_throughput,
)

ROOT = Path(__file__).resolve().parent.parent


class Stop(Exception):
    """Raised by `TinyNet` to interrupt a run, as a crash or Ctrl-C would."""


class TinyNet(nn.Module):
    """Conv-BN-ReLU-pool-dropout-linear: BN buffers, biases and dropout's RNG all take part.

    `fail_at` makes the training forward number `fail_at` (1-based) return NaN logits (or raise
    `Stop` when `stop=True`), to simulate a divergence or an interruption.
    """

    def __init__(self, seed: int = 0, fail_at: int | None = None, stop: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(4)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(256, 10))
        self.fail_at, self.stop, self.calls = fail_at, stop, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.features(x))
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                if self.stop:
                    raise Stop
                return logits * float("nan")
        return logits


def synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """16x16 images whose class brightens a 4x4 patch in one of ten places: learnable, tiny."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 128, (n, 3, 16, 16), dtype=torch.uint8, generator=generator)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 4)
        images[i, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 120
    return images, labels


TRAIN, TEST = synthetic(160, seed=1), synthetic(40, seed=2)
QUICK = TrainConfig(epochs=4, batch_size=32, lr=0.05, device="cpu", precision="fp32")


# --- scale and precision ----------------------------------------------------------------------


def test_scale_follows_the_device_and_the_environment(monkeypatch):
    monkeypatch.delenv("RESNET_TUTORIAL_SCALE", raising=False)
    assert scale() == ("full" if torch.cuda.is_available() else "quick")
    for value in ("quick", "full"):
        monkeypatch.setenv("RESNET_TUTORIAL_SCALE", value)
        assert scale() == value
    monkeypatch.setenv("RESNET_TUTORIAL_SCALE", "huge")
    with pytest.raises(ValueError, match="RESNET_TUTORIAL_SCALE.*'huge'"):
        scale()


def test_auto_precision_is_fp32_on_every_cpu_and_bf16_only_when_asked():
    assert TrainConfig().precision == "auto"
    assert pick_precision("cpu") == ("fp32", True)
    assert pick_precision("cpu", "bf16") == ("bf16", True)
    assert pick_precision("cpu", "fp16", False) == ("fp16", False)


@pytest.mark.parametrize(
    "capability, expected",
    [((7, 5), "fp16"), ((7, 0), "fp16"), ((8, 0), "bf16"), ((8, 6), "bf16"), ((9, 0), "bf16")],
    ids=["T4", "V100", "A100", "RTX3090", "H100"],
)
def test_auto_precision_on_cuda_follows_the_compute_capability(monkeypatch, capability, expected):
    # Faked device properties: bf16 needs the tensor cores of compute capability 8.0 (Ampere);
    # is_bf16_supported() would say yes on a T4 too (emulated), so it must not decide.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert pick_precision("cuda:0") == (expected, True)
    assert pick_precision("cuda:0", "fp32") == ("fp32", True)


# --- configuration ----------------------------------------------------------------------------


def test_defaults_are_the_papers_recipe():
    config = TrainConfig()
    assert (config.batch_size, config.lr, config.momentum, config.weight_decay) == (
        128,
        0.1,
        0.9,
        1e-4,
    )
    assert config.schedule == "step" and not config.nesterov and config.augment
    assert (config.epochs, config.iterations) == (None, 64_000)  # He et al. 2016, Sec. 4.2


def test_the_default_on_all_50k_images_is_164_epochs_divided_at_32062_and_48093():
    # By hand: 50,000 / 128 -> 391 steps per epoch (the last batch holds 80 images);
    # 64,000 / 391 = 163.7 -> 164 epochs = 64,124 steps; 64,124 / 2 = 32,062 and
    # 64,124 * 3 / 4 = 48,093 exactly.
    config = TrainConfig()
    assert config.epochs_for(391) == 164
    lrs = learning_rates(config, steps_per_epoch=391)
    assert len(lrs) == 64_124
    expected = {0: 0.1, 32_061: 0.1, 32_062: 0.01, 48_092: 0.01, 48_093: 0.001, 64_123: 0.001}
    assert {step: lrs[step] for step in expected} == pytest.approx(expected)
    # bit for bit the lr of the hand-written factors (the paper run's checkpoints depend on it)
    assert lrs == [0.1 * paper_factor(step, 64_124) for step in range(64_124)]
    # On the paper's 45k training images: 352 steps per epoch, 182 epochs = 64,064 steps.
    assert config.epochs_for(352) == 182  # 182 * 352 = 64,064 steps


@pytest.mark.parametrize(
    ("options", "steps_per_epoch", "epochs"),
    [
        ({"iterations": 100}, 10, 10),  # exactly 10 epochs
        ({"iterations": 100}, 7, 15),  # 14 epochs are 98 steps: one more epoch
        ({"iterations": 1}, 391, 1),
        ({"epochs": 3}, 7, 3),  # epochs are epochs, whatever the steps
    ],
)
def test_iterations_round_up_to_whole_epochs(options, steps_per_epoch, epochs):
    config = TrainConfig(**options)
    assert config.epochs_for(steps_per_epoch) == epochs
    assert len(learning_rates(config, steps_per_epoch)) == epochs * steps_per_epoch


def test_epochs_or_iterations_not_both():
    with pytest.raises(ValueError, match="give epochs or iterations, not both; got epochs=5"):
        TrainConfig(epochs=5, iterations=1000)
    # replace() keeps the default's iterations=64000: the message says what to do
    with pytest.raises(ValueError, match="pass the other as None"):
        dataclasses.replace(TrainConfig(), epochs=5)
    assert dataclasses.replace(TrainConfig(), epochs=5, iterations=None).epochs == 5
    with pytest.raises(ValueError, match=r"warmup_epochs=5 must be below the run's 2 epochs"):
        TrainConfig(iterations=20, warmup_epochs=5).epochs_for(10)
    with pytest.raises(ValueError, match="steps_per_epoch must be a positive int, got 0"):
        TrainConfig().epochs_for(0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs must be a positive int, got 0"),
        ({"epochs": 2.5}, "epochs must be an int, got float 2.5"),
        ({"iterations": 0}, "iterations must be a positive int, got 0"),
        ({"iterations": 1e3}, "iterations must be an int, got float 1000.0"),
        ({"batch_size": -1}, "batch_size must be a positive int, got -1"),
        ({"seed": -1}, "seed must be an int >= 0, got -1"),
        ({"lr": 0}, "lr must be a finite number > 0, got 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\), got 1.0"),
        ({"weight_decay": -1e-4}, "weight_decay must be a finite number >= 0"),
        ({"schedule": "linear"}, "schedule must be one of 'step', 'cosine', 'onecycle'.*'linear'"),
        ({"precision": "fp64"}, "precision must be one of 'auto', 'fp32', 'bf16', 'fp16'.*'fp64'"),
        ({"warmup_epochs": 5, "epochs": 5}, r"warmup_epochs must be a number in \[0, epochs=5\)"),
        ({"warmup_epochs": 1, "schedule": "onecycle"}, "onecycle has its own warm-up"),
        ({"label_smoothing": 1.0}, "label_smoothing must be a number in"),
        ({"channels_last": "yes"}, "channels_last must be one of None, True, False; got 'yes'"),
        ({"nesterov": True, "momentum": 0.0}, "nesterov=True needs momentum > 0"),
        ({"device": "gpu"}, "device must be None or a torch device string.*'gpu'"),
        ({"mean": (0.5, 0.5)}, "one entry per channel"),
        ({"std": (0.2, 0.0, 0.2)}, "std > 0"),
    ],
)
def test_bad_settings_raise_a_clear_error(options, message):
    kind = TypeError if "must be an int," in message else ValueError  # a float, not an int
    with pytest.raises(kind, match=message):
        TrainConfig(**options)


def test_config_round_trips_through_a_dict():
    config = TrainConfig(epochs=3, schedule="cosine", checkpoint=os.path.join("runs", "c.pt"))
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    config = TrainConfig(iterations=500)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # A checkpoint written before `iterations` existed has only `epochs`.
    old = {k: v for k, v in TrainConfig(epochs=164).to_dict().items() if k != "iterations"}
    assert TrainConfig.from_dict(old) == TrainConfig(epochs=164)


def test_no_weight_decay_on_bn_and_biases_when_asked():
    model = TinyNet()
    groups = make_optimizer(model, dataclasses.replace(QUICK, decay_bn_and_bias=False))
    decayed, exempt = groups.param_groups
    # By hand: conv and linear weights are decayed; conv bias, BN weight and bias, linear bias not.
    assert {id(p) for p in decayed["params"]} == {
        id(model.features[0].weight),
        id(model.head[2].weight),
    }
    assert len(exempt["params"]) == 4 and exempt["weight_decay"] == 0
    assert decayed["weight_decay"] == QUICK.weight_decay
    (single,) = make_optimizer(model, QUICK).param_groups
    assert len(single["params"]) == 6 and single["weight_decay"] == QUICK.weight_decay


# --- schedules --------------------------------------------------------------------------------


def paper_factor(step: int, total: int, schedule: str = "step", warmup: int = 0) -> float:
    """Oracle: the multiplier of the base lr at iteration `step` (0-based) of `total`, by hand.

    step: 1 until 50% of the iterations, 0.1 until 75%, then 0.01 (He et al. 2016, Sec. 4.2).
    cosine: (1 + cos(pi t / T)) / 2 over the T iterations after the warm-up (Loshchilov & Hutter
    2017). onecycle: from 1/25 up to 1 over 30% of the run, then down to 1/25/1e4, each phase a
    half cosine (Smith & Topin 2019; OneCycleLR's defaults). A linear warm-up multiplies the
    first `warmup` iterations by (step + 1) / warmup (Goyal et al. 2017). These were the
    package's own formulas before it used torch's schedulers.
    """

    def step_factor(i: int) -> float:
        return 0.1 ** sum(i >= m for m in (int(0.5 * total), int(0.75 * total)))

    if step < warmup:
        return (step + 1) / warmup * (1.0 if schedule == "cosine" else step_factor(step))
    if schedule == "step":
        return step_factor(step)
    if schedule == "cosine":
        t, length = step - warmup, max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, length) / length))
    initial, peak, final = 1 / 25, 1.0, 1 / 25 / 1e4
    rise_end, fall_end = 0.3 * total - 1, total - 1
    if step <= rise_end:
        start, end, pct = initial, peak, step / rise_end
    else:
        start, end, pct = peak, final, (step - rise_end) / (fall_end - rise_end)
    return end + (start - end) / 2 * (math.cos(math.pi * min(pct, 1.0)) + 1)


def paper_rates(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    total = config.epochs_for(steps_per_epoch) * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    return [config.lr * paper_factor(s, total, config.schedule, warmup) for s in range(total)]


def scheduler_lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return lrs


def test_step_schedule_divides_by_ten_at_half_and_three_quarters():
    # The paper: 0.1, then 0.01 from iteration 32k, 0.001 from 48k, of 64k.
    assert [paper_factor(s, 64_000) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == (
        pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    )
    config = dataclasses.replace(QUICK, lr=0.1)
    lrs = learning_rates(config, steps_per_epoch=10)  # 40 steps
    assert lrs[:20] == pytest.approx([0.1] * 20)
    assert lrs[20:30] == pytest.approx([0.01] * 10)
    assert lrs[30:] == pytest.approx([0.001] * 10)
    assert lrs == paper_rates(config, 10)  # bit for bit


# Each schedule at lrs of the book and of the tests; step without warm-up is exact to the bit.
SCHEDULES = [
    {"schedule": "step"}, {"schedule": "step", "lr": 0.01}, {"schedule": "cosine"},
    {"schedule": "onecycle"}, {"schedule": "onecycle", "lr": 0.4},
    {"schedule": "step", "warmup_epochs": 1}, {"schedule": "cosine", "warmup_epochs": 1.5},
    {"schedule": "step", "epochs": 1}, {"schedule": "cosine", "epochs": 1},
]  # fmt: skip


@pytest.mark.parametrize("options", SCHEDULES, ids=lambda o: "-".join(map(str, o.values())))
def test_every_schedule_gives_the_lrs_computed_by_hand(options):
    config = dataclasses.replace(QUICK, **options)
    lrs, expected = learning_rates(config, steps_per_epoch=10), paper_rates(config, 10)
    # torch's schedulers compute each lr from the last one: equal up to rounding
    assert lrs == pytest.approx(expected, rel=1e-13, abs=0)
    if options == {"schedule": "step"}:
        assert lrs == expected


def test_cosine_schedule_is_half_way_at_the_midpoint():
    config = dataclasses.replace(QUICK, lr=0.1, schedule="cosine")
    lrs = learning_rates(config, steps_per_epoch=10)
    assert lrs[0] == 0.1 and lrs[20] == pytest.approx(0.05) and lrs[-1] > 0


def test_warm_up_is_linear_then_the_schedule_follows():
    config = dataclasses.replace(QUICK, lr=0.1, schedule="cosine", warmup_epochs=1)
    lrs = learning_rates(config, steps_per_epoch=10)
    assert lrs[:10] == pytest.approx([0.01 * (i + 1) for i in range(10)])
    assert lrs[10:] == pytest.approx([0.05 * (1 + math.cos(math.pi * t / 30)) for t in range(30)])
    step = learning_rates(dataclasses.replace(config, schedule="step"), steps_per_epoch=10)
    assert step[:10] == pytest.approx(lrs[:10]) and step[10:20] == pytest.approx([0.1] * 10)


def test_onecycle_rises_to_the_peak_at_30_percent_then_falls():
    lrs = learning_rates(dataclasses.replace(QUICK, lr=0.1, schedule="onecycle"), 10)
    assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1)
    assert lrs.index(max(lrs)) == 11  # iteration 0.3 * 40 - 1
    assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)


def test_the_optimizer_sees_the_schedule_per_iteration():
    config = dataclasses.replace(QUICK, schedule="cosine", warmup_epochs=1)
    model = TinyNet()
    optimizer = make_optimizer(model, config)
    lrs = scheduler_lrs(make_scheduler(optimizer, config, steps_per_epoch=10), 40)
    assert lrs == pytest.approx(paper_rates(config, 10), rel=1e-13)


# --- evaluation -------------------------------------------------------------------------------


class ChannelMeans(nn.Module):
    """Logits = the mean of each channel: the predicted class is the brightest channel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_evaluate_and_predict_match_a_hand_count():
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (90, 60, 30), (0, 0, 255)] * 2
    images = torch.tensor(colours, dtype=torch.uint8).view(10, 3, 1, 1).expand(10, 3, 4, 4)
    labels = torch.tensor([0, 1, 2, 0, 2, 1, 1, 2, 0, 0])  # wrong: 5 (0 vs 1) and 9 (2 vs 0)
    logits = [[c / 255 for c in colour] for colour in colours]
    expected_loss = sum(
        math.log(sum(math.exp(v) for v in row)) - row[label]
        for row, label in zip(logits, labels.tolist())
    ) / len(colours)
    model = ChannelMeans().train()
    options = {"batch_size": 3, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    loss, error = evaluate(model, (images, labels), **options)
    assert error == pytest.approx(2 / 10)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert model.training  # mode restored
    predicted = predict(model.eval(), images, **options)
    assert predicted.tolist() == [0, 1, 2, 0, 2] * 2
    assert not model.training


# --- fit --------------------------------------------------------------------------------------


def test_flip_scores_the_mean_of_both_views_logits():
    model = TinyNet().eval()
    images, labels = TEST
    x = data.normalize(images, data.CIFAR10_MEAN, data.CIFAR10_STD)
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2  # by hand
    expected = (logits.argmax(1) != labels).float().mean().item()
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert evaluate(model, TEST, device="cpu", flip=True) == pytest.approx((loss, expected))
    assert evaluate(model, TEST, device="cpu") != evaluate(model, TEST, device="cpu", flip=True)


def test_a_small_model_overfits_one_batch_and_prints_nothing(capsys):
    # 32 images with random labels, one batch per epoch: only memorising fits them.
    images = TRAIN[0][:32]
    labels = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(0))
    config = dataclasses.replace(QUICK, epochs=30, lr=0.4, weight_decay=0, augment=False)
    history = fit(TinyNet(), (images, labels), (images, labels), config)
    assert len(history) == 30 and history.epoch == list(range(1, 31))
    assert history.test_error[-1] == 0 and history.test_loss[-1] < 0.05 < 2 < history.test_loss[0]
    assert capsys.readouterr() == ("", "")  # quiet when stderr is not a terminal (nbval, CI)


def test_history_round_trips_and_finds_the_best_epoch(tmp_path):
    history = History()
    for epoch, error in enumerate([0.5, 0.2, 0.3], start=1):
        history.append(epoch=epoch, train_loss=1.0, train_error=error, test_loss=1.0,
                       test_error=error, lr=0.1, seconds=1.0)  # fmt: skip
    assert history.best()["epoch"] == 2 and history.final["test_error"] == 0.3
    history.save_json(tmp_path / "h.json")
    assert History.load_json(tmp_path / "h.json") == history
    with pytest.raises(ValueError, match="needs exactly the fields"):
        history.append(epoch=4)


def without_seconds(history: History) -> dict[str, list[float]]:
    return {k: v for k, v in history.to_dict().items() if k != "seconds"}


RESUMED = [{}, {"schedule": "cosine", "warmup_epochs": 1.4}, {"schedule": "onecycle"}]


def interrupted_at_epoch_2(config: TrainConfig, run=None) -> Path:
    """Run `config` (4 epochs of 5 steps) until the first step of epoch 3; its checkpoint."""
    with pytest.raises(Stop):
        (run or fit)(TinyNet(fail_at=11, stop=True), TRAIN, TEST, config)
    assert load_checkpoint(config.checkpoint)["epoch"] == 2
    return Path(config.checkpoint)


@pytest.mark.parametrize("options", RESUMED, ids=["step", "cosine-warmup", "onecycle"])
def test_resume_continues_bit_for_bit(tmp_path, options):
    config = dataclasses.replace(QUICK, checkpoint=str(tmp_path / "straight.pt"), **options)
    straight = TinyNet()
    history = fit(straight, TRAIN, TEST, config)

    path = interrupted_at_epoch_2(dataclasses.replace(config, checkpoint=str(tmp_path / "run.pt")))
    resumed = TinyNet(seed=123)  # other initial weights: all must come from the checkpoint
    resumed_history = fit(resumed, TRAIN, TEST, resume=path)
    assert without_seconds(resumed_history) == without_seconds(history)
    assert resumed_history.epoch == [1, 2, 3, 4]
    expected = straight.state_dict()
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert load_checkpoint(path)["epoch"] == 4
    assert load_checkpoint(path)["format"] == checkpoint.CHECKPOINT_FORMAT


def test_a_checkpoint_of_an_unknown_format_is_refused(tmp_path):
    config = dataclasses.replace(QUICK, epochs=1, checkpoint=str(tmp_path / "c.pt"))
    fit(TinyNet(), TRAIN, TEST, config)
    state = load_checkpoint(tmp_path / "c.pt")
    atomic_save({**state, "format": 99}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="has format 99; this version of the package reads"):
        fit(TinyNet(), TRAIN, TEST, config, resume=tmp_path / "c.pt")


def test_a_run_of_iterations_trains_whole_epochs_and_divides_at_half_and_three_quarters():
    # 160 images at batch 32: 5 steps per epoch; 12 iterations -> 3 epochs = 15 steps, the lr
    # divided at steps int(7.5) = 7 and int(11.25) = 11. The lr of each epoch's last step
    # (4, 9, 14): 0.05, 0.005, 0.0005.
    config = dataclasses.replace(QUICK, epochs=None, iterations=12)
    history = fit(TinyNet(), TRAIN, TEST, config)
    assert history.epoch == [1, 2, 3]
    assert history.lr == pytest.approx([0.05, 0.005, 0.0005])


def test_a_checkpoint_of_epochs_resumes_under_the_same_length_in_iterations(tmp_path):
    # 4 epochs of 5 steps = 20 steps; iterations=17 and iterations=20 both round up to 4 epochs.
    config = dataclasses.replace(QUICK, checkpoint=str(tmp_path / "straight.pt"))
    straight = TinyNet()
    history = fit(straight, TRAIN, TEST, config)
    interrupted = dataclasses.replace(config, checkpoint=str(tmp_path / "run.pt"))
    with pytest.raises(Stop):
        fit(TinyNet(fail_at=11, stop=True), TRAIN, TEST, interrupted)
    resumed = TinyNet(seed=123)
    as_iterations = dataclasses.replace(interrupted, epochs=None, iterations=17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same run: no warning
        resumed_history = fit(resumed, TRAIN, TEST, as_iterations, resume=tmp_path / "run.pt")
    assert without_seconds(resumed_history) == without_seconds(history)
    expected = straight.state_dict()
    assert all(torch.equal(tensor, expected[k]) for k, tensor in resumed.state_dict().items())
    longer = dataclasses.replace(as_iterations, iterations=21)  # 5 epochs: another run
    with pytest.warns(UserWarning, match=r"epochs \(4 -> 5\)"):
        fit(TinyNet(), TRAIN, TEST, longer, resume=tmp_path / "straight.pt")


def make_command_args(target: str, *extra: str) -> argparse.Namespace:
    """The command line options of a reference run's command, as `make` expands it, parsed."""
    printed = subprocess.run(
        ["make", "-nB", target, "RESULTS_PRECISION=bf16"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    command = printed.replace("\\\n", " ").split("-m resnet_tutorial ", 1)[1]
    command = command.split("$(test -f", 1)[0]  # the shell adds --resume when a checkpoint exists
    return cli._parser().parse_args([*shlex.split(command), *extra])


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_repeats_val5k_fast_in_fp32_whatever_precision_is_asked():
    # val5k_no_bf16 measures what bf16 costs: it must be val5k_fast's run in all but precision
    bf16, fp32 = (
        make_command_args(f"book/results/val5k_{name}.json") for name in ("fast", "no_bf16")
    )
    bf16, fp32 = (dataclasses.asdict(cli.config_from_args(args)) for args in (bf16, fp32))
    assert (bf16["precision"], fp32["precision"]) == ("bf16", "fp32")
    assert {k for k in bf16 if bf16[k] != fp32[k]} == {"precision", "checkpoint"}  # runs/<name>/


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_the_makefile_resumes_the_paper_run_with_the_settings_it_started_with():
    # The paper run was started with `--epochs 164 --precision bf16 --progress`; its checkpoint
    # holds this config. The Makefile's command (as make expands it) must resume it as the same
    # run: no warning, 164 epochs of 391 steps.
    started = TrainConfig(epochs=164, precision="bf16", progress=True,
                          checkpoint="runs/paper_resnet20/checkpoint.pt")  # fmt: skip
    args = make_command_args("book/results/paper_resnet20.json", "--resume")
    config = cli.config_from_args(args)
    assert config.checkpoint == started.checkpoint and config.epochs_for(391) == 164
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checkpoint.warn_if_changed(started, config, 391)


def test_resume_warns_when_the_settings_differ(tmp_path):
    config = dataclasses.replace(QUICK, epochs=1, checkpoint=str(tmp_path / "c.pt"))
    fit(TinyNet(), TRAIN, TEST, config)
    with pytest.warns(UserWarning, match=r"epochs \(1 -> 2\)"):
        history = fit(TinyNet(), TRAIN, TEST, dataclasses.replace(config, epochs=2),
                      resume=tmp_path / "c.pt")  # fmt: skip
    assert history.epoch == [1, 2]
    with pytest.raises(ValueError, match="trained on 160 images, got 40"):
        fit(TinyNet(), TEST, TEST, resume=tmp_path / "c.pt")


def test_a_longer_resumed_run_follows_the_longer_schedule(tmp_path):
    config = dataclasses.replace(
        QUICK, epochs=1, schedule="onecycle", checkpoint=str(tmp_path / "c.pt")
    )
    fit(TinyNet(), TRAIN, TEST, config)  # 5 steps: the cycle ends at lr / 25e4
    longer = dataclasses.replace(config, epochs=3)
    with pytest.warns(UserWarning, match=r"epochs \(1 -> 3\)"):
        history = fit(TinyNet(), TRAIN, TEST, longer, resume=tmp_path / "c.pt")
    rates = paper_rates(longer, 5)  # the 15-step cycle: epochs 2 and 3 end at steps 9 and 14
    assert history.epoch == [1, 2, 3]
    assert history.lr[1:] == pytest.approx([rates[9], rates[14]], rel=1e-12)


def test_a_crash_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save, saves = torch.save, []

    def save_then_crash(state, file):
        saves.append(state["epoch"])
        if len(saves) == 1:
            return real_save(state, file)
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", save_then_crash)
    with pytest.raises(OSError, match="disk full"):
        fit(TinyNet(), TRAIN, TEST, dataclasses.replace(QUICK, epochs=2, checkpoint=str(path)))
    assert saves == [1, 2]
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["run.pt"]  # no temporary file left behind


def test_a_non_finite_loss_stops_the_run_and_names_the_last_checkpoint(tmp_path):
    path = tmp_path / "run.pt"
    config = dataclasses.replace(QUICK, checkpoint=str(path))
    with pytest.raises(NonFiniteLossError, match="nan at epoch 2, step 2 of 5") as error:
        fit(TinyNet(fail_at=7), TRAIN, TEST, config)  # 5 steps per epoch: epoch 2, step 2
    assert repr(str(path)) in str(error.value)
    assert load_checkpoint(path)["epoch"] == 1
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 3 of 5.*no checkpoint"):
        fit(TinyNet(fail_at=3), TRAIN, TEST, QUICK)


# --- command line -----------------------------------------------------------------------------


def test_the_command_line_writes_its_results(tmp_path, capsys, monkeypatch):
    def small_cifar10(split, *, root=None, per_class=None, download=True):
        images, labels = synthetic(10 * per_class, seed=1 if split == "train" else 2)
        return data.ImageSet(images, labels, data.CIFAR10_CLASSES, f"synthetic {split}")

    monkeypatch.setattr(data, "cifar10", small_cifar10)  # data.py's own tests read CIFAR-10
    out = tmp_path / "r8"
    argv = ["--model", "cifar_resnet8", "--epochs", "1", "--per-class", "3", "--out", str(out)]
    result = cli.main([*argv, "--batch-size", "10", "--device", "cpu", "--baseline-seconds", "0.2"])
    written = json.loads((out / "result.json").read_text())
    assert written == json.loads(json.dumps(result))
    for key in ("model", "final_test_error", "best_test_error", "history", "total_seconds",
                "device", "device_name", "threads", "git_commit", "torch", "seed", "data_source",
                "config", "command", "weights", "recipe", "precision", "epoch_seconds",
                "git_commits"):  # fmt: skip
        assert key in written, key
    assert (written["recipe"], written["split"], written["precision"]) == ("paper", "test", "auto")
    assert written["git_commits"] == [written["git_commit"]]
    # the paper's 64,000 iterations at batch 128 on 30 images: 1 step, 30 images an epoch
    paper_seconds = 64_000 * 30 / written["paper_recipe_images_per_second"]
    assert written["paper_recipe_seconds"] == pytest.approx(paper_seconds)
    assert written["speedup_over_paper"] == pytest.approx(paper_seconds / written["total_seconds"])
    assert written["paper_recipe_precision"] == "fp32"
    assert 0 <= written["final_test_error_flip"] <= 1
    assert written["model"] == "cifar_resnet8" and written["torch"] == torch.__version__
    assert written["device"] == "cpu" and written["device_name"]
    # the final weights, a plain state_dict beside the JSON, are the trained model's
    weights = torch.load(out / written["weights"], weights_only=True)
    model = results.build_model("cifar_resnet8")
    model.load_state_dict(weights, strict=True)
    test = small_cifar10("test", per_class=3)
    assert evaluate(model, test)[1] == pytest.approx(written["final_test_error"])
    assert written["train_images"] == 30 and written["history"]["epoch"] == [1]
    train = small_cifar10("train", per_class=3)
    digest = hashlib.sha256(train.images.numpy().tobytes() + train.labels.numpy().tobytes())
    assert written["data_source"] == {"source": "synthetic train",
                                      "images_sha256": digest.hexdigest()}  # fmt: skip
    assert written["config"]["epochs"] == 1
    assert 0 <= written["final_test_error"] <= 1
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert f"wrote {out / 'result.json'}" in capsys.readouterr().out
    # --iterations: 30 images at batch 10 are 3 steps per epoch; 5 steps -> 2 epochs
    argv = ["--iterations", "5", "--per-class", "3", "--out", str(tmp_path / "it")]
    result = cli.main([*argv, "--batch-size", "10", "--device", "cpu", "--baseline-seconds", "0"])
    assert "speedup_over_paper" not in result
    assert result["history"]["epoch"] == [1, 2]
    assert (result["config"]["epochs"], result["config"]["iterations"]) == (None, 5)


def tiny_cifar10(split, *, root=None, per_class=None, download=True):
    images, labels = synthetic(10 * per_class, seed=1 if split.startswith("train") else 2)
    return data.ImageSet(images, labels, data.CIFAR10_CLASSES, f"tree {root}/cifar10/{split}")


def test_the_command_line_trains_on_the_classes_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "cifar10", tiny_cifar10)
    argv = ["--model", "cifar_resnet8", "--per-class", "3", "--out", str(tmp_path / "run"),
            "--batch-size", "10", "--device", "cpu", "--baseline-seconds", "0", "--epochs", "1",
            "--classes", "7", "2"]  # fmt: skip
    result = cli.main(argv)
    assert result["classes"] == ["horse", "bird"]  # CIFAR-10's labels 7 and 2, in that order
    assert (result["train_images"], result["test_images"]) == (6, 6)
    weights = torch.load(tmp_path / "run" / "result.pt", weights_only=True)
    assert weights["fc.weight"].shape == (2, 64)  # a two-way head on ResNet-8's 64 features


def test_a_resumed_run_records_every_commit_and_val5k_trains_on_45k(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "cifar10", tiny_cifar10)
    argv = ["--model", "cifar_resnet8", "--per-class", "3", "--out", str(tmp_path / "run"),
            "--batch-size", "10", "--device", "cpu", "--baseline-seconds", "0",
            "--data-root", str(tmp_path), "--split", "val5k"]  # fmt: skip
    monkeypatch.setattr(cli, "_git_commit", lambda: "a" * 40)
    cli.main([*argv, "--epochs", "1"])
    monkeypatch.setattr(cli, "_git_commit", lambda: "b" * 40)
    with pytest.warns(UserWarning, match=r"epochs \(1 -> 2\)"):
        result = cli.main([*argv, "--epochs", "2", "--resume"])
    assert result["git_commits"] == ["a" * 40, "b" * 40] and result["git_commit"] == "b" * 40
    # no folder of this machine in the data source: the tree is relative to the data root
    assert result["data_source"]["source"] == "tree cifar10/train45k"
    assert "tree_sha256" not in result["data_source"]  # no such tree under the root
    # With the tree there: the hash of its files, as sha256sum lines (tested in test_data.py)
    (tmp_path / "cifar10" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "cifar10" / "train" / "cat" / "0001.jpg").write_bytes(b"not a jpeg")
    line = f"{hashlib.sha256(b'not a jpeg').hexdigest()}  train/cat/0001.jpg\n"
    train = tiny_cifar10("train45k", root=tmp_path, per_class=3)
    assert (
        cli.data_source(train, tmp_path)["tree_sha256"] == hashlib.sha256(line.encode()).hexdigest()
    )
    assert result["split"] == "val5k" and result["train_images"] == 30


def test_a_reference_run_from_uncommitted_code_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data, "cifar10", tiny_cifar10)
    monkeypatch.setattr(cli, "_git_commit", lambda: "c" * 40 + "+dirty")
    monkeypatch.setattr(cli, "CHECKOUT", tmp_path / "results")
    argv = ["--model", "cifar_resnet8", "--per-class", "3", "--epochs", "1", "--out",
            str(tmp_path / "run"), "--result", str(tmp_path / "results" / "r.json")]  # fmt: skip
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "uncommitted changes" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() and not (tmp_path / "run").exists()


def test_the_command_line_defaults_to_the_papers_64k_iterations(tmp_path):
    args = cli._parser().parse_args(["--out", str(tmp_path)])
    config = cli.config_from_args(args)
    assert (config.epochs, config.iterations) == (None, 64_000)
    args = cli._parser().parse_args(["--out", str(tmp_path), "--epochs", "10"])
    config = cli.config_from_args(args)
    assert (config.epochs, config.iterations) == (10, None)


def test_every_setting_is_an_option_with_help_and_the_same_default(tmp_path):
    parser = cli._parser()
    options = {action.dest: action for action in parser._actions}
    for field in dataclasses.fields(TrainConfig):
        if field.name != "checkpoint":
            assert options[field.name].help, field.name
    config = cli.config_from_args(parser.parse_args(["--out", str(tmp_path)]))
    assert config == TrainConfig(checkpoint=str(tmp_path / "checkpoint.pt"))


def test_options_of_every_kind(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--no-decay-bn-and-bias", "--compile", "--progress",
            "--no-augment", "--nesterov", "--momentum", "0.8", "--weight-decay", "5e-4",
            "--schedule", "cosine", "--warmup-epochs", "1.5", "--mean", "0.5", "--std", "0.25",
            "--device", "cpu", "--iterations", "100", "--no-channels-last"]  # fmt: skip
    config = cli.config_from_args(cli._parser().parse_args(argv))
    assert config == TrainConfig(
        iterations=100, momentum=0.8, weight_decay=5e-4, nesterov=True, schedule="cosine",
        warmup_epochs=1.5, decay_bn_and_bias=False, channels_last=False, compile=True,
        device="cpu", mean=(0.5,), std=(0.25,), augment=False, progress=True,
        checkpoint=str(tmp_path / "checkpoint.pt"),
    )  # fmt: skip
    args = cli._parser().parse_args(["--out", str(tmp_path), "--decay-bn-and-bias"])
    config = cli.config_from_args(args)
    assert config.decay_bn_and_bias and config.progress is None and "progress" not in vars(args)
    with pytest.raises(SystemExit):  # the option's name before it was made from the field
        cli._parser().parse_args(["--out", str(tmp_path), "--no-decay-bn-bias"])
    assert "unrecognized arguments: --no-decay-bn-bias" in capsys.readouterr().err


def test_the_fast_recipe_is_chapter_5s_and_options_override_it(tmp_path):
    # Chapter 5's recipe, written out by hand: one-cycle at a peak of 0.2, Nesterov, label
    # smoothing 0.1, weight decay 5e-4 on weights only, bf16, 25 epochs, a test every 5th epoch.
    fast = TrainConfig(epochs=25, lr=0.2, nesterov=True, schedule="onecycle",
                       label_smoothing=0.1, weight_decay=5e-4, decay_bn_and_bias=False,
                       precision="bf16", test_every=5)  # fmt: skip
    assert recipe("fast") == fast and recipe("paper") == TrainConfig() == recipe()
    assert recipe("fast", seed=3) == dataclasses.replace(fast, seed=3)
    assert (recipe("fast", iterations=500).epochs, recipe("paper", epochs=10).iterations) == (
        None, None)  # fmt: skip
    with pytest.raises(ValueError, match="recipe must be one of 'paper', 'fast'; got 'slow'"):
        recipe("slow")
    argv = ["--out", str(tmp_path), "--recipe", "fast", "--epochs", "3", "--precision", "fp32"]
    config = cli.config_from_args(cli._parser().parse_args(argv))
    expected = dataclasses.replace(fast, epochs=3, precision="fp32")
    assert config == dataclasses.replace(expected, checkpoint=str(tmp_path / "checkpoint.pt"))


def test_test_every_skips_test_passes_but_not_the_last_and_changes_no_number():
    every = fit(TinyNet(), TRAIN, TEST, QUICK)  # 4 epochs, a test after each
    sparse = fit(TinyNet(), TRAIN, TEST, dataclasses.replace(QUICK, test_every=3))
    assert [math.isnan(e) for e in sparse.test_error] == [True, True, False, False]
    assert sparse.test_error[2:] == every.test_error[2:] and sparse.train_loss == every.train_loss
    assert sparse.best()["epoch"] in (3, 4)  # untested epochs are never the best
    saved = sparse.to_dict()
    assert saved["test_error"][:2] == [None, None] and saved["test_loss"][:2] == [None, None]
    restored = History.from_dict(json.loads(json.dumps(saved)))
    assert restored.to_dict() == saved and math.isnan(restored.test_loss[0])
    with pytest.raises(ValueError, match="test_every must be a positive int, got 0"):
        TrainConfig(test_every=0)


def test_training_throughput_measures_a_copy_and_leaves_the_model_alone():
    model = TinyNet()
    before = copy.deepcopy(model.state_dict())
    rate = training_throughput(model, TRAIN, QUICK, seconds=0.2)
    assert rate > 0 and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="seconds must be > 0, got 0"):
        training_throughput(model, TRAIN, QUICK, seconds=0)


def test_help_prints_no_runpy_warning():
    # A module run with -m that the package imports itself prints runpy's RuntimeWarning
    # ('found in sys.modules after import of package'); __main__.py is imported by nothing.
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    done = subprocess.run([sys.executable, "-m", "resnet_tutorial", "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stderr == "" and "--warmup-epochs" in done.stdout and "--resume" in done.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "resnet20"], "unknown model 'resnet20'"),
        (["--model", "cifar_resnet21"], "depth must be 6n \\+ 2"),
        (["--epochs", "0"], "epochs must be a positive int, got 0"),
        (["--iterations", "-5"], "iterations must be a positive int, got -5"),
        (["--epochs", "2.5"], "invalid int value: '2.5'"),
        (["--per-class", "0"], "must be a positive int, got '0'"),
        (["--epochs", "2", "--iterations", "5"], "give epochs or iterations, not both"),
        (["--schedule", "linear"], "invalid choice: 'linear'"),
        (["--lr", "-1"], "lr must be a finite number > 0"),
        (["--resume"], "no checkpoint at"),
        (["--baseline-seconds", "-1"], "must be a number >= 0, got '-1'"),
        (["--recipe", "slow"], "invalid choice: 'slow'"),
        (["--split", "val"], "invalid choice: 'val'"),
        (["--classes", "3", "3"], "distinct labels from 0 to 9, got \\[3, 3\\]"),
        (["--classes", "10"], "distinct labels from 0 to 9, got \\[10\\]"),
    ],
)
def test_the_command_line_rejects_bad_arguments(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        cli.main([*argv, "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert re.search(message, error), error


# --- bad labels -------------------------------------------------------------------------------


def test_labels_outside_the_models_classes_are_named_before_training():
    images, labels = TRAIN
    shifted = (images, labels + 10)  # CIFAR-10 labels, shifted: 10 … 19 for a 10-class model
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    expected = r"^labels range from 10 to 19; allowed: 0 to 9 \(the model has 10 outputs\)"
    with pytest.raises(ValueError, match=expected):
        fit(model, shifted, TEST, QUICK)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    with pytest.raises(ValueError, match=r"^test labels range from -1 to 8"):
        fit(TinyNet(), TRAIN, (TEST[0], TEST[1] - 1), QUICK)
    with pytest.raises(ValueError, match=r"labels range from 10 to 19; allowed: 0 to 9"):
        evaluate(TinyNet(), shifted)
    with pytest.raises(ValueError, match=r"labels range from 10 to 19; allowed: 0 to 9"):
        data.DeviceLoader(shifted, 32, mean=(0.5,) * 3, std=(0.5,) * 3, num_classes=10)
    with pytest.raises(ValueError, match=r"labels range from -3 to 6; allowed: integers >= 0"):
        data.DeviceLoader((images, labels - 3), 32, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(ValueError, match="labels must be integer class indices"):
        data.check_labels(labels.float(), 10)
