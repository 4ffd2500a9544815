"""The ResNet family as stem → body → head, built from one table (He et al. 2016a, Table 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ._util import check_positive_int
from .blocks import (
    BOTTLENECKS,
    BasicBlock,
    Block,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    Shortcut,
    StrideOn,
    conv3x3,
    make_shortcut,
    zero_init_last,
)

Stem = Literal["imagenet", "deep", "cifar"]
STEMS: tuple[Stem, ...] = ("imagenet", "deep", "cifar")

# The paper's Table 1: blocks per stage (conv2_x … conv5_x) for each ImageNet depth.
DEPTHS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
# The CIFAR family of Sec. 4.2: depth 6n + 2, three stages of n basic blocks each.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
# The only bottleneck options a basic block can take: their defaults.
BASIC_BLOCK_OPTIONS = {"groups": 1, "width_per_group": 64, "stride_on": "3x3"}
PREACT = {BasicBlock: PreActBasicBlock, Bottleneck: PreActBottleneck}


def make_stage(
    block: Block,
    in_channels: int,
    channels: int,
    depth: int,
    stride: int,
    shortcut: Shortcut,
    **block_options: object,
) -> nn.Sequential:
    """Stack `depth` blocks; the first one changes width and resolution (Sec. 3.3, Table 1)."""
    out_channels = channels * block.expansion
    blocks = []
    for i in range(depth):
        s = stride if i == 0 else 1
        # pre-activation blocks project their normalised input with a bare convolution
        downsample = make_shortcut(
            shortcut, in_channels, out_channels, s, norm=block not in PREACT.values()
        )
        blocks.append(
            block(
                in_channels,
                channels,
                s,
                downsample,
                residual=shortcut is not None,
                **block_options,
            )
        )
        in_channels = out_channels
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """A residual network: stem → body (stages of blocks) → head (He et al. 2016a, Fig. 3).

    `forward(x)` is `head(body(stem(x)))`. Submodules keep torchvision's names (`conv1`, `bn1`,
    `maxpool`, `layer1`…, `fc`) so that torchvision's state_dicts load key for key.

    Args:
        layers: blocks per stage, one entry per stage (a row of Table 1).
        stem: "imagenet" (7×7/2 conv, BN, ReLU, 3×3/2 max-pool), "deep" (ResNet-C: three 3×3
            convs, He et al. 2019a) or "cifar" (one 3×3 conv, no pool, Sec. 4.2).
        widths: channels of each stage before expansion; the stem outputs `widths[0]`.
        shortcut: "A", "B", "C", "D" or None (plain network); see `make_shortcut`.
        preact: pre-activation blocks (He et al. 2016b); `groups`, `width_per_group`: ResNeXt
            and wide ResNet bottlenecks; `zero_init_residual`: see `blocks.zero_init_last`.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        *,
        stem: Stem = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
        shortcut: Shortcut = "B",
        stride_on: StrideOn = "3x3",
        preact: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        block, block_options = _checked_block(
            block, layers, widths, num_classes, in_channels, shortcut, stride_on, preact,
            groups, width_per_group, zero_init_residual,
        )  # fmt: skip
        self.in_channels = in_channels
        self._make_stem(stem, in_channels, widths[0])
        # The body: torchvision writes layer1 … layer4 out; the CIFAR nets have three stages and
        # the table any number, so the stages are added in a loop under the same names.
        channels = widths[0]
        for i, (depth, width) in enumerate(zip(layers, widths), start=1):
            stride = 1 if i == 1 else 2  # the first stage keeps the stem's resolution
            stage = make_stage(block, channels, width, depth, stride, shortcut, **block_options)
            setattr(self, f"layer{i}", stage)
            channels = width * block.expansion
        self.num_stages = len(layers)
        if stem == "cifar" and preact:
            # He et al. 2016b, appendix: "we adopt the first activation right after conv1 and
            # before splitting into two paths" -- the stem's BN-ReLU feeds both paths of the
            # first unit, which then has no pre-activation of its own (its ReLU meets x >= 0).
            self.layer1[0].bn1 = nn.Identity()
        self.out_channels = channels
        # Pre-activation nets end their last block without BN-ReLU: add it before pooling.
        self.post_norm = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()) if preact else None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights(zero_init_residual)

    def _make_stem(self, stem: Stem, in_channels: int, width: int) -> None:
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        elif stem == "deep":
            # ResNet-C: three 3×3 convs replace the 7×7 (He et al. 2019a, Fig. 2b); timm's keys.
            half = width // 2
            self.conv1 = nn.Sequential(
                conv3x3(in_channels, half, stride=2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                conv3x3(half, half), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
                conv3x3(half, width),
            )  # fmt: skip
        elif stem == "cifar":
            self.conv1 = conv3x3(in_channels, width)
        else:
            raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (
            nn.Identity() if stem == "cifar" else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        )

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He et al. 2015 initialisation for convolutions, BN as the identity (as torchvision).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for stage in self.stages:
                for block in stage:
                    zero_init_last(block)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The body's stages in order (`layer1`, `layer2`, …)."""
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def stem(self, x: Tensor) -> Tensor:
        """Input → first feature map: (N, 3, 224, 224) → (N, 64, 56, 56) for ImageNet."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def body(self, x: Tensor) -> Tensor:
        """The stages: (N, 64, 56, 56) → (N, 512·expansion, 7, 7) for ImageNet."""
        for stage in self.stages:
            x = stage(x)
        return x

    def head(self, x: Tensor) -> Tensor:
        """Global average pooling and the classifier: (N, C, H, W) → (N, num_classes)."""
        return self.fc(self.pool(x))

    def pool(self, x: Tensor) -> Tensor:
        """The body's output averaged over positions, (N, C, H, W) → (N, C); a pre-activation
        net first applies its final BN-ReLU."""
        if self.post_norm is not None:
            x = self.post_norm(x)
        return torch.flatten(self.avgpool(x), 1)

    def features(self, x: Tensor) -> Tensor:
        """What the classifier reads: `pool(body(stem(x)))`, (N, C)."""
        return self.pool(self.body(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(self.stem(x)))


def _checked_block(
    block: Block, layers: Sequence[int], widths: Sequence[int], num_classes: int,
    in_channels: int, shortcut: Shortcut, stride_on: StrideOn, preact: bool, groups: int,
    width_per_group: int, zero_init_residual: bool,
) -> tuple[Block, dict[str, object]]:  # fmt: skip
    """`ResNet`'s arguments checked (shortcut, stride_on and stem where they are used); returns
    the block class of every stage (its pre-activation twin for `preact`) and its options."""
    check_positive_int("num_classes", num_classes)
    check_positive_int("in_channels", in_channels)
    check_positive_int("groups", groups)
    check_positive_int("width_per_group", width_per_group)
    if not isinstance(preact, bool):
        raise TypeError(f"preact must be True or False, got {preact!r}")
    if len(layers) == 0 or len(layers) != len(widths):
        raise ValueError(
            f"layers and widths need one entry per stage, got layers={list(layers)} and "
            f"widths={list(widths)}"
        )
    if zero_init_residual and shortcut is None:
        raise ValueError("zero_init_residual=True needs a residual network, got shortcut=None")
    options = {"groups": groups, "width_per_group": width_per_group, "stride_on": stride_on}
    if block not in BOTTLENECKS:
        changed = [f"{k}={v!r}" for k, v in options.items() if v != BASIC_BLOCK_OPTIONS[k]]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} need bottleneck blocks (depth 50, 101 or 152): a "
                "basic block has no grouped 3×3 to widen and no 1×1 conv to put the stride on"
            )
        options = {}
    return (PREACT.get(block, block) if preact else block), options


def _check_depth(depth: object, allowed: str, ok: bool) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int, got {type(depth).__name__} {depth!r}")
    if not ok:
        raise ValueError(f"depth must be {allowed}, got {depth}")


def cifar_blocks_per_stage(depth: int) -> int:
    """n of a CIFAR network of depth 6n + 2 (Sec. 4.2), after checking that `depth` is one."""
    examples = ", ".join(map(str, CIFAR_DEPTHS))
    ok = isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0
    _check_depth(depth, f"6n + 2 with n >= 1 (e.g. {examples})", ok)
    return (depth - 2) // 6


def resnet(
    depth: int,
    num_classes: int = 1000,
    *,
    stem: Stem = "imagenet",
    shortcut: Shortcut = "B",
    stride_on: StrideOn = "3x3",
    preact: bool = False,
    groups: int = 1,
    width_per_group: int = 64,
    zero_init_residual: bool = False,
) -> ResNet:
    """An ImageNet ResNet of depth 18, 34, 50, 101 or 152 (He et al. 2016a, Table 1)."""
    _check_depth(depth, f"one of {sorted(DEPTHS)} (Table 1)", depth in DEPTHS)
    block, layers = DEPTHS[depth]
    return ResNet(
        block, layers, num_classes, stem=stem, shortcut=shortcut, stride_on=stride_on,
        preact=preact, groups=groups, width_per_group=width_per_group,
        zero_init_residual=zero_init_residual,
    )  # fmt: skip


def resnet18(num_classes: int = 1000, **options) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2] (Table 1)."""
    return resnet(18, num_classes, **options)


def resnet34(num_classes: int = 1000, **options) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3] (Table 1)."""
    return resnet(34, num_classes, **options)


def resnet50(num_classes: int = 1000, **options) -> ResNet:
    """ResNet-50: bottlenecks [3, 4, 6, 3] (Table 1)."""
    return resnet(50, num_classes, **options)


def resnet101(num_classes: int = 1000, **options) -> ResNet:
    """ResNet-101: bottlenecks [3, 4, 23, 3] (Table 1)."""
    return resnet(101, num_classes, **options)


def resnet152(num_classes: int = 1000, **options) -> ResNet:
    """ResNet-152: bottlenecks [3, 8, 36, 3] (Table 1)."""
    return resnet(152, num_classes, **options)


def resnext50_32x4d(num_classes: int = 1000, **options) -> ResNet:
    """ResNeXt-50 (32×4d): ResNet-50 with 32 groups of width 4 (Xie et al. 2017, Table 1)."""
    return resnet(50, num_classes, groups=32, width_per_group=4, **options)


def wide_resnet50_2(num_classes: int = 1000, **options) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with bottlenecks twice as wide (Zagoruyko & Komodakis 2016)."""
    return resnet(50, num_classes, width_per_group=128, **options)


