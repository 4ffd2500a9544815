"""Pre-activation networks against a hand-written reference of He et al. 2016b.

The reference follows the paper (Fig. 4e, "full pre-activation": BN → ReLU → conv in every
layer of the residual branch, nothing after the addition) and the authors' released code for the
units that change dimensions (KaimingHe/resnet-1k-layers): BN and ReLU are applied once to the
unit's input, and both the residual branch and the projection shortcut, a bare 1×1 convolution,
read that pre-activated input. The network ends with BN → ReLU before the global pooling. It is
written with torch.nn.functional only, reading the weights by name, so that a wrong wiring in
the package (which input the shortcut reads, where the stride is, a ReLU after the addition, a
BN the authors do not have) changes the output.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import resnet_tutorial as rt


def bn_relu(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode BN with running statistics (eps 1e-5), then ReLU."""
    return F.relu(
        F.batch_norm(
            x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
            state[f"{prefix}.weight"], state[f"{prefix}.bias"], training=False, eps=1e-5,
        )
    )  # fmt: skip


def basic_unit(state: dict, p: str, x: torch.Tensor, stride: int, project: bool) -> torch.Tensor:
    pre = bn_relu(state, f"{p}.bn1", x)
    out = F.conv2d(pre, state[f"{p}.conv1.weight"], stride=stride, padding=1)
    out = F.conv2d(bn_relu(state, f"{p}.bn2", out), state[f"{p}.conv2.weight"], padding=1)
    shortcut = F.conv2d(pre, state[f"{p}.downsample.0.weight"], stride=stride) if project else x
    return out + shortcut


def bottleneck_unit(
    state: dict, p: str, x: torch.Tensor, stride: int, project: bool, stride_on: str
) -> torch.Tensor:
    s1, s3 = (stride, 1) if stride_on == "1x1" else (1, stride)
    pre = bn_relu(state, f"{p}.bn1", x)
    out = F.conv2d(pre, state[f"{p}.conv1.weight"], stride=s1)
    out = F.conv2d(
        bn_relu(state, f"{p}.bn2", out), state[f"{p}.conv2.weight"], stride=s3, padding=1
    )
    out = F.conv2d(bn_relu(state, f"{p}.bn3", out), state[f"{p}.conv3.weight"])
    shortcut = F.conv2d(pre, state[f"{p}.downsample.0.weight"], stride=stride) if project else x
    return out + shortcut


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so that every BN matters."""
    return rt.measure.randomize_batchnorm(model).eval()


@pytest.mark.parametrize("depth", [8, 20])
def test_cifar_preact_resnet_equals_the_reference(depth):
    model = randomize(rt.cifar_resnet(depth, shortcut="B", preact=True))
    state = model.state_dict()
    x = torch.randn(2, 3, 32, 32)
    n = (depth - 2) // 6
    # the appendix of He et al. 2016b: "we adopt the first activation right after conv1 and
    # before splitting into two paths", so both paths of the first unit read relu(bn(conv1(x)))
    h = bn_relu(state, "bn1", F.conv2d(x, state["conv1.weight"], padding=1))
    out = F.conv2d(h, state["layer1.0.conv1.weight"], padding=1)  # no pre-activation of its own
    out = F.conv2d(bn_relu(state, "layer1.0.bn2", out), state["layer1.0.conv2.weight"], padding=1)
    h = out + h
    for stage in (1, 2, 3):
        for i in range(1 if stage == 1 else 0, n):
            first = stage > 1 and i == 0
            h = basic_unit(state, f"layer{stage}.{i}", h, 2 if first else 1, project=first)
    h = bn_relu(state, "post_norm.0", h).mean(dim=(2, 3))
    expected = F.linear(h, state["fc.weight"], state["fc.bias"])
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("stride_on", ["3x3", "1x1"])
def test_preact_bottleneck_stage_equals_the_reference(stride_on):
    # layer2 of a pre-activation ResNet-50: 256 → 512 channels, stride 2, projection first
    model = randomize(rt.resnet50(preact=True, stride_on=stride_on))
    state = {k.removeprefix("layer2."): v for k, v in model.layer2.state_dict().items()}
    x = torch.randn(2, 256, 16, 16)
    expected = x
    for i in range(4):
        expected = bottleneck_unit(state, str(i), expected, 2 if i == 0 else 1, i == 0, stride_on)
    torch.testing.assert_close(model.layer2(x), expected)


def test_preact_projection_shortcuts_are_a_bare_convolution():
    # the authors' units that change dimensions project with a 1×1 convolution and no BN
    model = rt.resnet50(preact=True)
    for stage in model.stages:
        downsample = stage[0].downsample
        assert [type(m).__name__ for m in downsample] == ["Conv2d"]
