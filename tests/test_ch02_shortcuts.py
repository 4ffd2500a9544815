"""Chapter 2's additions to the exercise checks.

A projection shortcut must end in BatchNorm: the oracle is the paper's block (He et al. 2016,
Sec. 3.4: BN after every convolution) as torchvision builds it, `downsample =
Sequential(conv1x1, BatchNorm2d)`; the stages below are written by hand, each with one
deliberate difference. The parameters on a stage's shortcuts: the oracle is the count by hand,
C_in · C_out + 2 · C_out per projection, checked against numbers worked out on paper.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial import exercises as ex


def with_bn(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Sequential(
        rt.conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
    )


def conv_only(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return rt.conv1x1(in_channels, out_channels, stride)


def conv_in_sequential(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    return nn.Sequential(rt.conv1x1(in_channels, out_channels, stride))


def stage_builder(projection):
    def make_stage(block, in_channels, channels, depth, stride):
        out_channels = channels * block.expansion
        blocks = []
        for i in range(depth):
            s = stride if i == 0 else 1
            changes = s != 1 or in_channels != out_channels
            downsample = projection(in_channels, out_channels, s) if changes else None
            blocks.append(block(in_channels, channels, s, downsample))
            in_channels = out_channels
        return nn.Sequential(*blocks)

    return make_stage


class BlockWithOwnProjection(nn.Module):
    """A basic block that builds its projection itself, under names that say nothing."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None, *, norm=True):
        super().__init__()
        self.conv1 = rt.conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = rt.conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.extra = None
        if stride != 1 or in_channels != channels:
            self.extra = rt.conv1x1(in_channels, channels, stride)
            self.bn3 = nn.BatchNorm2d(channels) if norm else nn.Identity()

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.extra is None else self.bn3(self.extra(x))
        return self.relu(out + shortcut)


def test_a_projection_with_batchnorm_passes(capsys: pytest.CaptureFixture[str]) -> None:
    ex.check_stage(stage_builder(with_bn))
    assert "outputs equal rt.make_stage's" in capsys.readouterr().out


@pytest.mark.parametrize("projection", [conv_only, conv_in_sequential])
def test_a_projection_without_batchnorm_fails(projection) -> None:
    message = r"\[0\]\.downsample(\.0)? is a projection without BatchNorm: the block has 2 Batch"
    with pytest.raises(AssertionError, match=message + "Norm layers for 3 convolutions"):
        ex.check_stage(stage_builder(projection))


def test_the_hint_names_the_layers_that_torchvision_loads() -> None:
    with pytest.raises(AssertionError, match=r"Hint: .*downsample\.0 and downsample\.1"):
        ex.check_stage(stage_builder(conv_only))


def test_an_unnamed_projection_is_judged_by_its_batchnorm_count() -> None:
    x = torch.randn(2, 64, 8, 8)
    assert BlockWithOwnProjection(64, 128, 2)(x).shape == (2, 128, 4, 4)
    stage = nn.Sequential(BlockWithOwnProjection(64, 128, 2), BlockWithOwnProjection(128, 128))
    reference = rt.make_stage(rt.BasicBlock, 64, 128, 2, 2, "B")
    ex._check_stage_structure("stage", stage, reference, "depth=2 asks for")  # passes
    no_norm = nn.Sequential(
        BlockWithOwnProjection(64, 128, 2, norm=False), BlockWithOwnProjection(128, 128)
    )
    with pytest.raises(AssertionError, match=r"stage\[0\]\.extra is a projection without"):
        ex._check_stage_structure("stage", no_norm, reference, "depth=2 asks for")


def test_a_whole_resnet_with_a_bare_projection_fails() -> None:
    model = rt.resnet18()
    model.layer3[0].downsample = model.layer3[0].downsample[0]  # drop the BatchNorm
    with pytest.raises(AssertionError, match=r"layer3\[0\]\.downsample is a projection without"):
        ex.check_resnet(model, 18)


def test_option_a_blocks_are_not_affected(capsys: pytest.CaptureFixture[str]) -> None:
    ex.check_cifar_resnet(rt.cifar_resnet(20), 20)  # no projection, nothing to normalise
    assert capsys.readouterr().out.startswith("✓ CIFAR ResNet-20")


# --- the parameters on a stage's shortcuts (predict, then check) ---------------------------------


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


def test_shortcut_parameters_accepts_the_hand_count(capsys: pytest.CaptureFixture[str]) -> None:
    ex.check_shortcut_parameters(my_shortcut_parameters)
    assert capsys.readouterr().out.startswith("✓ shortcut parameters: 7 stages")
    ex.check_shortcut_parameters(lambda *args: float(my_shortcut_parameters(*args)))  # 576.0


@pytest.mark.parametrize(
    ("formula", "match"),
    [
        (lambda *args: 0, r"\('B', 16, 32, 3, 2\) = 0: the first block changes the shape"),
        (lambda o, i, c, d, s: 1, r"\('A', 16, 32, 3, 2\) = 1: option A has no parameters"),
        (
            lambda o, i, c, d, s: i * c if o == "B" else my_shortcut_parameters(o, i, c, d, s),
            r"= 512: BatchNorm's parameters are missing(.|\n)*2 · C_out",
        ),
        (
            lambda o, i, c, d, s: (
                my_shortcut_parameters(o, i, c, d, s) + (2 * c if o == "B" else 0)
            ),
            r"= 640: you counted BatchNorm's running mean and variance",
        ),
        (
            lambda o, i, c, d, s: my_shortcut_parameters("C" if o == "B" else o, i, c, d, s),
            r"\('B', 16, 32, 3, 2\) = 2,752: option B projects only where the shape changes",
        ),
        (
            lambda o, i, c, d, s: 0 if s == 1 else my_shortcut_parameters(o, i, c, d, s),
            r"\('C', 64, 64, 3, 1\) = 0, but the shortcuts of .* hold 12,672 parameters",
        ),
        (
            lambda o, i, c, d, s: (
                projection(i, c) if o == "C" else my_shortcut_parameters(o, i, c, d, s)
            ),
            r"\('C', 64, 64, 3, 1\) = 4,224: option C projects every block, not only the first",
        ),
        (
            lambda o, i, c, d, s: (
                0 if (o, s) == ("B", 1) else my_shortcut_parameters(o, i, c, d, s)
            ),
            r"\('B', 64, 128, 2, 1\) = 0: the first block changes the shape(.|\n)*at the same size",
        ),
        (
            lambda o, i, c, d, s: (
                my_shortcut_parameters(o, i, c, d, s) - (projection(i, c) if o == "C" else 0)
            ),
            r"\('C', 64, 64, 3, 1\) = 8,448: option C projects the first block too",
        ),
        (lambda o, i, c, d, s: 1.5, r"returned 1.5, not a whole number"),
        (lambda o, i, c: 0, r"raised TypeError"),
    ],
)
def test_shortcut_parameter_mistakes_get_their_hint(formula, match) -> None:
    with pytest.raises(AssertionError, match=match) as info:
        ex.check_shortcut_parameters(formula)
    assert "\nHint: " in str(info.value)
