"""Chapter 4's checks (stem, body, head): whole networks and the stages they are made of.

Each inspects the stem, every block of every stage and the head, so that a failure names the
layer that is wrong, then copies the weights into rt's network and compares the outputs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..blocks import BasicBlock, Bottleneck
from ..measure import BATCH_NORMS, count_parameters, randomize_batchnorm
from ..models import DEPTHS, ResNet, cifar_resnet, make_stage
from ._blocks import (
    SHORTCUT_WORDS,
    check_no_conv_bias,
    check_residual_convs,
    residual_branch_convs,
    split_convs,
)
from ._common import (
    as_pair,
    call_learner,
    close,
    copy_weights,
    fail,
    keeps_random_state,
    learner_forward,
    positional_count,
    randn,
    relative_difference,
    say_passed,
)


def _architecture(depth, layers, block) -> tuple[type, tuple[int, ...], str, str]:
    if depth is not None:
        if layers is not None or block is not None:
            raise ValueError("give depth, or layers and block, not both")
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)} (Table 1), got {depth!r}")
        block_cls, layers = DEPTHS[depth]
        return block_cls, tuple(layers), f"ResNet-{depth}", "Table 1 says"
    if layers is None or block is None:
        raise ValueError("give depth (18, 34, 50, 101 or 152), or both layers and block")
    expansion = getattr(block, "expansion", None)
    if expansion not in (1, 4):
        raise ValueError(f"block must have expansion 1 or 4, got {block!r}")
    block_cls = BasicBlock if expansion == 1 else Bottleneck
    layers = tuple(int(n) for n in layers)
    total = 2 + sum(layers) * (2 if expansion == 1 else 3)
    name = f"ResNet-{total} ({block_cls.__name__}, layers={list(layers)})"
    return block_cls, layers, name, f"layers={list(layers)} says"


@keeps_random_state
def check_resnet(
    model: nn.Module,
    depth: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    block: type[nn.Module] | None = None,
    num_classes: int = 1000,
) -> None:
    """Check an ImageNet ResNet against `rt.ResNet` (He et al. 2016a, Table 1).

    Give `depth`, or `layers` and `block` for another member of the family (ResNet-26:
    `layers=[2, 2, 2, 2], block=rt.Bottleneck`). The model keeps torchvision's names, so that
    its weights load into rt's model and the outputs are compared.
    """
    block_cls, layers, name, source = _architecture(depth, layers, block)
    with torch.device("meta"):
        reference = _Reference(block_cls, layers, num_classes)
    result = _check_network(
        model, reference, name, source, stem="imagenet", shortcut="B",
        input_size=(3, 64, 64),
        outputs_hint="the layers are right, so look at forward: conv1 → bn1 → relu → maxpool "
        "→ layer1 … layer4 → global average pool → flatten → fc, and at each block's forward "
        "(check_basic_block, check_bottleneck).",
    )  # fmt: skip
    say_passed(
        f"{name}: stem 7×7/2 conv and 3×3/2 max-pool, blocks per stage {list(layers)}, no conv "
        "bias, strides and projections where the shape changes, fc "
        f"{reference.fc.in_features} → {num_classes}, {result}"
    )


@keeps_random_state
def check_cifar_resnet(model: nn.Module, depth: int = 20, *, num_classes: int = 10) -> None:
    """Check a CIFAR ResNet of depth 6n + 2 against `rt.cifar_resnet` (He et al. 2016a, Sec. 4.2).

    Named as torchvision names its models (conv1, bn1, layer1 … layer3, fc), so that the
    outputs can be compared.
    """
    cifar_resnet(depth, num_classes, width=1)  # checks depth = 6n + 2 and num_classes
    n = (depth - 2) // 6
    with torch.device("meta"):
        reference = _Reference(
            BasicBlock, (n, n, n), num_classes, stem="cifar", widths=(16, 32, 64), shortcut="A"
        )
    name = f"CIFAR ResNet-{depth}"
    result = _check_network(
        model, reference, name, f"depth {depth} = 6n + 2 says", stem="cifar", shortcut="A",
        input_size=(3, 32, 32),
        outputs_hint="the layers are right, so look at forward (conv1 → bn1 → relu → layer1 … "
        "layer3 → global average pool → fc) and at the option-A shortcuts: check yours with "
        "check_shortcut (x[:, :, ::2, ::2], zeros split evenly before and after).",
    )  # fmt: skip
    say_passed(
        f"{name}: 3×3 stem with 16 channels and no pool, {n} blocks per stage, widths 16/32/64, "
        f"no conv bias, option-A shortcuts (no projections), fc 64 → {num_classes}, {result}"
    )


@keeps_random_state
def check_stage(make_stage_fn: Callable[..., nn.Module]) -> None:
    """Check a `make_stage` against `rt.make_stage` with option B (He et al. 2016a, Table 1).

    `make_stage_fn(block, in_channels, channels, depth, stride)` returns an `nn.Sequential` of
    blocks `block(in_channels, channels, stride, downsample)`; one with a sixth argument
    (`shortcut`) gets "B".
    """
    cases = [
        (BasicBlock, 64, 64, 2, 1),
        (BasicBlock, 64, 128, 2, 2),
        (Bottleneck, 64, 64, 3, 1),
        (Bottleneck, 256, 128, 2, 2),
    ]
    takes_shortcut = positional_count(make_stage_fn) >= 6
    compared = True
    for block, in_channels, channels, depth, stride in cases:
        call = f"make_stage(rt.{block.__name__}, {in_channels}, {channels}, {depth}, {stride})"
        args = (block, in_channels, channels, depth, stride) + (("B",) * takes_shortcut)
        stage = call_learner(
            make_stage_fn,
            args,
            call,
            "make_stage(block, in_channels, channels, depth, stride) builds its blocks with "
            "block(in_channels, channels, stride, downsample).",
        )
        if not isinstance(stage, nn.Sequential):
            fail(f"{call} returned {type(stage).__name__}.", "return nn.Sequential(*blocks).")
        reference = make_stage(block, in_channels, channels, depth, stride, "B")
        _check_stage_structure(call, stage, reference, f"depth={depth} asks for")
        compared &= _compare_stage(call, stage, reference, in_channels, stride)
    note = "outputs equal rt.make_stage's" if compared else "outputs not compared (names differ)"
    say_passed(
        "make_stage: block counts, only the first block strides, projections exactly where the "
        f"shape changes (64 → 256 at stride 1 included), input widths channels * expansion, {note}"
    )


def _compare_stage(call, stage, reference, in_channels, stride) -> bool:
    x = randn(2, in_channels, 8, 8, seed=6)
    output = learner_forward(stage.eval(), x, call)
    expected = learner_forward(reference.eval(), x, "rt.make_stage")
    if output.shape != expected.shape:
        fail(
            f"{call} outputs {tuple(output.shape)}, expected {tuple(expected.shape)}.",
            "the stage outputs channels * block.expansion channels at 1/stride of the size.",
        )
    randomize_batchnorm(stage, seed=1)
    if not copy_weights(stage, reference):
        return False
    expected = learner_forward(reference, x, "rt.make_stage")
    if not close(learner_forward(stage, x, call), expected):
        fail(
            f"{call}: the outputs differ from rt.make_stage's with the same weights.",
            "the blocks are right, so check the projection: Sequential(conv1x1(in_channels, "
            "channels * expansion, stride), BatchNorm2d(channels * expansion)).",
        )
    return True


class _Reference(ResNet):
    """rt's ResNet without its weight initialisation (on the meta device, kaiming_normal_ would
    import torch._dynamo, seconds on a small CPU): its weights come from the learner's model."""

    def _init_weights(self, zero_init_residual: bool) -> None:
        pass


