"""Chapter 6's checks (transfer learning): what is frozen, the new head, the optimizer."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .._util import eval_mode, model_device, training_mode
from ..measure import BATCH_NORMS
from ._common import (
    fail,
    say_passed,
)


def _in_parts(name: str, parts: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in parts)


def check_frozen(model: nn.Module, trainable: Sequence[str], *, bn_frozen: bool = True) -> None:
    """Check that exactly the named parts of `model` train, and that frozen BN stays frozen.

    `trainable` lists the parts that train, as names or name prefixes (`["layer4", "fc"]`).
    With `bn_frozen=True` the BatchNorm layers of the frozen part must also stay in eval mode
    after `model.train()`, so that their running statistics do not drift.
    """
    parts = [trainable] if isinstance(trainable, str) else list(trainable)
    params = list(model.named_parameters())
    top = sorted({n.split(".")[0] for n, _ in params})
    for part in parts:
        if not any(_in_parts(n, [part]) for n, _ in params):
            raise ValueError(
                f"trainable names {part!r}, which is no part of the model; its top-level parts "
                f"are {', '.join(top)}"
            )
    should_train = [n for n, p in params if _in_parts(n, parts) and not p.requires_grad]
    should_freeze = [n for n, p in params if not _in_parts(n, parts) and p.requires_grad]
    if should_freeze:
        fail(
            f"{len(should_freeze)} parameters outside {parts} still require grad, e.g. "
            f"{', '.join(should_freeze[:3])}.",
            "freeze the rest: for p in model.parameters(): p.requires_grad_(False), then "
            "unfreeze (or create) the parts that train.",
        )
    if should_train:
        fail(
            f"{len(should_train)} parameters in {parts} are frozen, e.g. "
            f"{', '.join(should_train[:3])}.",
            "freeze first, then replace or unfreeze the parts that train; a new layer created "
            "after freezing requires grad by default.",
        )
    frozen_norms = _frozen_norms_in_train_mode(model, parts) if bn_frozen else []
    if frozen_norms:
        fail(
            f"{len(frozen_norms)} BatchNorm layers of the frozen part (e.g. "
            f"{', '.join(frozen_norms[:2])}) are in train mode after model.train().",
            "requires_grad=False freezes γ and β but not the running statistics: in train mode "
            "BN normalises with each batch's statistics and keeps updating its running ones, "
            "so the frozen backbone drifts. After every model.train(), put the frozen BN "
            "layers back in eval mode (or override the model's train method to do so); pass "
            "bn_frozen=False if you mean to adapt the statistics.",
        )
    trained = len(params) - sum(1 for _, p in params if not p.requires_grad)
    norms = [n for n, m in model.named_modules() if isinstance(m, BATCH_NORMS)]
    frozen_count = sum(1 for n in norms if not _in_parts(n, parts))
    bn_note = f"; the frozen part's {frozen_count} BN layers stay in eval mode after model.train()"
    say_passed(
        f"frozen: {trained} parameter tensors train ({', '.join(parts)}), "
        f"{len(params) - trained} are frozen{bn_note if bn_frozen else ''}"
    )


def _frozen_norms_in_train_mode(model: nn.Module, parts: Sequence[str]) -> list[str]:
    with training_mode(model, True):
        return [
            n
            for n, m in model.named_modules()
            if isinstance(m, BATCH_NORMS) and not _in_parts(n, parts) and m.training
        ]


def check_new_head(
    model: nn.Module, num_classes: int, *, old_head: nn.Module | None = None
) -> None:
    """Check a replaced classifier: `model.fc` is a new, trainable Linear(features → num_classes).

    Its input width must match what the backbone gives, its weights must look freshly
    initialised and, if `old_head` is given, it must not be that layer.
    """
    fc = getattr(model, "fc", None)
    linears = [m for m in fc.modules() if isinstance(m, nn.Linear)] if fc is not None else []
    if not linears:
        fail(
            f"model.fc is {type(fc).__name__}, expected an nn.Linear.",
            "replace the head: model.fc = nn.Linear(model.fc.in_features, num_classes).",
        )
    head = linears[-1]
    if old_head is not None and (
        head is old_head or head.weight is getattr(old_head, "weight", None)
    ):
        fail("model.fc is still the old head.", "assign a new nn.Linear to model.fc.")
    if head.out_features != num_classes:
        fail(
            f"model.fc outputs {head.out_features} classes, expected {num_classes}.",
            "model.fc = nn.Linear(model.fc.in_features, num_classes).",
        )
    features = _head_input_width(model, linears[0])
    if features != linears[0].in_features:
        fail(
            f"model.fc takes {linears[0].in_features} features, but the backbone gives {features}.",
            "take the old head's width: nn.Linear(model.fc.in_features, num_classes) (512 for "
            "ResNet-18/34, 2048 for ResNet-50 and deeper, 64 for the CIFAR nets).",
        )
    if not all(p.requires_grad for p in fc.parameters()):
        fail(
            "the new head is frozen (requires_grad=False).",
            "freeze the backbone first, then attach the new head: a new layer requires grad.",
        )
    bound = 1 / math.sqrt(head.in_features)
    largest = float(head.weight.detach().abs().max())
    if largest > 3 * bound:
        fail(
            f"model.fc looks trained rather than new: its largest weight is {largest:.3g}, "
            f"while a new nn.Linear({head.in_features}, {num_classes}) draws from ±{bound:.3g}.",
            "create a new layer for the new classes rather than reusing trained weights.",
        )
    say_passed(
        f"new head: fc = Linear({head.in_features} → {num_classes}), new, freshly initialised "
        f"and trainable; the model outputs (N, {num_classes})"
    )


def _head_input_width(model: nn.Module, first_linear: nn.Linear) -> int:
    """Width of what reaches the head, from one forward pass on two small images."""
    seen: list[int] = []
    handle = first_linear.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    in_channels = convs[0].in_channels if convs else 3
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(2, in_channels, 64, 64, device=model_device(model)))
    except Exception as error:
        if not seen:
            fail(f"the model raised {type(error).__name__}: {error}", "see the error.")
    finally:
        handle.remove()
    if not seen:
        fail("the model's forward never calls model.fc.", "end forward with self.fc(features).")
    return seen[0]


def check_optimizer_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Check that `optimizer` holds exactly the model's trainable parameters (chapter 6).

    It must hold every parameter with requires_grad=True, no frozen one and nothing that is not
    in the model (an old head).
    """
    held = [p for group in optimizer.param_groups for p in group["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    foreign = [p for p in held if id(p) not in names]
    if foreign:
        fail(
            f"The optimizer holds {len(foreign)} tensors that are not parameters of the model "
            f"(shapes {', '.join(str(tuple(p.shape)) for p in foreign[:2])}).",
            "it was created before the model changed (an old head?): create the optimizer "
            "after replacing the head and freezing.",
        )
    frozen = [names[id(p)] for p in held if not p.requires_grad]
    if frozen:
        fail(
            f"The optimizer still holds {len(frozen)} frozen parameter tensor"
            f"{'s' if len(frozen) > 1 else ''}, e.g. "
            f"{', '.join(frozen[:3])}.",
            "give the optimizer only the parameters that train (their requires_grad says "
            "which); it then keeps state only for them, and nothing frozen moves if a gradient "
            "or weight decay ever reaches it.",
        )
    held_ids = {id(p) for p in held}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held_ids]
    if missing:
        fail(
            f"The optimizer misses {len(missing)} trainable parameter tensor"
            f"{'s' if len(missing) > 1 else ''}, e.g. "
            f"{', '.join(missing[:3])}: they would never change.",
            "create the optimizer after replacing the head and choosing what to freeze.",
        )
    trained = [names[id(p)] for p in held]
    shown = ", ".join(trained[:3]) + (", …" if len(trained) > 3 else "")
    frozen_count = len(names) - len(trained)
    say_passed(
        f"optimizer: holds exactly the {len(trained)} trainable parameter tensors ({shown}), "
        f"none of the {frozen_count} frozen ones"
    )
