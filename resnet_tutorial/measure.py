"""What a network costs and what flows through it: parameters, multiply-adds, shapes, gradients,
responses, and the confusion counts of its predictions."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ._util import check_positive_int, eval_mode, model_device

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm of `model` random γ, β, running mean and variance, in place.

    A fresh BN is the identity, give or take ε, so a port or a block that swaps or forgets its BN
    tensors would still pass a comparison; with these values (seeded by `seed`) it cannot.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, BATCH_NORMS):
                continue
            n = module.num_features
            if module.affine:
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            if module.running_mean is not None:
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return model


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> int:
    """Multiply-adds of one forward pass on one image of `input_size` (C, H, W).

    Counted by `torch.utils.flop_counter` on the meta device (quick for any depth): convolutions
    and linear layers only, as in the paper's Table 1, whose "FLOPs" are multiply-adds.
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
    """torchsummary's layer table, computed on the model's own device, as text.

    While the table is made, each `nn.Identity` (our shortcut where torchvision has
    `downsample=None`) is an empty `nn.Sequential`, which torchsummary skips: the table and its
    memory estimate are then torchvision's (ResNet-50: 286.56 MB, not 317.18).
    """
    from torchsummary import summary as torchsummary_summary

    device = model_device(model)
    identities = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, nn.Identity)
    ]
    out = io.StringIO()
    try:
        for parent, name, _ in identities:
            setattr(parent, name, nn.Sequential())
        # torchsummary feeds a batch of 2 in train mode: eval keeps the BN statistics intact.
        with contextlib.redirect_stdout(out), torch.no_grad(), eval_mode(model):
            torchsummary_summary(model, tuple(input_size), device=device.type)
    finally:
        for parent, name, child in identities:
            setattr(parent, name, child)
    return out.getvalue()


def trace_shapes(model: nn.Module, x: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """Shape of the tensor at the input, after the stem, after each stage and after the head."""
    check_input(model, x)
    trace = [("input", tuple(x.shape))]
    with torch.no_grad():
        x = model.stem(x)
        trace.append(("stem", tuple(x.shape)))
        for i, stage in enumerate(model.stages, start=1):
            x = stage(x)
            trace.append((f"layer{i}", tuple(x.shape)))
        x = model.head(x)
        trace.append(("head", tuple(x.shape)))
    return trace


def check_input(model: nn.Module, x: Tensor) -> None:
    """Raise a clear error for an input that `model` (a ResNet) cannot take, before it runs."""
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(
            f"input must be 4-D (N, C, H, W), got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    if x.shape[1] != model.in_channels:
        raise ValueError(
            f"input has {x.shape[1]} channels, the network expects {model.in_channels} "
            f"(shape {tuple(x.shape)})"
        )


def confusion_counts(
    targets: Tensor | Sequence[int], predictions: Tensor | Sequence[int], num_classes: int
) -> Tensor:
    """[num_classes, num_classes] int64 counts: row = true class, column = predicted class."""
    t = torch.as_tensor(targets).flatten().long()
    p = torch.as_tensor(predictions).flatten().long()
    if len(p) != len(t):
        raise ValueError(f"predictions has {len(p)} entries but targets has {len(t)}")
    check_positive_int("num_classes", num_classes)
    for name, v in (("targets", t), ("predictions", p)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(
                f"{name} must be class indices in [0, {num_classes}), "
                f"got values from {int(v.min())} to {int(v.max())}"
            )
    counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=t.device)
    counts.index_put_((t, p.to(t.device)), torch.ones_like(t), accumulate=True)
    return counts.cpu()


def _blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The body's blocks, input to output, named as in the state_dict (`layer1.0`, …)."""
    return [
        (f"layer{i}.{j}", block)
        for i, stage in enumerate(model.stages, start=1)
        for j, block in enumerate(stage)
    ]


def gradient_norms(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    scale_free: bool = False,
) -> list[tuple[str, float]]:
    """L2 norm of the loss gradient with respect to each block's weights, input to output.

    One forward and backward pass on one batch; the model's existing gradients are left as
    they were. Blocks are the entries of each stage (`layer1.0`, `layer1.1`, …).

    With ``scale_free=True`` each convolution's gradient norm is multiplied by the norm of its
    weights, ‖∂L/∂W‖·‖W‖, and the block's value is the L2 norm of these products over its
    convolutions. A convolution followed by BN computes the same function after any rescaling
    of W, and its gradient shrinks by the factor W grows: the product does not change, so it
    measures how strongly the loss depends on the layer, whatever the scale of its weights.
    """
    blocks = _blocks(model)
    if scale_free:
        params = [
            [
                m.weight
                for m in block.modules()
                if isinstance(m, nn.Conv2d) and m.weight.requires_grad
            ]
            for _, block in blocks
        ]
    else:
        params = [[p for p in block.parameters() if p.requires_grad] for _, block in blocks]
    flat = [p for group in params for p in group]
    loss = loss_fn(model(images), labels)
    grads = iter(torch.autograd.grad(loss, flat))
    norms = []
    for (name, _), group in zip(blocks, params):
        squares = sum(
            (next(grads).norm() * (p.detach().norm() if scale_free else 1)).pow(2) for p in group
        )
        norms.append((name, float(torch.as_tensor(squares).sqrt())))
    return norms


@torch.no_grad()
def response_stds(model: nn.Module, images: Tensor) -> list[tuple[str, float]]:
    """Standard deviation of each 3×3 layer's response, input to output (He et al. 2016a, Fig. 7).

    A response is the output of the BN after a convolution, before the ReLU or the addition; its
    std is taken per channel, then averaged over the channels, in eval mode. Returns
    ``(name, std)`` for every BN inside the blocks but the shortcuts', e.g. ``layer1.0.bn1``.
    """
    responses: list[tuple[str, float]] = []
    hooks = []
    for block_name, block in _blocks(model):
        for name, module in block.named_modules():
            if isinstance(module, nn.BatchNorm2d) and not name.startswith("downsample"):

                def record(_module, _input, output, name=f"{block_name}.{name}"):
                    per_channel = output.float().transpose(0, 1).flatten(1).std(dim=1)
                    responses.append((name, float(per_channel.mean())))

                hooks.append(module.register_forward_hook(record))
    try:
        with eval_mode(model):
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
    return responses
