"""What a network costs and what flows through it: parameters, multiply-adds, shapes, gradients."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """Multiply-adds of one forward pass on one image of `input_size` (C, H, W).

    Counted by `torch.utils.flop_counter` on the meta device (no real arithmetic, so it is
    quick for any depth), which counts 2 FLOPs per multiply-add of convolutions and linear
    layers; BN, ReLU, pooling and additions are not counted, as in the paper's Table 1, whose
    "FLOPs" are multiply-adds.
    """
    if len(input_size) != 3:
        raise ValueError(f"input_size must be (C, H, W), got {tuple(input_size)}")
    meta_model = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(1, *input_size, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(x)
    return counter.get_total_flops() // 2


def summary(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> str:
    """torchsummary's layer table, computed on the model's own device, as text."""
    from torchsummary import summary as torchsummary_summary

    device = next(model.parameters()).device
    was_training = model.training
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), torch.no_grad():
            # torchsummary feeds a batch of 2 in train mode: eval keeps the BN statistics intact.
            model.eval()
            torchsummary_summary(model, tuple(input_size), device=device.type)
    finally:
        model.train(was_training)
    return out.getvalue()


def trace_shapes(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Shape of the tensor at the input, after the stem, after each stage and after the head."""
    trace = [("input", tuple(x.shape))]
    model.check_input(x)
    with torch.no_grad():
        x = model.stem(x)
        trace.append(("stem", tuple(x.shape)))
        for i, stage in enumerate(model.stages, start=1):
            x = stage(x)
            trace.append((f"layer{i}", tuple(x.shape)))
        x = model.head(x)
        trace.append(("head", tuple(x.shape)))
    return trace


def gradient_norms(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> list[tuple[str, float]]:
    """L2 norm of the loss gradient with respect to each block's weights, input to output.

    One forward and backward pass on one batch; the model's existing gradients are left as
    they were. Blocks are the entries of each stage (`layer1.0`, `layer1.1`, …).
    """
    blocks = [
        (f"layer{i}.{j}", block)
        for i, stage in enumerate(model.stages, start=1)
        for j, block in enumerate(stage)
    ]
    params = [[p for p in block.parameters() if p.requires_grad] for _, block in blocks]
    flat = [p for group in params for p in group]
    loss = loss_fn(model(images), labels)
    grads = iter(torch.autograd.grad(loss, flat))
    norms = []
    for (name, _), group in zip(blocks, params):
        squares = sum(next(grads).pow(2).sum() for _ in group)
        norms.append((name, float(torch.as_tensor(squares).sqrt())))
    return norms
