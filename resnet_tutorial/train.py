"""Training: the paper's CIFAR recipe, exact checkpoints, DDP (He et al. 2016, Sec. 4.2).

`fit(model, train, test, config)` trains with SGD as in the paper, evaluates on the test set
after every epoch and returns a `History`. Checkpoints are written atomically and hold everything
needed (model, optimizer, scheduler, grad scaler, RNG states, history) for
`fit(..., resume=path)` to continue bit for bit where the run stopped. Under `torchrun` the same
call trains with DistributedDataParallel. Also a command line, for full runs on a GPU (by
default the paper's 64,000 iterations)::

    python -m resnet_tutorial.train --model cifar_resnet20 --out runs/r20
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from resnet_tutorial.data import CIFAR10_MEAN, CIFAR10_STD, DeviceLoader, ImageSet, check_labels

Data = ImageSet | tuple[Tensor, Tensor]  # uint8 images (N, C, H, W), int64 labels (N,)
Schedule = Literal["step", "cosine", "onecycle"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PathLike = str | os.PathLike

SCHEDULES = ("step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_FORMAT = 1
PAPER_ITERATIONS = 64_000  # optimizer steps of the paper's CIFAR-10 runs (Sec. 4.2)


# --- scale, device, seeding -------------------------------------------------------------------


def scale() -> Literal["quick", "full"]:
    """`"full"` on CUDA, `"quick"` on the CPU; `$RESNET_TUTORIAL_SCALE` overrides (README)."""
    value = os.environ.get("RESNET_TUTORIAL_SCALE", "")
    if value == "":
        return "full" if torch.cuda.is_available() else "quick"
    if value not in ("quick", "full"):
        raise ValueError(f"$RESNET_TUTORIAL_SCALE must be 'quick' or 'full', got {value!r}")
    return value  # type: ignore[return-value]


def max_steps() -> int | None:
    """`$RESNET_TUTORIAL_MAX_STEPS`: a cap on the optimizer steps of every `fit` run.

    Unset (None) for real work. `make test-full-path` sets it (with
    `$RESNET_TUTORIAL_MAX_PER_CLASS`, see `data.max_per_class`) so that the full-scale branches
    of the notebooks run end to end on the CPU in minutes: a run of E epochs then trains
    min(E, cap) epochs of at most cap // min(E, cap) steps each.
    """
    from resnet_tutorial.data import _positive_env

    return _positive_env("RESNET_TUTORIAL_MAX_STEPS")


def default_device() -> torch.device:
    """The first CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def pick_precision(
    device: torch.device | str,
    precision: Precision = "auto",
    channels_last: bool | None = None,
) -> tuple[Literal["fp32", "bf16", "fp16"], bool]:
    """Resolve `"auto"` precision and memory format for `device`.

    CPU: fp32, on every CPU, so that a run's numbers do not depend on the reader's instruction
    set (bf16 is there by asking for it: about 1.6x faster where the CPU has AVX512-BF16 or AMX).
    CUDA: bf16 autocast from compute capability 8.0 (Ampere) on, where the tensor cores compute
    it; fp16 with a GradScaler below (a T4 is 7.5). `torch.cuda.is_bf16_supported()` is not
    used: it also says yes where bf16 is only emulated. channels_last on CUDA and the CPU.
    """
    device = torch.device(device)
    if precision == "auto":
        if device.type == "cuda":
            major, _ = torch.cuda.get_device_capability(device)
            precision = "bf16" if major >= 8 else "fp16"
        else:
            precision = "fp32"
    if channels_last is None:
        channels_last = device.type in ("cuda", "cpu")
    return precision, channels_last


# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; the defaults are the paper's CIFAR-10 recipe (Sec. 4.2).

    The paper trains for 64k iterations (optimizer steps) at batch 128 and divides the learning
    rate by 10 at 32k and 48k iterations; it chose that schedule on a 45k/5k train/val split.
    A run here trains whole epochs: `iterations=I` trains E = ceil(I / S) epochs of S steps
    (`epochs_for`), and the step schedule divides at 50% and 75% of the E * S steps it takes.
    On all 50,000 training images at batch 128, S = 391: the default is 164 epochs = 64,124
    steps, divided at steps 32,062 and 48,093.

    Args:
        epochs: passes over the training set. Give `epochs` or `iterations`, not both.
        iterations: optimizer steps, rounded up to whole epochs. With neither given,
            `iterations` is the paper's 64,000. Under torchrun a step takes
            `batch_size * world_size` images, so a larger global batch means more epochs.
        batch_size: images per step *per process*; under torchrun the global batch is
            `batch_size * world_size`.
        lr: base (peak, for onecycle) learning rate.
        momentum, weight_decay, nesterov: SGD's.
        schedule: "step" (÷10 at 50% and 75%), "cosine" (to 0) or "onecycle" (torch's
            OneCycleLR: 30% rise from lr/25, cosine down to lr/25e4; momentum not cycled).
            All are stepped once per iteration.
        warmup_epochs: linear warm-up, per iteration, before "step" or "cosine" (Goyal et al.
            2017); the lr of iteration i < W is lr * (i + 1) / W.
        label_smoothing: of the cross-entropy loss (Szegedy et al. 2016).
        decay_bn_and_bias: False exempts BatchNorm parameters and biases (every parameter with
            fewer than 2 dimensions) from weight decay.
        precision: "auto" picks per device (`pick_precision`: fp32 on every CPU); "fp32",
            "bf16" or "fp16" autocast (fp16 uses a GradScaler). Test errors are always measured
            in fp32, so that they compare across machines and precisions.
        channels_last: memory format of model and inputs; None picks per device.
        compile: wrap the model in `torch.compile`.
        device: e.g. "cpu" or "cuda:0"; None is `default_device()` (under torchrun on CUDA,
            the local rank's GPU).
        seed: seeds the run (`seed_everything`) and the loader's shuffling and augmentation.
        mean, std: per-channel normalisation of images scaled to [0, 1].
        augment: pad-4 random crop and horizontal flip of training batches (Sec. 4.2).
        checkpoint: file written (atomically) after every epoch; None writes none.
        progress: show a progress bar; None shows one only when stderr is a terminal, so that
            notebooks under nbval and CI logs stay quiet.
    """

    epochs: int | None = None
    iterations: int | None = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: Schedule = "step"
    warmup_epochs: float = 0
    label_smoothing: float = 0.0
    decay_bn_and_bias: bool = True
    precision: Precision = "auto"
    channels_last: bool | None = None
    compile: bool = False
    device: str | None = None
    seed: int = 0
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    augment: bool = True
    checkpoint: str | None = None
    progress: bool | None = None

    def __post_init__(self) -> None:
        if self.epochs is not None and self.iterations is not None:
            raise ValueError(
                f"give epochs or iterations, not both; got epochs={self.epochs!r} and "
                f"iterations={self.iterations!r} (dataclasses.replace keeps the one already set: "
                "pass the other as None)"
            )
        if self.epochs is None and self.iterations is None:
            object.__setattr__(self, "iterations", PAPER_ITERATIONS)
        if self.epochs is not None:
            _check_int("epochs", self.epochs, minimum=1)
        else:
            _check_int("iterations", self.iterations, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        _check_number("lr", self.lr, "a finite number > 0", lambda v: 0 < v < math.inf)
        _check_number("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        in_unit = "a number in [0, 1)"
        _check_number("weight_decay", self.weight_decay, "a finite number >= 0",
                      lambda v: 0 <= v < math.inf)  # fmt: skip
        _check_number("label_smoothing", self.label_smoothing, in_unit, lambda v: 0 <= v < 1)
        if self.epochs is not None:
            below_epochs = f"a number in [0, epochs={self.epochs})"
            _check_number("warmup_epochs", self.warmup_epochs, below_epochs,
                          lambda v: 0 <= v < self.epochs)  # fmt: skip
        else:  # checked against the epochs in `epochs_for`, once the data set is known
            _check_number("warmup_epochs", self.warmup_epochs, "a finite number >= 0",
                          lambda v: 0 <= v < math.inf)  # fmt: skip
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("precision", self.precision, PRECISIONS)
        for name in ("nesterov", "decay_bn_and_bias", "compile", "augment"):
            _check_choice(name, getattr(self, name), (True, False))
        for name in ("channels_last", "progress"):
            _check_choice(name, getattr(self, name), (None, True, False))
        if self.schedule == "onecycle" and self.warmup_epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs!r} with schedule='onecycle': onecycle has its "
                "own warm-up; use warmup_epochs=0 or schedule 'step' or 'cosine'"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as error:
                raise ValueError(
                    f"device must be None or a torch device string such as 'cpu' or 'cuda:0', "
                    f"got {self.device!r}"
                ) from error
            object.__setattr__(self, "device", str(self.device))
        mean, std = _channel_stats("mean", self.mean), _channel_stats("std", self.std)
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(
                f"mean and std must have one entry per channel and std > 0, got mean={mean}, "
                f"std={std}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", os.fspath(self.checkpoint))

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The epochs a run trains at `steps_per_epoch` steps each: `epochs` if given, else
        ceil(iterations / steps_per_epoch), the fewest whole epochs with that many steps."""
        _check_int("steps_per_epoch", steps_per_epoch, minimum=1)
        if self.epochs is not None:
            return self.epochs
        epochs = math.ceil(self.iterations / steps_per_epoch)
        if self.warmup_epochs >= epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs!r} must be below the run's {epochs} epochs "
                f"(iterations={self.iterations} at {steps_per_epoch} steps per epoch)"
            )
        return epochs

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain Python values (for JSON and checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict`."""
        values = dict(values)
        for name in ("mean", "std"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: object, allowed: str, ok: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _check_choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if not any(value is a or (isinstance(value, str) and value == a) for a in allowed):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _channel_stats(name: str, value: object) -> tuple[float, ...]:
    try:
        stats = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a sequence of numbers, got {value!r}") from error
    if not stats:
        raise ValueError(f"{name} must have one entry per channel, got {value!r}")
    return stats


# --- learning-rate schedules ------------------------------------------------------------------


def lr_factor(step: int, total_steps: int, schedule: Schedule = "step", warmup_steps: int = 0):
    """Multiplier of the base lr at iteration `step` (0-based) of `total_steps`.

    step: 1 until 50% of the iterations, 0.1 until 75%, then 0.01 (He et al. 2016, Sec. 4.2).
    cosine: (1 + cos(pi t / T)) / 2 after the warm-up (Loshchilov & Hutter 2017).
    onecycle: torch's OneCycleLR with its defaults (Smith & Topin 2019).
    A linear warm-up multiplies the first `warmup_steps` by (step + 1) / warmup_steps.
    """
    if step < warmup_steps:
        warmup = (step + 1) / warmup_steps
        return warmup * (1.0 if schedule == "cosine" else _step_factor(step, total_steps))
    if schedule == "step":
        return _step_factor(step, total_steps)
    if schedule == "cosine":
        t, T = step - warmup_steps, max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, T) / T))
    if schedule == "onecycle":
        return _onecycle_factor(step, total_steps)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def _step_factor(step: int, total_steps: int) -> float:
    milestones = (int(0.5 * total_steps), int(0.75 * total_steps))
    return 0.1 ** sum(step >= m for m in milestones)


def _onecycle_factor(step: int, total_steps: int, pct_start: float = 0.3) -> float:
    # The same phases and cosine annealing as torch.optim.lr_scheduler.OneCycleLR
    # (div_factor=25, final_div_factor=1e4), as a multiple of the peak lr.
    initial, peak, final = 1 / 25, 1.0, 1 / 25 / 1e4
    rise_end, fall_end = pct_start * total_steps - 1, total_steps - 1
    if step <= rise_end:
        start, end, pct = initial, peak, step / rise_end
    else:
        start, end, pct = peak, final, (step - rise_end) / (fall_end - rise_end)
    return end + (start - end) / 2 * (math.cos(math.pi * min(pct, 1.0)) + 1)


def learning_rates(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every iteration of a run with `config` (to plot a schedule)."""
    total, warmup = _total_and_warmup_steps(config, steps_per_epoch)
    return [config.lr * lr_factor(s, total, config.schedule, warmup) for s in range(total)]


def _total_and_warmup_steps(config: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    total = config.epochs_for(steps_per_epoch) * steps_per_epoch
    return total, round(config.warmup_epochs * steps_per_epoch)


def make_optimizer(
    model: nn.Module, config: TrainConfig, param_groups: Sequence[dict[str, Any]] | None = None
) -> torch.optim.SGD:
    """SGD with momentum; with `decay_bn_and_bias=False`, no weight decay on 1-D parameters.

    `param_groups` (e.g. from `transfer.parameter_groups`) give parts of the model their own
    options, such as a smaller "lr" for a pretrained body; the schedule scales each group's lr.
    Every trainable parameter must be in exactly one group; frozen ones are left out.
    """
    groups = []
    for group in _trainable_groups(model, param_groups):
        if config.decay_bn_and_bias:
            groups.append({**group, "weight_decay": config.weight_decay})
        else:  # BN weights and biases, and every bias, are 1-D
            params = group["params"]
            decayed, exempt = [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]
            groups.append({**group, "params": decayed, "weight_decay": config.weight_decay})
            groups.append({**group, "params": exempt, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _trainable_groups(model: nn.Module, param_groups) -> list[dict[str, Any]]:
    """The groups' trainable parameters, checked: each trainable parameter in exactly one group."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if param_groups is None:
        return [{"params": trainable}]
    names = {id(p): name for name, p in model.named_parameters()}
    where: dict[int, int] = {}
    groups = []
    for i, group in enumerate(param_groups):
        for p in group["params"]:
            if id(p) not in names:
                raise ValueError(
                    f"param_groups[{i}] holds a tensor of shape {tuple(p.shape)} that is not a "
                    "parameter of the model (an old head?); make the groups from the model as it is"
                )
            if id(p) in where:
                raise ValueError(
                    f"{names[id(p)]} is in param_groups[{where[id(p)]}] and param_groups[{i}]; "
                    "put each parameter in one group"
                )
            where[id(p)] = i
        groups.append({**group, "params": [p for p in group["params"] if p.requires_grad]})
    missing = [names[id(p)] for p in trainable if id(p) not in where]
    if missing:
        raise ValueError(
            f"param_groups leave out {len(missing)} trainable parameters ({', '.join(missing[:3])}"
            f"{', …' if len(missing) > 3 else ''}), which would never train; put them in a group"
        )
    return groups


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of `config` as a LambdaLR stepped once per iteration (see `lr_factor`)."""
    total, warmup = _total_and_warmup_steps(config, steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, config.schedule, warmup)
    )


# --- history ----------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch curves of a run. Errors are fractions in [0, 1]; losses are mean cross-entropy.

    `train_loss` / `train_error` are running means over the epoch's (augmented) batches, as in
    the paper's curves; `test_*` are measured after the epoch; `lr` is the learning rate of the
    epoch's last iteration; `seconds` the epoch's wall time, training and test together.
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_error: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_error: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, **row: float) -> None:
        """Add one epoch: a value for every field."""
        names = [f.name for f in dataclasses.fields(self)]
        if sorted(row) != sorted(names):
            raise ValueError(f"a History row needs exactly the fields {names}, got {sorted(row)}")
        for name in names:
            getattr(self, name).append(row[name])

    def __len__(self) -> int:
        return len(self.epoch)

    def row(self, index: int) -> dict[str, float]:
        """One epoch's values, e.g. `history.row(-1)` for the last one."""
        return {f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)}

    @property
    def final(self) -> dict[str, float]:
        """The last epoch's values."""
        if not self.epoch:
            raise ValueError("the history is empty")
        return self.row(-1)

    def best(self, key: str = "test_error") -> dict[str, float]:
        """The epoch with the lowest `key` (the first one on a tie)."""
        values = getattr(self, key, None)
        if not values:
            raise ValueError(f"no values for {key!r} (fields: {self.to_dict().keys()})")
        return self.row(min(range(len(values)), key=values.__getitem__))

    def to_dict(self) -> dict[str, list[float]]:
        """The curves as a dict of lists."""
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Sequence[float]]) -> History:
        """Inverse of `to_dict`."""
        return cls(**{name: list(v) for name, v in values.items()})

    def save_json(self, path: PathLike) -> None:
        """Write the curves to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load_json(cls, path: PathLike) -> History:
        """Read curves written by `save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


# --- evaluation -------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> tuple[float, float]:
    """Mean cross-entropy and error (fraction wrong, 0..1) of `model` on `data`, in eval mode.

    `device` defaults to the model's. The model's train/eval mode is restored afterwards.
    """
    images, labels = _as_tensors(data)
    loss_sum, wrong, _ = _evaluate_sums(model, images, labels, batch_size, device, mean, std)
    n = len(labels)
    return loss_sum.item() / n, wrong.item() / n


def predict(
    model: nn.Module,
    data: Data | Tensor,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> Tensor:
    """Predicted labels (int64, on the CPU) of `model` for `data` (or bare uint8 images)."""
    images, labels = _as_tensors(data)
    _, _, predictions = _evaluate_sums(
        model, images, labels, batch_size, device, mean, std, keep_predictions=True
    )
    return predictions


@torch.no_grad()
def _evaluate_sums(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    batch_size: int,
    device: torch.device | str | None,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    keep_predictions: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Summed loss and count of wrong predictions on `device` (and the predictions, if asked)."""
    device = torch.device(device) if device is not None else _model_device(model)
    channels_last = _is_channels_last(model)
    loader = DeviceLoader(
        (images, labels), batch_size, train=False, mean=mean, std=std, device=device,
        augment=False,
    )  # fmt: skip
    labels_checked = keep_predictions  # `predict`'s labels are placeholders
    loss_sum = torch.zeros((), device=device)
    wrong = torch.zeros((), dtype=torch.long, device=device)
    predictions = []
    was_training = model.training
    model.eval()
    try:
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            if not labels_checked:  # against the model's width, before the loss can fail
                check_labels(labels, logits.shape[-1])
                labels_checked = True
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            predicted = logits.argmax(1)
            wrong += (predicted != y).sum()
            if keep_predictions:
                predictions.append(predicted.cpu())
    finally:
        model.train(was_training)
    predicted_all = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)
    return loss_sum, wrong, predicted_all


@torch.no_grad()
def count_outputs(
    model: nn.Module, images: Tensor, device: torch.device | str | None = None
) -> int:
    """How many classes `model` scores: the width of its output for one of `images` (eval mode)."""
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()  # no BN statistics change, no dropout draws
    try:
        logits = model(torch.zeros((1, *images.shape[1:]), device=device))
    finally:
        model.train(was_training)
    return logits.shape[-1]


def _as_tensors(data: Data | Tensor) -> tuple[Tensor, Tensor]:
    if isinstance(data, Tensor):  # bare images, for `predict`
        return data, torch.zeros(len(data), dtype=torch.long)
    if hasattr(data, "tensors"):
        return data.tensors
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        if isinstance(images, Tensor) and isinstance(labels, Tensor):
            return images, labels
    raise TypeError(
        "data must be an ImageSet or a tuple (images uint8 [N, C, H, W], labels int64 [N]), "
        f"got {type(data).__name__}"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _model_device(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _is_channels_last(model: nn.Module) -> bool:
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return (
        weight is not None
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
    )


# --- checkpoints ------------------------------------------------------------------------------


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> None:
    """`torch.save(state)` to a temporary file beside `path`, then rename it over `path`.

    A crash while writing leaves the previous checkpoint untouched (the rename is atomic).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a results file is for sharing
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def load_checkpoint(path: PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `fit` (tensors on the CPU; no code is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        # As a tensor, so that `torch.load(weights_only=True)` can read it back.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, index)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))


# Settings that do not change the numbers of a run, and may differ when resuming.
_RESUME_FREE = ("checkpoint", "progress", "device", "compile")


def _warn_if_changed(saved: TrainConfig, config: TrainConfig, steps_per_epoch: int) -> None:
    """Warn when resuming with settings that change the run. The length is compared in epochs:
    `epochs=164` and `iterations=64000` are the same run at 391 steps per epoch."""
    length = ("epochs", "iterations")
    changed = [
        f"{name} ({getattr(saved, name)!r} -> {getattr(config, name)!r})"
        for name in saved.to_dict()
        if name not in _RESUME_FREE + length and getattr(saved, name) != getattr(config, name)
    ]
    before, after = saved.epochs_for(steps_per_epoch), config.epochs_for(steps_per_epoch)
    if before != after:
        changed.insert(0, f"epochs ({before} -> {after})")
    if changed:
        warnings.warn(
            "resuming with settings that differ from the checkpoint's, so the run will not "
            "match an uninterrupted one: " + ", ".join(changed),
            stacklevel=4,  # fit's caller
        )


# --- training ---------------------------------------------------------------------------------


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message says where and what to resume."""


@dataclass
class _Run:
    """What one call of `fit` trains with (internal)."""

    model: nn.Module  # possibly wrapped in DDP and torch.compile
    config: TrainConfig
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    rank: int
    world_size: int
    steps_per_epoch: int
    epochs: int  # config.epochs_for(steps_per_epoch)
    last_checkpoint: str | None = None


def fit(
    model: nn.Module,
    train: Data,
    test: Data,
    config: TrainConfig | None = None,
    *,
    resume: PathLike | None = None,
    param_groups: Sequence[dict[str, Any]] | None = None,
) -> History:
    """Train `model` in place on `train`, testing on `test` after every epoch (Sec. 4.2).

    Args:
        model: any classifier of (N, C, H, W) float images; moved to the run's device.
        train, test: `ImageSet`s or (uint8 images, int64 labels) tuples.
        config: the recipe; None is `TrainConfig()`, or the checkpoint's config when resuming.
        resume: a checkpoint written by an earlier `fit`; training continues after its last
            epoch and, with the same config and data, ends bit for bit where an uninterrupted
            run would (on the CPU; CUDA kernels may not be deterministic).
        param_groups: optimizer groups with their own "lr" (e.g. `parameter_groups(model,
            {"body": 0.01, "head": 0.1})` to fine-tune); None puts every trainable parameter
            in one group at `config.lr`. Parameters with requires_grad=False never train, and
            BN layers that `transfer.freeze` holds in eval mode keep their statistics.

    Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel, each
    process trains on its shard with `config.batch_size` images per step, and only rank 0
    writes checkpoints and shows progress.

    Raises:
        NonFiniteLossError: when the loss becomes NaN or infinite.
    """
    checkpoint = load_checkpoint(resume) if resume is not None else None
    if config is None:
        config = TrainConfig.from_dict(checkpoint["config"]) if checkpoint else TrainConfig()
    with _distributed(config) as (device, rank, world_size):
        return _fit(
            model, train, test, config, checkpoint, resume, device, rank, world_size, param_groups
        )


def _fit(
    model, train, test, config, checkpoint, resume, device, rank, world_size, param_groups=None
) -> History:
    precision, channels_last = pick_precision(device, config.precision, config.channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    images, labels = _as_tensors(train)
    num_classes = count_outputs(model, images)
    check_labels(_as_tensors(test)[1], num_classes, name="test labels")
    loader = DeviceLoader(
        (images, labels), config.batch_size, train=True, mean=config.mean, std=config.std,
        device=device, seed=config.seed, augment=config.augment, rank=rank,
        world_size=world_size, num_classes=num_classes,
    )  # fmt: skip
    if checkpoint is not None:
        _warn_if_changed(TrainConfig.from_dict(checkpoint["config"]), config, len(loader))
    config, steps_per_epoch = _capped(config, len(loader))
    epochs = config.epochs_for(steps_per_epoch)
    optimizer = make_optimizer(model, config, param_groups)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history, start_epoch = History(), 0
    if checkpoint is None:
        seed_everything(config.seed)
    else:
        if checkpoint["train_size"] != len(labels):
            raise ValueError(
                f"the checkpoint {os.fspath(resume)!r} was trained on {checkpoint['train_size']} "
                f"images, got {len(labels)}: resume with the same training set"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        _set_rng_states(checkpoint["rng"])
        history, start_epoch = History.from_dict(checkpoint["history"]), checkpoint["epoch"]
    if world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    run = _Run(
        torch.compile(model) if config.compile else model, config, device,
        _AUTOCAST_DTYPES[precision], channels_last, rank, world_size, steps_per_epoch, epochs,
        last_checkpoint=os.fspath(resume) if resume is not None else None,
    )  # fmt: skip
    show = rank == 0 and (config.progress if config.progress is not None else sys.stderr.isatty())
    with _progress_bar(show, epochs, steps_per_epoch, start_epoch) as bar:
        for epoch in range(start_epoch + 1, epochs + 1):
            start = time.perf_counter()
            train_loss, train_error, last_lr = _train_epoch(
                run, loader, optimizer, scheduler, scaler, epoch, bar
            )
            test_loss, test_error = _test(run, test)
            history.append(
                epoch=epoch, train_loss=train_loss, train_error=train_error,
                test_loss=test_loss, test_error=test_error,
                lr=last_lr,
                seconds=time.perf_counter() - start,
            )  # fmt: skip
            if bar is not None:
                bar.set_postfix(test_error=f"{test_error:.2%}")
            if config.checkpoint is not None:
                _write_checkpoint(run, optimizer, scheduler, scaler, epoch, history, len(labels))
    return history


def _capped(config: TrainConfig, steps_per_epoch: int) -> tuple[TrainConfig, int]:
    """The run's config and steps per epoch under `$RESNET_TUTORIAL_MAX_STEPS` (`max_steps`)."""
    cap = max_steps()
    if cap is None:
        return config, steps_per_epoch
    full = config.epochs_for(steps_per_epoch)
    epochs = min(full, cap)
    warnings.warn(
        f"$RESNET_TUTORIAL_MAX_STEPS={cap}: training {epochs} epoch(s) of at most "
        f"{max(1, cap // epochs)} step(s) instead of {full} of {steps_per_epoch} "
        "(a smoke test of the code path, not a real run)",
        stacklevel=4,
    )
    warmup = config.warmup_epochs * epochs / full
    capped = dataclasses.replace(config, epochs=epochs, iterations=None, warmup_epochs=warmup)
    return capped, min(steps_per_epoch, max(1, cap // epochs))


def _train_epoch(run: _Run, loader, optimizer, scheduler, scaler, epoch: int, bar):
    """One pass over the training set: running mean loss and error, and the last step's lr."""
    model, config = run.model, run.config
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    loader.set_epoch(epoch)
    model.train()
    loss_sum = torch.zeros((), device=run.device)
    wrong = torch.zeros((), dtype=torch.long, device=run.device)
    count = 0
    for step, (x, y) in zip(range(1, run.steps_per_epoch + 1), loader):
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(run.device.type, run.autocast_dtype, enabled=run.autocast_dtype
                            is not None):  # fmt: skip
            logits = model(x)
            loss = criterion(logits.float(), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                _non_finite_message(run, loss, epoch, step, run.steps_per_epoch)
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        last_lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        loss_sum += loss.detach() * len(y)
        wrong += (logits.detach().argmax(1) != y).sum()
        count += len(y)
        if bar is not None:
            bar.update()
            if step % 10 == 0 or step == run.steps_per_epoch:
                bar.set_description(f"epoch {epoch}/{run.epochs}", refresh=False)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    totals = torch.stack([loss_sum, wrong.to(loss_sum.dtype), torch.tensor(
        float(count), device=run.device)])  # fmt: skip
    if run.world_size > 1:
        dist.all_reduce(totals)
        # Each rank updated its own BN running statistics; use rank 0's everywhere, so that every
        # rank tests and saves the same model.
        for buffer in _unwrap(model).buffers():
            dist.broadcast(buffer, src=0)
    loss_total, wrong_total, n = totals.tolist()
    return loss_total / n, wrong_total / n, last_lr


def _test(run: _Run, test: Data) -> tuple[float, float]:
    """Test loss and error, in fp32; under DDP each rank tests a shard and the sums are combined."""
    images, labels = _as_tensors(test)
    images, labels = images[run.rank :: run.world_size], labels[run.rank :: run.world_size]
    model = _unwrap(run.model)
    loss_sum, wrong, _ = _evaluate_sums(
        model, images, labels, 512, run.device, run.config.mean, run.config.std
    )
    totals = torch.stack([loss_sum, wrong.to(loss_sum.dtype), torch.tensor(
        float(len(labels)), device=run.device)])  # fmt: skip
    if run.world_size > 1:
        dist.all_reduce(totals)
    loss_total, wrong_total, n = totals.tolist()
    return loss_total / n, wrong_total / n


def _write_checkpoint(run, optimizer, scheduler, scaler, epoch, history, train_size) -> None:
    if run.rank == 0:
        state = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": _unwrap(run.model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_states(),
            "config": run.config.to_dict(),
            "history": history.to_dict(),
            "train_size": train_size,
        }
        save_checkpoint(run.config.checkpoint, state)
    run.last_checkpoint = run.config.checkpoint


def _non_finite_message(run: _Run, loss: Tensor, epoch: int, step: int, steps: int) -> str:
    where = f"loss is {loss.item()} at epoch {epoch}, step {step} of {steps}"
    if run.last_checkpoint is None:
        advice = "there is no checkpoint to resume from (set TrainConfig.checkpoint to keep one)"
    else:
        advice = (
            f"the last good checkpoint is {run.last_checkpoint!r}; continue from it with "
            "fit(..., resume=path), perhaps with a lower lr or a warm-up"
        )
    return f"{where}; {advice}"


@contextlib.contextmanager
def _progress_bar(show: bool, epochs: int, steps: int, start_epoch: int) -> Iterator[Any]:
    if not show:
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=epochs * steps, initial=start_epoch * steps, unit="step",
              dynamic_ncols=True) as bar:  # fmt: skip
        yield bar


@contextlib.contextmanager
def _distributed(config: TrainConfig) -> Iterator[tuple[torch.device, int, int]]:
    """Device, rank and world size; joins torchrun's process group (once per process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(config.device) if config.device is not None else default_device()
    if world_size <= 1:
        yield device, 0, 1
        return
    if device.type == "cuda" and config.device is None:  # one GPU per process
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # Joined once per process and left at exit; a second fit in the same process reuses the
        # group. (When each fit made and destroyed its own group, a torchrun test of two fits
        # per process hung now and then.)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave_process_group)
    yield device, dist.get_rank(), dist.get_world_size()


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# --- command line -----------------------------------------------------------------------------


def _model_name(value: str) -> str:
    if not re.fullmatch(r"cifar_(resnet|plain)\d+", value):
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}: use cifar_resnetN or cifar_plainN with N = 6n + 2 "
            "(20, 32, 44, 56, 110, ...)"
        )
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value!r}")
    return number


def build_model(name: str, num_classes: int = 10, *, zero_init_residual: bool = False) -> nn.Module:
    """`cifar_resnetN` (option-A shortcuts) or `cifar_plainN` (no shortcuts), N = 6n + 2."""
    from resnet_tutorial.resnet import cifar_plain, cifar_resnet

    kind, depth = re.fullmatch(r"cifar_(resnet|plain)(\d+)", _model_name(name)).groups()
    if kind == "plain":
        return cifar_plain(int(depth), num_classes, zero_init_residual=zero_init_residual)
    return cifar_resnet(int(depth), num_classes, zero_init_residual=zero_init_residual)


def _parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m resnet_tutorial.train",
        description="Train a CIFAR-10 ResNet with the paper's recipe (He et al. 2016, Sec. 4.2).",
    )
    add = parser.add_argument
    add("--model", type=_model_name, default="cifar_resnet20", help="cifar_resnetN, cifar_plainN")
    add("--out", type=Path, required=True, help="folder for result.json and checkpoint.pt")
    add("--epochs", type=_positive_int, default=None,
        help="passes over the training set (give --epochs or --iterations, not both)")  # fmt: skip
    add("--iterations", type=_positive_int, default=None,
        help=f"optimizer steps, rounded up to whole epochs (default: the paper's "
        f"{defaults.iterations}, when --epochs is not given)")  # fmt: skip
    add("--batch-size", type=_positive_int, default=defaults.batch_size, help="per process")
    add("--lr", type=float, default=defaults.lr)
    add("--schedule", choices=SCHEDULES, default=defaults.schedule)
    add("--warmup-epochs", type=float, default=defaults.warmup_epochs)
    add("--label-smoothing", type=float, default=defaults.label_smoothing)
    add("--no-decay-bn-bias", action="store_true", help="no weight decay on BN and biases")
    add("--zero-init-residual", action="store_true", help="zero the last BN of each block")
    add("--seed", type=int, default=defaults.seed)
    add("--precision", choices=PRECISIONS, default=defaults.precision)
    add("--compile", action="store_true", help="torch.compile the model")
    add("--device", default=None, help="default: cuda if available, else cpu")
    add("--per-class", type=_positive_int, default=None,
        help="train and test on this many images per class (a quick subset)")  # fmt: skip
    add("--data-root", type=Path, default=None, help="default: $RESNET_TUTORIAL_DATA")
    add("--result", type=Path, default=None,
        help="the result's JSON file (default <out>/result.json); the final weights go beside "
        "it, with the suffix .pt")  # fmt: skip
    add("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    add("--progress", action=argparse.BooleanOptionalAction, default=None)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed command-line arguments (checkpoint: `<out>/checkpoint.pt`)."""
    return TrainConfig(
        epochs=args.epochs, iterations=args.iterations, batch_size=args.batch_size, lr=args.lr,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, decay_bn_and_bias=not args.no_decay_bn_bias,
        precision=args.precision, compile=args.compile, device=args.device, seed=args.seed,
        checkpoint=str(args.out / "checkpoint.pt"), progress=args.progress,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: train, then write `<out>/result.json` and `<out>/checkpoint.pt`."""
    from resnet_tutorial import data

    parser = _parser()
    args = parser.parse_args(argv)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and not checkpoint.exists():
        parser.error(f"--resume: no checkpoint at {checkpoint}")
    try:
        config = config_from_args(args)
        seed_everything(args.seed)  # the same initial weights for the same seed
        model = build_model(args.model, zero_init_residual=args.zero_init_residual)
    except ValueError as error:
        parser.error(str(error))
    train = data.cifar10("train", root=args.data_root, per_class=args.per_class)
    test = data.cifar10("test", root=args.data_root, per_class=args.per_class)
    device = torch.device(config.device) if config.device is not None else default_device()
    made_with = provenance(device)  # now: the code that runs is the code of this commit
    start = time.perf_counter()
    history = fit(model, train, test, config, resume=checkpoint if args.resume else None)
    result_path = args.result or args.out / "result.json"
    weights = result_path.with_suffix(".pt")
    result = {
        "name": result_path.stem,
        "model": args.model,
        "final_test_error": history.final["test_error"],
        "best_test_error": history.best()["test_error"],
        "best_epoch": history.best()["epoch"],
        "history": history.to_dict(),
        "total_seconds": sum(history.seconds),
        "seconds_this_run": time.perf_counter() - start,
        "command": "python -m resnet_tutorial.train " + " ".join(argv or sys.argv[1:]),
        "weights": weights.name,
        **made_with,
        "seed": args.seed,
        "data_source": train.source,
        "train_images": len(train.labels),
        "test_images": len(test.labels),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "config": config.to_dict(),
    }
    if int(os.environ.get("RANK", "0")) == 0:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.cpu() for k, v in _unwrap(model).state_dict().items()}
        save_checkpoint(weights, state)  # a plain state_dict, loadable with weights_only=True
        result_path.write_text(json.dumps(result, indent=1) + "\n")
        epochs = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
        print(f"test error {result['final_test_error']:.2%} after {epochs}")
        print(f"wrote {result_path}, {weights} and {checkpoint}")
    return result


def provenance(device: torch.device | str) -> dict[str, Any]:
    """Where a run was made: device and its model, threads, torch, Python, and the git commit
    of the package's checkout (read when the run starts: the code it runs)."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def _git_commit() -> str | None:
    """The commit of the checkout the package runs from (with "+dirty" for local changes)."""
    import subprocess

    folder = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "-uno")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


if __name__ == "__main__":
    main()
