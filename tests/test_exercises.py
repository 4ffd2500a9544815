"""rt.exercises against right and wrong learner code: each mistake gets its own hint.

The "learner" code below is written independently of the package, the way a reader would write
it; the wrong versions are the mistakes that circulate in public ResNet write-ups.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial import exercises as ex


def fails(check, *args, match: str, **kwargs) -> str:
    """The check raises AssertionError whose message matches and ends with a hint."""
    with pytest.raises(AssertionError, match=match) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert "\nHint: " in message, message
    return message


def passes(check, *args, capsys, **kwargs) -> str:
    check(*args, **kwargs)
    out = capsys.readouterr().out
    assert out.startswith("✓ ") and out.count("\n") == 1, out
    return out


# --- a learner's blocks ------------------------------------------------------------------------


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


class MyBlockOwnShortcut(nn.Module):
    """Also right: other names, three arguments, builds its own projection."""

    expansion = 1

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.branch = nn.Sequential(
            conv(in_channels, channels, 3, stride), nn.BatchNorm2d(channels), nn.ReLU(),
            conv(channels, channels, 3), nn.BatchNorm2d(channels),
        )  # fmt: skip
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


class StrideOnSecondConv(MyBasicBlock):
    def __init__(self, in_channels, channels, stride=1, downsample=None):
        super().__init__(in_channels, channels, stride, downsample)
        self.conv1 = conv(in_channels, channels, 3, 1)
        self.conv2 = conv(channels, channels, 3, stride)


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
    out = passes(ex.check_basic_block, rt.BasicBlock, capsys=capsys)
    assert "ReLU after the addition" in out and "outputs equal rt.BasicBlock's" in out
    assert "73,984" in out  # 2 · 64·64·9 + 2 · 2 · 64, by hand
    out = passes(ex.check_basic_block, MyBasicBlock, capsys=capsys)
    assert "outputs equal" in out
    out = passes(ex.check_basic_block, MyBlockOwnShortcut, capsys=capsys)
    assert "outputs equal" in out  # weights copied layer by layer in creation order
    passes(ex.check_basic_block, torchvision.models.resnet.BasicBlock, capsys=capsys)


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (ConvBias, r"conv1 has a bias(.|\n)*needs no bias: BN's β replaces it"),
        (NoReluAfterAddition, "there is no ReLU after the addition"),
        (ReluOnlyInsideF, r"the last ReLU sits only inside F(.|\n)*move the last ReLU after"),
        (StrideOnSecondConv, "the stride sits on conv2, expected on the first 3×3"),
        (NoShortcut, "the shortcut is not added"),
        (AddsIntoInput, "changed its input x in place"),
        (ReluBeforeBatchNorm, "outputs differ from rt.BasicBlock's with the same weights"),
        (NoPadding, "padding"),
        (WrongExpansion, "expansion is 4, expected 1"),
    ],
)
def test_basic_block_mistakes_get_their_hint(block, match):
    fails(ex.check_basic_block, block, match=match)


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
    out = passes(ex.check_bottleneck, rt.Bottleneck, capsys=capsys)
    assert "projection 64 → 256" in out
    passes(ex.check_bottleneck, MyBottleneck, capsys=capsys)
    passes(ex.check_bottleneck, torchvision.models.resnet.Bottleneck, capsys=capsys)


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (ExpansionTwice, "the expansion is applied twice"),
        (ExpansionMissing, "the expansion is not applied"),
        (StrideOnFirst1x1, r"stride sits on the first 1×1(.|\n)*stride_on='1x1'"),
        (StrideTwice, "applied in 2 places"),
        (BottleneckReluInsideF, "the last ReLU sits only inside F"),
        (MyBasicBlock, "expansion is 1, expected 4"),
    ],
)
def test_bottleneck_mistakes_get_their_hint(block, match):
    fails(ex.check_bottleneck, block, match=match)


# --- the multiply-adds of a bottleneck ------------------------------------------------------------


def my_bottleneck_macs(in_channels, channels, size, stride, stride_on):
    """k² C_in C_out H_out W_out for each convolution, counted by hand (Eq. 1 of chapter 3)."""
    out_size, out_channels = size // stride, 4 * channels
    first = in_channels * channels * (size if stride_on == "3x3" else out_size) ** 2
    rest = (9 * channels**2 + channels * out_channels) * out_size**2
    changes_shape = stride != 1 or in_channels != out_channels
    return first + rest + (in_channels * out_channels * out_size**2 if changes_shape else 0)


def test_bottleneck_macs_accepts_the_hand_count(capsys):
    assert my_bottleneck_macs(256, 64, 56, 1, "3x3") == 17 * 64**2 * 56**2  # the paper's block
    out = passes(ex.check_bottleneck_macs, my_bottleneck_macs, capsys=capsys)
    assert "stride on the 3×3 and on the 1×1" in out
    as_float = lambda *args: float(my_bottleneck_macs(*args))  # 2.18e8 is still a count
    passes(ex.check_bottleneck_macs, as_float, capsys=capsys)


def _without_projection(i, c, n, s, on):
    changes_shape = s != 1 or i != 4 * c
    return my_bottleneck_macs(i, c, n, s, on) - (i * 4 * c * (n // s) ** 2 if changes_shape else 0)


@pytest.mark.parametrize(
    ("macs", "match"),
    [
        (lambda *args: 2 * my_bottleneck_macs(*args), "2 operations per multiply-add"),
        (_without_projection, r"\(64, 64, .*the projection shortcut is missing"),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, on) + i * 4 * c * (n // s) ** 2,
            r"\(256, 64, .*counted a projection",  # a projection on every block
        ),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, "1x1"),
            r"stride_on='3x3'\) = .*wrong resolution(.|\n)*the full 56×56 input",
        ),
        (
            lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, "3x3"),
            r"stride_on='1x1'\) = .*wrong resolution(.|\n)*runs on 28×28",
        ),
        (lambda i, c, n, s, on: my_bottleneck_macs(i, c, n, s, on) / 3, "not a whole number"),
        (lambda *args: 0, "rt.count_macs counts 218,365,952"),  # 17 · 64² · 56²
        (lambda i, c, n, s: 0, "raised TypeError"),
    ],
)
def test_bottleneck_macs_mistakes_get_their_hint(macs, match):
    fails(ex.check_bottleneck_macs, macs, match=match)


# --- option A ----------------------------------------------------------------------------------


def my_shortcut(x, out_channels, stride):
    x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    zeros = lambda n: x.new_zeros(x.shape[0], n, *x.shape[2:])
    return torch.cat([zeros(extra // 2), x, zeros(extra - extra // 2)], dim=1)


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


def one_sided(x, out_channels, stride):
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, out_channels - x.shape[1]))


def averaged(x, out_channels, stride):
    extra = out_channels - x.shape[1]
    return F.pad(F.avg_pool2d(x, stride), (0, 0, 0, 0, extra // 2, extra - extra // 2))


def not_subsampled(x, out_channels, stride):
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


def odd_pixels(x, out_channels, stride):
    return my_shortcut(x[:, :, stride - 1 :, stride - 1 :], out_channels, stride)


def test_shortcut_accepts_functions_and_modules(capsys):
    passes(ex.check_shortcut, rt.ZeroPadShortcut, capsys=capsys)
    passes(ex.check_shortcut, MyZeroPad, capsys=capsys)
    out = passes(ex.check_shortcut, my_shortcut, capsys=capsys)
    assert "zeros split evenly" in out


@pytest.mark.parametrize(
    ("shortcut", "match"),
    [
        (one_sided, r"all 16 zero channels after(.|\n)*split evenly before and after"),
        (averaged, r"averages each window(.|\n)*x\[:, :, ::stride, ::stride\]"),
        (not_subsampled, "does not subsample"),
        (odd_pixels, "takes the wrong pixel"),
        (ProjectionShortcut, "option A is parameter-free"),
    ],
)
def test_shortcut_mistakes_get_their_hint(shortcut, match):
    fails(ex.check_shortcut, shortcut, match=match)


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
    passes(ex.check_stage, rt.make_stage, capsys=capsys)
    out = passes(ex.check_stage, my_make_stage, capsys=capsys)
    assert "outputs equal rt.make_stage's" in out


@pytest.mark.parametrize(
    ("mistake", "match"),
    [
        ("one block short", r"has 1 block, depth=2 asks for 2"),
        ("every block strides", r"\[1\] downsamples by 2: only the first block of a stage"),
        ("projection only when striding", r"No projection in .*\[0\], where 64 channels become"),
        ("width without expansion", "the stage's input width is computed wrongly"),
        ("projection everywhere", "projection .* where the shape does not change"),
    ],
)
def test_stage_mistakes_get_their_hint(mistake, match):
    fails(ex.check_stage, stage_with(mistake), match=match)


# --- whole networks ----------------------------------------------------------------------------


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
    out = passes(ex.check_resnet, MyResNet(MyBasicBlock, [2, 2, 2, 2]), 18, capsys=capsys)
    assert "11,689,512 parameters, outputs equal rt's" in out
    passes(ex.check_resnet, torchvision.models.resnet18(), 18, capsys=capsys)
    model = torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1])
    out = passes(ex.check_resnet, model, layers=[1, 1, 1, 1], block=MyBottleneck, capsys=capsys)
    assert out.startswith("✓ ResNet-14 (Bottleneck, layers=[1, 1, 1, 1])")


def test_resnet34_counts_its_parameters(capsys):
    out = passes(ex.check_resnet, MyResNet(MyBasicBlock, [3, 4, 6, 3]), 34, capsys=capsys)
    assert "21,797,672 parameters" in out  # torchvision's documentation


def test_resnet_leaves_the_model_as_it_was(capsys):
    model = MyResNet(MyBasicBlock, [1, 1, 1, 1], 10).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ex.check_resnet(model, layers=[1, 1, 1, 1], block=rt.BasicBlock, num_classes=10)
    assert model.training and all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    capsys.readouterr()


RESNET_MISTAKES = {
    "ResNet-34 with 1 block in layer2": (
        lambda: MyResNet(MyBasicBlock, [3, 1, 6, 3]),
        34,
        r"layer2 has 1 block, Table 1 says 4 \(ResNet-34: \[3, 4, 6, 3\]",
    ),
    "conv bias before BN": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], stem_bias=True),
        18,
        "needs no bias",
    ),
    "2×2 stem max-pool": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], pool=(2, 2, 0)),
        18,
        r"max-pool \(maxpool\) is 2×2, stride 2, padding 0(.|\n)*right shapes at 224×224",
    ),
    "stride on the second conv": (
        lambda: MyResNet(StrideOnSecondConv, [2, 2, 2, 2]),
        18,
        r"layer2\[0\]: the stride sits on conv2, expected on the first 3×3",
    ),
    "no projection 64 → 256": (
        lambda: MyResNet(
            MyBottleneck, [3, 4, 6, 3], stage=stage_with("projection only when striding")
        ),
        50,
        r"No projection in layer1\[0\], where 64 channels become 256",
    ),
    "stage width without expansion": (
        lambda: MyResNet(MyBottleneck, [3, 4, 6, 3], stage=stage_with("width without expansion")),
        50,
        r"layer1\[1\] takes 64 input channels(.|\n)*input width is computed wrongly",
    ),
    "fc for 10 classes": (
        lambda: MyResNet(MyBasicBlock, [2, 2, 2, 2], 10),
        18,
        r"fc is Linear\(512 → 10\)",
    ),
}


@pytest.mark.parametrize("mistake", list(RESNET_MISTAKES))
def test_resnet_mistakes_get_their_hint(mistake):
    build, depth, match = RESNET_MISTAKES[mistake]
    fails(ex.check_resnet, on_meta(build), depth, match=match)


def test_resnet_with_a_wrong_forward_is_told_outputs_differ():
    fails(
        ex.check_resnet,
        NoStemReLU(MyBasicBlock, [1, 1, 1, 1]),
        layers=[1, 1, 1, 1],
        block=rt.BasicBlock,
        match="outputs differ from rt's",
    )


def test_resnet_rejects_unclear_arguments():
    with pytest.raises(ValueError, match="depth must be one of"):
        ex.check_resnet(nn.Linear(1, 1), 19)
    with pytest.raises(ValueError, match="not both"):
        ex.check_resnet(nn.Linear(1, 1), 18, layers=[2, 2, 2, 2])


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
    out = passes(ex.check_cifar_resnet, rt.cifar_resnet(20), 20, capsys=capsys)
    assert "269,722 parameters" in out  # Idelbayev (2018)
    out = passes(ex.check_cifar_resnet, MyCifarResNet(3), 20, capsys=capsys)
    assert "outputs equal rt's" in out
    fails(ex.check_cifar_resnet, MyCifarResNet(3, projections=True), 20,
          match=r"layer2\[0\] has a projection(.|\n)*option A")  # fmt: skip
    fails(ex.check_cifar_resnet, MyCifarResNet(3, pad=one_sided), 20,
          match=r"outputs differ(.|\n)*check_shortcut")  # fmt: skip
    fails(ex.check_cifar_resnet, MyCifarResNet(2), 20, match="layer1 has 2 blocks")
    fails(ex.check_cifar_resnet, rt.resnet18(), 20, match="stage layer4")


# --- chapter 1 ---------------------------------------------------------------------------------


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
    out = passes(ex.check_residual, MyResidual, capsys=capsys)
    assert out.startswith("✓ MyResidual: returns f(x) + x")
    passes(ex.check_residual, residual_function, capsys=capsys)


@pytest.mark.parametrize(
    ("residual", "match"),
    [
        (ReturnsFOnly, r"returned f\(x\) only"),
        (AppliesFTwice, "calls f 2 times per forward pass: f is applied twice"),
        (AddsInPlace, r"changed its input x in place \(an in-place add"),
        (DetachesShortcut, "gradient of sum"),
        (lambda x, f: x, "calls f 0 times"),
    ],
)
def test_residual_mistakes_get_their_hint(residual, match):
    fails(ex.check_residual, residual, match=match)


def test_plain_vs_residual(capsys):
    plain, residual = rt.cifar_plain(20), rt.cifar_resnet(20)
    out = passes(ex.check_plain_vs_residual, plain, residual, capsys=capsys)
    assert "the residual net adds 9" in out  # 3 stages × 3 blocks
    fails(ex.check_plain_vs_residual, residual, residual, match="plain net adds feature maps")
    fails(ex.check_plain_vs_residual, plain, plain, match="residual net adds no feature maps")
    fails(ex.check_plain_vs_residual, plain, rt.cifar_resnet(20, shortcut="B"),
          match=r"parameters(.|\n)*option A")  # fmt: skip
    fails(ex.check_plain_vs_residual, rt.cifar_plain(14), rt.cifar_resnet(20),
          match="parameters")  # fmt: skip


# --- chapter 5 ---------------------------------------------------------------------------------


def paper_lr(step, total_steps=100, base_lr=0.1):
    return base_lr * 0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4))


def test_lr_schedule(capsys):
    out = passes(ex.check_lr_schedule, paper_lr, total_steps=100, capsys=capsys)
    assert out == "✓ lr schedule: 0.1 for steps 0–49, 0.01 for 50–74, 0.001 for 75–99\n"
    odd = lambda s: 0.1 * 0.1 ** ((s >= 0.5 * 101) + (s >= 0.75 * 101))  # drops at 51 and 76
    passes(ex.check_lr_schedule, odd, total_steps=101, capsys=capsys)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda s: 0.1 * 0.1 ** ((s > 50) + (s > 75)), "step 51, one step late \\(off by one\\)"),
        (lambda s: 0.1 * 0.1 ** ((s >= 49) + (s >= 74)), "step 49, one step early"),
        (lambda s: 0.1 * 0.5 ** ((s >= 50) + (s >= 75)), "divided by 2, not by 10"),
        (lambda s: paper_lr(s) * 10, "returns the factor"),
        (lambda s: 0.1 * 0.1 ** (s >= 50), "changes 1 times"),
        (lambda s: 0.1 * 0.1 ** ((s >= 30) + (s >= 60)), "at the wrong step"),
    ],
)
def test_lr_schedule_mistakes_get_their_hint(fn, match):
    fails(ex.check_lr_schedule, fn, total_steps=100, match=match)


def groups(model, no_decay=lambda name, p: p.ndim <= 1):
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": 1e-4},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]


def test_weight_decay_groups(capsys):
    model = rt.cifar_resnet(8, width=4)
    out = passes(ex.check_weight_decay_groups, groups(model), model, capsys=capsys)
    # ResNet-8: 7 convolutions and fc; 7 BN layers (γ, β) and fc's bias
    assert "0.0001 on 8 conv/linear weights, none on 15 BN parameters and biases" in out
    optimizer = torch.optim.SGD(groups(model), lr=0.1)
    passes(ex.check_weight_decay_groups, optimizer, model, weight_decay=1e-4, capsys=capsys)
    everything = [{"params": list(model.parameters()), "weight_decay": 1e-4}]
    fails(ex.check_weight_decay_groups, everything, model, match=r"\(BatchNorm γ\) gets weight")
    only_bn = groups(model, lambda n, p: "bn" in n)
    fails(ex.check_weight_decay_groups, only_bn, model, match=r"fc.bias \(a bias\) gets weight")
    no_weights = groups(model, lambda n, p: True)
    fails(ex.check_weight_decay_groups, no_weights, model, match="conv1.weight .* no weight decay")
    fails(ex.check_weight_decay_groups, groups(model)[:1], model, match="in no parameter group")
    fails(ex.check_weight_decay_groups, [{"params": list(model.parameters())}], model,
          match="has no 'weight_decay'")  # fmt: skip
    fails(
        ex.check_weight_decay_groups, optimizer, model, weight_decay=5e-4, match="expected 0.0005"
    )


def my_evaluate(model, data):
    images, labels = data
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) != labels).float().mean().item()


def forgets_eval(model, data):
    with torch.no_grad():
        return model(data[0])


def forgets_no_grad(model, data):
    model.eval()
    return model(data[0])


def test_eval_mode(capsys):
    out = passes(ex.check_eval_mode, my_evaluate, capsys=capsys)
    assert "1 forward pass, all in eval mode under no_grad" in out

    def inference(model, data):
        model.eval()
        with torch.inference_mode():
            return model(data[0])

    passes(ex.check_eval_mode, inference, capsys=capsys)
    fails(ex.check_eval_mode, forgets_eval, match=r"train mode(.|\n)*model.eval\(\)")
    fails(ex.check_eval_mode, forgets_no_grad, match=r"gradients on(.|\n)*torch.no_grad")
    fails(ex.check_eval_mode, lambda model, data: None, match="never ran the model")
    model = rt.cifar_resnet(8, width=4).train()
    passes(ex.check_eval_mode, my_evaluate, model, capsys=capsys)
    assert model.training  # restored


# --- chapter 6 ---------------------------------------------------------------------------------


def feature_extractor(num_classes=5, *, keep_bn_frozen=True, freeze_head=False):
    model = rt.cifar_resnet(8, width=4)
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if freeze_head:
        model.fc.requires_grad_(False)
    if keep_bn_frozen:
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        train = model.train

        def train_with_frozen_bn(mode=True):
            train(mode)
            for m in norms:
                m.eval()
            return model

        model.train = train_with_frozen_bn
    return model


def test_frozen(capsys):
    out = passes(ex.check_frozen, feature_extractor(), ["fc"], capsys=capsys)
    assert "2 parameter tensors train (fc)" in out and "stay in eval mode" in out
    drifting = feature_extractor(keep_bn_frozen=False)
    fails(ex.check_frozen, drifting, ["fc"], match=r"in train mode after model.train\(\)")
    passes(ex.check_frozen, drifting, ["fc"], bn_frozen=False, capsys=capsys)
    fails(ex.check_frozen, feature_extractor(freeze_head=True), ["fc"], match=r"in \['fc'\] are")
    fails(ex.check_frozen, rt.cifar_resnet(8, width=4), "fc", match="still require grad")
    with pytest.raises(ValueError, match="no part of the model"):
        ex.check_frozen(feature_extractor(), ["head"])


def test_new_head(capsys):
    model = feature_extractor(5)
    out = passes(ex.check_new_head, model, 5, capsys=capsys)
    assert "fc = Linear(16 → 5)" in out
    fails(ex.check_new_head, model, 10, match="outputs 5 classes, expected 10")
    fails(ex.check_new_head, feature_extractor(freeze_head=True), 5, match="the new head is frozen")
    fails(ex.check_new_head, model, 5, old_head=model.fc, match="still the old head")
    model.fc = nn.Linear(64, 5)
    fails(ex.check_new_head, model, 5, match="takes 64 features, but the backbone gives 16")
    model.fc = nn.Linear(16, 5)
    nn.init.normal_(model.fc.weight, std=1.0)
    fails(ex.check_new_head, model, 5, match="looks trained")


def test_optimizer_params(capsys):
    model = feature_extractor()
    right = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    out = passes(ex.check_optimizer_params, right, model, capsys=capsys)
    assert "the 2 trainable parameter tensors (fc.weight, fc.bias)" in out
    everything = torch.optim.SGD(model.parameters(), lr=0.01)
    fails(ex.check_optimizer_params, everything, model, match="still holds 21 frozen parameters")
    before_new_head = torch.optim.SGD(model.fc.parameters(), lr=0.01)
    model.fc = nn.Linear(16, 5)
    fails(ex.check_optimizer_params, before_new_head, model, match="not parameters of the model")
    missing = torch.optim.SGD([model.fc.weight], lr=0.01)
    fails(ex.check_optimizer_params, missing, model, match="misses 1 trainable parameters")


# --- every check keeps the caller's random state -----------------------------------------------


def test_checks_keep_the_random_state(capsys):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ex.check_basic_block(MyBasicBlock)
    ex.check_residual(MyResidual)
    assert torch.equal(torch.rand(3), expected)
    capsys.readouterr()


def test_failure_messages_name_the_problem_before_the_hint():
    message = fails(ex.check_basic_block, NoReluAfterAddition, match="Hint")
    problem, hint = message.split("\nHint: ")
    assert re.search(r"MyBasicBlock|NoReluAfterAddition", problem) and hint.endswith(".")
