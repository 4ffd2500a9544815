"""The ResNet family against its references: torchvision's models, the paper, hand counts."""

from __future__ import annotations

import contextlib
import copy
import io
import re

import pytest
import torch
import torchvision
from torch import nn

import resnet_tutorial as rt

# Published counts: torchvision's model documentation (parameters, GFLOPS = GMAC at 224×224)
# and, for stride on the 1×1, the same network counted by hand from the paper's Table 1.
IMAGENET_COUNTS = {
    "resnet18": (rt.resnet18, 11_689_512, 1.814),
    "resnet34": (rt.resnet34, 21_797_672, 3.664),
    "resnet50": (rt.resnet50, 25_557_032, 4.089),
    "resnet101": (rt.resnet101, 44_549_160, 7.801),
    "resnet152": (rt.resnet152, 60_192_808, 11.514),
    "resnext50_32x4d": (rt.resnext50_32x4d, 25_028_904, 4.230),
    "wide_resnet50_2": (rt.wide_resnet50_2, 68_883_240, 11.398),
}
# Idelbayev (2018), README of pytorch_resnet_cifar10: exact parameter counts, option A.
CIFAR_COUNTS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


def on_meta(build, *args, **kwargs) -> nn.Module:
    """The model without storage (shapes only): counting needs no weights, and an ImageNet
    model skips the initialisation of its millions of them (a CIFAR model builds faster on the
    CPU)."""
    with torch.device("meta"):
        return build(*args, **kwargs)


@pytest.mark.parametrize("name", list(IMAGENET_COUNTS))
def test_imagenet_counts_match_published(name):
    builder, parameters, gmac = IMAGENET_COUNTS[name]
    model = on_meta(builder)
    assert rt.count_parameters(model) == parameters
    assert round(rt.count_macs(model) / 1e9, 3) == gmac


def test_stride_on_1x1_keeps_parameters_and_costs_less():
    model = on_meta(rt.resnet50, stride_on="1x1")
    assert rt.count_parameters(model) == 25_557_032
    assert round(rt.count_macs(model) / 1e9, 3) == 3.858


@pytest.mark.parametrize("depth", list(CIFAR_COUNTS))
def test_cifar_counts_match_published(depth):
    assert rt.count_parameters(rt.cifar_resnet(depth)) == CIFAR_COUNTS[depth]
    # The plain net has the same parameters: option A's shortcuts have none (Sec. 4.2).
    assert rt.count_parameters(rt.cifar_plain(depth)) == CIFAR_COUNTS[depth]


TORCHVISION = {
    "resnet18": rt.resnet18,
    "resnet34": rt.resnet34,
    "resnet50": rt.resnet50,
    "resnet101": rt.resnet101,
    "resnet152": rt.resnet152,
    "resnext50_32x4d": rt.resnext50_32x4d,
    "wide_resnet50_2": rt.wide_resnet50_2,
}


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_outputs_equal_torchvision(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    rt.measure.randomize_batchnorm(reference)  # fresh BN (0, 1) would hide a misplaced one
    ours = TORCHVISION[name](10).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


def test_stride_on_1x1_loads_torchvision_weights_but_computes_something_else():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    rt.measure.randomize_batchnorm(reference)  # fresh BN (0, 1) would hide a misplaced one
    ours = rt.resnet50(stride_on="1x1").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)  # the keys alone prove nothing
    original = copy.deepcopy(reference)  # the oracle: the paper's original bottleneck (v1),
    for stage in (original.layer2, original.layer3, original.layer4):  # torchvision's
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)  # strides moved by hand
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), original(x), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(ours(x), reference(x), rtol=1e-3, atol=1e-3)


def test_zero_init_residual_matches_torchvision_and_makes_identity_blocks():
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None, zero_init_residual=True)
    ours = rt.resnet50(zero_init_residual=True)
    for (name, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters()):
        if name.endswith("bn3.weight"):
            assert torch.equal(a, b) and not a.any()
    block = ours.layer1[1].eval()  # an identity-shortcut block: y = relu(0 + x) = relu(x)
    x = torch.randn(2, 256, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), torch.relu(x))


def _projection_cost(pairs):
    # A 1×1 projection + BN costs in·out weights plus 2·out BN parameters.
    return sum(i * o + 2 * o for i, o in pairs)


