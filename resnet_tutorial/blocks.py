"""Residual blocks and the shortcuts that join them (He et al. 2016a; 2016b; He et al. 2019a).

Attribute names follow torchvision's (`conv1`, `bn1`, `downsample`, ...) because weight
compatibility requires it.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

Shortcut = Literal["A", "B", "C", "D"] | None
StrideOn = Literal["3x3", "1x1"]
SHORTCUTS: tuple[Shortcut, ...] = ("A", "B", "C", "D", None)
STRIDE_ON: tuple[StrideOn, ...] = ("3x3", "1x1")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3×3 convolution with padding 1 and no bias: the BatchNorm after it has one."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=1, groups=groups, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1×1 convolution without bias, used to change the width (and to project shortcuts)."""
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample by `stride`, then pad the missing channels with zeros (Sec. 3.3).

    The zeros are split evenly before and after the input channels, as the public CIFAR
    checkpoints of Idelbayev (2018) expect: `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))`.
    It has no parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"option A can only add channels: out_channels={out_channels} < "
                f"in_channels={in_channels}"
            )
        self.stride = stride
        self.before = (out_channels - in_channels) // 2
        self.after = out_channels - in_channels - self.before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.before, self.after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad_channels=({self.before}, {self.after})"


def make_shortcut(
    shortcut: Shortcut, in_channels: int, out_channels: int, stride: int, *, norm: bool = True
) -> nn.Module | None:
    """The shortcut of one block; `None` means the identity (He et al. 2016a, Sec. 3.3).

    A: identity, or zero-padding where the shape changes (no parameters).
    B: identity, or a 1×1 projection + BN where the shape changes (torchvision's choice).
    C: a 1×1 projection + BN on every block.
    D: identity, or average-pool then 1×1 projection + BN (ResNet-D, He et al. 2019a, Fig. 2c).
    None: the plain network has no shortcut; its blocks are built with `residual=False`.

    `norm=False` leaves the BN out of the projections: pre-activation blocks project their
    already normalised input with a bare 1×1 convolution, as in He et al.'s (2016b) code.
    """
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of 'A', 'B', 'C', 'D' or None, got {shortcut!r}")
    same_shape = stride == 1 and in_channels == out_channels
    if shortcut is None or (same_shape and shortcut != "C"):
        return None
    if shortcut == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if shortcut == "D":
        # Keys downsample.1/.2 as in timm's ResNet-D; the pool averages what a strided 1×1 skips.
        pool = (
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
            if stride > 1
            else nn.Identity()
        )
        layers = [pool, conv1x1(in_channels, out_channels)]
    else:  # B and C: torchvision's `downsample` = Sequential(conv1x1, BatchNorm2d): keys .0, .1
        layers = [conv1x1(in_channels, out_channels, stride)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers)


def _shortcut_module(downsample: nn.Module | None, residual: bool) -> nn.Module:
    if not residual and downsample is not None:
        raise ValueError("a plain block (residual=False) takes no downsample module")
    return downsample if downsample is not None else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3×3 convolutions and a shortcut: y = relu(F(x) + shortcut(x)) (Eq. 1, Fig. 2)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual  # False: the paper's plain network, y = relu(F(x))
        self.downsample = _shortcut_module(downsample, residual)  # torchvision's name

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + self.downsample(x)
        return self.relu(out)


def _bottleneck_width(channels: int, groups: int, width_per_group: int, stride_on: str) -> int:
    """Channels of a bottleneck's 3×3: `channels` scaled by width_per_group / 64, times the
    groups (torchvision's rule; ResNeXt, wide ResNets), after checking `stride_on`."""
    if stride_on not in STRIDE_ON:
        raise ValueError(f"stride_on must be '3x3' or '1x1', got {stride_on!r}")
    return int(channels * (width_per_group / 64.0)) * groups


class Bottleneck(nn.Module):
    """Bottleneck block: 1×1 reduce, 3×3, 1×1 expand (He et al. 2016a, Sec. 4.1, Fig. 5).

    `stride_on="3x3"` puts the stride on the 3×3 convolution (torchvision, "ResNet v1.5",
    ResNet-B of He et al. 2019a); `"1x1"` puts it on the first 1×1, as in the paper, which then
    never looks at three quarters of its input positions. `groups` and `width_per_group` give
    ResNeXt (Xie et al. 2017) and wide ResNets (Zagoruyko & Komodakis 2016).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        groups: int = 1,
        width_per_group: int = 64,
        stride_on: StrideOn = "3x3",
    ) -> None:
        super().__init__()
        width = _bottleneck_width(channels, groups, width_per_group, stride_on)
        self.conv1 = conv1x1(in_channels, width, stride if stride_on == "1x1" else 1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride if stride_on == "3x3" else 1, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual
        self.downsample = _shortcut_module(downsample, residual)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + self.downsample(x)
        return self.relu(out)


def _add_preact_shortcut(block: nn.Module, out: Tensor, x: Tensor, pre: Tensor) -> Tensor:
    """out + shortcut: the identity adds the raw x, untouched from block to block; a projection
    (where the shape changes) reads the normalised `pre`, as in He et al.'s (2016b) code."""
    if not block.residual:
        return out
    return out + block.downsample(x if isinstance(block.downsample, nn.Identity) else pre)


class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv twice, y = x + F(x) (He et al. 2016b, Fig. 4e).
    Nothing follows the addition, so the identity path stays clean from block to block."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = conv3x3(channels, channels)
        self.relu = nn.ReLU()
        self.residual = residual
        self.downsample = _shortcut_module(downsample, residual)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return _add_preact_shortcut(self, out, x, pre)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck: (BN-ReLU-conv) × 3, 1×1-3×3-1×1 (He et al. 2016b, Fig. 4e)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        groups: int = 1,
        width_per_group: int = 64,
        stride_on: StrideOn = "3x3",
    ) -> None:
        super().__init__()
        width = _bottleneck_width(channels, groups, width_per_group, stride_on)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv1x1(in_channels, width, stride if stride_on == "1x1" else 1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride if stride_on == "3x3" else 1, groups)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, channels * self.expansion)
        self.relu = nn.ReLU()
        self.residual = residual
        self.downsample = _shortcut_module(downsample, residual)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return _add_preact_shortcut(self, out, x, pre)


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBasicBlock] | type[PreActBottleneck]
BOTTLENECKS = (Bottleneck, PreActBottleneck)


def zero_init_last(block: nn.Module) -> None:
    """Zero the last BN of the residual branch (the last conv of a pre-activation block), so
    each block starts as the identity (Goyal et al. 2017, Sec. 5.1, arXiv:1706.02677)."""
    if isinstance(block, Bottleneck):
        nn.init.zeros_(block.bn3.weight)
    elif isinstance(block, BasicBlock):
        nn.init.zeros_(block.bn2.weight)
    elif isinstance(block, PreActBottleneck):
        nn.init.zeros_(block.conv3.weight)
    elif isinstance(block, PreActBasicBlock):
        nn.init.zeros_(block.conv2.weight)
    else:
        raise TypeError(f"zero_init_last needs one of the four blocks, got {type(block).__name__}")
