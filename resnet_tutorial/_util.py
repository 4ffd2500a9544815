"""Small helpers that several modules share, one definition each; this module imports no other of
the package, so that every module can use it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn


def check_positive_int(name: str, value: object, *, minimum: int = 1) -> None:
    """TypeError unless `value` is an int (not a bool); ValueError if it is below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value}")


def check_number(name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> None:
    """ValueError unless `value` is a number (not a bool) for which `ok` holds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model with neither."""
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def positive_env(name: str) -> int | None:
    """`$name` as an int >= 1, or None where it is unset or empty; ValueError for anything else."""
    value = os.environ.get(name, "")
    if value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${name} must be unset or an integer >= 1, got {value!r}")
    return int(value)


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """`torch.save(obj)` to a temporary file beside `path`, then rename it over `path`: a crash
    while writing leaves the previous file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a results file is for sharing
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def training_mode(model: nn.Module, mode: bool) -> Iterator[nn.Module]:
    """`with training_mode(model, False):` runs the block in eval mode (True: train mode), then
    gives each submodule back its own mode (a BN held in eval mode stays so)."""
    modes = [(module, module.training) for module in model.modules()]
    model.train(mode)
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def eval_mode(model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
    """`with eval_mode(model):` is `training_mode(model, False)`."""
    return training_mode(model, False)


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, lowercase hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
