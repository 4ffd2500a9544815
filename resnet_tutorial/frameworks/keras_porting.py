"""Our weights in a Keras model, and what compares the two (appendix). Keras is imported inside
the functions."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
from torch import Tensor, nn

from .keras_models import import_keras, keras_name


def keras_parameters(keras_model) -> tuple[int, int]:
    """(trainable, all) weights of a Keras model; `all` includes BatchNorm's moving statistics,
    which torch keeps as buffers and `rt.count_parameters` does not count."""
    trainable = sum(math.prod(w.shape) for w in keras_model.trainable_weights)
    return trainable, sum(math.prod(w.shape) for w in keras_model.weights)


def port_weights(model: nn.Module, keras_model, *, name: Callable[[str], str] = keras_name) -> int:
    """Copy every weight of our `model` into the Keras model; return how many tensors were copied.

    Layers are matched by name (`name(key)` of each module's key) and the copy is strict, as
    `load_state_dict` is, in Keras' layouts (`port_layer`). A Keras convolution's bias gets
    zeros. BatchNorm's ε and momentum are settings, not weights: they are *not* copied.
    """
    keras = import_keras()
    layers = {layer.name: layer for layer in keras_model.layers if layer.weights}
    filled: set[str] = set()
    copied = 0
    for key, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            continue
        layer_name = name(key)
        if layer_name not in layers:
            raise ValueError(
                f"our {key} ({type(module).__name__}) has no Keras layer named {layer_name!r}; "
                f"the Keras model has {len(layers)} layers with weights, e.g. "
                f"{sorted(layers)[:4]}"
            )
        copied += port_layer(key, module, layers[layer_name], keras)
        filled.add(layer_name)
    unfilled = sorted(set(layers) - filled)
    if unfilled:
        raise ValueError(
            f"{len(unfilled)} Keras layers with weights have no counterpart in our model: "
            f"{unfilled[:4]}{' …' if len(unfilled) > 4 else ''} (a block too many?)"
        )
    return copied


def port_layer(key: str, module: nn.Module, layer, keras) -> int:
    """Copy one module's tensors into one Keras layer; return how many were copied."""
    with torch.no_grad():
        if isinstance(module, nn.Conv2d):
            pairs = [(layer.kernel, module.weight.permute(2, 3, 1, 0))]  # OIHW → HWIO
            bias = module.bias if module.bias is not None else None
        elif isinstance(module, nn.Linear):
            pairs = [(layer.kernel, module.weight.t())]  # (out, in) → (in, out)
            bias = module.bias
        else:
            if not isinstance(layer, keras.layers.BatchNormalization):
                raise ValueError(f"our {key} is a BatchNorm2d, Keras' {layer.name} a {layer}")
            pairs = [
                (layer.gamma, module.weight),
                (layer.beta, module.bias),
                (layer.moving_mean, module.running_mean),
                (layer.moving_variance, module.running_var),
            ]
            bias = None
        if not isinstance(module, nn.BatchNorm2d):
            keras_bias = getattr(layer, "bias", None)
            if bias is not None and keras_bias is None:
                raise ValueError(f"our {key} has a bias, Keras' {layer.name} has none")
            if keras_bias is not None:
                pairs.append(
                    (keras_bias, bias if bias is not None else torch.zeros(keras_bias.shape))
                )
        for variable, tensor in pairs:
            if tuple(variable.shape) != tuple(tensor.shape):
                raise ValueError(
                    f"our {key} gives a tensor of shape {tuple(tensor.shape)} for Keras' "
                    f"{variable.path}, which has shape {tuple(variable.shape)}"
                )
            variable.assign(tensor.detach().cpu().contiguous())
    return len(pairs)


def keras_logits(keras_model, x: Tensor) -> Tensor:
    """The Keras model's output for `x` in inference mode (BatchNorm uses its moving statistics)."""
    with torch.no_grad():
        return keras_model(x, training=False)


def keras_applications_name(key: str) -> str:
    """Our key → the layer name in `keras.applications.ResNet50` (the original Caffe model's):
    conv1 → conv1_conv, layer2.0.conv1 → conv3_block1_1_conv, layer2.0.downsample.1 →
    conv3_block1_0_bn, fc → predictions."""
    if key in ("conv1", "bn1"):
        return f"conv1_{'conv' if key == 'conv1' else 'bn'}"
    if key == "fc":
        return "predictions"
    stage, block, *rest = key.split(".")
    prefix = f"conv{int(stage.removeprefix('layer')) + 1}_block{int(block) + 1}"
    if rest[0] == "downsample":
        return f"{prefix}_0_{'conv' if rest[1] == '0' else 'bn'}"
    kind, index = rest[0][:-1], rest[0][-1]  # "conv2" → ("conv", "2")
    return f"{prefix}_{index}_{kind}"


@contextlib.contextmanager
def keras_image_format(data_format: Literal["channels_first", "channels_last"]) -> Iterator[None]:
    """Keras' global image layout, set for the `with` block only (keras.applications reads it)."""
    keras = import_keras()
    before = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format)
    try:
        yield
    finally:
        keras.config.set_image_data_format(before)
