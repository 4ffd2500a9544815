"""The book's ResNet in Keras 3 and in PyTorch Lightning, ported exactly (appendix).

Keras runs on its torch backend (`KERAS_BACKEND=torch`, set here unless already set), so that a
Keras model is an `nn.Module` that takes and returns torch tensors, and the two models can be
compared on the same tensors. The Keras networks are built from the same table as ours
(`rt.DEPTHS`), in `channels_first` layout, with one Keras layer per torch layer, named after
torchvision's keys ("layer1.0.conv1" → "layer1_0_conv1": torch modules refuse dots in names), so
that `port_weights` copies every tensor by name. `KerasOptions` holds the few settings in which
a port can go wrong; its defaults reproduce our network, every other value is a mistake that
the appendix measures.

The Lightning side wraps a model in a `LightningModule` that trains exactly as `rt.fit` does
(the same optimizer, schedule, loss, batches and memory format), so that the losses of the two
loops can be compared step by step (`fit_step_losses`, `lightning_fit`).

Keras, Lightning and torchmetrics are optional (`pip install "resnet_tutorial[frameworks]"`):
each is imported inside the functions that need it, so `import resnet_tutorial` never does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import BasicBlock, Bottleneck, make_shortcut
from .data import DeviceLoader, ImageSet
from .resnet import CIFAR_DEPTHS, DEPTHS
from .train import (
    History,
    TrainConfig,
    _capped,
    count_outputs,
    fit,
    make_optimizer,
    make_scheduler,
    pick_precision,
    seed_everything,
)

if TYPE_CHECKING:  # only for the annotations: never imported at run time here
    import keras
    import pytorch_lightning as pl

Data = ImageSet | tuple[Tensor, Tensor]  # uint8 images (N, C, H, W), int64 labels (N,)
TORCH_EPSILON = 1e-5  # nn.BatchNorm2d's default eps; Keras' BatchNormalization has 1e-3
# nn.BatchNorm2d's default: new = 0.9 old + 0.1 batch; Keras' m: new = m old + (1 - m) batch
TORCH_MOMENTUM = 0.1


# --- Keras --------------------------------------------------------------------------------------


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
        conv_bias: a bias in every convolution (Keras' `Conv2D` default), each one right before
            a BatchNorm, which subtracts it again.
        epsilon: BatchNorm's ε; Keras' default is 1e-3, torch's 1e-5.
        momentum: BatchNorm's running-average momentum in Keras' sense (new = m · old +
            (1 - m) · batch); torch's momentum=0.1 is Keras' 0.9, Keras' default is 0.99.
        stem_pool: "3x3" (3×3 max-pool, stride 2, padding 1: the paper's and torchvision's) or
            "2x2" (2×2 max-pool, stride 2, no padding).
        padding: "explicit" (ZeroPadding2D(k // 2), then a 'valid' convolution: torch's
            padding=k // 2) or "same" (Keras' padding='same', which at stride 2 pads only the
            bottom and right of an even-sized input).
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
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a number > 0, got {self.epsilon!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be a number in [0, 1), got {self.momentum!r}")


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
    return _keras_network(
        block, layers, (64, 128, 256, 512), num_classes, "imagenet", "B", options, f"resnet{depth}"
    )


def keras_cifar_resnet(
    depth: int, num_classes: int = 10, *, options: KerasOptions = KerasOptions()
) -> keras.Model:
    """Our `rt.cifar_resnet(depth)` (option A shortcuts) in Keras: 3 stages of (depth - 2) / 6
    basic blocks of 16, 32 and 64 channels (He et al. 2016a, Sec. 4.2)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"depth must be 6n + 2 with n >= 1 (e.g. {', '.join(map(str, CIFAR_DEPTHS))}), "
            f"got {depth!r}"
        )
    n = (depth - 2) // 6
    return _keras_network(
        BasicBlock,
        (n, n, n),
        (16, 32, 64),
        num_classes,
        "cifar",
        "A",
        options,
        f"cifar_resnet{depth}",
    )


def _keras_network(block, layers, widths, num_classes, stem, shortcut, options, name):
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


def keras_parameters(keras_model) -> tuple[int, int]:
    """(trainable, all) weights of a Keras model; `all` includes BatchNorm's moving statistics,
    which torch keeps as buffers and `rt.count_parameters` does not count."""
    trainable = sum(math.prod(w.shape) for w in keras_model.trainable_weights)
    return trainable, sum(math.prod(w.shape) for w in keras_model.weights)


