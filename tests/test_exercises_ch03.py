"""Chapter 3's checks against right and wrong learner code: the bottleneck and what it costs.

The oracles: torchvision's Bottleneck (an independent implementation), and the multiply-adds of
a bottleneck counted by hand, k² C_in C_out H_out W_out per convolution, which gives the
paper's 256-d block 17 · 64² · 56².
"""

from __future__ import annotations

import pytest
import torch.nn.functional as F
import torchvision
from support.exercise_helpers import MyBasicBlock, MyBottleneck, conv, fails, passes
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch03

# --- exercise 1: the bottleneck ----------------------------------------------------------------


class ExpansionTwice(MyBottleneck):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv3 = conv(channels, channels * 16, 1)
        self.bn3 = nn.BatchNorm2d(channels * 16)


class ExpansionMissing(MyBottleneck):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv3 = conv(channels, channels, 1)
        self.bn3 = nn.BatchNorm2d(channels)


class StrideOnFirst1x1(MyBottleneck):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv1 = conv(in_channels, channels, 1, stride)
        self.conv2 = conv(channels, channels, 3)


class StrideTwice(MyBottleneck):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv1 = conv(in_channels, channels, 1, stride)


class BottleneckReluInsideF(MyBottleneck):
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.relu(self.bn3(self.conv3(out)))
        return out + (x if self.downsample is None else self.downsample(x))


def test_bottleneck_accepts_right_blocks(capsys):
    out = passes(ch03.check_bottleneck, rt.Bottleneck, capsys=capsys)
    assert "70,400" in out  # 256·64 + 9·64·64 + 64·256 + 2 · (64 + 64 + 256), by hand
    assert "64 → 256" in out
    out = passes(ch03.check_bottleneck, MyBottleneck, capsys=capsys)
    assert "outputs equal" in out
    out = passes(ch03.check_bottleneck, torchvision.models.resnet.Bottleneck, capsys=capsys)
    assert "outputs equal" in out


@pytest.mark.parametrize(
    ("block", "says", "hint"),
    [
        # built first as (256, 64, 1): 64 · 4 = 256 channels expected
        (ExpansionTwice, [r"\b1024\b", r"\b256\b", "expansion", "twice"], [r"\b256\b"]),
        (ExpansionMissing, [r"\b64\b", r"\b256\b", "expansion", "not applied"], [r"\b4\b"]),
        (StrideOnFirst1x1, ["stride", r"first 1×1", r"\bconv1\b"], [r"stride_on='1x1'"]),
        (StrideTwice, [r"by 4\b", r"\b2\b", r"conv1, conv2"], [r"only one"]),
        (BottleneckReluInsideF, ["ReLU", r"inside F"], [r"after the addition"]),
        (MyBasicBlock, ["expansion", r"\b1\b", r"\b4\b"], [r"expansion = 4"]),
    ],
)
def test_bottleneck_mistakes_get_their_hint(block, says, hint):
    fails(ch03.check_bottleneck, block, says=says, hint=hint)


# --- exercise 2: the multiply-adds of a bottleneck ---------------------------------------------


def my_bottleneck_macs(in_channels, channels, size, stride, stride_on):
    """k² C_in C_out H_out W_out for each convolution, counted by hand (Eq. 1 of chapter 3)."""
    out_size, out_channels = size // stride, 4 * channels
    first = in_channels * channels * (size if stride_on == "3x3" else out_size) ** 2
    rest = (9 * channels**2 + channels * out_channels) * out_size**2
    changes_shape = stride != 1 or in_channels != out_channels
    return first + rest + (in_channels * out_channels * out_size**2 if changes_shape else 0)


def test_bottleneck_macs_accepts_the_hand_count(capsys):
    assert my_bottleneck_macs(256, 64, 56, 1, "3x3") == 17 * 64**2 * 56**2  # the paper's block
    out = passes(ch03.check_bottleneck_macs, my_bottleneck_macs, capsys=capsys)
    assert "5 blocks" in out
    as_float = lambda *args: float(my_bottleneck_macs(*args))  # 2.18e8 is still a count
    passes(ch03.check_bottleneck_macs, as_float, capsys=capsys)


def _without_projection(i, c, n, s, on):
    changes_shape = s != 1 or i != 4 * c
    return my_bottleneck_macs(i, c, n, s, on) - (i * 4 * c * (n // s) ** 2 if changes_shape else 0)


@pytest.mark.parametrize(
    ("macs", "says", "hint"),
    [
        (lambda *args: 2 * my_bottleneck_macs(*args), ["FLOPs"], [r"one multiply-add"]),
        (_without_projection, [r"\(64, 64, ", "projection", "missing"], [r"1×1"]),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, on) + i * 4 * c * (n // s) ** 2,
            [r"\(256, 64, ", "projection", "identity"],  # a projection on every block
            [r"only where the shape changes"],
        ),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, "1x1"),
            [r"stride_on='3x3'\)", "resolution"],
            [r"56×56"],
        ),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, "3x3"),
            [r"stride_on='1x1'\)", "resolution"],
            [r"28×28"],
        ),
        (lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, on) / 3, ["whole number"], []),
        (lambda *args: 0, [r"= 0\b", "218,365,952"], []),  # 17 · 64² · 56²
        (lambda i, c, n, s: 0, ["TypeError"], []),
    ],
)
def test_bottleneck_macs_mistakes_get_their_hint(macs, says, hint):
    fails(ch03.check_bottleneck_macs, macs, says=says, hint=hint)
