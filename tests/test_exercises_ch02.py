"""Chapter 2's checks against right and wrong learner code: option A, and a stage's shortcuts.

The oracles: an option-A shortcut written by hand (slicing and zeros), and the parameters on a
stage's shortcuts counted by hand, C_in · C_out + 2 · C_out per projection, checked against
numbers worked out on paper.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from support.exercise_helpers import conv, fails, my_shortcut, one_sided, passes
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch02

# --- exercise 3: option A ----------------------------------------------------------------------


class MyZeroPad(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.out_channels, self.stride = out_channels, stride

    def forward(self, x):
        return my_shortcut(x, self.out_channels, self.stride)


class ProjectionShortcut(nn.Module):
    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        self.conv = conv(in_channels, out_channels, 1, stride)

    def forward(self, x):
        return self.conv(x)


def averaged(x, out_channels, stride):
    extra = out_channels - x.shape[1]
    return F.pad(F.avg_pool2d(x, stride), (0, 0, 0, 0, extra // 2, extra - extra // 2))


def not_subsampled(x, out_channels, stride):
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def odd_pixels(x, out_channels, stride):
    return my_shortcut(x[:, :, stride - 1 :, stride - 1 :], out_channels, stride)


def test_the_hand_written_shortcut_is_option_a():
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).reshape(2, 16, 4, 4)
    y = my_shortcut(x, 32, 2)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # 8 zero channels before, 8 after
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_shortcut_accepts_functions_and_modules(capsys):
    passes(ch02.check_shortcut, rt.ZeroPadShortcut, capsys=capsys)
    passes(ch02.check_shortcut, MyZeroPad, capsys=capsys)
    out = passes(ch02.check_shortcut, my_shortcut, capsys=capsys)
    assert "evenly" in out


@pytest.mark.parametrize(
    ("shortcut", "says", "hint"),
    [
        (one_sided, [r"\b16 zero channels", r"\bafter\b"], [r"before and after"]),
        (averaged, ["averages"], [r"x\[:, :, ::stride, ::stride\]"]),
        (not_subsampled, [r"not subsample", r"8×8", r"4×4"], [r"::stride"]),
        (odd_pixels, [r"wrong pixel"], [r"::stride"]),
        (ProjectionShortcut, [r"\d parameters"], [r"parameter-free"]),
    ],
)
def test_shortcut_mistakes_get_their_hint(shortcut, says, hint):
    message = fails(ch02.check_shortcut, shortcut, says=says, hint=hint)
    assert shortcut.__name__ in message  # the learner's code is named


# --- exercise 1: the parameters on a stage's shortcuts (predict, then check) --------------------


def projection(c_in: int, c_out: int) -> int:
    return c_in * c_out + 2 * c_out  # 1×1 convolution without bias, BatchNorm's γ and β


def my_shortcut_parameters(option, in_channels, channels, depth, stride):
    """By hand: A none; B and D where the shape changes; C on every block."""
    if option == "A":
        return 0
    changes_shape = stride != 1 or in_channels != channels
    first = projection(in_channels, channels) if changes_shape or option == "C" else 0
    return first + ((depth - 1) * projection(channels, channels) if option == "C" else 0)


def test_the_hand_count_matches_numbers_worked_out_on_paper() -> None:
    assert my_shortcut_parameters("B", 16, 32, 3, 2) == 16 * 32 + 64 == 576
    assert my_shortcut_parameters("C", 128, 256, 6, 2) == 33_280 + 5 * 66_048 == 363_520
    assert my_shortcut_parameters("D", 256, 512, 3, 2) == 132_096
    assert my_shortcut_parameters("B", 64, 64, 3, 1) == 0


def test_shortcut_parameters_accepts_the_hand_count(capsys) -> None:
    out = passes(ch02.check_shortcut_parameters, my_shortcut_parameters, capsys=capsys)
    assert "7 stages" in out
    as_float = lambda *args: float(my_shortcut_parameters(*args))  # 576.0 is still a count
    passes(ch02.check_shortcut_parameters, as_float, capsys=capsys)
    as_tensor = lambda *args: torch.tensor(my_shortcut_parameters(*args))
    passes(ch02.check_shortcut_parameters, as_tensor, capsys=capsys)


def call(*args) -> str:
    """The call as the failure names it."""
    return r"\(" + ", ".join(map(repr, args)) + r"\)"


@pytest.mark.parametrize(
    ("formula", "says", "hint"),
    [
        (lambda *args: 0, [call("B", 16, 32, 3, 2) + " = 0", "first block", "shape"], []),
        (lambda o, i, c, d, s: 1, [call("A", 16, 32, 3, 2) + " = 1", "option A", r"\bno\b"], []),
        (
            lambda o, i, c, d, s: i * c if o == "B" else my_shortcut_parameters(o, i, c, d, s),
            [r"= 512\b", "BatchNorm"],
            [r"2 · C_out"],
        ),
        (
            lambda o, i, c, d, s: (
                my_shortcut_parameters(o, i, c, d, s) + (2 * c if o == "B" else 0)
            ),
            [r"= 640\b", "running mean"],
            ["buffers"],
        ),
        (
            lambda o, i, c, d, s: my_shortcut_parameters("C" if o == "B" else o, i, c, d, s),
            [call("B", 16, 32, 3, 2) + " = 2,752", "option B", "only where the shape changes"],
            ["option C"],
        ),
        (
            lambda o, i, c, d, s: 0 if s == 1 else my_shortcut_parameters(o, i, c, d, s),
            [call("C", 64, 64, 3, 1) + r" = 0\b", r"12,672"],  # 3 · (64·64 + 2·64)
            [],
        ),
        (
            lambda o, i, c, d, s: (
                projection(i, c) if o == "C" else my_shortcut_parameters(o, i, c, d, s)
            ),
            [call("C", 64, 64, 3, 1) + " = 4,224", "option C", "every block"],
            [r"\b2 blocks\b"],
        ),
        (
            lambda o, i, c, d, s: (
                0 if (o, s) == ("B", 1) else my_shortcut_parameters(o, i, c, d, s)
            ),
            [call("B", 64, 128, 2, 1) + " = 0", "first block"],
            ["same size"],
        ),
        (
            lambda o, i, c, d, s: (
                my_shortcut_parameters(o, i, c, d, s) - (projection(i, c) if o == "C" else 0)
            ),
            [call("C", 64, 64, 3, 1) + " = 8,448", "option C", "first block"],
            [],
        ),
        (lambda o, i, c, d, s: 1.5, [r"1\.5", "whole number"], [r"//"]),
        (lambda o, i, c, d, s: float("inf"), [r"\binf\b", "whole number"], []),
        (lambda o, i, c, d, s: True, [r"\bTrue\b", "whole number"], []),
        (lambda o, i, c: 0, ["TypeError"], []),
    ],
)
def test_shortcut_parameter_mistakes_get_their_hint(formula, says, hint) -> None:
    fails(ch02.check_shortcut_parameters, formula, says=says, hint=hint)