# --- the structure: stages, stem, head, then the blocks of a stage ------------------------------


def _find_stages(model: nn.Module, count: int, name: str) -> list[nn.Module]:
    stages = []
    for i in range(1, count + 1):
        stage = getattr(model, f"layer{i}", None)
        if not isinstance(stage, nn.Module):
            fail(
                f"{name}: the model has no stage `layer{i}`.",
                f"name the stages layer1 … layer{count}, as torchvision does, so that its "
                "weights load and the stages can be checked one by one.",
            )
        stages.append(stage)
    if isinstance(getattr(model, f"layer{count + 1}", None), nn.Module):
        fail(
            f"{name}: the model has a stage layer{count + 1}, expected {count} stages.",
            "one stage per row of the table: conv2_x … conv5_x for ImageNet, 3 for CIFAR.",
        )
    return stages


def _check_stem(model: nn.Module, name: str, expected: nn.Module, stem: str) -> None:
    outside = [(n, m) for n, m in model.named_modules() if not n.startswith("layer")]
    convs = [(n, m) for n, m in outside if isinstance(m, nn.Conv2d)]
    if not convs:
        fail(f"{name}: no convolution before layer1.", "the stem starts with conv1.")
    conv_name, conv = convs[0]
    spec = lambda c: (c.kernel_size, as_pair(c.stride), as_pair(c.padding), c.out_channels)
    if spec(conv) != spec(expected.conv1):
        k, s, p, c = spec(expected.conv1)
        fail(
            f"{name}: the stem convolution {conv_name} is {conv.kernel_size[0]}×"
            f"{conv.kernel_size[1]}, stride {as_pair(conv.stride)[0]}, padding "
            f"{as_pair(conv.padding)[0]}, {conv.out_channels} channels; expected {k[0]}×{k[1]}, "
            f"stride {s[0]}, padding {p[0]}, {c} channels.",
            "Table 1, conv1: 7×7, 64, stride 2 (padding 3 keeps 224 → 112)."
            if stem == "imagenet"
            else "Sec. 4.2: the first layer is a 3×3 convolution with 16 filters (stride 1).",
        )
    pools = [(n, m) for n, m in outside if isinstance(m, nn.MaxPool2d)]
    if stem == "cifar" and pools:
        fail(
            f"{name}: the stem has a max-pool ({pools[0][0]}).",
            "the CIFAR networks have no pooling before the first stage (Sec. 4.2).",
        )
    if stem == "cifar":
        return
    if not pools:
        fail(
            f"{name}: no nn.MaxPool2d in the stem.",
            "conv2_x starts with a 3×3 max-pool, stride 2 (Table 1): "
            "nn.MaxPool2d(kernel_size=3, stride=2, padding=1), named maxpool.",
        )
    pool_name, pool = pools[0]
    actual = (
        as_pair(pool.kernel_size),
        as_pair(pool.stride or pool.kernel_size),
        as_pair(pool.padding),
    )
    if actual != ((3, 3), (2, 2), (1, 1)):
        (k, _), (s, _), (p, _) = actual
        note = (
            " This gives the right shapes at 224×224 (112 → 56) but not the same outputs."
            if (k, s, p) == (2, 2, 0)
            else ""
        )
        fail(
            f"{name}: the stem's max-pool ({pool_name}) is {k}×{k}, stride {s}, padding {p}; "
            f"expected 3×3, stride 2, padding 1.{note}",
            "use nn.MaxPool2d(kernel_size=3, stride=2, padding=1) (Table 1: '3×3 max pool, "
            "stride 2'); padding 1 keeps 112 → 56.",
        )


