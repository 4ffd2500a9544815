"""What the exercise tests of several chapters share (`tests/test_exercises*.py`).

`fails` and `passes` read a check's report by its meaning: a failure is a problem, then
"Hint: " and a hint, and the test names the facts each part must state (the layer, the wrong
value, the expected one) as a few regular expressions rather than whole sentences. The
"learner" code below is written independently of the package, the way a reader would write it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn


def fails(
    check: Callable[..., None],
    *args,
    says: Sequence[str],
    hint: Sequence[str] = (),
    **kwargs,
) -> str:
    """`check(*args, **kwargs)` raises AssertionError: a problem in which every pattern of `says`
    is found, then "\\nHint: " and a hint in which every pattern of `hint` is found (regular
    expressions, case-insensitive). Returns the whole message."""
    assert says, "name at least one fact that the problem must state"
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    message = str(info.value)
    problem, separator, advice = message.partition("\nHint: ")
    assert separator and problem.strip() and advice.strip(), message
    for pattern in says:
        assert re.search(pattern, problem, re.IGNORECASE), f"{pattern!r} not in: {problem}"
    for pattern in hint:
        assert re.search(pattern, advice, re.IGNORECASE), f"{pattern!r} not in: {advice}"
    return message


def passes(check: Callable[..., None], *args, capsys, **kwargs) -> str:
    """`check` prints one line, starting with "✓ ", and returns it."""
    check(*args, **kwargs)
    out = capsys.readouterr().out
    assert out.startswith("✓ ") and out.count("\n") == 1, out
    return out


# --- a learner's blocks (Chapters 1, 3 and 4) ----------------------------------------------------


def conv(in_channels, out_channels, kernel, stride=1, bias=False):
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=bias)


class MyBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv(in_channels, channels, 3, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv(channels, channels, 3)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def residual(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def identity(self, x):
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x):
        return F.relu(self.residual(x) + self.identity(x))


class StrideOnSecondConv(MyBasicBlock):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv1 = conv(in_channels, channels, 3, 1)
        self.conv2 = conv(channels, channels, 3, stride)


class MyBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv(in_channels, channels, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv(channels, channels, 3, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = conv(channels, out_channels, 1)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


# --- a learner's option-A shortcut (Chapters 2 and 4) --------------------------------------------


def my_shortcut(x, out_channels, stride):
    x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    zeros = lambda n: x.new_zeros(x.shape[0], n, *x.shape[2:])
    return torch.cat([zeros(extra // 2), x, zeros(extra - extra // 2)], dim=1)


def one_sided(x, out_channels, stride):
    """Wrong: every zero channel after the input's."""
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, out_channels - x.shape[1]))
