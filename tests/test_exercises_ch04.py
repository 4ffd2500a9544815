"""Chapter 4's checks against right and wrong learner code: stages and whole networks.

The oracles: torchvision's ResNets (an independent implementation), torchvision's published
parameter counts, Table 1 of He et al. (2016), the CIFAR ResNet-20's published count
(Idelbayev 2018), and the paper's rule that BatchNorm follows every convolution (Sec. 3.4),
which makes a projection `Sequential(conv1x1, BatchNorm2d)` as torchvision builds it. The
stages below are written by hand, each with one deliberate difference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from support.exercise_helpers import (
    MyBasicBlock,
    MyBottleneck,
    StrideOnSecondConv,
    conv,
    fails,
    my_shortcut,
    one_sided,
    passes,
)
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch04

# --- stages ------------------------------------------------------------------------------------


def my_make_stage(block, in_channels, channels, depth, stride, *, mistake=None):
    out_channels = channels * block.expansion
    blocks = []
    for i in range(depth - (mistake == "one block short")):
        s = stride if i == 0 or mistake == "every block strides" else 1
        changes = s != 1 or in_channels != out_channels
        if mistake == "projection only when striding":
            changes = s != 1
        downsample = None
        if changes or mistake == "projection everywhere":
            downsample = nn.Sequential(
                conv(in_channels, out_channels, 1, s), nn.BatchNorm2d(out_channels)
            )
        blocks.append(block(in_channels, channels, s, downsample))
        in_channels = channels if mistake == "width without expansion" else out_channels
    return nn.Sequential(*blocks)


def stage_with(mistake):
    return lambda *args: my_make_stage(*args, mistake=mistake)


def test_stage_accepts_right_stages(capsys):
    passes(ch04.check_stage, rt.make_stage, capsys=capsys)
    out = passes(ch04.check_stage, my_make_stage, capsys=capsys)
    assert "outputs equal" in out


@pytest.mark.parametrize(
    ("mistake", "says", "hint"),
    [
        ("one block short", [r"\b1 block\b", r"depth=2", r"\b2\b"], [r"Table 1"]),
        ("every block strides", [r"\[1\]", r"downsamples by 2", "first block"], [r"stride 1"]),
        ("projection only when striding",
         [r"no projection", r"\[0\]", r"\b64\b.*\b256\b"], [r"1×1 convolution"]),
        ("width without expansion",
         [r"\[1\]", r"\b64 input channels", r"\b256\b", "input width"], [r"\b256\b"]),
        ("projection everywhere", ["projection", r"shape does not change"], [r"identity"]),
    ],
)  # fmt: skip
def test_stage_mistakes_get_their_hint(mistake, says, hint):
    fails(ch04.check_stage, stage_with(mistake), says=says, hint=hint)


# --- a projection ends in BatchNorm ------------------------------------------------------------


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


def test_a_projection_with_batchnorm_passes(capsys) -> None:
    out = passes(ch04.check_stage, stage_builder(with_bn), capsys=capsys)
    assert "outputs equal" in out


@pytest.mark.parametrize("projection", [conv_only, conv_in_sequential])
def test_a_projection_without_batchnorm_fails(projection) -> None:
    # the first stage to project is (BasicBlock, 64, 128, 2, 2): 2 BN for 3 convolutions
    fails(
        ch04.check_stage,
        stage_builder(projection),
        says=[r"\[0\]\.downsample(\.0)?\b", "without BatchNorm", r"\b2 BatchNorm", r"\b3 conv"],
        hint=[r"downsample\.0 and downsample\.1"],  # where torchvision's weights load
    )


def test_an_unnamed_projection_is_judged_by_its_batchnorm_count() -> None:
    x = torch.randn(2, 64, 8, 8)
    assert BlockWithOwnProjection(64, 128, 2)(x).shape == (2, 128, 4, 4)
    stage = nn.Sequential(BlockWithOwnProjection(64, 128, 2), BlockWithOwnProjection(128, 128))
    reference = rt.make_stage(rt.BasicBlock, 64, 128, 2, 2, "B")
    ch04._check_stage_structure("stage", stage, reference, "depth=2 asks for")  # passes
    no_norm = nn.Sequential(
        BlockWithOwnProjection(64, 128, 2, norm=False), BlockWithOwnProjection(128, 128)
    )
    fails(
        ch04._check_stage_structure,
        "stage",
        no_norm,
        reference,
        "depth=2 asks for",
        says=[r"stage\[0\]\.extra\b", "without BatchNorm"],
    )


def test_a_whole_resnet_with_a_bare_projection_fails() -> None:
    model = rt.resnet18()
    model.layer3[0].downsample = model.layer3[0].downsample[0]  # drop the BatchNorm
    fails(ch04.check_resnet, model, 18, says=[r"layer3\[0\]\.downsample\b", "without BatchNorm"])


# --- whole ImageNet networks -------------------------------------------------------------------


class MyResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, *, pool=(3, 2, 1), stage=my_make_stage,
                 stem_bias=False):  # fmt: skip
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=stem_bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(*pool)
        in_channels = 64
        for i, (depth, channels) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", stage(block, in_channels, channels, depth, stride))
            in_channels = channels * block.expansion
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class NoStemReLU(MyResNet):
    def forward(self, x):
        x = self.maxpool(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(x.mean(dim=(2, 3)))


def on_meta(build, *args, **kwargs):
    with torch.device("meta"):  # structure only: these fail before any forward pass
        return build(*args, **kwargs)


def test_resnet_accepts_right_models(capsys):
    out = passes(ch04.check_resnet, MyResNet(MyBasicBlock, [2, 2, 2, 2]), 18, capsys=capsys)
    assert "11,689,512 parameters" in out  # torchvision's documentation
    assert "outputs equal" in out
    passes(ch04.check_resnet, torchvision.models.resnet18(), 18, capsys=capsys)
    model = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1])
    out = passes(ch04.check_resnet, model, layers=[1, 1, 1, 1], block=MyBottleneck, capsys=capsys)
    assert out.startswith("✓ ResNet-14")  # 2 + 3 · 4 layers
    assert "outputs equal" in out


def test_resnet34_counts_its_parameters(capsys):
    out = passes(ch04.check_resnet, MyResNet(MyBasicBlock, [3, 4, 6, 3]), 34, capsys=capsys)
    assert "21,797,672 parameters" in out  # torchvision's documentation


def test_resnet_leaves_the_model_as_it_was(capsys):
    model = MyResNet(MyBasicBlock, [1, 1, 1, 1], 10).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ch04.check_resnet(model, layers=[1, 1, 1, 1], block=rt.BasicBlock, num_classes=10)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    capsys.readouterr()


RESNET_MISTAKES = {
    "ResNet-34 with 1 block in layer2": (
        lambda: MyResNet(MyBasicBlock, [3, 1, 6, 3]),
        34,
        [r"\blayer2\b", r"\b1 block\b", r"\b4\b", r"\[3, 4, 6, 3\]"],  # Table 1
        [],
    ),
    "conv bias before BN": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], stem_bias=True),
        18,
        [r"\bconv1\b", "bias"],
        [r"bias=False"],
    ),
    "2×2 stem max-pool": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], pool=(2, 2, 0)),
        18,
        ["max-pool", r"2×2", r"3×3", "shapes"],
        [r"kernel_size=3, stride=2, padding=1"],
    ),
    "stride on the second conv": (
        lambda: MyResNet(StrideOnSecondConv, [2, 2, 2, 2]),
        18,
        [r"layer2\[0\]", r"\bconv2\b", r"first 3×3|conv1"],
        [],
    ),
    "no projection 64 → 256": (
        lambda: MyResNet(
            MyBottleneck, [3, 4, 6, 3], stage=stage_with("projection only when striding")
        ),
        50,
        [r"layer1\[0\]", r"no projection", r"\b64\b.*\b256\b"],
        [r"64 → 256"],
    ),
    "stage width without expansion": (
        lambda: MyResNet(MyBottleneck, [3, 4, 6, 3], stage=stage_with("width without expansion")),
        50,
        [r"layer1\[1\]", r"\b64 input channels", "input width"],
        [r"\b256\b"],
    ),
    "fc for 10 classes": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], 10),
        18,
        [r"\bfc\b", r"512 → 10\b", r"512 → 1000\b"],
        [],
    ),
}


@pytest.mark.parametrize("mistake", list(RESNET_MISTAKES))
def test_resnet_mistakes_get_their_hint(mistake):
    build, depth, says, hint = RESNET_MISTAKES[mistake]
    fails(ch04.check_resnet, on_meta(build), depth, says=says, hint=hint)


def test_resnet_with_a_wrong_forward_is_told_outputs_differ():
    fails(
        ch04.check_resnet,
        NoStemReLU(MyBasicBlock, [1, 1, 1, 1]),
        layers=[1, 1, 1, 1],
        block=rt.BasicBlock,
        says=["outputs differ"],
        hint=[r"conv1 → bn1 → relu → maxpool"],
    )


def test_resnet_rejects_unclear_arguments():
    with pytest.raises(ValueError, match=r"depth\b.*\b19\b"):
        ch04.check_resnet(nn.Linear(1, 1), 19)
    with pytest.raises(ValueError, match="not both"):
        ch04.check_resnet(nn.Linear(1, 1), 18, layers=[2, 2, 2, 2])


# --- whole CIFAR networks (Chapter 4's exercise 3, Chapter 2's exercise 3) ----------------------


class LambdaShortcut(nn.Module):
    def __init__(self, out_channels, stride, pad=my_shortcut):
        super().__init__()
        self.out_channels, self.stride, self.pad = out_channels, stride, pad

    def forward(self, x):
        return self.pad(x, self.out_channels, self.stride)


class MyCifarResNet(nn.Module):
    def __init__(self, n, *, pad=my_shortcut, projections=False):
        super().__init__()
        self.conv1 = conv(3, 16, 3)
        self.bn1 = nn.BatchNorm2d(16)
        in_channels = 16
        for i, channels in enumerate((16, 32, 64), start=1):
            blocks = []
            for j in range(n):
                stride = 2 if i > 1 and j == 0 else 1
                shortcut = None
                if in_channels != channels and projections:
                    shortcut = nn.Sequential(conv(in_channels, channels, 1, stride),
                                             nn.BatchNorm2d(channels))  # fmt: skip
                elif in_channels != channels:
                    shortcut = LambdaShortcut(channels, stride, pad)
                blocks.append(MyBasicBlock(in_channels, channels, stride, shortcut))
                in_channels = channels
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.fc(x.mean(dim=(2, 3)))


def test_cifar_resnet(capsys):
    out = passes(ch04.check_cifar_resnet, rt.cifar_resnet(20), 20, capsys=capsys)
    assert "269,722 parameters" in out  # Idelbayev (2018)
    out = passes(ch04.check_cifar_resnet, MyCifarResNet(3), 20, capsys=capsys)
    assert "outputs equal" in out
    fails(
        ch04.check_cifar_resnet,
        MyCifarResNet(3, projections=True),
        20,
        says=[r"layer2\[0\]", "projection"],
        hint=["option A"],
    )
    fails(
        ch04.check_cifar_resnet,
        MyCifarResNet(3, pad=one_sided),
        20,
        says=["outputs differ"],
        hint=["check_shortcut"],
    )
    fails(
        ch04.check_cifar_resnet,
        MyCifarResNet(2),
        20,
        says=[r"\blayer1\b", r"\b2 blocks\b", r"\b3\b"],
    )
    fails(ch04.check_cifar_resnet, rt.resnet18(), 20, says=[r"\blayer4\b"], hint=[r"\b3\b"])
