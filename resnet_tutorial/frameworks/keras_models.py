"""The book's ResNets in Keras 3, built from the same table as ours (appendix).

Keras runs on its torch backend, so that both models run on the same tensors. The layers are
`channels_first`, one per torch layer, named after torchvision's keys ("layer1.0.conv1" →
"layer1_0_conv1": torch modules refuse dots in names), so that `port_weights` copies every
tensor by name. Keras is imported inside the functions (`import_keras`), never when this
module is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .._util import check_number
from ..blocks import BasicBlock, Bottleneck, make_shortcut
from ..models import DEPTHS, cifar_blocks_per_stage

if TYPE_CHECKING:  # only for the annotations: never imported at run time here
    import keras

TORCH_EPSILON = 1e-5  # nn.BatchNorm2d's default eps; Keras' BatchNormalization has 1e-3
# nn.BatchNorm2d's default: new = 0.9 old + 0.1 batch; Keras' m: new = m old + (1 - m) batch
TORCH_MOMENTUM = 0.1


def import_keras():
    """`keras` on the torch backend, its tensors on the CPU beside ours (KERAS_BACKEND=torch and
    KERAS_TORCH_DEVICE=cpu, unless they are already set: Keras reads them when first imported)."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    os.environ.setdefault("KERAS_TORCH_DEVICE", "cpu")
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(
            f"keras runs on the {keras.backend.backend()!r} backend; this module needs 'torch'. "
            "Set os.environ['KERAS_BACKEND'] = 'torch' before keras is first imported (restart "
            "the kernel if it already was)."
        )
    return keras


@dataclass(frozen=True)
class KerasOptions:
    """How the Keras layers are made. The defaults give our torch network exactly.

    Args:
        conv_bias: a bias in every convolution (Keras' `Conv2D` default), before a BatchNorm.
        epsilon: BatchNorm's ε; Keras' default is 1e-3, torch's 1e-5.
        momentum: in Keras' sense (new = m · old + (1 - m) · batch): torch's 0.1 is Keras' 0.9.
        stem_pool: "3x3" (stride 2, padding 1: the paper's) or "2x2" (stride 2, no padding).
        padding: "explicit" (ZeroPadding2D(k // 2), then 'valid': torch's padding=k // 2) or
            "same" (Keras' 'same', which at stride 2 pads only the bottom and right).
    """

    conv_bias: bool = False
    epsilon: float = TORCH_EPSILON
    momentum: float = 1 - TORCH_MOMENTUM
    stem_pool: Literal["3x3", "2x2"] = "3x3"
    padding: Literal["explicit", "same"] = "explicit"

    def __post_init__(self) -> None:
        if self.stem_pool not in ("3x3", "2x2"):
            raise ValueError(f"stem_pool must be '3x3' or '2x2', got {self.stem_pool!r}")
        if self.padding not in ("explicit", "same"):
            raise ValueError(f"padding must be 'explicit' or 'same', got {self.padding!r}")
        check_number("epsilon", self.epsilon, "a number > 0", lambda v: v > 0)
        check_number("momentum", self.momentum, "a number in [0, 1)", lambda v: 0 <= v < 1)


def keras_name(key: str) -> str:
    """The Keras layer name of one of our modules: torchvision's key with "." → "_"."""
    return key.replace(".", "_")


def keras_conv(
    x,
    filters: int,
    kernel_size: int,
    stride: int,
    name: str,
    options: KerasOptions = KerasOptions(),
):
    """Conv2D (channels_first) as torch's Conv2d(kernel_size, stride, padding=kernel_size // 2)."""
    keras = import_keras()
    pad = kernel_size // 2
    explicit = options.padding == "explicit" and pad > 0
    if explicit:  # torch pads every side alike; Keras' 'same' does not at stride 2
        x = keras.layers.ZeroPadding2D(pad, data_format="channels_first", name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="valid" if explicit or pad == 0 else "same",
        use_bias=options.conv_bias,
        data_format="channels_first",
        name=name,
    )(x)


def keras_bn(x, name: str, options: KerasOptions = KerasOptions()):
    """BatchNormalization over the channels (axis 1 in channels_first) with torch's settings."""
    keras = import_keras()
    return keras.layers.BatchNormalization(
        axis=1, epsilon=options.epsilon, momentum=options.momentum, name=name
    )(x)


def keras_shortcut(
    x,
    shortcut: Literal["A", "B", "C"] | None,
    in_channels: int,
    out_channels: int,
    stride: int,
    name: str,
    options: KerasOptions = KerasOptions(),
):
    """The shortcut of `rt.make_shortcut` in Keras: identity, option A, or a 1×1 projection + BN."""
    keras = import_keras()
    if shortcut not in ("A", "B", "C", None):
        raise ValueError(f"shortcut must be 'A', 'B', 'C' or None in Keras, got {shortcut!r}")
    if make_shortcut(shortcut, in_channels, out_channels, stride) is None:
        return x  # the identity (None: a plain block, which adds no shortcut at all)
    if shortcut == "A":  # subsample, then zero channels split evenly before and after
        before = (out_channels - in_channels) // 2
        after = out_channels - in_channels - before
        x = x[:, :, ::stride, ::stride]
        return keras.ops.pad(x, [[0, 0], [before, after], [0, 0], [0, 0]])
    x = keras_conv(x, out_channels, 1, stride, f"{name}_downsample_0", options)
    return keras_bn(x, f"{name}_downsample_1", options)


