"""The training recipe: what a run is configured with (He et al. 2016a, Sec. 4.2).

`TrainConfig` and the named recipes, torch's SGD and schedulers made from them, and at what
size, where and in which precision a run trains. The loop that uses all this is `train.fit`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import lr_scheduler

from resnet_tutorial._util import check_number, check_positive_int, positive_env
from resnet_tutorial.data import CIFAR10_MEAN, CIFAR10_STD

Schedule = Literal["step", "cosine", "onecycle"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]

SCHEDULES = ("step", "cosine", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PAPER_ITERATIONS = 64_000  # optimizer steps of the paper's CIFAR-10 runs (Sec. 4.2)


# --- scale and step cap, device, precision ----------------------------------------------------


def scale() -> Literal["quick", "full"]:
    """`"full"` on CUDA, `"quick"` on the CPU; `$RESNET_TUTORIAL_SCALE` overrides (README)."""
    value = os.environ.get("RESNET_TUTORIAL_SCALE", "")
    if value == "":
        return "full" if torch.cuda.is_available() else "quick"
    if value not in ("quick", "full"):
        raise ValueError(f"$RESNET_TUTORIAL_SCALE must be 'quick' or 'full', got {value!r}")
    return value  # type: ignore[return-value]


def max_steps() -> int | None:
    """`$RESNET_TUTORIAL_MAX_STEPS`: a cap on the optimizer steps of every `fit` run, unset for
    real work. `make test-full-path` sets it so that the notebooks' full-scale branches run on
    the CPU in minutes: a run of E epochs trains min(E, cap) epochs of cap // min(E, cap) steps.
    """
    return positive_env("RESNET_TUTORIAL_MAX_STEPS")


def capped_to_max_steps(config: TrainConfig, steps_per_epoch: int) -> tuple[TrainConfig, int]:
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


def _setting(default: Any, help: str) -> Any:
    """A field of TrainConfig with its help text in the field's metadata."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; the defaults are the paper's CIFAR-10 recipe (Sec. 4.2).

    The paper trains for 64k iterations at batch 128, the lr divided by 10 at 32k and 48k. A run
    here trains whole epochs: `iterations=I` trains ceil(I / S) epochs of S steps (`epochs_for`);
    on 50,000 images S = 391: 164 epochs = 64,124 steps, divided at 32,062 and 48,093.

    Each field's `help` (also its option's help on the command line) says what it does.
    """

    epochs: int | None = _setting(
        None, "passes over the training set; give epochs or iterations, not both"
    )
    iterations: int | None = _setting(
        None,
        "optimizer steps, rounded up to whole epochs; with "
        f"neither given, the paper's {PAPER_ITERATIONS:,}. Under torchrun a step takes "
        "batch_size * world_size images, so a larger global batch means more epochs",
    )
    batch_size: int = _setting(
        128,
        "images per step per process (under torchrun the global batch is batch_size * world_size)",
    )
    lr: float = _setting(0.1, "base learning rate (the peak, for onecycle)")
    momentum: float = _setting(0.9, "SGD's momentum")
    weight_decay: float = _setting(1e-4, "SGD's weight decay (an L2 penalty on the weights)")
    nesterov: bool = _setting(False, "Nesterov's momentum instead of the classical one")
    schedule: Schedule = _setting(
        "step",
        "'step' (lr / 10 at 50% and 75% of the steps), "
        "'cosine' (to 0) or 'onecycle' (torch's OneCycleLR: 30% rise from lr / 25, cosine down "
        "to lr / 25e4, momentum not cycled); all are stepped once per iteration",
    )
    warmup_epochs: float = _setting(
        0,
        "linear warm-up, per iteration, before 'step' or "
        "'cosine' (Goyal et al. 2017): the lr of iteration i < W is lr * (i + 1) / W",
    )
    label_smoothing: float = _setting(0.0, "of the cross-entropy loss (Szegedy et al. 2016)")
    decay_bn_and_bias: bool = _setting(
        True,
        "weight decay on BatchNorm parameters and biases "
        "too (every parameter with fewer than 2 dimensions); False exempts them",
    )
    precision: Precision = _setting(
        "auto",
        "'auto' picks per device (pick_precision: fp32 on "
        "every CPU); 'fp32', or 'bf16' or 'fp16' autocast (fp16 with a GradScaler). Test errors "
        "are always measured in fp32, so that they compare across machines and precisions",
    )
    channels_last: bool | None = _setting(
        None, "memory format of model and inputs; None picks per device"
    )
    compile: bool = _setting(False, "wrap the model in torch.compile")
    device: str | None = _setting(
        None,
        "e.g. 'cpu' or 'cuda:0'; None is default_device() "
        "(under torchrun on CUDA, the local rank's GPU)",
    )
    seed: int = _setting(
        0, "seeds the run (seed_everything) and the loader's shuffling and augmentation"
    )
    mean: tuple[float, ...] = _setting(
        CIFAR10_MEAN, "per-channel mean of the normalisation of images scaled to [0, 1]"
    )
    std: tuple[float, ...] = _setting(CIFAR10_STD, "per-channel std of the normalisation")
    augment: bool = _setting(
        True, "pad-4 random crop and horizontal flip of training batches (Sec. 4.2)"
    )
    test_every: int = _setting(
        1,
        "test after every test_every-th epoch and after the last; "
        "the other epochs record NaN as their test loss and error (a test pass of ResNet-20 in "
        "fp32 costs about a sixth of a bf16 training epoch on a 2-core CPU)",
    )
    checkpoint: str | None = _setting(
        None, "file written (atomically) after every epoch; None writes none"
    )
    progress: bool | None = _setting(
        None,
        "show a progress bar; None shows one only when "
        "stderr is a terminal, so that notebooks under nbval and CI logs stay quiet",
    )

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
        check_positive_int("test_every", self.test_every)
        check_number("lr", self.lr, "a finite number > 0", lambda v: 0 < v < math.inf)
        check_number("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)
        check_number("weight_decay", self.weight_decay, "a finite number >= 0",
                     lambda v: 0 <= v < math.inf)  # fmt: skip
        check_number("label_smoothing", self.label_smoothing, "a number in [0, 1)",
                     lambda v: 0 <= v < 1)  # fmt: skip
        if self.epochs is not None:
            below = f"a number in [0, epochs={self.epochs})"
            check_number("warmup_epochs", self.warmup_epochs, below,
                         lambda v: 0 <= v < self.epochs)  # fmt: skip
        else:  # checked against the epochs in `epochs_for`, once the data set is known
            check_number("warmup_epochs", self.warmup_epochs, "a finite number >= 0",
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


# --- named recipes ----------------------------------------------------------------------------

# The settings that differ from TrainConfig's defaults (the paper's recipe). "fast" (chapter 5):
# one-cycle, Nesterov, label smoothing, weight decay 5e-4 on the weights only, bf16 autocast,
# 25 epochs, a test pass every 5 epochs; checked on the 45k/5k split (book/results/val5k_*).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {},
    "fast": {
        "epochs": 25, "iterations": None, "lr": 0.2, "nesterov": True, "schedule": "onecycle",
        "label_smoothing": 0.1, "weight_decay": 5e-4, "decay_bn_and_bias": False,
        "precision": "bf16", "test_every": 5,
    },
}  # fmt: skip


def recipe(name: str = "paper", **overrides: Any) -> TrainConfig:
    """The named recipe's `TrainConfig`, with `overrides` on top (e.g. `seed=1`).

    "fast" uses bf16 autocast: fast only where bf16 is native (AVX512-BF16, AMX, compute
    capability 8.0); elsewhere pass `precision="auto"`. Giving `epochs` drops the recipe's
    `iterations`, and the other way round.
    """
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}; got {name!r}")
    settings = {**RECIPES[name], **overrides}
    if "epochs" in overrides and "iterations" not in overrides:
        settings["iterations"] = None
    if "iterations" in overrides and "epochs" not in overrides:
        settings["epochs"] = None
    return TrainConfig(**settings)


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

    `param_groups` (e.g. `transfer.parameter_groups`) give parts of the model their own "lr";
    every trainable parameter must be in exactly one group; frozen ones are left out.
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

    step: MultiStepLR, lr ÷ 10 at 50% and 75% of the iterations (He et al. 2016a, Sec. 4.2).
    cosine: CosineAnnealingLR from lr to 0 (Loshchilov & Hutter 2017).
    onecycle: OneCycleLR with its defaults, momentum not cycled (Smith & Topin 2019).
    A warm-up (Goyal et al. 2017) is a LinearLR that a SequentialLR runs before step or cosine;
    step's milestones stay at 50% and 75% of the whole run.
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