def _block_channels(stage_widths, blocks, in_width, expansion=1):
    pairs = []
    for width, n in zip(stage_widths, blocks):
        for _ in range(n):
            pairs.append((in_width, width * expansion))
            in_width = width * expansion
    return pairs


def _changing(pairs, blocks):
    # The first block of every stage but the first changes the shape (stride 2).
    firsts = {sum(blocks[:i]) for i in range(1, len(blocks))}
    return [p for k, p in enumerate(pairs) if k in firsts or p[0] != p[1]]


@pytest.mark.parametrize(
    "build, widths, blocks, stem_width",
    [
        (lambda s: rt.resnet34(shortcut=s), (64, 128, 256, 512), (3, 4, 6, 3), 64),
        (lambda s: rt.cifar_resnet(20, shortcut=s), (16, 32, 64), (3, 3, 3), 16),
    ],
    ids=["resnet34", "cifar_resnet20"],
)
def test_shortcut_options_cost_what_they_should(build, widths, blocks, stem_width):
    pairs = _block_channels(widths, blocks, stem_width)
    count = {s: rt.count_parameters(on_meta(build, s)) for s in ("A", "B", "C", "D", None)}
    assert count["A"] == count[None]  # option A adds no parameters at all
    assert count["B"] - count["A"] == _projection_cost(_changing(pairs, blocks))
    assert count["D"] - count["A"] == _projection_cost(_changing(pairs, blocks))
    assert count["C"] - count["A"] == _projection_cost(pairs)


def test_resnet34_option_b_adds_three_projections():
    # Hand count: 1×1 projections 64→128, 128→256, 256→512, each with BN (Table 3).
    extra = (64 * 128 + 256) + (128 * 256 + 512) + (256 * 512 + 1024)
    assert rt.count_parameters(on_meta(rt.resnet34, shortcut="A")) == 21_797_672 - extra


def test_option_a_pads_zeros_on_both_sides_like_the_cifar_checkpoints():
    x = torch.randn(2, 16, 8, 8)
    # Idelbayev (2018): F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
    expected = nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 32 // 4, 32 // 4))
    torch.testing.assert_close(rt.ZeroPadShortcut(16, 32, 2)(x), expected)


def test_option_d_averages_before_projecting():
    torch.manual_seed(0)
    shortcut = rt.make_shortcut("D", 8, 16, 2).eval()
    x = torch.randn(1, 8, 6, 6)
    conv, bn = shortcut[1], shortcut[2]
    expected = bn(conv(nn.functional.avg_pool2d(x, 2)))
    torch.testing.assert_close(shortcut(x), expected)


@pytest.mark.parametrize("build", [lambda: rt.cifar_plain(20), lambda: rt.plain(34)])
def test_plain_nets_have_no_shortcut_anywhere(build):
    model = build().eval()
    blocks = [b for stage in model.stages for b in stage]
    assert blocks and all(not b.residual for b in blocks)
    assert not any(isinstance(m, rt.ZeroPadShortcut) for m in model.modules())
    assert not any("downsample" in name for name, _ in model.named_parameters())
    block = model.stages[0][1]  # y = relu(F(x)), no x added
    x = torch.randn(1, block.conv1.in_channels, 8, 8)
    with torch.no_grad():
        f = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
        torch.testing.assert_close(block(x), torch.relu(f))


def test_trace_shapes_follow_table_1():
    trace = dict(rt.trace_shapes(rt.resnet50().eval(), torch.zeros(1, 3, 224, 224)))
    assert trace == {
        "input": (1, 3, 224, 224),
        "stem": (1, 64, 56, 56),  # conv1 112×112, then the 3×3/2 max-pool: conv2_x 56×56
        "layer1": (1, 256, 56, 56),
        "layer2": (1, 512, 28, 28),
        "layer3": (1, 1024, 14, 14),
        "layer4": (1, 2048, 7, 7),
        "head": (1, 1000),
    }


def test_summary_reports_torchsummary_table():
    text = rt.summary(rt.cifar_resnet(20), (3, 32, 32))
    assert "Total params: 269,722" in text
    assert re.search(r"Conv2d-1\s+\[-1, 16, 32, 32\]\s+432", text)