def port_weights(model: nn.Module, keras_model, *, name: Callable[[str], str] = keras_name) -> int:
    """Copy every weight of our `model` into the Keras model; return how many tensors were copied.

    Layers are matched by name (`name(key)` of each module's key) and the copy is strict, as
    `load_state_dict` is: every Conv2d, BatchNorm2d and Linear must find a Keras layer with the
    same shapes, and every Keras layer with weights must be filled. Layouts: a convolution's
    kernel goes from torch's (out, in, kh, kw) to Keras' (kh, kw, in, out), a dense kernel from
    (out, in) to (in, out); BatchNorm's γ, β, running mean and variance go to gamma, beta,
    moving_mean, moving_variance. A Keras convolution with a bias gets zeros there (ours have
    none), so that a port to a model with `conv_bias=True` computes the same function.
    BatchNorm's ε and momentum are settings, not weights: they are *not* copied.
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
        copied += _port_layer(key, module, layers[layer_name], keras)
        filled.add(layer_name)
    unfilled = sorted(set(layers) - filled)
    if unfilled:
        raise ValueError(
            f"{len(unfilled)} Keras layers with weights have no counterpart in our model: "
            f"{unfilled[:4]}{' …' if len(unfilled) > 4 else ''} (a block too many?)"
        )
    return copied


def _port_layer(key: str, module: nn.Module, layer, keras) -> int:
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


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm2d of `model` random γ, β, running mean and variance, in place.

    A fresh BN (γ = 1, β = 0, mean 0, variance 1) is the identity, give or take ε, so a port that
    swaps or forgets its tensors would still pass; with these values it cannot.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


# --- Lightning ----------------------------------------------------------------------------------


@functools.cache
def lit_resnet_class() -> type[pl.LightningModule]:
    """The `LightningModule` class of `lightning_fit` (defined on first use: it needs Lightning)."""
    import pytorch_lightning as pl
    import torchmetrics

    class LitResNet(pl.LightningModule):
        """`rt.fit`'s training step as a LightningModule: same optimizer, schedule and loss."""

        def __init__(
            self, model: nn.Module, config: TrainConfig, steps_per_epoch: int, num_classes: int
        ) -> None:
            super().__init__()
            self.model, self.config, self.steps_per_epoch = model, config, steps_per_epoch
            self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
            # the fraction right over all the epoch's images, as rt.fit's train_error counts
            self.accuracy = torchmetrics.classification.MulticlassAccuracy(
                num_classes, average="micro"
            )
            self.channels_last = False
            self.step_losses: list[float] = []  # one per optimizer step
            self.epoch_errors: list[float] = []  # the training error of each epoch

        def forward(self, x: Tensor) -> Tensor:
            return self.model(x)

        def on_fit_start(self) -> None:  # rt.fit's memory format (channels_last on the CPU)
            _, self.channels_last = pick_precision(
                self.device, self.config.precision, self.config.channels_last
            )
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self(x)
            loss = self.criterion(logits.float(), y)
            self.accuracy.update(logits.detach(), y)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            self.step_losses.append(loss.item())
            return loss

        def on_train_epoch_end(self) -> None:  # Lightning 2 removed training_epoch_end(outputs)
            error = 1.0 - float(self.accuracy.compute())
            self.log("train_error", error)
            self.epoch_errors.append(error)
            self.accuracy.reset()

        def configure_optimizers(self) -> dict[str, Any]:
            optimizer = make_optimizer(self.model, self.config)
            scheduler = make_scheduler(optimizer, self.config, self.steps_per_epoch)
            # "interval": "step" steps the schedule after every optimizer step, as rt.fit does;
            # Lightning's default, "epoch", would step it once per epoch
            schedule = {"scheduler": scheduler, "interval": "step"}
            return {"optimizer": optimizer, "lr_scheduler": schedule}

    return LitResNet


class EpochBatches:
    """A `DeviceLoader` for Lightning: each `iter()` yields the batches of the trainer's epoch
    + 1, the epoch numbers that `rt.fit` gives its loader (1, 2, …).

    Lightning calls `iter()` more than once per epoch (once only to check that the loader is
    iterable), so the epoch is read from the trainer, not counted.
    """

    def __init__(self, loader: DeviceLoader, module: pl.LightningModule) -> None:
        self.loader, self.module = loader, module

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        self.loader.set_epoch(self.module.current_epoch + 1)
        return iter(self.loader)


LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


