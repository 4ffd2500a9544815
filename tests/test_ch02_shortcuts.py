"""Chapter 2's addition to the exercise checks: a projection shortcut must end in BatchNorm.

The oracle is the paper's block (He et al. 2016, Sec. 3.4: BN after every convolution) as
torchvision builds it, `downsample = Sequential(conv1x1, BatchNorm2d)`; the stages below are
written by hand, each with one deliberate difference.
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
