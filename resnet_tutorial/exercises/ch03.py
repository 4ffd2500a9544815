"""Chapter 3's checks (bottlenecks): exercises 1 and 2 (exercise 3: `ch04.check_resnet`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..blocks import Bottleneck, make_shortcut
from ..measure import count_macs
from ._blocks import check_block, outputs_note
from ._common import (
    call_learner,
    fail,
    keeps_random_state,
    say_passed,
    whole_number,
)


@keeps_random_state
def check_bottleneck(block_cls: type[nn.Module]) -> None:
    """Check a bottleneck block against `rt.Bottleneck` (He et al. 2016a, Fig. 5 right).

    `block_cls(in_channels, channels, stride=1, downsample=None)` with `expansion = 4`, the
    stride on the 3×3 (torchvision's "v1.5").
    """
    cases = [(256, 64, 1), (64, 64, 1), (256, 128, 2)]
    counts, compared = check_block(block_cls, Bottleneck, cases)
    say_passed(
        f"Bottleneck: parameters ({counts}), no conv bias, 1×1-3×3-1×1 with expansion 4, "
        "stride on the 3×3, projection 64 → 256, shortcut added, ReLU after the addition, "
        f"{outputs_note(compared, 'Bottleneck')}"
    )


# The blocks of rt.exercises.check_bottleneck_macs: (in_channels, channels, size, stride,
# stride_on), from the chapter's 256-d block to the first blocks of ResNet-50's stages 1, 2 and 4.
_MACS_CASES = [
    (256, 64, 56, 1, "3x3"),
    (64, 64, 56, 1, "3x3"),
    (256, 128, 56, 2, "3x3"),
    (256, 128, 56, 2, "1x1"),
    (1024, 512, 14, 2, "1x1"),
]


@keeps_random_state
def check_bottleneck_macs(bottleneck_macs: Callable[..., int]) -> None:
    """Check a formula for the multiply-adds of one bottleneck block against `rt.count_macs`.

    `bottleneck_macs(in_channels, channels, size, stride, stride_on)` predicts the MACs of
    `rt.Bottleneck(in_channels, channels, stride, shortcut, stride_on=stride_on)` on one
    size × size input, with option B's projection where the shape changes (Sec. 4.1).
    """
    if not callable(bottleneck_macs):
        raise TypeError(f"bottleneck_macs must be a function, got {bottleneck_macs!r}")
    for in_channels, channels, size, stride, stride_on in _MACS_CASES:
        out_channels, out_size = channels * Bottleneck.expansion, size // stride
        call = (
            f"bottleneck_macs({in_channels}, {channels}, size={size}, stride={stride}, "
            f"stride_on={stride_on!r})"
        )
        predicted = call_learner(
            bottleneck_macs,
            (in_channels, channels, size, stride, stride_on),
            call,
            "the function takes (in_channels, channels, size, stride, stride_on) and returns "
            "a number; it builds no module.",
        )
        predicted = whole_number(
            predicted, call, "a count of multiply-adds is an integer: use // for the sizes, not /."
        )
        with torch.device("meta"):  # shapes only: no weights to initialise
            shortcut = make_shortcut("B", in_channels, out_channels, stride)
            block = Bottleneck(in_channels, channels, stride, shortcut, stride_on=stride_on)
        expected = count_macs(block, (in_channels, size, size))
        if predicted == expected:
            continue
        projection = in_channels * out_channels * out_size**2  # Eq. conv-cost, k = 1
        first_saved = in_channels * channels * (size**2 - out_size**2)  # conv1 at size / stride
        diagnoses = [
            (2 * expected, "you counted 2 operations per multiply-add (FLOPs, not MACs)",
             "count one multiply-add per weight per output pixel, as the paper's Table 1 "
             "does: k² C_in C_out H_out W_out."),
            (expected - projection if shortcut is not None else None,
             "the projection shortcut is missing",
             f"the shape changes here ({in_channels} → {out_channels} channels"
             + (f", stride {stride}" if stride != 1 else "")
             + "), so option B adds a 1×1 convolution on the shortcut, at the output size."),
            (expected + projection if shortcut is None else None,
             "you counted a projection, but this block's shortcut is the identity",
             "option B projects only where the shape changes; here the input already has "
             f"{out_channels} channels at {size}×{size}."),
            (expected - first_saved if stride_on == "3x3" else expected + first_saved,
             "the first 1×1 runs at the wrong resolution",
             f"with the stride on the {stride_on.replace('x', '×')}, the first 1×1 runs on "
             + (f"the full {size}×{size} input; only the layers after the 3×3 run at "
                f"{out_size}×{out_size}." if stride_on == "3x3" else
                f"{out_size}×{out_size}: it strides itself, so every layer runs at the "
                "output size."))
            if stride != 1 else (None, "", ""),
        ]  # fmt: skip
        for candidate, problem, hint in diagnoses:
            if candidate is not None and predicted == candidate:
                fail(f"{call} = {predicted:,}: {problem}.", hint)
        fail(
            f"{call} = {predicted:,}, but rt.count_macs counts {expected:,} for that block "
            f"on a {size}×{size} input.",
            "add k² C_in C_out H_out W_out for each convolution: the 1×1 to `channels`, the "
            "3×3, the 1×1 to 4 · `channels` and, where the shape changes, the 1×1 projection "
            "of the shortcut; each at the size of its own output.",
        )
    say_passed(
        f"Bottleneck MACs: {len(_MACS_CASES)} blocks, identity and projection shortcuts, "
        "stride on the 3×3 and on the 1×1, equal rt.count_macs"
    )
