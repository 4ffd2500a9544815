"""A residual block's layers and behaviour against rt's, for Chapters 1, 3 and 4: the
convolutions of its residual branch F, where it adds the shortcut and applies the last ReLU, and
its outputs beside `rt.BasicBlock`'s or `rt.Bottleneck`'s under the same weights."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import make_shortcut
from ..measure import BATCH_NORMS, count_parameters, randomize_batchnorm
from ._common import (
    as_pair,
    call_learner,
    close,
    copy_weights,
    fail,
    learner_forward,
    positional_count,
    randn,
    relative_difference,
)

SHORTCUT_WORDS = ("downsample", "shortcut", "skip", "proj")


# --- the convolutions of the residual branch ---------------------------------------------------


def split_convs(
    block: nn.Module, residual_count: int, shortcut: nn.Module | None = None
) -> tuple[list[tuple[str, nn.Conv2d]], list[tuple[str, nn.Conv2d]]]:
    """The convolutions of a block's residual branch F and of its shortcut, in creation order.

    The shortcut's are those of `shortcut` (when we passed it in) or those whose name says so
    (downsample, shortcut, skip, proj); an unnamed extra convolution created last counts too.
    """
    in_shortcut = {id(m) for m in shortcut.modules()} if shortcut is not None else set()
    residual, projection = [], []
    for name, module in block.named_modules():
        if isinstance(module, nn.Conv2d):
            named = any(word in name.lower() for word in SHORTCUT_WORDS)
            (projection if id(module) in in_shortcut or named else residual).append((name, module))
    if not projection and len(residual) == residual_count + 1:
        projection.append(residual.pop())
    return residual, projection


def residual_branch_convs(reference_block: nn.Module) -> list[nn.Conv2d]:
    return [
        m
        for n, m in reference_block.named_modules()
        if isinstance(m, nn.Conv2d) and not n.startswith("downsample")
    ]


def check_no_conv_bias(model: nn.Module, where: str) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            fail(
                f"{where}: the convolution {name} has a bias.",
                "a convolution followed by BatchNorm needs no bias: BN's β replaces it "
                "(BN subtracts the mean, so the bias cancels). Create it with bias=False.",
            )


def check_residual_convs(
    where: str, convs: list[tuple[str, nn.Conv2d]], reference: list[nn.Conv2d], expansion: int
) -> None:
    """Kernel sizes, widths, strides and padding of the residual branch F against the reference."""
    layout = "two 3×3 convolutions" if expansion == 1 else "a 1×1, a 3×3 and a 1×1 convolution"
    if len(convs) != len(reference):
        fail(
            f"{where} has {len(convs)} convolutions on its residual branch, expected "
            f"{len(reference)}.",
            f"the residual branch F is {layout}, each followed by BatchNorm (Fig. 2 and 5); "
            "name the shortcut's layers `downsample` so that they are told apart.",
        )
    for (name, conv), ref in zip(convs, reference):
        if conv.kernel_size != ref.kernel_size:
            size = "×".join(map(str, conv.kernel_size))
            fail(
                f"{where}.{name} is a {size} convolution, expected {ref.kernel_size[0]}×"
                f"{ref.kernel_size[1]}.",
                f"the residual branch F is {layout} (Table 1).",
            )
    _check_widths(where, convs, reference, expansion)
    _check_strides(where, convs, reference, expansion)
    for name, conv in convs:
        if conv.kernel_size == (3, 3) and as_pair(conv.padding) != (1, 1):
            fail(
                f"{where}.{name}: a 3×3 convolution with padding {conv.padding}.",
                "use padding=1: it keeps the map's size, so F(x) and x can be added.",
            )


def _check_widths(where, convs, reference, expansion) -> None:
    actual = [(c.in_channels, c.out_channels) for _, c in convs]
    expected = [(c.in_channels, c.out_channels) for c in reference]
    if actual == expected:
        return
    last_out, expected_out = actual[-1][1], expected[-1][1]
    if expansion > 1 and last_out == expected_out * expansion:
        fail(
            f"{where} outputs {last_out} channels, expected {expected_out}: the expansion is "
            "applied twice.",
            f"only the last 1×1 expands, to channels * expansion = {expected_out}; the stage "
            "and the block must not both multiply by 4.",
        )
    if expansion > 1 and last_out == expected_out // expansion:
        fail(
            f"{where} outputs {last_out} channels, expected {expected_out}: the expansion is "
            "not applied.",
            f"the last 1×1 convolution expands to channels * expansion = {expected_out} "
            "(expansion = 4, Fig. 5).",
        )
    if expansion > 1 and actual[0][1] == expected_out:
        fail(
            f"{where}: the first 1×1 outputs {actual[0][1]} channels, expected "
            f"{expected[0][1]}: the block expands too early.",
            "the 1×1 reduces to `channels`, the 3×3 keeps `channels`, and only the last "
            "1×1 expands to channels * expansion (Fig. 5).",
        )
    (name, _), (a_in, a_out), (e_in, e_out) = next(
        (c, a, e) for c, a, e in zip(convs, actual, expected) if a != e
    )
    branch = (
        "3×3 conv(in → c), 3×3 conv(c → c)"
        if expansion == 1
        else "1×1 conv(in → c), 3×3 conv(c → c), 1×1 conv(c → 4c)"
    )
    fail(
        f"{where}.{name} maps {a_in} → {a_out} channels, expected {e_in} → {e_out}.",
        f"the residual branch is {branch}, with c = channels.",
    )


def _check_strides(where, convs, reference, expansion) -> None:
    actual = [as_pair(c.stride)[0] for _, c in convs]
    expected = [as_pair(c.stride)[0] for c in reference]
    if actual == expected:
        return
    total, expected_total = math.prod(actual), math.prod(expected)
    names = [name for (name, _), s in zip(convs, actual) if s > 1]
    if total == expected_total and expansion > 1 and actual[0] > 1:
        fail(
            f"{where}: the stride sits on the first 1×1 convolution ({names[0]}), not on the 3×3.",
            'torchvision and rt put the stride on the 3×3 (conv2, "ResNet v1.5"): a strided '
            "1×1 never looks at three quarters of its input positions. The paper's original "
            "puts it on the first 1×1; rt.Bottleneck(..., stride_on='1x1') builds that one.",
        )
    if total == expected_total:
        first = "the first 3×3 (conv1)" if expansion == 1 else "the 3×3 (conv2)"
        fail(
            f"{where}: the stride sits on {', '.join(names)}, expected on {first}.",
            f"put the stride on {first} and stride 1 on the others, as torchvision does; "
            "the output has the same shape either way, but not the same values.",
        )
    if total > expected_total:
        fail(
            f"{where} downsamples by {total}, expected {expected_total}: the stride is applied "
            f"in {len(names)} places ({', '.join(names)}).",
            "only one convolution of the block strides.",
        )
    fail(
        f"{where} downsamples by {total}, expected {expected_total}.",
        f"pass `stride` to {'the first 3×3 convolution' if expansion == 1 else 'the 3×3'}.",
    )


# --- a block class: built, probed, compared ----------------------------------------------------


def _build_block(block_cls, in_channels, channels, stride, downsample) -> nn.Module:
    takes_downsample = positional_count(block_cls) >= 4
    args = (in_channels, channels, stride) + ((downsample,) if takes_downsample else ())
    where = f"{block_cls.__name__}{args[:3]}"
    return call_learner(
        block_cls,
        args,
        where,
        "the block takes (in_channels, channels, stride=1, downsample=None), as torchvision's: "
        "downsample is the shortcut's module where the shape changes, None for the identity.",
    )


def check_block(block_cls, reference_cls, cases) -> tuple[str, bool]:
    """Every check of a block class; returns its parameter counts and whether outputs matched."""
    name, expansion = reference_cls.__name__, reference_cls.expansion
    if not isinstance(block_cls, type) or not issubclass(block_cls, nn.Module):
        raise TypeError(f"block_cls must be an nn.Module class, got {block_cls!r}")
    learner_expansion = getattr(block_cls, "expansion", None)
    if learner_expansion != expansion:
        fail(
            f"{block_cls.__name__}.expansion is {learner_expansion!r}, expected {expansion}.",
            f"give the class an attribute `expansion = {expansion}`: the block outputs "
            "channels * expansion channels, and make_stage and ResNet read it.",
        )
    built = []
    for in_channels, channels, stride in cases:
        built.append(_check_block_case(block_cls, reference_cls, in_channels, channels, stride))
    _probe_addition(built[0][0], built[0][1], cases[0][0])
    compared = all(_compare_block(where, block, ref, name) for where, block, ref, _ in built)
    counts = [f"{count:,}" for *_, count in built]
    return ", ".join(counts[:-1]) + " and " + counts[-1], compared


def _check_block_case(block_cls, reference_cls, in_channels, channels, stride):
    """Structure, parameter count, output shape and input of one configuration of a block."""
    name, expansion = reference_cls.__name__, reference_cls.expansion
    out_channels = channels * expansion
    where = f"{block_cls.__name__}({in_channels}, {channels}, stride={stride})"
    downsample = make_shortcut("B", in_channels, out_channels, stride)
    block = _build_block(block_cls, in_channels, channels, stride, downsample)
    reference = reference_cls(
        in_channels, channels, stride, make_shortcut("B", in_channels, out_channels, stride)
    )
    check_no_conv_bias(block, where)
    ref_convs = residual_branch_convs(reference)
    convs, _ = split_convs(block, len(ref_convs), downsample)
    check_residual_convs(where, convs, ref_convs, expansion)
    count, expected = count_parameters(block), count_parameters(reference)
    if count != expected:
        projection = " with a projection" if downsample is not None else ""
        fail(
            f"{where} has {count:,} parameters, rt.{name}({in_channels}, {channels}, "
            f"stride={stride}){projection} has {expected:,}.",
            "each convolution is followed by one BatchNorm2d; print your block beside "
            f"print(rt.{name}(...)) to compare them layer by layer.",
        )
    x = randn(2, in_channels, 8, 8)
    x_before = x.clone()
    output = learner_forward(block.eval(), x, where)
    expected_shape = (2, out_channels, 8 // stride, 8 // stride)
    if tuple(output.shape) != expected_shape:
        fail(
            f"{where} maps {tuple(x.shape)} to {tuple(output.shape)}, expected {expected_shape}.",
            f"the block outputs channels * expansion = {out_channels} channels, at 1/stride "
            "of the input's size.",
        )
    if not torch.equal(x, x_before):
        fail(
            f"{where} changed its input x in place.",
            "the shortcut needs the block's original input: don't apply an in-place ReLU "
            "or `+=` to x itself; write out = ... and return relu(out + shortcut(x)).",
        )
    return where, block, reference, count


def _probe_addition(where: str, block: nn.Module, in_channels: int) -> None:
    """With every BN set to output β = -1, F(x) = -1 exactly, so y must be relu(x - 1)."""
    block = copy.deepcopy(block).eval()
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, BATCH_NORMS) and module.affine:
                module.weight.zero_()
                module.bias.fill_(-1.0)
    x = randn(2, in_channels, 8, 8, seed=3)
    output = learner_forward(block, x, where)
    last = "bn3(conv3(out))" if hasattr(block, "conv3") else "bn2(conv2(out))"  # bottleneck?
    after = f"out = {last}; return relu(out + shortcut(x))"
    diagnoses = [
        (F.relu(x - 1), None, None),
        (x - 1, "there is no ReLU after the addition",
         f"y = relu(F(x) + x): the last ReLU comes after adding the shortcut (Eq. 1, Fig. 2): "
         f"{after}."),
        (x, "the last ReLU sits only inside F: it is applied to F(x) before the addition, and "
         "none follows it",
         f"F ends with BatchNorm; move the last ReLU after the addition: {after}."),
        (F.relu(x), "a ReLU is applied to F(x) before the addition",
         f"F ends with BatchNorm, not ReLU; only the sum goes through the last ReLU: {after}."),
        (torch.zeros_like(x), "the shortcut is not added: the output does not depend on x",
         "add the shortcut before the last ReLU: out = out + shortcut(x), with the identity "
         "where downsample is None."),
        (torch.full_like(x, -1.0), "the shortcut is not added and there is no final ReLU",
         "the block returns relu(F(x) + shortcut(x))."),
    ]  # fmt: skip
    for candidate, problem, hint in diagnoses:
        if close(output, candidate):
            if problem is None:
                return
            fail(f"{where}: {problem}.", hint)
    fail(
        f"{where}: with every BN set to output -1, F(x) = -1, so the block must return "
        "relu(x - 1); it returns something else.",
        "the block computes relu(F(x) + x) with F = conv-BN-ReLU-conv-BN; check what is "
        "added, and where the ReLUs are.",
    )


def _compare_block(where: str, block: nn.Module, reference: nn.Module, name: str) -> bool:
    randomize_batchnorm(block, seed=1)
    if not copy_weights(block, reference):
        return False
    x = randn(2, reference.conv1.in_channels, 8, 8, seed=4)
    output = learner_forward(block.eval(), x, where)
    expected = learner_forward(reference.eval(), x, f"rt.{name}")
    if not close(output, expected):
        order = (
            "conv1 → bn1 → relu → conv2 → bn2"
            if name == "BasicBlock"
            else "conv1 → bn1 → relu → conv2 → bn2 → relu → conv3 → bn3"
        )
        fail(
            f"{where}: the outputs differ from rt.{name}'s with the same weights (largest "
            f"difference {relative_difference(output, expected):.2g} of the output's scale).",
            f"the layers are right, so look at forward: {order}, then + shortcut(x) (of the "
            "block's input x), then relu.",
        )
    return True


def outputs_note(compared: bool, name: str) -> str:
    if compared:
        return f"outputs equal rt.{name}'s with the same weights"
    return "outputs not compared (name the layers as torchvision does: conv1, bn1, …)"