def lightning_fit(
    model: nn.Module, train: Data, config: TrainConfig, **trainer_options: Any
) -> pl.LightningModule:
    """Train `model` in place with `pl.Trainer(accelerator="cpu")` as `rt.fit(model, train, …,
    config)` trains it on the CPU: the same batches in the same order, optimizer, schedule, loss,
    precision and memory format, and the same cap `$RESNET_TUTORIAL_MAX_STEPS`.

    Returns the `LightningModule`; its `step_losses` and `epoch_errors` hold the loss of every
    step and the training error of every epoch. `trainer_options` go to `pl.Trainer`.
    """
    import pytorch_lightning as pl

    images, labels = _tensors(train)
    device = torch.device("cpu")
    num_classes = count_outputs(model, images, device)
    loader = DeviceLoader(
        (images, labels), config.batch_size, train=True, mean=config.mean, std=config.std,
        device=device, seed=config.seed, augment=config.augment, num_classes=num_classes,
    )  # fmt: skip
    capped, steps_per_epoch = _capped(config, len(loader))
    precision, _ = pick_precision(device, config.precision, config.channels_last)
    module = lit_resnet_class()(model, capped, steps_per_epoch, num_classes)
    options = {
        "accelerator": "cpu", "devices": 1, "max_epochs": capped.epochs_for(steps_per_epoch),
        "limit_train_batches": steps_per_epoch, "precision": LIGHTNING_PRECISION[precision],
        "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
        "enable_model_summary": False, **trainer_options,
    }  # fmt: skip
    with quiet_lightning():
        trainer = pl.Trainer(**options)
        seed_everything(config.seed)  # as rt.fit does before its first step
        trainer.fit(module, train_dataloaders=EpochBatches(loader, module))
    return module


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Hide Lightning's start-up notes ("GPU available: …", tips: INFO logs) and the deprecation
    warning that Lightning 2.6 raises on torch 2.14 (`LeafSpec`), inside the `with` block."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def fit_step_losses(
    model: nn.Module, train: Data, test: Data, config: TrainConfig
) -> tuple[History, list[float]]:
    """`rt.fit(model, train, test, config)` and the loss of each of its training steps.

    `rt.fit` records one mean loss per epoch. The loss of each step is recomputed here from the
    logits of each training forward pass (kept by a forward hook) and the labels of its batch,
    which `DeviceLoader.indices(epoch)` gives in the order that `rt.fit` reads them.
    """
    logits: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if module.training:  # not the evaluation after each epoch
            logits.append(output.detach().float().cpu())

    handle = model.register_forward_hook(keep)
    try:
        history = fit(model, train, test, config)
    finally:
        handle.remove()
    images, labels = _tensors(train)
    loader = DeviceLoader(
        (images, labels), config.batch_size, train=True, mean=config.mean, std=config.std,
        device="cpu", seed=config.seed, augment=config.augment,
    )  # fmt: skip
    steps = len(logits) // len(history)  # capped runs take the first steps of each epoch
    losses = []
    for epoch in range(1, len(history) + 1):
        order = loader.indices(epoch)
        for step in range(steps):
            batch = labels[order[step * config.batch_size : (step + 1) * config.batch_size]]
            output = logits[(epoch - 1) * steps + step]
            loss = F.cross_entropy(output, batch, label_smoothing=config.label_smoothing)
            losses.append(loss.item())
    return history, losses


def _tensors(data: Data) -> tuple[Tensor, Tensor]:
    return data.tensors if isinstance(data, ImageSet) else data


# --- the exercise: port a block to Keras ---------------------------------------------------------


def check_keras_basic_block(block_fn: Callable[..., Any]) -> None:
    """Exercise: `block_fn(x, in_channels, channels, stride)` applies a basic block to the Keras
    tensor `x` (N, C, H, W) and returns its output, with its layers named as rt.BasicBlock's
    modules: conv1, bn1, conv2, bn2, and downsample_0, downsample_1 where the shape changes.

    It is compared with `rt.BasicBlock` (option B) at stride 1 and at stride 2, with random
    weights and BatchNorm statistics ported by `port_weights`. Prints one line "✓ …", or raises
    AssertionError with a hint.
    """
    keras = import_keras()
    for in_channels, channels, stride in ((16, 16, 1), (16, 32, 2)):
        _check_keras_block_case(keras, block_fn, in_channels, channels, stride)
    print(
        "✓ Keras basic block: at stride 1 (16 → 16 channels, identity shortcut) and at stride 2 "
        "(16 → 32, projection), its layers, settings and weight shapes are rt.BasicBlock's, and "
        "with the same weights it computes the same outputs"
    )


def _fail(problem: str, hint: str) -> NoReturn:
    raise AssertionError(f"{problem}\nHint: {hint}")


