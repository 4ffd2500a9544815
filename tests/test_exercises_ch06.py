"""Chapter 6's checks against right and wrong learner code: freezing, a new head, the optimizer.

The oracle: a ResNet-8 of width 4 frozen by hand, whose parameter tensors are counted from its
layers (7 convolutions and 7 BN layers with γ and β: 21 frozen; the new fc's weight and bias:
2 that train) and whose last stage is 16 channels wide (4 · width).
"""

from __future__ import annotations

import pytest
import torch
from support.exercise_helpers import fails, passes
from torch import nn

import resnet_tutorial as rt
from resnet_tutorial.exercises import ch06


def feature_extractor(num_classes=5, *, keep_bn_frozen=True, freeze_head=False):
    model = rt.cifar_resnet(8, width=4)
    for p in model.parameters():
        p.requires_grad_(False)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    if freeze_head:
        model.fc.requires_grad_(False)
    if keep_bn_frozen:
        norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        train = model.train

        def train_with_frozen_bn(mode=True):
            train(mode)
            for m in norms:
                m.eval()
            return model

        model.train = train_with_frozen_bn
    return model


# --- exercise 1: freezing ----------------------------------------------------------------------


def test_frozen(capsys):
    out = passes(ch06.check_frozen, feature_extractor(), ["fc"], capsys=capsys)
    assert "2 parameter tensors train (fc)" in out and "21 are frozen" in out
    assert "7 BN layers stay in eval mode" in out
    drifting = feature_extractor(keep_bn_frozen=False)
    fails(
        ch06.check_frozen,
        drifting,
        ["fc"],
        says=[r"\b7 BatchNorm", r"train mode"],
        hint=["running statistics", "eval mode", "bn_frozen=False"],
    )
    passes(ch06.check_frozen, drifting, ["fc"], bn_frozen=False, capsys=capsys)
    fails(
        ch06.check_frozen,
        feature_extractor(freeze_head=True),
        ["fc"],
        says=[r"\b2 parameters\b", r"\['fc'\]", "frozen"],
        hint=["after freezing"],
    )
    fails(
        ch06.check_frozen,
        rt.cifar_resnet(8, width=4),
        "fc",
        says=[r"\b21 parameters\b", "require grad"],
        hint=[r"requires_grad_\(False\)"],
    )


def test_frozen_rejects_a_part_the_model_lacks():
    with pytest.raises(ValueError, match=r"'head'.*\bfc\b"):
        ch06.check_frozen(feature_extractor(), ["head"])


# --- exercise 2: a new head --------------------------------------------------------------------


def test_new_head(capsys):
    model = feature_extractor(5)
    out = passes(ch06.check_new_head, model, 5, capsys=capsys)
    assert "Linear(16 → 5)" in out
    fails(ch06.check_new_head, model, 10, says=[r"\b5 classes", r"\b10\b"])
    fails(ch06.check_new_head, feature_extractor(freeze_head=True), 5, says=["frozen"])
    fails(ch06.check_new_head, model, 5, old_head=model.fc, says=["old head"])
    model.fc = nn.Linear(64, 5)
    fails(ch06.check_new_head, model, 5, says=[r"\b64 features", r"gives 16\b"])
    model.fc = nn.Linear(16, 5)
    nn.init.normal_(model.fc.weight, std=1.0)
    fails(ch06.check_new_head, model, 5, says=["trained", r"±0\.25\b"])  # 1/√16


# --- exercise 3: the optimizer of a partly frozen network --------------------------------------


def test_optimizer_params(capsys):
    model = feature_extractor()
    right = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    out = passes(ch06.check_optimizer_params, right, model, capsys=capsys)
    assert "2 trainable parameter tensors (fc.weight, fc.bias)" in out
    assert "21 frozen" in out
    everything = torch.optim.SGD(model.parameters(), lr=0.01)
    fails(
        ch06.check_optimizer_params,
        everything,
        model,
        says=[r"\b21 frozen"],
        hint=["only the parameters that train", "requires_grad"],
    )
    before_new_head = torch.optim.SGD(model.fc.parameters(), lr=0.01)
    model.fc = nn.Linear(16, 5)
    fails(
        ch06.check_optimizer_params,
        before_new_head,
        model,
        says=[r"\b2 tensors", "not parameters of the model"],
        hint=["after replacing"],
    )
    missing = torch.optim.SGD([model.fc.weight], lr=0.01)
    fails(ch06.check_optimizer_params, missing, model, says=[r"misses 1\b", r"fc\.bias"])
