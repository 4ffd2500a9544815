"""Training: the paper's CIFAR recipe, with checkpoints and DDP (He et al. 2016, Sec. 4.2).

`fit(model, train, test, config)` trains with SGD as in the paper, evaluates on the test set
after every epoch and returns a `History`. With `config.checkpoint` it writes a checkpoint after
every epoch (`checkpoint.py`), from which `fit(..., resume=path)` continues bit for bit where the
run stopped. Under `torchrun` the same call trains with DistributedDataParallel. The command
line for full runs on a GPU is `python -m resnet_tutorial` (`__main__.py`).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim import lr_scheduler

from resnet_tutorial._util import check_positive_int, model_device
from resnet_tutorial.checkpoint import (
    atomic_save,
    load_checkpoint,
    restore,
    run_state,
    seed_everything,
    warn_if_changed,
)
from resnet_tutorial.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Data,
    DeviceLoader,
    _positive_env,
    as_tensors,
    check_labels,
)

Schedule = Literal["step", "cosine", "onecycle"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PathLike = str | os.PathLike

SCHEDULES = ("step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PAPER_ITERATIONS = 64_000  # optimizer steps of the paper's CIFAR-10 runs (Sec. 4.2)


# --- scale, device, precision -----------------------------------------------------------------


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
    return _positive_env("RESNET_TUTORIAL_MAX_STEPS")


def default_device() -> torch.device:
    """The first CUDA GPU if there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
        momentum: SGD's momentum.
        weight_decay: SGD's weight decay (an L2 penalty on the weights).
        nesterov: Nesterov's momentum instead of the classical one.
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
        length = "epochs" if self.epochs is not None else "iterations"
        check_positive_int(length, getattr(self, length))
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("seed", self.seed, minimum=0)
        _check_number("lr", self.lr, "a finite number > 0", lambda v: 0 < v < math.inf)
        _check_number("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        _check_number("weight_decay", self.weight_decay, "a finite number >= 0",
                      lambda v: 0 <= v < math.inf)  # fmt: skip
        _check_number("label_smoothing", self.label_smoothing, "a number in [0, 1)",
                      lambda v: 0 <= v < 1)  # fmt: skip
        if self.epochs is not None:
            below = f"a number in [0, epochs={self.epochs})"
            _check_number("warmup_epochs", self.warmup_epochs, below,
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
        check_positive_int("steps_per_epoch", steps_per_epoch)
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


def _check_number(name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> None:
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


# --- optimizer and learning-rate schedule -----------------------------------------------------


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
) -> lr_scheduler.LRScheduler:
    """The schedule of `config` from torch's schedulers, to be stepped once per iteration.

    step: MultiStepLR, lr ÷ 10 at 50% and 75% of the iterations (He et al. 2016, Sec. 4.2).
    cosine: CosineAnnealingLR from lr to 0 (Loshchilov & Hutter 2017).
    onecycle: OneCycleLR with its defaults, momentum not cycled (Smith & Topin 2019).
    A warm-up of W iterations (Goyal et al. 2017) is a LinearLR, lr * (i + 1) / W at
    iteration i, that a SequentialLR runs before step or cosine. Step's milestones stay at 50%
    and 75% of the whole run (one inside a warm-up longer than half the run acts at its end).
    """
    total, warmup = _total_and_warmup_steps(config, steps_per_epoch)
    if config.schedule == "onecycle":
        peaks = [group["lr"] for group in optimizer.param_groups]
        return lr_scheduler.OneCycleLR(optimizer, peaks, total_steps=total, cycle_momentum=False)
    if config.schedule == "step":  # the scheduler after the warm-up counts from its end
        milestones = [int(0.5 * total) - warmup, int(0.75 * total) - warmup]
        main = lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    else:
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total - warmup, 1))
    if warmup == 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, 1 / warmup, 1.0, total_iters=warmup - 1)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])


def learning_rates(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The learning rate of every iteration of a run with `config` (to plot a schedule)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    optimizer.step()  # no gradient, nothing moves; torch warns if the scheduler steps first
    rates = []
    for _ in range(config.epochs_for(steps_per_epoch) * steps_per_epoch):
        rates.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    return rates


def _total_and_warmup_steps(config: TrainConfig, steps_per_epoch: int) -> tuple[int, int]:
    total = config.epochs_for(steps_per_epoch) * steps_per_epoch
    return total, round(config.warmup_epochs * steps_per_epoch)


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
    images, labels = as_tensors(data)
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
    images, labels = as_tensors(data)
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
    device = torch.device(device) if device is not None else model_device(model)
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
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()  # no BN statistics change, no dropout draws
    try:
        logits = model(torch.zeros((1, *images.shape[1:]), device=device))
    finally:
        model.train(was_training)
    return logits.shape[-1]


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _is_channels_last(model: nn.Module) -> bool:
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return (
        weight is not None
        and weight.is_contiguous(memory_format=torch.channels_last)
        and not weight.is_contiguous()
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
    images, labels = as_tensors(train)
    num_classes = count_outputs(model, images)
    check_labels(as_tensors(test)[1], num_classes, name="test labels")
    loader = DeviceLoader(
        (images, labels), config.batch_size, train=True, mean=config.mean, std=config.std,
        device=device, seed=config.seed, augment=config.augment, rank=rank,
        world_size=world_size, num_classes=num_classes,
    )  # fmt: skip
    if checkpoint is not None:
        saved = TrainConfig.from_dict(checkpoint["config"])
        same_settings = not warn_if_changed(saved, config, len(loader))
    config, steps_per_epoch = _capped(config, len(loader))
    epochs = config.epochs_for(steps_per_epoch)
    optimizer = make_optimizer(model, config, param_groups)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    history, start_epoch = History(), 0
    if checkpoint is None:
        seed_everything(config.seed)
    else:
        restore(checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                train_size=len(labels), path=resume, same_settings=same_settings)  # fmt: skip
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
    images, labels = as_tensors(test)
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
        state = run_state(
            epoch=epoch, model=_unwrap(run.model), optimizer=optimizer, scheduler=scheduler,
            scaler=scaler, config=run.config.to_dict(), history=history.to_dict(),
            train_size=train_size,
        )  # fmt: skip
        atomic_save(state, run.config.checkpoint)
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


if __name__ == "__main__":  # `python -m resnet_tutorial.train`, as before `__main__.py`
    from resnet_tutorial.__main__ import main

    main()