def _check_keras_block_case(keras, block_fn, in_channels: int, channels: int, stride: int) -> None:
    where = f"block_fn(x, {in_channels}, {channels}, {stride})"
    inputs = keras.Input((in_channels, 8, 8))
    try:
        model = keras.Model(inputs, block_fn(inputs, in_channels, channels, stride))
    except Exception as error:  # the learner's code: any error is reported with its call
        _fail(
            f"{where} raised {type(error).__name__}: {error}",
            "apply keras.layers to x one after the other (the functional API) and return the "
            "block's output tensor",
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        shortcut = make_shortcut("B", in_channels, channels, stride)
        reference = randomize_batchnorm(BasicBlock(in_channels, channels, stride, shortcut)).eval()
    _check_keras_layers(where, model, reference, keras)
    port_weights(reference, model)
    x = torch.randn(2, in_channels, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
    output = keras_logits(model, x)
    if tuple(output.shape) != tuple(expected.shape):
        _fail(
            f"{where} outputs shape {tuple(output.shape)} for an input {tuple(x.shape)}; "
            f"rt.BasicBlock outputs {tuple(expected.shape)}",
            "only conv1 and the projection have the stride; every layer keeps the channels on "
            "axis 1 (data_format='channels_first')",
        )
    difference = float((output - expected).abs().max() / expected.abs().max())
    if difference > 1e-4:
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
            "the shape changes here, so the shortcut is a 1×1 Conv2D named 'downsample_0' with "
            "the stride and a BatchNormalization named 'downsample_1'"
            if "downsample_0" in expected
            else "the shape does not change here, so the shortcut is x itself, without layers"
        )
        _fail(
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
        _fail(f"{where}: {name} is a {type(layer).__name__}", f"{name} is a keras.layers.Conv2D")
    if layer.data_format != "channels_first":
        _fail(
            f"{where}: {name} has data_format={layer.data_format!r}",
            "the tensors are (N, C, H, W): Conv2D(..., data_format='channels_first')",
        )
    if layer.use_bias:
        _fail(
            f"{where}: {name} has a bias ({module.out_channels} parameters that rt.BasicBlock "
            "does not have)",
            "the BatchNorm after it subtracts the batch mean, and the bias with it: "
            "Conv2D(..., use_bias=False)",
        )
    expected = tuple(module.weight.permute(2, 3, 1, 0).shape)
    if tuple(layer.kernel.shape) != expected:
        _fail(
            f"{where}: {name}'s kernel has shape {tuple(layer.kernel.shape)}, expected {expected} "
            "(height, width, in, out)",
            f"{name} maps {module.in_channels} to {module.out_channels} channels with a "
            f"{module.kernel_size[0]}×{module.kernel_size[1]} kernel",
        )


def _check_keras_bn(where: str, name: str, layer, module: nn.BatchNorm2d, keras) -> None:
    if not isinstance(layer, keras.layers.BatchNormalization):
        _fail(f"{where}: {name} is a {type(layer).__name__}", f"{name} is a BatchNormalization")
    if tuple(layer.gamma.shape) != (module.num_features,):
        _fail(
            f"{where}: {name} normalises axis {layer.axis}, of size {layer.gamma.shape[0]}",
            "the channels are axis 1 of (N, C, H, W): BatchNormalization(axis=1)",
        )
    if abs(layer.epsilon - TORCH_EPSILON) > 1e-12:
        _fail(
            f"{where}: {name} has epsilon={layer.epsilon:g}, torch's BatchNorm2d {TORCH_EPSILON:g}",
            "Keras' default is 1e-3: BatchNormalization(..., epsilon=1e-5)",
        )
    if abs(layer.momentum - (1 - TORCH_MOMENTUM)) > 1e-12:
        _fail(
            f"{where}: {name} has momentum={layer.momentum:g}; torch's momentum=0.1 is Keras' 0.9",
            "Keras' momentum weighs the old average, torch's the new batch: "
            "BatchNormalization(..., momentum=0.9) (Keras' default 0.99 follows the batches "
            "10 times more slowly)",
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
        _fail(
            f"{differ}; {same_at_stride_two} use padding='same' at stride 2",
            "at stride 2, Keras' 'same' pads an even input only at the bottom and right, torch's "
            "padding=1 on every side: ZeroPadding2D(1, data_format='channels_first'), then "
            "Conv2D(..., padding='valid')",
        )
    if float(output.min()) < 0:
        _fail(f"{differ}, and some are negative", "the block ends with a ReLU after the addition")
    _fail(
        differ,
        "the order is conv1, bn1, ReLU, conv2, bn2, add the shortcut, ReLU; only conv1 and the "
        "projection have the stride",
    )
