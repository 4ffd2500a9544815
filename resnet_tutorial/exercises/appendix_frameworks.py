"""The appendix's check (Keras and Lightning): exercise 1, a Keras basic block.

Keras (the optional extra `resnet_tutorial[frameworks]`) is imported inside the check, never
when `rt.exercises` is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..blocks import BasicBlock, make_shortcut
from ..frameworks.keras_models import TORCH_EPSILON, TORCH_MOMENTUM, import_keras, keras_name
from ..frameworks.keras_porting import keras_logits, port_weights
from ..measure import randomize_batchnorm
from ._common import (
    TOLERANCE,
    fail,
    keeps_random_state,
    relative_difference,
    say_passed,
)


@keeps_random_state
def check_keras_basic_block(block_fn: Callable[..., Any]) -> None:
    """Exercise: `block_fn(x, in_channels, channels, stride)` applies a basic block to the Keras
    tensor `x` (N, C, H, W), its layers named as rt.BasicBlock's modules (conv1, bn1, conv2,
    bn2, downsample_0, downsample_1); compared with `rt.BasicBlock` under the same weights."""
    keras = import_keras()
    for in_channels, channels, stride in ((16, 16, 1), (16, 32, 2)):
        _check_keras_block_case(keras, block_fn, in_channels, channels, stride)
    say_passed(
        "Keras basic block: at stride 1 (16 → 16 channels, identity shortcut) and at stride 2 "
        "(16 → 32, projection), its layers, settings and weight shapes are rt.BasicBlock's, and "
        "with the same weights it computes the same outputs"
    )


def _check_keras_block_case(keras, block_fn, in_channels: int, channels: int, stride: int) -> None:
    where = f"block_fn(x, {in_channels}, {channels}, {stride})"
    inputs = keras.Input((in_channels, 8, 8))
    try:
        model = keras.Model(inputs, block_fn(inputs, in_channels, channels, stride))
    except Exception as error:  # the learner's code: any error is reported with its call
        fail(
            f"{where} raised {type(error).__name__}: {error}",
            "apply keras.layers to x one after the other (the functional API) and return the "
            "block's output tensor",
        )
    shortcut = make_shortcut("B", in_channels, channels, stride)
    reference = BasicBlock(in_channels, channels, stride, shortcut).eval()
    randomize_batchnorm(reference, seed=0)
    _check_keras_layers(where, model, reference, keras)
    port_weights(reference, model)
    x = torch.randn(2, in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
    output = keras_logits(model, x)
    if tuple(output.shape) != tuple(expected.shape):
        fail(
            f"{where} outputs shape {tuple(output.shape)} for an input {tuple(x.shape)}; "
            f"rt.BasicBlock outputs {tuple(expected.shape)}",
            "only conv1 and the projection have the stride; every layer keeps the channels on "
            "axis 1 (data_format='channels_first')",
        )
    difference = relative_difference(output, expected)
    if difference > TOLERANCE:
        _diagnose_keras_block(where, model, output, difference, keras)


def _check_keras_layers(where: str, model, reference: nn.Module, keras) -> None:
    """Names, kinds and settings of the learner's layers against the reference's modules."""
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    expected = {
        keras_name(key): module
        for key, module in reference.named_modules()
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))
    }
    if set(layers) != set(expected):
        shortcut = (
            "the shape changes here, so option B projects the shortcut: a 1×1 convolution "
            "('downsample_0') and its BatchNorm ('downsample_1')"
            if "downsample_0" in expected
            else "the shape does not change here, so the shortcut has no layers"
        )
        fail(
            f"{where}: the layers with weights are {sorted(layers)}, expected {sorted(expected)}",
            f"name each layer after rt.BasicBlock's module (name='conv1', …); {shortcut}",
        )
    for layer_name, module in expected.items():
        layer = layers[layer_name]
        if isinstance(module, nn.Conv2d):
            _check_keras_conv(where, layer_name, layer, module, keras)
        else:
            _check_keras_bn(where, layer_name, layer, module, keras)


def _check_keras_conv(where: str, name: str, layer, module: nn.Conv2d, keras) -> None:
    if not isinstance(layer, keras.layers.Conv2D):
        fail(f"{where}: {name} is a {type(layer).__name__}", f"{name} is a keras.layers.Conv2D")
    if layer.data_format != "channels_first":
        fail(
            f"{where}: {name} has data_format={layer.data_format!r}",
            "the tensors are (N, C, H, W), as in PyTorch, and Keras puts the channels last by "
            "default: see the four choices under 'ResNet-34 and ResNet-50 in Keras, from the same "
            "table'",
        )
    if layer.use_bias:
        fail(
            f"{where}: {name} has a bias ({module.out_channels} parameters that rt.BasicBlock "
            "does not have)",
            "Keras' Conv2D has a bias by default, and the BatchNorm after it cancels it: see "
            "'A bias before every BatchNorm'",
        )
    expected = tuple(module.weight.permute(2, 3, 1, 0).shape)
    if tuple(layer.kernel.shape) != expected:
        fail(
            f"{where}: {name}'s kernel has shape {tuple(layer.kernel.shape)}, expected {expected} "
            "(height, width, in, out)",
            f"{name} maps {module.in_channels} to {module.out_channels} channels with a "
            f"{module.kernel_size[0]}×{module.kernel_size[1]} kernel",
        )


def _check_keras_bn(where: str, name: str, layer, module: nn.BatchNorm2d, keras) -> None:
    if not isinstance(layer, keras.layers.BatchNormalization):
        fail(f"{where}: {name} is a {type(layer).__name__}", f"{name} is a BatchNormalization")
    if tuple(layer.gamma.shape) != (module.num_features,):
        fail(
            f"{where}: {name} normalises axis {layer.axis}, of size {layer.gamma.shape[0]}",
            "Keras' BatchNormalization normalises the last axis by default; here the channels "
            "are the second axis of (N, C, H, W)",
        )
    if abs(layer.epsilon - TORCH_EPSILON) > 1e-12:
        fail(
            f"{where}: {name} has epsilon={layer.epsilon:g}, torch's BatchNorm2d {TORCH_EPSILON:g}",
            "Keras' default ε is 1e-3, PyTorch's 1e-5: see 'BatchNorm's ε and momentum'",
        )
    if abs(layer.momentum - (1 - TORCH_MOMENTUM)) > 1e-12:
        fail(
            f"{where}: {name} has momentum={layer.momentum:g}: its moving statistics do not "
            "follow the batches as torch's momentum=0.1 does",
            "Keras' momentum weighs the old average, PyTorch's the new batch: see 'BatchNorm's ε "
            "and momentum'",
        )


def _diagnose_keras_block(where: str, model, output: Tensor, difference: float, keras) -> None:
    differ = f"{where}: its outputs differ from rt.BasicBlock's by {difference:.1%} of the largest"
    same_at_stride_two = [
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D)
        and layer.padding == "same"
        and max(layer.strides) > 1
        and max(layer.kernel_size) > 1  # a 1×1 kernel needs no padding at any stride
    ]
    if same_at_stride_two:
        fail(
            f"{differ}; {same_at_stride_two} use padding='same' at stride 2",
            "at stride 2, Keras' 'same' pads an even input only at the bottom and right, "
            "PyTorch's padding=1 on every side: see 'padding=\"same\" at stride 2', and how "
            "frameworks.keras_conv pads",
        )
    if float(output.min()) < 0:
        fail(
            f"{differ}, and some are negative",
            "rt.BasicBlock's outputs are never negative: what does it apply after the addition?",
        )
    fail(
        differ,
        "the order is conv1, bn1, ReLU, conv2, bn2, add the shortcut, ReLU; only conv1 and the "
        "projection have the stride",
    )