def keras_basic_block(
    x,
    in_channels: int,
    channels: int,
    stride: int,
    *,
    name: str,
    shortcut: Literal["A", "B", "C"] | None = "B",
    options: KerasOptions = KerasOptions(),
):
    """`rt.BasicBlock` in Keras: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
    keras = import_keras()
    out = keras_conv(x, channels, 3, stride, f"{name}_conv1", options)
    out = keras.layers.ReLU(name=f"{name}_relu1")(keras_bn(out, f"{name}_bn1", options))
    out = keras_bn(
        keras_conv(out, channels, 3, 1, f"{name}_conv2", options), f"{name}_bn2", options
    )
    if shortcut is not None:
        short = keras_shortcut(x, shortcut, in_channels, channels, stride, name, options)
        out = keras.layers.Add(name=f"{name}_add")([out, short])
    return keras.layers.ReLU(name=f"{name}_relu2")(out)


def keras_bottleneck(
    x,
    in_channels: int,
    channels: int,
    stride: int,
    *,
    name: str,
    shortcut: Literal["A", "B", "C"] | None = "B",
    stride_on: Literal["3x3", "1x1"] = "3x3",
    options: KerasOptions = KerasOptions(),
):
    """`rt.Bottleneck` in Keras: 1×1 reduce, 3×3, 1×1 expand (×4), then the shortcut."""
    keras = import_keras()
    relu = keras.layers.ReLU
    out_channels = channels * Bottleneck.expansion
    stride_1x1, stride_3x3 = (stride, 1) if stride_on == "1x1" else (1, stride)
    out = keras_conv(x, channels, 1, stride_1x1, f"{name}_conv1", options)
    out = relu(name=f"{name}_relu1")(keras_bn(out, f"{name}_bn1", options))
    out = keras_conv(out, channels, 3, stride_3x3, f"{name}_conv2", options)
    out = relu(name=f"{name}_relu2")(keras_bn(out, f"{name}_bn2", options))
    out = keras_bn(
        keras_conv(out, out_channels, 1, 1, f"{name}_conv3", options), f"{name}_bn3", options
    )
    if shortcut is not None:
        short = keras_shortcut(x, shortcut, in_channels, out_channels, stride, name, options)
        out = keras.layers.Add(name=f"{name}_add")([out, short])
    return relu(name=f"{name}_relu3")(out)


def keras_resnet(
    depth: int,
    num_classes: int = 1000,
    *,
    layers: tuple[int, ...] | None = None,
    options: KerasOptions = KerasOptions(),
) -> keras.Model:
    """Our `rt.resnet(depth)` (option B, stride on the 3×3) in Keras, from the same table.

    `layers` replaces the table's blocks per stage (to build a wrong ResNet-34, say (3, 4, 5, 3));
    `options` the settings of the layers (`KerasOptions`). Inputs are (N, 3, H, W).
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth must be one of {sorted(DEPTHS)} (Table 1), got {depth!r}")
    block, table = DEPTHS[depth]
    layers = table if layers is None else tuple(layers)
    if len(layers) != 4:
        raise ValueError(f"layers needs one entry per stage (4), got {layers}")
    return keras_network(
        block, layers, (64, 128, 256, 512), num_classes, "imagenet", "B", options, f"resnet{depth}"
    )


def keras_cifar_resnet(
    depth: int, num_classes: int = 10, *, options: KerasOptions = KerasOptions()
) -> keras.Model:
    """Our `rt.cifar_resnet(depth)` (option A shortcuts) in Keras: 3 stages of (depth - 2) / 6
    basic blocks of 16, 32 and 64 channels (He et al. 2016a, Sec. 4.2)."""
    n = cifar_blocks_per_stage(depth)
    return keras_network(
        BasicBlock,
        (n, n, n),
        (16, 32, 64),
        num_classes,
        "cifar",
        "A",
        options,
        f"cifar_resnet{depth}",
    )


def keras_network(block, layers, widths, num_classes, stem, shortcut, options, name):
    """Stem → stages → head, as `rt.ResNet`, with the layers named after our modules."""
    keras = import_keras()
    inputs = keras.Input((3, None, None), name="images")  # (N, 3, H, W)
    if stem == "imagenet":
        x = keras_conv(inputs, widths[0], 7, 2, "conv1", options)  # (N, 64, H/2, W/2)
    else:
        x = keras_conv(inputs, widths[0], 3, 1, "conv1", options)
    x = keras.layers.ReLU(name="relu")(keras_bn(x, "bn1", options))
    if stem == "imagenet":  # (N, 64, H/4, W/4)
        if options.stem_pool == "2x2":
            x = keras.layers.MaxPooling2D(2, data_format="channels_first", name="maxpool")(x)
        elif options.padding == "same":
            x = keras.layers.MaxPooling2D(
                3, 2, padding="same", data_format="channels_first", name="maxpool"
            )(x)
        else:  # zeros instead of torch's -inf: the same after a ReLU, whose outputs are >= 0
            x = keras.layers.ZeroPadding2D(1, data_format="channels_first", name="maxpool_pad")(x)
            x = keras.layers.MaxPooling2D(3, 2, data_format="channels_first", name="maxpool")(x)
    build = keras_basic_block if block is BasicBlock else keras_bottleneck
    channels = widths[0]
    for i, (depth, width) in enumerate(zip(layers, widths), start=1):
        for j in range(depth):
            stride = 2 if i > 1 and j == 0 else 1
            x = build(
                x, channels, width, stride, name=f"layer{i}_{j}", shortcut=shortcut, options=options
            )
            channels = width * block.expansion
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first", name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=name)
