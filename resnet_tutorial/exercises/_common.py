"""What the checks of every chapter share: the report, random inputs, weights, learner calls.

A pass prints one line starting with "✓" that says what was verified; a failure raises
`AssertionError` that says what is wrong and ends with "Hint: …".
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from ..measure import BATCH_NORMS

TOLERANCE = 1e-4  # largest output difference allowed, relative to the largest output


def fail(problem: str, hint: str) -> NoReturn:
    raise AssertionError(f"{problem}\nHint: {hint}")


def say_passed(what: str) -> None:
    print(f"✓ {what}")


def keeps_random_state(check: Callable[..., None]) -> Callable[..., None]:
    """Run `check` with seed 0 and restore the caller's random state afterwards."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return check(*args, **kwargs)

    return wrapper


def randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _weighted_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, *BATCH_NORMS))]


def _same_layout(a: nn.Module, b: nn.Module) -> bool:
    a, b = a.state_dict(), b.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


def copy_weights(source: nn.Module, target: nn.Module) -> bool:
    """Load `source`'s weights into `target`: by name where the keys match torchvision's, else
    layer by layer in the order they were created. False where neither fits."""
    if _same_layout(source, target):
        target.load_state_dict(source.state_dict(), assign=True)
        return True
    sources, targets = _weighted_modules(source), _weighted_modules(target)
    if len(sources) != len(targets) or not all(map(_same_layout, sources, targets)):
        return False
    for s, t in zip(sources, targets):
        t.load_state_dict(s.state_dict(), assign=True)
    return True


def relative_difference(output: Tensor, expected: Tensor) -> float:
    return float((output - expected).abs().max() / expected.abs().max().clamp_min(1e-6))


def close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and relative_difference(a, b) < TOLERANCE


def call_learner(function: Callable[..., Any], args: tuple, what: str, hint: str) -> Any:
    """Run learner code; turn any exception into a failure that names the call."""
    try:
        return function(*args)
    except Exception as error:
        fail(f"{what} raised {type(error).__name__}: {error}", hint)


def learner_forward(model: nn.Module, x: Tensor, where: str) -> Tensor:
    with torch.no_grad():
        return call_learner(
            model,
            (x,),
            f"{where} on an input of shape {tuple(x.shape)}",
            "read the shapes in the error; print(model) lists every layer with its sizes",
        )


def whole_number(value: Any, call: str, hint: str) -> int:
    """The learner's count as an int: a one-element tensor or a float such as 576.0 is fine."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        fail(f"{call} returned {value!r}, not a whole number.", hint)
    return int(value)


def as_pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def positional_count(cls: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return 4
    kinds = [p.kind for p in parameters]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(k in positional for k in kinds)
