"""Chapter 5's checks (training): the lr schedule, weight decay groups and evaluation mode."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._util import check_positive_int, training_mode
from ..measure import BATCH_NORMS
from ..models import cifar_resnet
from ._common import (
    call_learner,
    fail,
    keeps_random_state,
    say_passed,
)


def check_lr_schedule(
    fn: Callable[[int], float], *, total_steps: int, base_lr: float = 0.1
) -> None:
    """Check the paper's step schedule: lr(step) for step = 0 … total_steps - 1 (Sec. 3.4, 4.2).

    `base_lr` until 50% of the steps, base_lr / 10 until 75%, base_lr / 100 after; step
    int(0.5 · total_steps) is the first at the new rate (with an odd count, either neighbour).
    """
    check_positive_int("total_steps", total_steps, minimum=4)
    rates = [
        float(call_learner(fn, (step,), f"lr({step})", "lr(step) returns a number."))
        for step in range(total_steps)
    ]
    same = lambda a, b: abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-12
    if not same(rates[0], base_lr):
        returns_factor = same(rates[0], 1.0)
        fail(
            f"lr(0) is {rates[0]:g}, expected base_lr = {base_lr:g}"
            + (": it returns the factor, not the rate." if returns_factor else "."),
            "return the learning rate itself: base_lr * 0.1 ** (milestones passed).",
        )
    changes = [
        (s, rates[s - 1], rates[s])
        for s in range(1, total_steps)
        if not same(rates[s - 1], rates[s])
    ]
    milestones = [{math.floor(p * total_steps), math.ceil(p * total_steps)} for p in (0.5, 0.75)]
    described = [f"{min(m)}" for m in milestones]
    if len(changes) != 2:
        at = ", ".join(str(s) for s, *_ in changes[:6]) or "no step"
        fail(
            f"The lr changes {len(changes)} time{'s' * (len(changes) != 1)} (at {at}); the paper "
            f"divides it by 10 twice, at 50% and 75% of the {total_steps} steps (steps "
            f"{described[0]} and {described[1]}).",
            "lr = base_lr * 0.1 ** ((step >= m1) + (step >= m2)), with m1 = int(0.5 * "
            "total_steps) and m2 = int(0.75 * total_steps).",
        )
    for (step, before, after), allowed, percent in zip(changes, milestones, (50, 75)):
        if step not in allowed:
            distance = min(abs(step - m) for m in allowed)
            late = "late" if step > max(allowed) else "early"
            problem = f"one step {late} (off by one)" if distance == 1 else "at the wrong step"
            fail(
                f"The lr drops at step {step}, {problem}: {percent}% of total_steps="
                f"{total_steps} is step {min(allowed)}.",
                f"steps count from 0 and step {min(allowed)} is the first at the new rate: "
                "compare with `step >= milestone`, not `step > milestone`.",
            )
        if not same(before / after, 10.0):
            fail(
                f"The lr goes from {before:g} to {after:g} at step {step}: divided by "
                f"{before / after:g}, not by 10.",
                "multiply by 0.1 at each milestone: base_lr, base_lr / 10, base_lr / 100.",
            )
    (m1, _, lr1), (m2, _, lr2) = changes
    say_passed(
        f"lr schedule: {base_lr:g} for steps 0–{m1 - 1}, {lr1:g} for {m1}–{m2 - 1}, {lr2:g} "
        f"for {m2}–{total_steps - 1}"
    )


def check_weight_decay_groups(
    param_groups: torch.optim.Optimizer | Sequence[dict[str, Any]],
    model: nn.Module,
    *,
    weight_decay: float | None = None,
) -> None:
    """Check weight decay per parameter: on conv and linear weights, not on BN or biases.

    `param_groups` is an optimizer or the list of groups given to one; the decay of the weights
    is `weight_decay`, if given.
    """
    groups = getattr(param_groups, "param_groups", param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    decay: dict[int, float] = {}
    for i, group in enumerate(groups):
        if "weight_decay" not in group:
            fail(
                f"Parameter group {i} has no 'weight_decay'.",
                "give every group its own: weight_decay=0 for BN and biases, 1e-4 for weights.",
            )
        params = group["params"]
        for p in [params] if isinstance(params, Tensor) else list(params):
            if id(p) not in names:
                fail(
                    f"Parameter group {i} holds a tensor of shape {tuple(p.shape)} that is not "
                    "a parameter of the model.",
                    "build the groups from model.named_parameters() of this model.",
                )
            if id(p) in decay:
                fail(f"{names[id(p)]} is in two groups.", "put each parameter in one group.")
            decay[id(p)] = float(group["weight_decay"])
    _check_decay_values(model, decay, weight_decay)
    values = sorted({v for v in decay.values() if v})
    decayed = sum(1 for v in decay.values() if v)
    say_passed(
        f"weight decay: {', '.join(f'{v:g}' for v in values)} on {decayed} conv/linear weights, "
        f"none on {len(decay) - decayed} BN parameters and biases"
    )


def _check_decay_values(model, decay, weight_decay) -> None:
    owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    hint_none = (
        "no weight decay on BN's γ and β or on biases: put every parameter with p.ndim <= 1 "
        "in a group with weight_decay=0 (the “no bias decay” of He et al. 2019a)."
    )
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) not in decay:
            fail(
                f"{name} is in no parameter group, so it never trains.",
                "every trainable parameter goes in exactly one group.",
            )
        value = decay[id(p)]
        if p.ndim <= 1 and value:
            is_bn = isinstance(owners[id(p)], BATCH_NORMS)
            what = (
                ("BatchNorm γ" if name.endswith("weight") else "BatchNorm β") if is_bn else "a bias"
            )
            fail(f"{name} ({what}) gets weight decay {value:g}.", hint_none)
        if p.ndim > 1 and not value:
            fail(
                f"{name} (a weight of {type(owners[id(p)]).__name__}) gets no weight decay.",
                "decay the convolution and linear weights (p.ndim > 1): weight_decay=1e-4 in "
                "the paper (Sec. 3.4).",
            )
        if p.ndim > 1 and weight_decay is not None and abs(value - weight_decay) > 1e-12:
            fail(
                f"{name} gets weight decay {value:g}, expected {weight_decay:g}.",
                f"use weight_decay={weight_decay:g} for the weights.",
            )


@keeps_random_state
def check_eval_mode(
    evaluate_fn: Callable[[nn.Module, Any], Any],
    model: nn.Module | None = None,
    data: Any = None,
) -> None:
    """Check that an `evaluate(model, data)` runs the model in eval mode and without gradients.

    The model is put in train mode first. By default it is a small CIFAR ResNet and `data` a
    tuple (images (16, 3, 32, 32) float, labels (16,)).
    """
    if model is None:
        model = cifar_resnet(8, width=4)
    if data is None:
        data = (torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS)]
    before = [b.clone() for m in norms for b in (m.running_mean, m.running_var) if b is not None]
    calls: list[tuple[bool, bool]] = []
    record = lambda m, args: calls.append((m.training, torch.is_grad_enabled()))
    handles = [m.register_forward_pre_hook(record) for m in [model, *norms]]
    try:
        with training_mode(model, True):  # evaluate must switch to eval mode itself
            call_learner(evaluate_fn, (model, data), "evaluate(model, data)", "see the error.")
    finally:
        for handle in handles:
            handle.remove()
    after = [b for m in norms for b in (m.running_mean, m.running_var) if b is not None]
    _check_eval_calls(calls, before, after)
    passes = sum(1 for _ in calls) // (1 + len(norms))
    say_passed(
        f"evaluate: {passes} forward pass{'es' * (passes != 1)}, all in eval mode under "
        "no_grad; BN statistics unchanged"
    )


def _check_eval_calls(calls, before, after) -> None:
    if not calls:
        fail("evaluate never ran the model.", "call model(images) on the data.")
    if any(training for training, _ in calls):
        fail(
            "evaluate ran the model in train mode: BN normalised with each batch's statistics "
            "and updated its running ones.",
            "call model.eval() before evaluating (and model.train() again before training).",
        )
    if any(grad for _, grad in calls):
        fail(
            "evaluate ran the model with gradients on: autograd kept every activation for a "
            "backward pass that never comes.",
            "wrap the loop in `with torch.no_grad():` (or torch.inference_mode()).",
        )
    if any(not torch.equal(a, b) for a, b in zip(before, after)):
        fail(
            "evaluate changed BN's running statistics.",
            "evaluation must not change the model: call model.eval() first.",
        )
