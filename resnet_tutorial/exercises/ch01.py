"""Chapter 1's checks (residual learning): exercises 1, 2 and 3."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .._util import eval_mode, model_device
from ..blocks import BasicBlock
from ..measure import count_parameters
from ._blocks import check_block, outputs_note
from ._common import (
    as_pair,
    call_learner,
    close,
    fail,
    keeps_random_state,
    randn,
    say_passed,
)


class _Counted(nn.Module):
    """A function f that counts its calls."""

    def __init__(self, f: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.f(x)


@keeps_random_state
def check_residual(residual: Callable[..., Any]) -> None:
    """Check a residual wrapper y = f(x) + x (He et al. 2016a, Eq. 1 and Fig. 2).

    Either a class `Residual(f)`, an nn.Module that stores `f` and returns `f(x) + x`, or a
    function `residual(x, f)`; with f = 0·x the gradient must still reach x.
    """
    is_class = isinstance(residual, type)
    name = getattr(residual, "__name__", "residual")
    for f in (nn.Linear(6, 6), lambda x: -2.0 * x, lambda x: 0.0 * x):
        counted = _Counted(f)
        run = _residual_runner(residual, is_class, counted, name)
        x = randn(4, 6, seed=7)
        x_before = x.clone()
        with torch.no_grad():
            output = call_learner(run, (x,), f"{name} on a (4, 6) input", "see the error.")
            expected = f(x_before) + x_before
            _diagnose_residual(name, counted.calls, x, x_before, output, expected, f)
    x = randn(4, 6, seed=8).requires_grad_()
    output = run(x)
    if not output.requires_grad:
        fail(
            f"{name}: the output carries no gradient.",
            "don't compute under torch.no_grad() or detach: the gradient reaches x through the "
            "shortcut (Sec. 3.1).",
        )
    output.sum().backward()
    if x.grad is None or not torch.allclose(x.grad, torch.ones_like(x)):
        fail(
            f"{name}: with f(x) = 0·x the gradient of sum(y) with respect to x should be 1 "
            "everywhere (the shortcut's), but it is not.",
            "add x itself, not x.detach() or x.data: the identity path carries the gradient "
            "straight through, which is what lets deep residual nets train (Sec. 3.1).",
        )
    say_passed(
        f"{name}: returns f(x) + x for three f's, calls f once, leaves x unchanged, and passes "
        "the gradient through the shortcut (∂y/∂x = 1 where f is 0)"
    )


def _residual_runner(residual, is_class, counted, name):
    if not is_class:
        return lambda x: residual(x, counted)
    return call_learner(
        residual,
        (counted,),
        f"{name}(f)",
        "Residual(f) takes the function f (an nn.Module) and stores it: self.f = f.",
    )


def _diagnose_residual(name, calls, x, x_before, output, expected, f) -> None:
    if calls != 1:
        fail(
            f"{name} calls f {calls} times per forward pass"
            + (": f is applied twice." if calls == 2 else "."),
            "f computes the residual F(x) once per forward pass; the block adds the input to it: "
            "H(x) = F(x) + x (Eq. 1).",
        )
    if not torch.equal(x, x_before):
        fail(
            f"{name} changed its input x in place (an in-place add such as x += f(x)).",
            "build F(x) + x as a new tensor: the caller's x (and autograd, which needs it for "
            "the backward pass) must keep its value.",
        )
    if not isinstance(output, Tensor) or output.shape != expected.shape:
        fail(
            f"{name} returned {output!r:.60}, expected a tensor like x.",
            "the output has x's shape: the residual F(x) plus the input (Eq. 1).",
        )
    if close(output, expected):
        return
    diagnoses = {
        "returned f(x) only": f(x_before),
        "returned x only": x_before,
        "applied f twice": f(f(x_before)) + x_before,
        "subtracted x": f(x_before) - x_before,
    }
    for problem, candidate in diagnoses.items():
        if close(output, candidate):
            fail(
                f"{name} {problem}.",
                "the block learns the residual F(x) = H(x) - x, so it must output H(x) = "
                "F(x) + x (Eq. 1): what does that ask forward to do with x?",
            )
    fail(f"{name} does not return f(x) + x.", "H(x) = F(x) + x (Eq. 1), with f as F.")


@keeps_random_state
def check_basic_block(block_cls: type[nn.Module]) -> None:
    """Check a basic block against `rt.BasicBlock` (He et al. 2016a, Fig. 2 left).

    `block_cls(in_channels, channels, stride=1, downsample=None)` as torchvision's, with
    `expansion = 1` (a block that takes three arguments builds its own projection).
    """
    counts, compared = check_block(block_cls, BasicBlock, [(64, 64, 1), (64, 128, 2)])
    say_passed(
        f"BasicBlock: parameters ({counts}), no conv bias, stride on the first 3×3, shortcut "
        f"added, ReLU after the addition, {outputs_note(compared, 'BasicBlock')}"
    )


class _AdditionCounter(TorchFunctionMode):
    """Counts additions of two feature maps (N, C, H, W), such as a block's F(x) + x."""

    names = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        operands = args[:2]
        if (
            getattr(func, "__name__", "") in self.names
            and len(operands) == 2
            and all(isinstance(a, Tensor) and a.dim() == 4 for a in operands)
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _additions(model: nn.Module, input_size: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    x = randn(2, *input_size, seed=9).to(model_device(model))
    counter = _AdditionCounter()
    with eval_mode(model), counter, torch.no_grad():
        output = call_learner(model, (x,), "the model", "see the error.")
    return counter.count, tuple(output.shape)


def _conv_specs(model: nn.Module) -> list[tuple]:
    return [
        (m.kernel_size, m.in_channels, m.out_channels, as_pair(m.stride))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]


@keeps_random_state
def check_plain_vs_residual(
    plain_model: nn.Module,
    residual_model: nn.Module,
    *,
    input_size: Sequence[int] = (3, 32, 32),
) -> None:
    """Check a plain/residual pair for the degradation experiment (He et al. 2016a, Fig. 6).

    The same convolutions and parameters (so parameter-free shortcuts); only the residual net
    adds feature maps together.

    Example:
        >>> rt.exercises.check_plain_vs_residual(rt.cifar_plain(20), rt.cifar_resnet(20))
        ✓ plain vs residual: the same 269,722 parameters in the same 19 convolutions; …
    """
    plain_count, residual_count = count_parameters(plain_model), count_parameters(residual_model)
    if plain_count != residual_count:
        fail(
            f"The plain net has {plain_count:,} parameters, the residual net {residual_count:,}.",
            "the comparison is fair only if the two nets have the same layers and parameters: "
            "the shortcuts must be parameter-free, as in the paper's Fig. 6 (Sec. 4.2). Which "
            "of the options of Sec. 3.3 adds none?",
        )
    plain_convs, residual_convs = _conv_specs(plain_model), _conv_specs(residual_model)
    if plain_convs != residual_convs:
        i = next(
            (i for i, (a, b) in enumerate(zip(plain_convs, residual_convs)) if a != b),
            min(len(plain_convs), len(residual_convs)),
        )
        fail(
            f"The two nets differ at convolution {i}: {len(plain_convs)} convolutions in the "
            f"plain net, {len(residual_convs)} in the residual net.",
            "build both from the same table; the only difference is the shortcut "
            "(shortcut=None for the plain net).",
        )
    plain_adds, plain_shape = _additions(plain_model, input_size)
    residual_adds, residual_shape = _additions(residual_model, input_size)
    if plain_adds:
        fail(
            f"The plain net adds feature maps together {plain_adds} times: it has shortcuts.",
            "the plain net is the same stack without shortcuts: each block returns "
            "relu(F(x)) (rt.cifar_plain, or shortcut=None).",
        )
    if not residual_adds:
        fail(
            "The residual net adds no feature maps together: it has no shortcuts.",
            "each residual block returns relu(F(x) + shortcut(x)).",
        )
    if plain_shape != residual_shape:
        fail(f"The outputs' shapes differ: {plain_shape} and {residual_shape}.", "see above.")
    say_passed(
        f"plain vs residual: the same {plain_count:,} parameters in the same "
        f"{len(plain_convs)} convolutions; the plain net adds no shortcuts, the residual net "
        f"adds {residual_adds}"
    )
