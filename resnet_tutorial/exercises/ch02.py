"""Chapter 2's checks (shortcuts): exercises 1 and 3 (its network: `ch04.check_cifar_resnet`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import BasicBlock
from ..measure import count_parameters
from ..models import make_stage
from ._common import (
    call_learner,
    close,
    fail,
    keeps_random_state,
    randn,
    relative_difference,
    say_passed,
    whole_number,
)


@keeps_random_state
def check_shortcut(shortcut: Callable[..., Tensor] | type[nn.Module]) -> None:
    """Check an option-A shortcut against `rt.ZeroPadShortcut` (He et al. 2016a, Sec. 3.3).

    A function `shortcut(x, out_channels, stride)` or an nn.Module class
    `Shortcut(in_channels, out_channels, stride)`.
    """
    is_module = isinstance(shortcut, type) and issubclass(shortcut, nn.Module)
    if not is_module and not callable(shortcut):
        raise TypeError(f"shortcut must be a function or an nn.Module class, got {shortcut!r}")
    for in_channels, out_channels, stride in [(16, 32, 2), (32, 64, 2), (16, 16, 1)]:
        name = getattr(shortcut, "__name__", "shortcut")
        where = f"{name}(in_channels={in_channels}, out_channels={out_channels}, stride={stride})"
        run = _build_shortcut(shortcut, is_module, in_channels, out_channels, stride, where)
        x = randn(2, in_channels, 8, 8, seed=5)
        x_before = x.clone()
        with torch.no_grad():
            output = call_learner(
                run, (x,), f"{where} on (2, {in_channels}, 8, 8)", "see the error."
            )
        if not isinstance(output, Tensor):
            fail(f"{where} returned {type(output).__name__}.", "return the padded tensor.")
        if not torch.equal(x, x_before):
            fail(f"{where} changed its input in place.", "build a new tensor (slicing, F.pad).")
        _diagnose_zero_pad(where, x, output, in_channels, out_channels, stride)
    say_passed(
        "option-A shortcut: parameter-free, subsamples with x[:, :, ::2, ::2], zeros split "
        "evenly before and after the channels, outputs equal rt.ZeroPadShortcut's (16 → 32 and "
        "32 → 64 at stride 2, the identity at 16 → 16)"
    )


def _build_shortcut(shortcut, is_module, in_channels, out_channels, stride, where):
    if not is_module:
        return lambda x: shortcut(x, out_channels, stride)
    module = call_learner(
        shortcut,
        (in_channels, out_channels, stride),
        where,
        "the module takes (in_channels, out_channels, stride).",
    )
    count = count_parameters(module)
    if count:
        fail(
            f"{where} has {count:,} parameters.",
            "option A is parameter-free: it subsamples and pads with zeros. A 1×1 convolution "
            "on the shortcut is option B.",
        )
    return module


def _diagnose_zero_pad(where, x, output, in_channels, out_channels, stride) -> None:
    pixels = "x[:, :, ::stride, ::stride]"
    expected = _zero_pad(x[:, :, ::stride, ::stride], in_channels, out_channels)
    if output.shape[1] != out_channels:
        fail(
            f"{where} outputs {output.shape[1]} channels, expected {out_channels}.",
            "pad out_channels - in_channels zero channels: F.pad(x, (0, 0, 0, 0, before, "
            "after)) pads dimension 1, the channels (F.pad's pairs run from the last dimension).",
        )
    if output.shape != expected.shape:
        size = "×".join(map(str, output.shape[2:]))
        problem = "does not subsample" if output.shape[2:] == x.shape[2:] else "subsamples wrongly"
        fail(
            f"{where} {problem}: the 8×8 map becomes {size}, expected "
            f"{expected.shape[2]}×{expected.shape[3]}.",
            f"take every stride-th pixel: {pixels}.",
        )
    if close(output, expected):
        return
    used = (output.abs().sum(dim=(0, 2, 3)) > 0).nonzero().flatten().tolist()
    extra, before = out_channels - in_channels, (out_channels - in_channels) // 2
    start = used[0] if used else before
    if extra and start in (0, extra) and start != before:
        side = "after" if start == 0 else "before"
        fail(
            f"{where} puts all {extra} zero channels {side} the input's.",
            "the public CIFAR checkpoints expect the zeros split evenly before and after: "
            "F.pad(x, (0, 0, 0, 0, p, p)) with p = (out_channels - in_channels) // 2.",
        )
    kept = output[:, start : start + in_channels]
    wrong_sampling = {
        "averages each window": F.avg_pool2d(x, stride) if stride > 1 else x,
        "max-pools each window": F.max_pool2d(x, stride) if stride > 1 else x,
        "takes the wrong pixel of each window": x[:, :, 1::stride, 1::stride],
    }
    for problem, candidate in wrong_sampling.items():
        if close(kept, candidate):
            fail(
                f"{where} {problem} instead of taking its top-left pixel.",
                f"option A subsamples with {pixels}, like the strided 1×1 convolution of "
                "option B, and as the CIFAR checkpoints expect.",
            )
    fail(
        f"{where}: the outputs differ from rt.ZeroPadShortcut's (largest difference "
        f"{relative_difference(output, expected):.2g} of the output's scale).",
        f"subsample with {pixels}, then pad (out_channels - in_channels) // 2 zero channels "
        "before and the rest after.",
    )


def _zero_pad(x: Tensor, in_channels: int, out_channels: int) -> Tensor:
    before = (out_channels - in_channels) // 2
    return F.pad(x, (0, 0, 0, 0, before, out_channels - in_channels - before))


# The stages of check_shortcut_parameters: (option, in_channels, channels, depth, stride) of
# basic-block stages of the CIFAR ResNet-20 and ResNet-34, and one that widens at stride 1.
_SHORTCUT_CASES = [
    ("A", 16, 32, 3, 2),
    ("B", 16, 32, 3, 2),
    ("B", 64, 64, 3, 1),
    ("C", 64, 64, 3, 1),
    ("C", 128, 256, 6, 2),
    ("D", 256, 512, 3, 2),
    ("B", 64, 128, 2, 1),
]


@keeps_random_state
def check_shortcut_parameters(shortcut_parameters: Callable[..., int]) -> None:
    """Check a formula for the parameters on a stage's shortcuts against `rt.make_stage`.

    `shortcut_parameters(option, in_channels, channels, depth, stride)` predicts how many
    parameters the shortcuts of `rt.make_stage(rt.BasicBlock, in_channels, channels, depth,
    stride, option)` hold, for options "A" to "D" (He et al. 2016a, Sec. 3.3; He et al. 2019a).
    """
    if not callable(shortcut_parameters):
        raise TypeError(f"shortcut_parameters must be a function, got {shortcut_parameters!r}")
    for option, in_channels, channels, depth, stride in _SHORTCUT_CASES:
        args = (option, in_channels, channels, depth, stride)
        call = f"shortcut_parameters({', '.join(map(repr, args))})"
        predicted = call_learner(
            shortcut_parameters, args, call,
            "the function takes (option, in_channels, channels, depth, stride) and returns a "
            "number; it builds no module.",
        )  # fmt: skip
        predicted = whole_number(
            predicted, call, "a count of parameters is an integer: use // for divisions, not /."
        )
        with torch.device("meta"):  # shapes only: no weights to initialise
            stage = make_stage(BasicBlock, in_channels, channels, depth, stride, option)
        projections = [count_parameters(block.downsample) for block in stage]
        if predicted != sum(projections):
            _diagnose_shortcut_parameters(call, predicted, args, stage, projections)
    say_passed(
        f"shortcut parameters: {len(_SHORTCUT_CASES)} stages, options A, B, C and D, at stride 2 "
        "and at stride 1 (with and without a change of width), equal rt.make_stage's"
    )


def _diagnose_shortcut_parameters(call, predicted, args, stage, projections) -> None:
    option, in_channels, channels, depth, stride = args
    expected, first = sum(projections), projections[0]
    projected = [block.downsample for block in stage if count_parameters(block.downsample)]
    norms = sum(2 * projection[-1].num_features for projection in projected)  # γ and β
    changes = f"{in_channels} → {channels} channels" + (f" at stride {stride}" * (stride > 1))
    c_style = first + (depth - 1) * (channels * channels + 2 * channels)  # a projection everywhere
    diagnoses = [
        (option == "A", "option A has no parameters",
         "it subsamples and pads with zeros: nothing to learn, on any block."),
        (predicted == expected - norms, "BatchNorm's parameters are missing",
         "each projection is a 1×1 convolution (C_in · C_out weights, no bias) and a BatchNorm "
         "with a scale γ and a shift β per output channel: C_in · C_out + 2 · C_out."),
        (predicted == expected + norms, "you counted BatchNorm's running mean and variance",
         "those are buffers, updated by averaging, not parameters: a BatchNorm has 2 · C_out "
         "parameters (γ and β)."),
        (option in "BD" and predicted == 0 and first > 0,
         "the first block changes the shape, so it needs a projection",
         f"its input has {in_channels} channels and its output {channels}"
         + (f", at 1/{stride} of the size" if stride > 1 else ", at the same size")
         + f": option {option} projects the shortcut exactly there."),
        (option in "BD" and predicted == c_style and depth > 1,
         f"option {option} projects only where the shape changes",
         "the blocks after the first keep their shape and keep the identity shortcut; "
         "projecting every block is option C."),
        (option == "C" and predicted == expected - first and first > 0,
         "option C projects the first block too",
         f"option C puts a projection on every block: the first one maps {changes}."),
        (option == "C" and predicted == first and depth > 1,
         "option C projects every block, not only the first",
         f"the other {depth - 1} blocks get a {channels} → {channels} projection each, where "
         "B and D keep the identity."),
    ]  # fmt: skip
    for applies, problem, hint in diagnoses:
        if applies:
            fail(f"{call} = {predicted:,}: {problem}.", hint)
    fail(
        f"{call} = {predicted:,}, but the shortcuts of rt.make_stage(rt.BasicBlock, "
        f"{in_channels}, {channels}, {depth}, {stride}, {option!r}) hold {expected:,} parameters.",
        "count the blocks whose shortcut is a projection (A: none; B and D: where the shape "
        "changes; C: every block) and add C_in · C_out + 2 · C_out for each; the average "
        "pooling of D has no parameters.",
    )