def _torchsummary_text(model: nn.Module) -> str:
    from torchsummary import summary

    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.no_grad():
        summary(model.eval(), (3, 224, 224), device="cpu")
    return out.getvalue()


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_summary_equals_torchsummary_of_torchvision(name):
    # The oracle: torchsummary on torchvision's model, whose blocks hold no nn.Identity.
    model = getattr(rt, name)()
    text = rt.summary(model)
    expected = _torchsummary_text(getattr(torchvision.models, name)())

    def line(table: str, start: str) -> str:
        return next(row for row in table.splitlines() if row.startswith(start))

    for start in ("Total params:", "Forward/backward pass size (MB):", "Estimated Total Size"):
        assert line(text, start) == line(expected, start)
    assert text == expected  # the same rows, in the same order
    assert "Identity" not in text
    # the model is left as it was: its identity shortcuts back in place, still in train mode
    assert isinstance(model.layer1[1].downsample, nn.Identity) and model.training


def test_gradient_norms_match_backward():
    torch.manual_seed(0)
    model = rt.cifar_resnet(8)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    norms = rt.gradient_norms(model, x, y)
    nn.functional.cross_entropy(model(x), y).backward()
    for name, value in norms:
        stage, index = name.removeprefix("layer").split(".")
        block = model.stages[int(stage) - 1][int(index)]
        grads = torch.cat([p.grad.flatten() for p in block.parameters()])
        assert value == pytest.approx(grads.norm().item(), rel=1e-5)
    assert [n for n, _ in norms] == [f"layer{i}.0" for i in (1, 2, 3)]


def test_scale_free_gradient_norms_do_not_change_when_a_conv_before_bn_is_rescaled():
    torch.manual_seed(0)
    model = rt.cifar_resnet(8).train()
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)
    before = rt.gradient_norms(model, x, y, scale_free=True)
    plain_before = rt.gradient_norms(model, x, y)
    nn.functional.cross_entropy(model(x), y).backward()  # by hand, before the rescaling
    first = model.layer1[0]
    conv1_squared = first.conv1.weight.grad.norm() ** 2
    others_squared = sum(p.grad.norm() ** 2 for p in first.parameters()) - conv1_squared
    with torch.no_grad():
        model.layer1[0].conv1.weight.mul_(1000.0)  # BN (train mode) cancels the scale
    after = rt.gradient_norms(model, x, y, scale_free=True)
    plain_after = rt.gradient_norms(model, x, y)
    assert [v for _, v in after] == pytest.approx([v for _, v in before], rel=1e-3)
    # the plain norm of that block falls: its conv1 gradient shrinks 1000×, the rest stays
    expected = (others_squared + conv1_squared / 1000**2).sqrt().item()
    assert plain_after[0][1] == pytest.approx(expected, rel=1e-3)
    assert plain_after[0][1] < 0.9 * plain_before[0][1]
    assert plain_after[1][1] == pytest.approx(plain_before[1][1], rel=1e-3)
    # by hand: ‖∂L/∂W‖·‖W‖ over the block's two convolutions
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    block = model.layer2[0]
    by_hand = sum((c.weight.grad.norm() * c.weight.norm()) ** 2 for c in (block.conv1, block.conv2))
    assert after[1][1] == pytest.approx(by_hand.sqrt().item(), rel=1e-5)


def test_response_stds_are_the_per_channel_std_of_each_bn_output_in_eval_mode():
    torch.manual_seed(0)
    model = rt.cifar_resnet(8, shortcut="B").train()
    with torch.no_grad():  # a known response: γ = 2 and fresh running statistics (0, 1)
        model.layer1[0].bn2.weight.fill_(2.0)
    x = torch.randn(16, 3, 32, 32)
    stds = rt.response_stds(model, x)
    assert model.training  # the mode is restored
    names = [name for name, _ in stds]
    # two 3×3 layers per block, no shortcut BN (option B's projection in layer2.0 and layer3.0)
    assert names == [f"layer{i}.0.bn{k}" for i in (1, 2, 3) for k in (1, 2)]
    # by hand, with the running statistics: bn2 = γ·(conv2 − 0)/√(1 + ε) + 0
    block = model.layer1[0].eval()
    with torch.no_grad():
        h = block.relu(block.bn1(block.conv1(model.eval().stem(x))))
        conv2 = block.conv2(h)
    expected = (2.0 / (1 + block.bn2.eps) ** 0.5) * conv2.transpose(0, 1).flatten(1).std(dim=1)
    assert dict(stds)["layer1.0.bn2"] == pytest.approx(expected.mean().item(), rel=1e-5)