def _check_head(model: nn.Module, name: str, expected: nn.Linear) -> None:
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        fail(
            f"{name}: model.fc is {type(fc).__name__}, expected nn.Linear.",
            "end with global average pooling, flatten, then nn.Linear named fc (torchvision's "
            "name, so weights load).",
        )
    if (fc.in_features, fc.out_features) != (expected.in_features, expected.out_features):
        fail(
            f"{name}: fc is Linear({fc.in_features} → {fc.out_features}), expected "
            f"Linear({expected.in_features} → {expected.out_features}).",
            "fc takes the last stage's width (512 × block.expansion for ImageNet) and outputs "
            "num_classes.",
        )


def _check_network(
    model: nn.Module,
    reference: ResNet,
    name: str,
    count_source: str,
    *,
    stem: str,
    shortcut: str,
    input_size: tuple[int, int, int],
    outputs_hint: str,
) -> str:
    """Every structural check, the parameter count, then the outputs; returns what was done."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    stages = _find_stages(model, len(reference.stages), name)
    counts = [len(list(stage.children())) for stage in stages]
    expected_counts = [len(stage) for stage in reference.stages]
    for i, (count, expected) in enumerate(zip(counts, expected_counts), start=1):
        if count != expected:
            fail(
                f"layer{i} has {count} block{'s' * (count != 1)}, {count_source} {expected} "
                f"({name}: {expected_counts}; yours: {counts}).",
                "a stage is one row of the table: stack that many blocks (only the first one "
                "changes width and resolution).",
            )
    _check_stem(model, name, reference, stem)
    check_no_conv_bias(model, name)
    for i, (stage, ref) in enumerate(zip(stages, reference.stages), start=1):
        _check_stage_structure(f"layer{i}", stage, ref, count_source, shortcut)
    _check_head(model, name, reference.fc)
    count, expected = count_parameters(model), count_parameters(reference)
    if count != expected:
        fail(
            f"{name} has {count:,} parameters, rt's has {expected:,}.",
            "the layers checked out, so look for extra or missing BatchNorm layers; print(model) "
            "beside print(rt.resnet(...)) compares them layer by layer.",
        )
    if any(p.is_meta for p in model.parameters()):
        return f"{count:,} parameters; outputs not compared (the model is on the meta device)"
    learner = copy.deepcopy(model).cpu().eval()
    randomize_batchnorm(learner, seed=1)
    if not copy_weights(learner, reference):
        return f"{count:,} parameters; outputs not compared (layer names and order differ)"
    reference.eval()
    x = randn(2, *input_size, seed=2)
    output, expected_output = (
        learner_forward(learner, x, name),
        learner_forward(reference, x, "rt's model"),
    )
    if not close(output, expected_output):
        fail(
            f"{name}: the outputs differ from rt's with the same weights (largest difference "
            f"{relative_difference(output, expected_output):.2g} of the output's scale).",
            outputs_hint,
        )
    return f"{count:,} parameters, outputs equal rt's with the same weights"


def _check_stage_structure(
    where: str,
    stage: nn.Module,
    reference: nn.Sequential,
    count_source: str,
    shortcut: str = "B",
) -> None:
    """Blocks, input widths, strides, projections and convolutions of one stage."""
    blocks = list(stage.children())
    if len(blocks) != len(reference):
        plural = "block" if len(blocks) == 1 else "blocks"
        fail(
            f"{where} has {len(blocks)} {plural}, {count_source} {len(reference)}.",
            "a stage is one row of Table 1: stack that many blocks (only the first one changes "
            "width and resolution).",
        )
    expansion = getattr(type(reference[0]), "expansion", 1)
    previous_out = None
    for j, (block, ref) in enumerate(zip(blocks, reference)):
        ref_convs = residual_branch_convs(ref)
        convs, projection = split_convs(block, len(ref_convs))
        if not convs:
            fail(f"{where}[{j}] has no convolutions.", "each entry of a stage is a block.")
        _check_block_input(f"{where}[{j}]", convs, ref_convs, previous_out, j)
        _check_block_stride(f"{where}[{j}]", convs, ref_convs, j)
        _check_projection(f"{where}[{j}]", convs, projection, ref, shortcut)
        _check_projection_norm(f"{where}[{j}]", block, convs, projection)
        check_residual_convs(f"{where}[{j}]", convs, ref_convs, expansion)
        previous_out = convs[-1][1].out_channels


def _check_block_input(where, convs, ref_convs, previous_out, index) -> None:
    actual, expected = convs[0][1].in_channels, ref_convs[0].in_channels
    if actual == expected:
        return
    if previous_out is not None and actual != previous_out:
        fail(
            f"{where} takes {actual} input channels, but the block before it outputs "
            f"{previous_out}: the stage's input width is computed wrongly.",
            "every block after a stage's first takes channels * block.expansion channels "
            f"(here {expected}), the width the first block outputs; update in_channels after "
            "creating each block.",
        )
    first = "the stage's first block" if index == 0 else "this block"
    fail(
        f"{where} takes {actual} input channels, expected {expected}.",
        f"{first} takes the width of what comes before it: the previous stage's "
        "channels * block.expansion (or the stem's width).",
    )


def _check_block_stride(where, convs, ref_convs, index) -> None:
    actual = math.prod(as_pair(c.stride)[0] for _, c in convs)
    expected = math.prod(as_pair(c.stride)[0] for c in ref_convs)
    if actual == expected:
        return
    if index > 0:
        fail(
            f"{where} downsamples by {actual}: only the first block of a stage strides.",
            "pass the stage's stride to its first block and stride 1 to the others (Sec. 3.3: "
            "conv3_1, conv4_1 and conv5_1 downsample with a stride of 2).",
        )
    fail(
        f"{where} downsamples by {actual}, expected {expected}.",
        "the first block of a stage gets the stage's stride: 1 for the first stage (the stem "
        "has already downsampled by 4), 2 for every later one.",
    )


def _check_projection(where, convs, projection, reference, shortcut) -> None:
    needed = bool([m for m in reference.downsample.modules() if isinstance(m, nn.Conv2d)])
    in_c, out_c = convs[0][1].in_channels, convs[-1][1].out_channels
    stride = math.prod(as_pair(c.stride)[0] for _, c in convs)
    if needed and not projection:
        halves = " and the map halves" if stride > 1 else ""
        fail(
            f"No projection in {where}, where {in_c} channels become {out_c}{halves}.",
            "where the shape changes (more channels, or stride 2) the shortcut must change it "
            "too: a 1×1 convolution with the block's stride, then BatchNorm (option B). The "
            "first bottleneck stage changes the width (64 → 256) even at stride 1.",
        )
    if projection and not needed and shortcut == "A":
        fail(
            f"{where} has a projection ({projection[0][0]}): the CIFAR networks have none.",
            "the paper's CIFAR ResNets use option A, parameter-free zero-padding shortcuts "
            "(Sec. 4.2); check yours with rt.exercises.check_shortcut.",
        )
    if projection and not needed:
        fail(
            f"{where} has a projection ({projection[0][0]}) where the shape does not change.",
            "option B projects only where the shape changes; everywhere else the shortcut is "
            "the identity (projections everywhere, option C, add parameters for little gain, "
            "Table 3).",
        )
    if projection:
        name, conv = projection[0]
        if conv.kernel_size != (1, 1) or as_pair(conv.stride)[0] != stride:
            fail(
                f"{where}.{name} is a {conv.kernel_size[0]}×{conv.kernel_size[1]} convolution "
                f"with stride {as_pair(conv.stride)[0]}; the block strides by {stride}.",
                "the projection is a 1×1 convolution with the block's stride, then BatchNorm.",
            )


def _check_projection_norm(where, block, convs, projection) -> None:
    """A projection shortcut ends in BatchNorm, as torchvision's `downsample.1` (Sec. 3.4)."""
    if not projection:
        return
    norms = [n for n, m in block.named_modules() if isinstance(m, BATCH_NORMS)]
    named = [n for n in norms if any(word in n.lower() for word in SHORTCUT_WORDS)]
    if named or len(norms) > len(convs):
        return
    fail(
        f"{where}.{projection[0][0]} is a projection without BatchNorm: the block has "
        f"{len(norms)} BatchNorm layers for {len(convs) + len(projection)} convolutions.",
        "option B's projection is a 1×1 convolution followed by BatchNorm, "
        "nn.Sequential(conv1x1(...), nn.BatchNorm2d(out_channels)), as BN follows every "
        "convolution (Sec. 3.4); torchvision's weights load into downsample.0 and downsample.1.",
    )