def cifar_resnet(
    depth: int,
    num_classes: int = 10,
    *,
    shortcut: Shortcut = "A",
    preact: bool = False,
    width: int = 16,
    zero_init_residual: bool = False,
) -> ResNet:
    """A CIFAR ResNet of depth 6n + 2: three stages of n basic blocks, 16/32/64 channels
    (He et al. 2016a, Sec. 4.2). `shortcut=None` gives the plain network of the same depth."""
    n = cifar_blocks_per_stage(depth)
    check_positive_int("width", width)
    return ResNet(
        BasicBlock, (n, n, n), num_classes, stem="cifar", widths=(width, 2 * width, 4 * width),
        shortcut=shortcut, preact=preact, zero_init_residual=zero_init_residual,
    )  # fmt: skip


def plain(depth: int, num_classes: int = 1000, **options) -> ResNet:
    """The paper's plain ImageNet network of `depth` layers: `resnet(depth, shortcut=None)`."""
    return resnet(depth, num_classes, shortcut=None, **options)


def cifar_plain(depth: int, num_classes: int = 10, **options) -> ResNet:
    """The paper's plain CIFAR network (Fig. 6, left): `cifar_resnet(depth, shortcut=None)`."""
    return cifar_resnet(depth, num_classes, shortcut=None, **options)
