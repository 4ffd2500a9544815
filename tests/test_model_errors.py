"""Bad arguments and bad inputs get clear errors; valid ones give (N, num_classes) outputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import resnet_tutorial as rt

BAD_ARGUMENTS = [
    (lambda: rt.resnet(42), ValueError, r"depth must be one of \[18, 34, 50, 101, 152\].*42"),
    (lambda: rt.resnet("50"), TypeError, r"depth must be an int, got str '50'"),
    (lambda: rt.resnet(50, 0), ValueError, r"num_classes must be a positive int, got 0"),
    (lambda: rt.resnet(50, 2.5), TypeError, r"num_classes must be an int, got float 2.5"),
    (lambda: rt.cifar_resnet(21), ValueError, r"depth must be 6n \+ 2 with n >= 1.*got 21"),
    (lambda: rt.cifar_resnet(2), ValueError, r"depth must be 6n \+ 2 .*got 2"),
    (lambda: rt.cifar_resnet(20, width=0), ValueError, r"width must be a positive int, got 0"),
    (lambda: rt.resnet(18, shortcut="E"), ValueError, r"shortcut must be one of .*got 'E'"),
    (lambda: rt.cifar_resnet(20, shortcut="a"), ValueError, r"shortcut .*got 'a'"),
    (lambda: rt.resnet(50, stem="tiny"), ValueError, r"stem must be one of .*got 'tiny'"),
    (lambda: rt.resnet(50, stride_on="7x7"), ValueError, r"stride_on must be .*got '7x7'"),
    (lambda: rt.resnet(18, groups=32), ValueError, r"groups=32 need bottleneck blocks"),
    (lambda: rt.resnet(34, width_per_group=128), ValueError, r"need bottleneck blocks"),
    (lambda: rt.resnet(18, stride_on="1x1"), ValueError, r"stride_on='1x1' need bottl"),
    (lambda: rt.resnet(50, groups=0), ValueError, r"groups must be a positive int, got 0"),
    (lambda: rt.resnet(50, preact="yes"), TypeError, r"preact must be True or False"),
    (lambda: rt.cifar_plain(20, zero_init_residual=True), ValueError, r"shortcut=None"),
    (lambda: rt.ResNet(rt.BasicBlock, [2, 2], widths=(64,)), ValueError, r"one entry per stage"),
    (lambda: rt.load_pretrained_cifar(110), ValueError, r"one of \[20, 32, 44, 56\].*got 110"),
    (lambda: rt.count_macs(rt.cifar_resnet(8), (32, 32)), ValueError, r"input_size must be"),
]


@pytest.mark.parametrize("call, error, message", BAD_ARGUMENTS)
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


BAD_INPUTS = [
    (torch.zeros(3, 32, 32), ValueError, r"input must be 4-D \(N, C, H, W\), got 3-D"),
    (torch.zeros(1, 1, 32, 32), ValueError, r"input has 1 channels, the network expects 3"),
    ([[1.0]], TypeError, r"input must be a torch.Tensor, got list"),
]


@pytest.mark.parametrize("x, error, message", BAD_INPUTS)
def test_check_input_names_what_is_wrong_before_any_convolution(x, error, message, monkeypatch):
    model = rt.cifar_resnet(8)
    monkeypatch.setattr(model.conv1, "forward", lambda _: pytest.fail("convolution ran"))
    with pytest.raises(error, match=message):
        rt.measure.check_input(model, x)
    with pytest.raises(error, match=message):
        rt.trace_shapes(model, x)


def _smallest_input(stem: str, stages: int, stride_on: str) -> int:
    """The smallest side every stride-2 layer can halve (gets ≥ 2 px), by conv arithmetic."""
    # (kernel, stride, padding) of each stride-2 layer in order; out = (h + 2p - k) // s + 1.
    stems = {"imagenet": [(7, 2, 3), (3, 2, 1)], "deep": [(3, 2, 1), (3, 2, 1)], "cifar": []}
    layers = list(stems[stem])  # the stem's stride-2 conv and its 3×3/2 max-pool
    stage_layer = (1, 2, 0) if stride_on == "1x1" else (3, 2, 1)
    layers += [stage_layer] * (stages - 1)
    h = 1
    while True:
        size, ok = h, True
        for k, s, p in layers:
            ok = ok and size >= 2
            size = (size + 2 * p - k) // s + 1
        if ok:
            return h
        h += 1


@st.composite
def configurations(draw):
    stem = draw(st.sampled_from(["imagenet", "deep", "cifar"]))
    bottleneck = draw(st.booleans())
    stages = draw(st.integers(2, 4))
    options = {
        "stem": stem,
        "layers": draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages)),
        "widths": [8 * 2**i for i in range(stages)],
        "shortcut": draw(st.sampled_from(["A", "B", "C", "D", None])),
        "preact": draw(st.booleans()),
        "num_classes": draw(st.integers(1, 12)),
    }
    if bottleneck:
        options["stride_on"] = draw(st.sampled_from(["3x3", "1x1"]))
        options["groups"] = draw(st.sampled_from([1, 2]))
        options["width_per_group"] = draw(st.sampled_from([32, 64]))
    block = rt.Bottleneck if bottleneck else rt.BasicBlock
    return block, options


@settings(max_examples=40, deadline=None)
@given(configurations(), st.integers(1, 2), st.integers(0, 5))
def test_any_valid_configuration_gives_logits_down_to_the_smallest_input(config, n, extra):
    block, options = config
    model = rt.ResNet(block, **options).eval()
    smallest = _smallest_input(
        options["stem"], len(options["layers"]), options.get("stride_on", "3x3")
    )
    with torch.no_grad():
        out = model(torch.randn(n, 3, smallest + extra, smallest))
    assert out.shape == (n, options["num_classes"])
