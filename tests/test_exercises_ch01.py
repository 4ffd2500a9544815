"""Chapter 1's checks against right and wrong learner code: each mistake gets its own hint.

The wrong versions are the mistakes that circulate in public ResNet write-ups. The oracles:
torchvision's BasicBlock (an independent implementation), the parameter counts by hand, and
the CIFAR ResNet-20's published count (Idelbayev 2018).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from support.exercise_helpers import MyBasicBlock, StrideOnSecondConv, conv, fails, passes
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch01

# --- exercise 1: the residual connection ---------------------------------------------------------


class MyResidual(nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x) + x


def residual_function(x, f):
    return f(x) + x


class ReturnsFOnly(MyResidual):
    def forward(self, x):
        return self.f(x)


class AppliesFTwice(MyResidual):
    def forward(self, x):
        return self.f(self.f(x)) + x


class AddsInPlace(MyResidual):
    def forward(self, x):
        x += self.f(x)
        return x


class DetachesShortcut(MyResidual):
    def forward(self, x):
        return self.f(x) + x.detach()


def test_residual_accepts_classes_and_functions(capsys):
    out = passes(ch01.check_residual, MyResidual, capsys=capsys)
    assert out.startswith("✓ MyResidual:") and "f(x) + x" in out
    passes(ch01.check_residual, residual_function, capsys=capsys)


@pytest.mark.parametrize(
    ("residual", "says", "hint"),
    [
        (ReturnsFOnly, [r"f\(x\) only"], [r"f\(x\) \+ x"]),
        (AppliesFTwice, [r"calls f 2 times", "twice"], [r"once", r"F\(x\) \+ x"]),
        (AddsInPlace, [r"\bx\b", "in place"], [r"f\(x\) \+ x"]),
        (DetachesShortcut, ["gradient", r"\b1\b"], [r"detach"]),
        (lambda x, f: x, [r"calls f 0 times"], [r"f\(x\) \+ x"]),
    ],
)
def test_residual_mistakes_get_their_hint(residual, says, hint):
    fails(ch01.check_residual, residual, says=says, hint=hint)


# --- exercise 2: the basic block ---------------------------------------------------------------


class MyBlockOwnShortcut(nn.Module):
    """Also right: other names, three arguments, builds its own projection."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.branch = nn.Sequential(
            conv(in_channels, channels, 3, stride),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            conv(channels, channels, 3),
            nn.BatchNorm2d(channels),
        )
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, channels, 1, stride), nn.BatchNorm2d(channels)
            )

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))


class ConvBias(MyBasicBlock):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv1 = conv(in_channels, channels, 3, stride, bias=True)


class NoReluAfterAddition(MyBasicBlock):
    def forward(self, x):
        return self.residual(x) + self.identity(x)


class ReluOnlyInsideF(MyBasicBlock):
    def forward(self, x):
        return F.relu(self.residual(x)) + self.identity(x)


class NoShortcut(MyBasicBlock):
    def forward(self, x):
        return F.relu(self.residual(x))


class AddsIntoInput(MyBasicBlock):
    def forward(self, x):
        out = self.residual(x)
        if self.downsample is not None:
            return F.relu(out + self.downsample(x))
        x += out
        return F.relu(x)


class ReluBeforeBatchNorm(MyBasicBlock):
    def residual(self, x):
        return self.bn2(self.conv2(self.bn1(F.relu(self.conv1(x)))))


class NoPadding(MyBasicBlock):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=False)


class WrongExpansion(MyBasicBlock):
    expansion = 4


def test_basic_block_accepts_right_blocks(capsys):
    out = passes(ch01.check_basic_block, rt.BasicBlock, capsys=capsys)
    assert "73,984" in out  # 2 · 64·64·9 + 2 · 2 · 64, by hand
    assert "230,144" in out  # 64·128·9 + 128·128·9 + 2 · 2 · 128 + 64·128 + 2 · 128
    out = passes(ch01.check_basic_block, MyBasicBlock, capsys=capsys)
    assert "outputs equal" in out
    out = passes(ch01.check_basic_block, MyBlockOwnShortcut, capsys=capsys)
    assert "outputs equal" in out  # weights copied layer by layer in creation order
    out = passes(ch01.check_basic_block, torchvision.models.resnet.BasicBlock, capsys=capsys)
    assert "outputs equal" in out


@pytest.mark.parametrize(
    ("block", "says", "hint"),
    [
        (ConvBias, [r"\bconv1\b", "bias"], [r"bias=False"]),
        (NoReluAfterAddition, [r"no ReLU after the addition"], [r"relu\(out \+ shortcut\(x\)\)"]),
        (ReluOnlyInsideF, ["ReLU", r"inside F"], [r"after the addition"]),
        (StrideOnSecondConv, [r"\bconv2\b", "stride", r"first 3×3|conv1"], [r"first 3×3"]),
        (NoShortcut, ["shortcut", r"not added"], [r"shortcut\(x\)"]),
        (AddsIntoInput, [r"\bx\b", "in place"], [r"\+="]),
        (ReluBeforeBatchNorm, [r"outputs differ", r"rt\.BasicBlock"], [r"conv1 → bn1 → relu"]),
        (NoPadding, [r"\bconv2\b", "padding"], [r"padding=1"]),
        (WrongExpansion, ["expansion", r"\b4\b", r"\b1\b"], [r"expansion = 1"]),
    ],
)
def test_basic_block_mistakes_get_their_hint(block, says, hint):
    message = fails(ch01.check_basic_block, block, says=says, hint=hint)
    assert block.__name__ in message.partition("\nHint: ")[0]  # the class is named


# --- exercise 3: a fair pair -------------------------------------------------------------------


def test_plain_vs_residual(capsys):
    plain, residual = rt.cifar_plain(20), rt.cifar_resnet(20)
    out = passes(ch01.check_plain_vs_residual, plain, residual, capsys=capsys)
    assert "269,722" in out  # ResNet-20 with option A (Idelbayev 2018), and so plain-20
    assert "19 convolutions" in out  # 1 + 3 stages × 3 blocks × 2
    assert "adds 9" in out  # 3 stages × 3 blocks
    fails(
        ch01.check_plain_vs_residual,
        residual,
        residual,
        says=["plain net", r"\b9\b"],
        hint=["without shortcuts"],
    )
    fails(ch01.check_plain_vs_residual, plain, plain, says=["residual net", r"\bno\b"])
    fails(
        ch01.check_plain_vs_residual,
        plain,
        rt.cifar_resnet(20, shortcut="B"),
        says=["parameters", "269,722"],
        hint=["parameter-free", r"Sec\. 3\.3"],
    )
    fails(
        ch01.check_plain_vs_residual,
        rt.cifar_plain(14),
        rt.cifar_resnet(20),
        says=["parameters", "269,722"],
    )


def test_plain_vs_residual_leaves_the_models_as_they_were(capsys):
    plain, residual = rt.cifar_plain(8).train(), rt.cifar_resnet(8).eval()
    ch01.check_plain_vs_residual(plain, residual)
    assert plain.training and not residual.training
    capsys.readouterr()


def test_basic_block_keeps_the_random_state(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ch01.check_basic_block(MyBasicBlock)
    ch01.check_residual(MyResidual)
    assert torch.equal(torch.rand(3), expected)
    capsys.readouterr()
