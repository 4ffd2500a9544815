"""Chapter 5's checks against right and wrong learner code: schedule, weight decay, evaluation.

The oracles: the paper's schedule written out by hand (÷10 at 50% and 75% of the steps, Sec.
4.2), the parameter tensors of a ResNet-8 counted from its layers, and a plain evaluation loop.
"""

from __future__ import annotations

import re

import pytest
import torch
from support.exercise_helpers import fails, passes

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch05

# --- the learning-rate schedule ----------------------------------------------------------------


def paper_lr(step, total_steps=100, base_lr=0.1):
    return base_lr * 0.1 ** ((step >= total_steps // 2) + (step >= 3 * total_steps // 4))


def test_lr_schedule(capsys):
    out = passes(ch05.check_lr_schedule, paper_lr, total_steps=100, capsys=capsys)
    assert re.search(r"0\.1 .*\b0–49\b.*\b0\.01 .*\b50–74\b.*\b0\.001 .*\b75–99\b", out), out
    odd = lambda s: 0.1 * 0.1 ** ((s >= 0.5 * 101) + (s >= 0.75 * 101))  # drops at 51 and 76
    out = passes(ch05.check_lr_schedule, odd, total_steps=101, capsys=capsys)
    assert re.search(r"\b51–75\b.*\b76–100\b", out), out


@pytest.mark.parametrize(
    ("fn", "says", "hint"),
    [
        (lambda s: 0.1 * 0.1 ** ((s > 50) + (s > 75)), [r"step 51\b", "late"], [r">="]),
        (lambda s: 0.1 * 0.1 ** ((s >= 49) + (s >= 74)), [r"step 49\b", "early"], [r">="]),
        (lambda s: 0.1 * 0.5 ** ((s >= 50) + (s >= 75)), [r"divided by 2\b"], [r"0\.1"]),
        (lambda s: paper_lr(s) * 10, [r"lr\(0\) is 1\b", r"0\.1\b", "factor"], []),
        (lambda s: 0.1 * 0.1 ** (s >= 50), [r"\b1 time\b", r"\b50\b", "twice"], []),
        (lambda s: 0.1 * 0.1 ** ((s >= 30) + (s >= 60)), [r"step 30\b", r"\b50\b"], []),
    ],
)
def test_lr_schedule_mistakes_get_their_hint(fn, says, hint):
    fails(ch05.check_lr_schedule, fn, total_steps=100, says=says, hint=hint)


def test_lr_schedule_rejects_a_bad_step_count():
    with pytest.raises(ValueError, match=r"total_steps\b.*\b4\b.*\b3\b"):
        ch05.check_lr_schedule(paper_lr, total_steps=3)
    with pytest.raises(TypeError, match=r"total_steps\b.*100\.0"):
        ch05.check_lr_schedule(paper_lr, total_steps=100.0)


# --- exercise 2: weight decay on weights only --------------------------------------------------


def groups(model, no_decay=lambda name, p: p.ndim <= 1):
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": 1e-4},
        {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0},
    ]


def test_weight_decay_groups(capsys):
    model = rt.cifar_resnet(8, width=4)
    out = passes(ch05.check_weight_decay_groups, groups(model), model, capsys=capsys)
    # ResNet-8: 7 convolutions and fc; 7 BN layers (γ, β) and fc's bias
    assert re.search(r"0\.0001 on 8 \D*weights.*\b15 BN\b", out), out
    optimizer = torch.optim.SGD(groups(model), lr=0.1)
    passes(ch05.check_weight_decay_groups, optimizer, model, weight_decay=1e-4, capsys=capsys)


def test_weight_decay_mistakes_get_their_hint():
    model = rt.cifar_resnet(8, width=4)
    check = ch05.check_weight_decay_groups
    everything = [{"params": list(model.parameters()), "weight_decay": 1e-4}]
    fails(
        check,
        everything,
        model,
        says=[r"bn1\.weight", "γ", r"0\.0001"],
        hint=[r"p\.ndim <= 1", r"weight_decay=0\b"],
    )
    only_bn = groups(model, lambda n, p: "bn" in n)
    fails(check, only_bn, model, says=[r"fc\.bias", "bias", r"0\.0001"])
    no_weights = groups(model, lambda n, p: True)
    fails(check, no_weights, model, says=[r"conv1\.weight", r"no weight decay"], hint=["1e-4"])
    fails(check, groups(model)[:1], model, says=[r"bn1\.weight", r"no parameter group"])
    fails(check, [{"params": list(model.parameters())}], model, says=[r"\b0\b", "weight_decay"])
    optimizer = torch.optim.SGD(groups(model), lr=0.1)
    fails(check, optimizer, model, weight_decay=5e-4, says=[r"0\.0001", r"0\.0005"])


# --- evaluation --------------------------------------------------------------------------------


def my_evaluate(model, data):
    images, labels = data
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(1) != labels).float().mean().item()


def forgets_eval(model, data):
    with torch.no_grad():
        return model(data[0])


def forgets_no_grad(model, data):
    model.eval()
    return model(data[0])


def test_eval_mode(capsys):
    out = passes(ch05.check_eval_mode, my_evaluate, capsys=capsys)
    assert re.search(r"\b1 forward pass\b.*eval mode.*no_grad", out), out

    def inference(model, data):
        model.eval()
        with torch.inference_mode():
            return model(data[0])

    passes(ch05.check_eval_mode, inference, capsys=capsys)
    model = rt.cifar_resnet(8, width=4).train()
    passes(ch05.check_eval_mode, my_evaluate, model, capsys=capsys)
    assert model.training  # restored


@pytest.mark.parametrize(
    ("evaluate", "says", "hint"),
    [
        (forgets_eval, ["train mode"], [r"model\.eval\(\)"]),
        (forgets_no_grad, ["gradients on"], [r"torch\.no_grad"]),
        (lambda model, data: None, ["never ran the model"], []),
    ],
)
def test_eval_mode_mistakes_get_their_hint(evaluate, says, hint):
    fails(ch05.check_eval_mode, evaluate, says=says, hint=hint)
