"""A LightningModule that trains as `rt.fit` does, and `rt.fit`'s loss per step to compare it
with (appendix). Lightning and torchmetrics are imported inside the functions."""

from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoint import seed_everything
from ..config import (
    TrainConfig,
    capped_to_max_steps,
    make_optimizer,
    make_scheduler,
    pick_precision,
)
from ..data import Data, DeviceLoader, as_tensors
from ..train import History, count_outputs, fit, train_loader

if TYPE_CHECKING:  # only for the annotations: never imported at run time here
    import pytorch_lightning as pl


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
    + 1, as `rt.fit` numbers them; read from the trainer, as Lightning calls `iter()` more than
    once per epoch."""

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
    precision and memory format.

    Returns the `LightningModule`; its `step_losses` and `epoch_errors` hold the loss of every
    step and the training error of every epoch. `trainer_options` go to `pl.Trainer`.
    """
    import pytorch_lightning as pl

    images, labels = as_tensors(train)
    device = torch.device("cpu")
    num_classes = count_outputs(model, images, device)
    loader = train_loader(train, config, device, num_classes=num_classes)  # rt.fit's batches
    capped, steps_per_epoch = capped_to_max_steps(config, len(loader))  # as rt.fit
    precision, _ = pick_precision(device, config.precision, config.channels_last)
    module = lit_resnet_class()(model, capped, steps_per_epoch, num_classes)
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": capped.epochs_for(steps_per_epoch),
        "limit_train_batches": steps_per_epoch,
        "precision": LIGHTNING_PRECISION[precision],
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **trainer_options,
    }
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
    """`rt.fit(model, train, test, config)` and the loss of each of its training steps,
    recomputed from the logits of each training forward pass (kept by a hook) and the labels
    of its batch (`DeviceLoader.indices(epoch)`)."""
    logits: list[Tensor] = []

    def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        if module.training:  # not the evaluation after each epoch
            logits.append(output.detach().float().cpu())

    handle = model.register_forward_hook(keep)
    try:
        history = fit(model, train, test, config)
    finally:
        handle.remove()
    labels = as_tensors(train)[1]
    loader = train_loader(train, config)
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
