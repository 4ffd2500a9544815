"""Checkpoints: the random generators' states, and the exact resume of a run.

A checkpoint of `fit` is a plain dict (`run_state`) that `torch.load(weights_only=True)` reads
back, written atomically (`_util.atomic_save`).
"""

from __future__ import annotations

import os
import random
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from resnet_tutorial.config import TrainConfig

# The layout of `run_state`'s dict (2: torch's own schedulers); `restore` reads only this one.
CHECKPOINT_FORMAT = 2
# Settings that do not change the numbers of a run, and may differ when resuming.
RESUME_FREE = ("checkpoint", "progress", "device", "compile", "test_every")
# What torch's schedulers keep in the optimizer's param_groups besides "lr".
_SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr")


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by `fit` (tensors on the CPU; no code is unpickled)."""
    return torch.load(path, map_location="cpu", weights_only=True)


# --- random generators --------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every CUDA device) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def rng_states() -> dict[str, Any]:
    """The states of every generator `seed_everything` seeds, as `weights_only` can load them."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        # As a tensor, so that `torch.load(weights_only=True)` can read it back.
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of `rng_states`."""
    torch.set_rng_state(states["torch"])
    for index, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(state, index)
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))


# --- the state of a run ---------------------------------------------------------------------------


def run_state(
    *, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
    config: dict[str, Any], history: dict[str, list[float]], train_size: int,
) -> dict[str, Any]:  # fmt: skip
    """Everything `restore` needs to continue after `epoch` as if the run had not stopped."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states(),
        "config": config,
        "history": history,
        "train_size": train_size,
    }


def restore(
    checkpoint: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
    train_size: int, path: str | os.PathLike, same_settings: bool = True,
) -> None:  # fmt: skip
    """Load a `run_state` into freshly made objects and set the random generators. With
    `same_settings=False` the scheduler keeps the new settings, stepped to the saved iteration."""
    version = checkpoint.get("format")
    if version != CHECKPOINT_FORMAT:
        raise ValueError(
            f"the checkpoint {os.fspath(path)!r} has format {version!r}; this version of the "
            f"package reads format {CHECKPOINT_FORMAT}"
        )
    if checkpoint["train_size"] != train_size:
        raise ValueError(
            f"the checkpoint {os.fspath(path)!r} was trained on {checkpoint['train_size']} "
            f"images, got {train_size}: resume with the same training set"
        )
    model.load_state_dict(checkpoint["model"])
    if same_settings:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    else:
        _step_scheduler_to(checkpoint, optimizer, scheduler)
    scaler.load_state_dict(checkpoint["scaler"])
    set_rng_states(checkpoint["rng"])


def _step_scheduler_to(
    checkpoint: dict[str, Any], optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> None:  # fmt: skip
    """Step the new scheduler to the saved iteration, then load the optimizer, whose groups hold
    the lr the run had reached: the new schedule continues from that lr (MultiStepLR,
    CosineAnnealingLR, LinearLR) or from the iteration (OneCycleLR)."""
    made = [{key: group[key] for key in _SCHEDULER_KEYS if key in group}
            for group in optimizer.param_groups]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
        for _ in range(checkpoint["scheduler"]["last_epoch"]):
            scheduler.step()
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group, keys in zip(optimizer.param_groups, made):
        group.update(keys)  # the new scheduler's own (OneCycleLR's initial_lr is max_lr / 25)


def warn_if_changed(saved: TrainConfig, config: TrainConfig, steps_per_epoch: int) -> bool:
    """Warn when resuming with settings that change the run, and say whether any did. The
    length is compared in epochs: `epochs=164` and `iterations=64000` are the same run at 391
    steps per epoch."""
    length = ("epochs", "iterations")
    changed = [
        f"{name} ({getattr(saved, name)!r} -> {getattr(config, name)!r})"
        for name in saved.to_dict()
        if name not in RESUME_FREE + length and getattr(saved, name) != getattr(config, name)
    ]
    before, after = saved.epochs_for(steps_per_epoch), config.epochs_for(steps_per_epoch)
    if before != after:
        changed.insert(0, f"epochs ({before} -> {after})")
    if changed:
        warnings.warn(
            "resuming with settings that differ from the checkpoint's, so the run will not "
            "match an uninterrupted one: " + ", ".join(changed),
            stacklevel=4,  # fit's caller (warn_if_changed, _fit, fit)
        )
    return bool(changed)
