"""Training: the loop of the paper's CIFAR recipe, checkpoints and DDP (He et al. 2016a, Sec. 4.2).

`fit` trains with a `TrainConfig` (`config.py`) and returns a `History`; `evaluate` and
`predict` measure a trained model.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

from resnet_tutorial._util import atomic_save, eval_mode, model_device
from resnet_tutorial.checkpoint import (
    load_checkpoint,
    restore,
    run_state,
    seed_everything,
    warn_if_changed,
)
from resnet_tutorial.config import (
    TrainConfig,
    capped_to_max_steps,
    default_device,
    make_optimizer,
    make_scheduler,
    pick_precision,
)
from resnet_tutorial.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Data,
    DeviceLoader,
    as_tensors,
    check_labels,
)

PathLike = str | os.PathLike

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# --- history ----------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch curves of a run. Errors are fractions in [0, 1]; losses are mean cross-entropy.

    `train_*` are running means over the epoch's (augmented) batches, as in the paper's curves;
    `test_*` are NaN for an epoch without a test pass (None in JSON); `lr` is the last step's.
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
        """The epoch with the lowest `key` (the first one on a tie; untested epochs skipped)."""
        values = getattr(self, key, None)
        measured = [i for i, v in enumerate(values or []) if not math.isnan(v)]
        if not measured:
            raise ValueError(f"no values for {key!r} (fields: {list(self.to_dict())})")
        return self.row(min(measured, key=values.__getitem__))

    def to_dict(self) -> dict[str, list[float | None]]:
        """The curves as a dict of lists; NaN (an epoch without a test pass) becomes None."""
        return {f.name: [None if _is_nan(v) else v for v in getattr(self, f.name)]
                for f in dataclasses.fields(self)}  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict[str, Sequence[float | None]]) -> History:
        """Inverse of `to_dict`."""
        return cls(**{name: [math.nan if v is None else v for v in vs]
                      for name, vs in values.items()})  # fmt: skip

    def save_json(self, path: PathLike) -> None:
        """Write the curves to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load_json(cls, path: PathLike) -> History:
        """Read curves written by `save_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def _is_nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


# --- evaluation -------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    flip: bool = False,
) -> tuple[float, float]:
    """Mean cross-entropy and error (fraction wrong, 0..1) of `model` on `data`, in eval mode,
    on `device` (else the model's). `flip=True` scores each image by the mean of its logits and
    its mirror image's (flip test-time augmentation)."""
    images, labels = as_tensors(data)
    loss_sum, wrong, _ = _evaluate_sums(
        model, images, labels, batch_size, device, mean, std, flip=flip
    )
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
    flip: bool = False,
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
    with eval_mode(model):
        for x, y in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            if flip:  # the mean of the two views' logits
                logits = (logits + model(x.flip(-1))) / 2
            if not labels_checked:  # against the model's width, before the loss can fail
                check_labels(labels, logits.shape[-1])
                labels_checked = True
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            predicted = logits.argmax(1)
            wrong += (predicted != y).sum()
            if keep_predictions:
                predictions.append(predicted.cpu())
    predicted_all = torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)
    return loss_sum, wrong, predicted_all


@torch.no_grad()
def count_outputs(
    model: nn.Module, images: Tensor, device: torch.device | str | None = None
) -> int:
    """How many classes `model` scores: the width of its output for one of `images` (eval mode)."""
    device = torch.device(device) if device is not None else model_device(model)
    with eval_mode(model):  # no BN statistics change, no dropout draws
        logits = model(torch.zeros((1, *images.shape[1:]), device=device))
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
        resume: a checkpoint written by an earlier `fit`; with the same config and data the run
            ends bit for bit where an uninterrupted one would (on the CPU).
        param_groups: optimizer groups with their own "lr" (`transfer.parameter_groups`);
            None puts every trainable parameter in one group at `config.lr`.

    Under `torchrun` each process trains its shard with DistributedDataParallel. A NaN or
    infinite loss raises `NonFiniteLossError`.
    """
    checkpoint = load_checkpoint(resume) if resume is not None else None
    if config is None:
        config = TrainConfig.from_dict(checkpoint["config"]) if checkpoint else TrainConfig()
    with _distributed(config) as (device, rank, world_size):
        return _fit(
            model, train, test, config, checkpoint, resume, device, rank, world_size, param_groups
        )


def training_throughput(
    model: nn.Module, train: Data, config: TrainConfig, *, seconds: float = 30.0
) -> float:
    """Training images per second of `config` on a copy of `model`: `fit` for one epoch on as
    many of `train`'s images as take about `seconds` (sized by a warm-up epoch of 10 batches)."""
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    images, labels = as_tensors(train)
    one = (images[:1], labels[:1])
    config = dataclasses.replace(config, epochs=1, iterations=None, warmup_epochs=0,
                                 checkpoint=None, progress=False, test_every=1)  # fmt: skip
    n = min(len(labels), 10 * config.batch_size)
    rate = 0.0
    for _ in range(2):  # warm-up and size, then measure
        subset = (images[:n], labels[:n])
        history = fit(copy.deepcopy(model), subset, one, config)
        rate = n / history.seconds[0]
        n = min(len(labels), max(n, round(rate * seconds)))
    return rate


def train_loader(
    train: Data, config: TrainConfig, device: torch.device | str = "cpu", rank: int = 0,
    world_size: int = 1, num_classes: int | None = None,
) -> DeviceLoader:  # fmt: skip
    """The batches `fit` trains on: shuffled by `config.seed` each epoch, augmented, normalised."""
    return DeviceLoader(
        as_tensors(train), config.batch_size, train=True, mean=config.mean, std=config.std,
        device=device, seed=config.seed, augment=config.augment, rank=rank,
        world_size=world_size, num_classes=num_classes,
    )  # fmt: skip


def _fit(
    model, train, test, config, checkpoint, resume, device, rank, world_size, param_groups=None
) -> History:
    precision, channels_last = pick_precision(device, config.precision, config.channels_last)
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    images, labels = as_tensors(train)
    num_classes = count_outputs(model, images)
    check_labels(as_tensors(test)[1], num_classes, name="test labels")
    loader = train_loader(train, config, device, rank, world_size, num_classes)
    if checkpoint is not None:
        saved = TrainConfig.from_dict(checkpoint["config"])
        same_settings = not warn_if_changed(saved, config, len(loader))
    config, steps_per_epoch = capped_to_max_steps(config, len(loader))
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
            tested = epoch % config.test_every == 0 or epoch == epochs
            test_loss, test_error = _test(run, test) if tested else (math.nan, math.nan)
            history.append(
                epoch=epoch, train_loss=train_loss, train_error=train_error,
                test_loss=test_loss, test_error=test_error,
                lr=last_lr,
                seconds=time.perf_counter() - start,
            )  # fmt: skip
            if bar is not None and tested:
                bar.set_postfix(test_error=f"{test_error:.2%}")
            if config.checkpoint is not None:
                _write_checkpoint(run, optimizer, scheduler, scaler, epoch, history, len(labels))
    return history


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
