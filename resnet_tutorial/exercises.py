"""Checkers for the exercises: the learner's code next to the package's own, with hints.

Each `check_*` runs the learner's implementation beside the package's reference (an oracle) on
random inputs, after copying the same weights across, and inspects its structure, so that each
common mistake gets its own hint rather than a bare "outputs differ". A pass prints one line
starting with "✓" that says what was verified; a failure raises `AssertionError` that says what
is wrong and ends with "Hint: …". Every check runs in well under a second on a CPU, and leaves
the global random state and the learner's model as they were.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .blocks import BasicBlock, Bottleneck, make_shortcut
from .measure import count_macs
from .resnet import DEPTHS, ResNet, cifar_resnet, make_stage

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_SHORTCUT_WORDS = ("downsample", "shortcut", "skip", "proj")
_TOLERANCE = 1e-4  # largest output difference allowed, relative to the largest output


# --- reporting and shared machinery ------------------------------------------------------------


def _fail(problem: str, hint: str) -> NoReturn:
    raise AssertionError(f"{problem}\nHint: {hint}")


def _passed(what: str) -> None:
    print(f"✓ {what}")


def _keeps_random_state(check: Callable[..., None]) -> Callable[..., None]:
    """Run `check` with seed 0 and restore the caller's random state afterwards."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return check(*args, **kwargs)

    return wrapper


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _randomize_batchnorm(model: nn.Module, seed: int = 1) -> None:
    """Give each BN layer non-trivial statistics and γ, β: a fresh BN (0, 1, 1, 0) hides bugs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, _BATCH_NORMS):
                continue
            n = module.num_features
            if module.affine:
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
            if module.running_mean is not None:
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def _weighted_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, *_BATCH_NORMS))]


def _copy_weights(source: nn.Module, target: nn.Module) -> bool:
    """Load `source`'s weights into `target`: by name where the keys match torchvision's, else
    layer by layer in the order they were created. False where neither fits."""
    src, dst = source.state_dict(), target.state_dict()
    if src.keys() == dst.keys() and all(src[k].shape == dst[k].shape for k in src):
        target.load_state_dict(src, assign=True)
        return True
    sources, targets = _weighted_modules(source), _weighted_modules(target)
    if len(sources) != len(targets):
        return False
    for s, t in zip(sources, targets):
        s_state, t_state = s.state_dict(), t.state_dict()
        if s_state.keys() != t_state.keys() or any(
            s_state[k].shape != t_state[k].shape for k in s_state
        ):
            return False
    for s, t in zip(sources, targets):
        t.load_state_dict(s.state_dict(), assign=True)
    return True


def _relative_difference(output: Tensor, expected: Tensor) -> float:
    return float((output - expected).abs().max() / expected.abs().max().clamp_min(1e-6))


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and _relative_difference(a, b) < _TOLERANCE


def _call(function: Callable[..., Any], args: tuple, what: str, hint: str) -> Any:
    """Run learner code; turn any exception into a failure that names the call."""
    try:
        return function(*args)
    except Exception as error:
        _fail(f"{what} raised {type(error).__name__}: {error}", hint)


def _forward(model: nn.Module, x: Tensor, where: str) -> Tensor:
    with torch.no_grad():
        return _call(
            model,
            (x,),
            f"{where} on an input of shape {tuple(x.shape)}",
            "read the shapes in the error; print(model) lists every layer with its sizes",
        )


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _is_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _modes(model: nn.Module) -> list[tuple[nn.Module, bool]]:
    return [(m, m.training) for m in model.modules()]


def _restore_modes(modes: list[tuple[nn.Module, bool]]) -> None:
    for module, training in modes:
        module.training = training


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _positional_count(cls: Callable[..., Any]) -> int:
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return 4
    kinds = [p.kind for p in parameters]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(k in positional for k in kinds)


class _Reference(ResNet):
    """rt's ResNet without its weight initialisation: built on the meta device, it costs
    nothing, and its weights come from the learner's model (initialising meta tensors with
    kaiming_normal_ would import torch._dynamo, seconds on a small CPU)."""

    def _init_weights(self, zero_init_residual: bool) -> None:
        pass


# --- structure: convolutions, stages, stems --------------------------------------------------


def _split_convs(
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
            named = any(word in name.lower() for word in _SHORTCUT_WORDS)
            (projection if id(module) in in_shortcut or named else residual).append((name, module))
    if not projection and len(residual) == residual_count + 1:
        projection.append(residual.pop())
    return residual, projection


def _residual_convs(reference_block: nn.Module) -> list[nn.Conv2d]:
    return [
        m
        for n, m in reference_block.named_modules()
        if isinstance(m, nn.Conv2d) and not n.startswith("downsample")
    ]


def _check_no_conv_bias(model: nn.Module, where: str) -> None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            _fail(
                f"{where}: the convolution {name} has a bias.",
                "a convolution followed by BatchNorm needs no bias: BN's β replaces it "
                "(BN subtracts the mean, so the bias cancels). Create it with bias=False.",
            )


def _check_residual_convs(
    where: str, convs: list[tuple[str, nn.Conv2d]], reference: list[nn.Conv2d], expansion: int
) -> None:
    """Kernel sizes, widths, strides and padding of the residual branch F against the reference."""
    layout = "two 3×3 convolutions" if expansion == 1 else "a 1×1, a 3×3 and a 1×1 convolution"
    if len(convs) != len(reference):
        _fail(
            f"{where} has {len(convs)} convolutions on its residual branch, expected "
            f"{len(reference)}.",
            f"the residual branch F is {layout}, each followed by BatchNorm (Fig. 2 and 5); "
            "name the shortcut's layers `downsample` so that they are told apart.",
        )
    for (name, conv), ref in zip(convs, reference):
        if conv.kernel_size != ref.kernel_size:
            size = "×".join(map(str, conv.kernel_size))
            _fail(
                f"{where}.{name} is a {size} convolution, expected {ref.kernel_size[0]}×"
                f"{ref.kernel_size[1]}.",
                f"the residual branch F is {layout} (Table 1).",
            )
    _check_widths(where, convs, reference, expansion)
    _check_strides(where, convs, reference, expansion)
    for name, conv in convs:
        if conv.kernel_size == (3, 3) and _pair(conv.padding) != (1, 1):
            _fail(
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
        _fail(
            f"{where} outputs {last_out} channels, expected {expected_out}: the expansion is "
            "applied twice.",
            f"only the last 1×1 expands, to channels * expansion = {expected_out}; the stage "
            "and the block must not both multiply by 4.",
        )
    if expansion > 1 and last_out == expected_out // expansion:
        _fail(
            f"{where} outputs {last_out} channels, expected {expected_out}: the expansion is "
            "not applied.",
            f"the last 1×1 convolution expands to channels * expansion = {expected_out} "
            "(expansion = 4, Fig. 5).",
        )
    if expansion > 1 and actual[0][1] == expected_out:
        _fail(
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
    _fail(
        f"{where}.{name} maps {a_in} → {a_out} channels, expected {e_in} → {e_out}.",
        f"the residual branch is {branch}, with c = channels.",
    )


def _check_strides(where, convs, reference, expansion) -> None:
    actual = [_pair(c.stride)[0] for _, c in convs]
    expected = [_pair(c.stride)[0] for c in reference]
    if actual == expected:
        return
    total, expected_total = math.prod(actual), math.prod(expected)
    names = [name for (name, _), s in zip(convs, actual) if s > 1]
    if total == expected_total and expansion > 1 and actual[0] > 1:
        _fail(
            f"{where}: the stride sits on the first 1×1 convolution ({names[0]}), not on the 3×3.",
            'torchvision and rt put the stride on the 3×3 (conv2, "ResNet v1.5"): a strided '
            "1×1 never looks at three quarters of its input positions. The paper's original "
            "puts it on the first 1×1; rt.Bottleneck(..., stride_on='1x1') builds that one.",
        )
    if total == expected_total:
        first = "the first 3×3 (conv1)" if expansion == 1 else "the 3×3 (conv2)"
        _fail(
            f"{where}: the stride sits on {', '.join(names)}, expected on {first}.",
            f"put the stride on {first} and stride 1 on the others, as torchvision does; "
            "the output has the same shape either way, but not the same values.",
        )
    if total > expected_total:
        _fail(
            f"{where} downsamples by {total}, expected {expected_total}: the stride is applied "
            f"in {len(names)} places ({', '.join(names)}).",
            "only one convolution of the block strides.",
        )
    _fail(
        f"{where} downsamples by {total}, expected {expected_total}.",
        f"pass `stride` to {'the first 3×3 convolution' if expansion == 1 else 'the 3×3'}.",
    )


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
        _fail(
            f"{where} has {len(blocks)} {plural}, {count_source} {len(reference)}.",
            "a stage is one row of Table 1: stack that many blocks (only the first one changes "
            "width and resolution).",
        )
    expansion = getattr(type(reference[0]), "expansion", 1)
    previous_out = None
    for j, (block, ref) in enumerate(zip(blocks, reference)):
        ref_convs = _residual_convs(ref)
        convs, projection = _split_convs(block, len(ref_convs))
        if not convs:
            _fail(f"{where}[{j}] has no convolutions.", "each entry of a stage is a block.")
        _check_block_input(f"{where}[{j}]", convs, ref_convs, previous_out, j)
        _check_block_stride(f"{where}[{j}]", convs, ref_convs, j)
        _check_projection(f"{where}[{j}]", convs, projection, ref, shortcut)
        _check_projection_norm(f"{where}[{j}]", block, convs, projection)
        _check_residual_convs(f"{where}[{j}]", convs, ref_convs, expansion)
        previous_out = convs[-1][1].out_channels


def _check_block_input(where, convs, ref_convs, previous_out, index) -> None:
    actual, expected = convs[0][1].in_channels, ref_convs[0].in_channels
    if actual == expected:
        return
    if previous_out is not None and actual != previous_out:
        _fail(
            f"{where} takes {actual} input channels, but the block before it outputs "
            f"{previous_out}: the stage's input width is computed wrongly.",
            "every block after a stage's first takes channels * block.expansion channels "
            f"(here {expected}), the width the first block outputs; update in_channels after "
            "creating each block.",
        )
    first = "the stage's first block" if index == 0 else "this block"
    _fail(
        f"{where} takes {actual} input channels, expected {expected}.",
        f"{first} takes the width of what comes before it: the previous stage's "
        "channels * block.expansion (or the stem's width).",
    )


def _check_block_stride(where, convs, ref_convs, index) -> None:
    actual = math.prod(_pair(c.stride)[0] for _, c in convs)
    expected = math.prod(_pair(c.stride)[0] for c in ref_convs)
    if actual == expected:
        return
    if index > 0:
        _fail(
            f"{where} downsamples by {actual}: only the first block of a stage strides.",
            "pass the stage's stride to its first block and stride 1 to the others (Sec. 3.3: "
            "conv3_1, conv4_1 and conv5_1 downsample with a stride of 2).",
        )
    _fail(
        f"{where} downsamples by {actual}, expected {expected}.",
        "the first block of a stage gets the stage's stride: 1 for the first stage (the stem "
        "has already downsampled by 4), 2 for every later one.",
    )


def _check_projection(where, convs, projection, reference, shortcut) -> None:
    needed = bool([m for m in reference.downsample.modules() if isinstance(m, nn.Conv2d)])
    in_c, out_c = convs[0][1].in_channels, convs[-1][1].out_channels
    stride = math.prod(_pair(c.stride)[0] for _, c in convs)
    if needed and not projection:
        halves = " and the map halves" if stride > 1 else ""
        _fail(
            f"No projection in {where}, where {in_c} channels become {out_c}{halves}.",
            "where the shape changes (more channels, or stride 2) the shortcut must change it "
            "too: a 1×1 convolution with the block's stride, then BatchNorm (option B). The "
            "first bottleneck stage changes the width (64 → 256) even at stride 1.",
        )
    if projection and not needed and shortcut == "A":
        _fail(
            f"{where} has a projection ({projection[0][0]}): the CIFAR networks have none.",
            "the paper's CIFAR ResNets use option A, parameter-free zero-padding shortcuts "
            "(Sec. 4.2); check yours with rt.exercises.check_shortcut.",
        )
    if projection and not needed:
        _fail(
            f"{where} has a projection ({projection[0][0]}) where the shape does not change.",
            "option B projects only where the shape changes; everywhere else the shortcut is "
            "the identity (projections everywhere, option C, add parameters for little gain, "
            "Table 3).",
        )
    if projection:
        name, conv = projection[0]
        if conv.kernel_size != (1, 1) or _pair(conv.stride)[0] != stride:
            _fail(
                f"{where}.{name} is a {conv.kernel_size[0]}×{conv.kernel_size[1]} convolution "
                f"with stride {_pair(conv.stride)[0]}; the block strides by {stride}.",
                "the projection is a 1×1 convolution with the block's stride, then BatchNorm.",
            )


def _check_projection_norm(where, block, convs, projection) -> None:
    """A projection shortcut ends in BatchNorm, as torchvision's `downsample.1` (Sec. 3.4)."""
    if not projection:
        return
    norms = [n for n, m in block.named_modules() if isinstance(m, _BATCH_NORMS)]
    named = [n for n in norms if any(word in n.lower() for word in _SHORTCUT_WORDS)]
    if named or len(norms) > len(convs):
        return
    _fail(
        f"{where}.{projection[0][0]} is a projection without BatchNorm: the block has "
        f"{len(norms)} BatchNorm layers for {len(convs) + len(projection)} convolutions.",
        "option B's projection is a 1×1 convolution followed by BatchNorm, "
        "nn.Sequential(conv1x1(...), nn.BatchNorm2d(out_channels)), as BN follows every "
        "convolution (Sec. 3.4); torchvision's weights load into downsample.0 and downsample.1.",
    )


def _find_stages(model: nn.Module, count: int, name: str) -> list[nn.Module]:
    stages = []
    for i in range(1, count + 1):
        stage = getattr(model, f"layer{i}", None)
        if not isinstance(stage, nn.Module):
            _fail(
                f"{name}: the model has no stage `layer{i}`.",
                f"name the stages layer1 … layer{count}, as torchvision does, so that its "
                "weights load and the stages can be checked one by one.",
            )
        stages.append(stage)
    if isinstance(getattr(model, f"layer{count + 1}", None), nn.Module):
        _fail(
            f"{name}: the model has a stage layer{count + 1}, expected {count} stages.",
            "one stage per row of the table: conv2_x … conv5_x for ImageNet, 3 for CIFAR.",
        )
    return stages


def _check_stem(model: nn.Module, name: str, expected: nn.Module, stem: str) -> None:
    outside = [(n, m) for n, m in model.named_modules() if not n.startswith("layer")]
    convs = [(n, m) for n, m in outside if isinstance(m, nn.Conv2d)]
    if not convs:
        _fail(f"{name}: no convolution before layer1.", "the stem starts with conv1.")
    conv_name, conv = convs[0]
    spec = lambda c: (c.kernel_size, _pair(c.stride), _pair(c.padding), c.out_channels)
    if spec(conv) != spec(expected.conv1):
        k, s, p, c = spec(expected.conv1)
        _fail(
            f"{name}: the stem convolution {conv_name} is {conv.kernel_size[0]}×"
            f"{conv.kernel_size[1]}, stride {_pair(conv.stride)[0]}, padding "
            f"{_pair(conv.padding)[0]}, {conv.out_channels} channels; expected {k[0]}×{k[1]}, "
            f"stride {s[0]}, padding {p[0]}, {c} channels.",
            "Table 1, conv1: 7×7, 64, stride 2 (padding 3 keeps 224 → 112)."
            if stem == "imagenet"
            else "Sec. 4.2: the first layer is a 3×3 convolution with 16 filters (stride 1).",
        )
    pools = [(n, m) for n, m in outside if isinstance(m, nn.MaxPool2d)]
    if stem == "cifar" and pools:
        _fail(
            f"{name}: the stem has a max-pool ({pools[0][0]}).",
            "the CIFAR networks have no pooling before the first stage (Sec. 4.2).",
        )
    if stem == "cifar":
        return
    if not pools:
        _fail(
            f"{name}: no nn.MaxPool2d in the stem.",
            "conv2_x starts with a 3×3 max-pool, stride 2 (Table 1): "
            "nn.MaxPool2d(kernel_size=3, stride=2, padding=1), named maxpool.",
        )
    pool_name, pool = pools[0]
    actual = (_pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size), _pair(pool.padding))
    if actual != ((3, 3), (2, 2), (1, 1)):
        (k, _), (s, _), (p, _) = actual
        note = (
            " This gives the right shapes at 224×224 (112 → 56) but not the same outputs."
            if (k, s, p) == (2, 2, 0)
            else ""
        )
        _fail(
            f"{name}: the stem's max-pool ({pool_name}) is {k}×{k}, stride {s}, padding {p}; "
            f"expected 3×3, stride 2, padding 1.{note}",
            "use nn.MaxPool2d(kernel_size=3, stride=2, padding=1) (Table 1: '3×3 max pool, "
            "stride 2'); padding 1 keeps 112 → 56.",
        )


def _check_head(model: nn.Module, name: str, expected: nn.Linear) -> None:
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Linear):
        _fail(
            f"{name}: model.fc is {type(fc).__name__}, expected nn.Linear.",
            "end with global average pooling, flatten, then nn.Linear named fc (torchvision's "
            "name, so weights load).",
        )
    if (fc.in_features, fc.out_features) != (expected.in_features, expected.out_features):
        _fail(
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
            _fail(
                f"layer{i} has {count} block{'s' * (count != 1)}, {count_source} {expected} "
                f"({name}: {expected_counts}; yours: {counts}).",
                "a stage is one row of the table: stack that many blocks (only the first one "
                "changes width and resolution).",
            )
    _check_stem(model, name, reference, stem)
    _check_no_conv_bias(model, name)
    for i, (stage, ref) in enumerate(zip(stages, reference.stages), start=1):
        _check_stage_structure(f"layer{i}", stage, ref, count_source, shortcut)
    _check_head(model, name, reference.fc)
    count, expected = _count(model), _count(reference)
    if count != expected:
        _fail(
            f"{name} has {count:,} parameters, rt's has {expected:,}.",
            "the layers checked out, so look for extra or missing BatchNorm layers; print(model) "
            "beside print(rt.resnet(...)) compares them layer by layer.",
        )
    if _is_meta(model):
        return f"{count:,} parameters; outputs not compared (the model is on the meta device)"
    learner = copy.deepcopy(model).cpu().eval()
    _randomize_batchnorm(learner)
    if not _copy_weights(learner, reference):
        return f"{count:,} parameters; outputs not compared (layer names and order differ)"
    reference.eval()
    x = _randn(2, *input_size, seed=2)
    output, expected_output = _forward(learner, x, name), _forward(reference, x, "rt's model")
    if not _close(output, expected_output):
        _fail(
            f"{name}: the outputs differ from rt's with the same weights (largest difference "
            f"{_relative_difference(output, expected_output):.2g} of the output's scale).",
            outputs_hint,
        )
    return f"{count:,} parameters, outputs equal rt's with the same weights"


# --- blocks ------------------------------------------------------------------------------------


def _build_block(block_cls, in_channels, channels, stride, downsample) -> nn.Module:
    takes_downsample = _positional_count(block_cls) >= 4
    args = (in_channels, channels, stride) + ((downsample,) if takes_downsample else ())
    where = f"{block_cls.__name__}{args[:3]}"
    return _call(
        block_cls,
        args,
        where,
        "the block takes (in_channels, channels, stride=1, downsample=None), as torchvision's: "
        "downsample is the shortcut's module where the shape changes, None for the identity.",
    )


def _check_block(block_cls, reference_cls, cases) -> tuple[str, bool]:
    """Every check of a block class; returns its parameter counts and whether outputs matched."""
    name, expansion = reference_cls.__name__, reference_cls.expansion
    if not isinstance(block_cls, type) or not issubclass(block_cls, nn.Module):
        raise TypeError(f"block_cls must be an nn.Module class, got {block_cls!r}")
    learner_expansion = getattr(block_cls, "expansion", None)
    if learner_expansion != expansion:
        _fail(
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
    _check_no_conv_bias(block, where)
    ref_convs = _residual_convs(reference)
    convs, _ = _split_convs(block, len(ref_convs), downsample)
    _check_residual_convs(where, convs, ref_convs, expansion)
    count, expected = _count(block), _count(reference)
    if count != expected:
        projection = " with a projection" if downsample is not None else ""
        _fail(
            f"{where} has {count:,} parameters, rt.{name}({in_channels}, {channels}, "
            f"stride={stride}){projection} has {expected:,}.",
            "each convolution is followed by one BatchNorm2d; print your block beside "
            f"print(rt.{name}(...)) to compare them layer by layer.",
        )
    x = _randn(2, in_channels, 8, 8)
    x_before = x.clone()
    output = _forward(block.eval(), x, where)
    expected_shape = (2, out_channels, 8 // stride, 8 // stride)
    if tuple(output.shape) != expected_shape:
        _fail(
            f"{where} maps {tuple(x.shape)} to {tuple(output.shape)}, expected {expected_shape}.",
            f"the block outputs channels * expansion = {out_channels} channels, at 1/stride "
            "of the input's size.",
        )
    if not torch.equal(x, x_before):
        _fail(
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
            if isinstance(module, _BATCH_NORMS) and module.affine:
                module.weight.zero_()
                module.bias.fill_(-1.0)
    x = _randn(2, in_channels, 8, 8, seed=3)
    output = _forward(block, x, where)
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
        if _close(output, candidate):
            if problem is None:
                return
            _fail(f"{where}: {problem}.", hint)
    _fail(
        f"{where}: with every BN set to output -1, F(x) = -1, so the block must return "
        "relu(x - 1); it returns something else.",
        "the block computes relu(F(x) + x) with F = conv-BN-ReLU-conv-BN; check what is "
        "added, and where the ReLUs are.",
    )


def _compare_block(where: str, block: nn.Module, reference: nn.Module, name: str) -> bool:
    _randomize_batchnorm(block)
    if not _copy_weights(block, reference):
        return False
    x = _randn(2, reference.conv1.in_channels, 8, 8, seed=4)
    output = _forward(block.eval(), x, where)
    expected = _forward(reference.eval(), x, f"rt.{name}")
    if not _close(output, expected):
        order = (
            "conv1 → bn1 → relu → conv2 → bn2"
            if name == "BasicBlock"
            else "conv1 → bn1 → relu → conv2 → bn2 → relu → conv3 → bn3"
        )
        _fail(
            f"{where}: the outputs differ from rt.{name}'s with the same weights (largest "
            f"difference {_relative_difference(output, expected):.2g} of the output's scale).",
            f"the layers are right, so look at forward: {order}, then + shortcut(x) (of the "
            "block's input x), then relu.",
        )
    return True


def _outputs_note(compared: bool, name: str) -> str:
    if compared:
        return f"outputs equal rt.{name}'s with the same weights"
    return "outputs not compared (name the layers as torchvision does: conv1, bn1, …)"


@_keeps_random_state
def check_basic_block(block_cls: type[nn.Module]) -> None:
    """Check a basic block against `rt.BasicBlock` (He et al. 2016a, Fig. 2 left).

    `block_cls(in_channels, channels, stride=1, downsample=None)` as torchvision's, with a class
    attribute `expansion = 1`; it is built as (64, 64, 1) and as (64, 128, 2) with a 1×1
    projection passed as `downsample` (a block that takes three arguments builds its own).

    Example:
        >>> rt.exercises.check_basic_block(MyBasicBlock)
        ✓ BasicBlock: parameters (73,984 and 230,144), no conv bias, stride on the first 3×3, …
    """
    counts, compared = _check_block(block_cls, BasicBlock, [(64, 64, 1), (64, 128, 2)])
    _passed(
        f"BasicBlock: parameters ({counts}), no conv bias, stride on the first 3×3, shortcut "
        f"added, ReLU after the addition, {_outputs_note(compared, 'BasicBlock')}"
    )


@_keeps_random_state
def check_bottleneck(block_cls: type[nn.Module]) -> None:
    """Check a bottleneck block against `rt.Bottleneck` (He et al. 2016a, Fig. 5 right).

    `block_cls(in_channels, channels, stride=1, downsample=None)` with `expansion = 4`: 1×1
    to `channels`, 3×3 (with the stride, torchvision's "v1.5"), 1×1 to 4 × `channels`. Built
    as (256, 64, 1), as (64, 64, 1) with a 64 → 256 projection, and as (256, 128, 2).

    Example:
        >>> rt.exercises.check_bottleneck(MyBottleneck)
        ✓ Bottleneck: parameters (…), no conv bias, 1×1-3×3-1×1 with expansion 4, …
    """
    cases = [(256, 64, 1), (64, 64, 1), (256, 128, 2)]
    counts, compared = _check_block(block_cls, Bottleneck, cases)
    _passed(
        f"Bottleneck: parameters ({counts}), no conv bias, 1×1-3×3-1×1 with expansion 4, "
        "stride on the 3×3, projection 64 → 256, shortcut added, ReLU after the addition, "
        f"{_outputs_note(compared, 'Bottleneck')}"
    )


# The blocks of rt.exercises.check_bottleneck_macs: (in_channels, channels, size, stride,
# stride_on), from the chapter's 256-d block to the first blocks of ResNet-50's stages 1, 2 and 4.
_MACS_CASES = [
    (256, 64, 56, 1, "3x3"),
    (64, 64, 56, 1, "3x3"),
    (256, 128, 56, 2, "3x3"),
    (256, 128, 56, 2, "1x1"),
    (1024, 512, 14, 2, "1x1"),
]


@_keeps_random_state
def check_bottleneck_macs(bottleneck_macs: Callable[..., int]) -> None:
    """Check a formula for the multiply-adds of one bottleneck block against `rt.count_macs`.

    `bottleneck_macs(in_channels, channels, size, stride, stride_on)` predicts the MACs of
    `rt.Bottleneck(in_channels, channels, stride, shortcut, stride_on=stride_on)` on one
    size × size input, with option B's projection where the shape changes (He et al. 2016a,
    Sec. 4.1). It is called for five blocks, from the 256-d block of chapter 3 to the first
    block of ResNet-50's stage 4, and must return a whole number.

    Example:
        >>> rt.exercises.check_bottleneck_macs(bottleneck_macs)
        ✓ Bottleneck MACs: 5 blocks, …
    """
    if not callable(bottleneck_macs):
        raise TypeError(f"bottleneck_macs must be a function, got {bottleneck_macs!r}")
    for in_channels, channels, size, stride, stride_on in _MACS_CASES:
        out_channels, out_size = channels * Bottleneck.expansion, size // stride
        call = (
            f"bottleneck_macs({in_channels}, {channels}, size={size}, stride={stride}, "
            f"stride_on={stride_on!r})"
        )
        predicted = _call(
            bottleneck_macs,
            (in_channels, channels, size, stride, stride_on),
            call,
            "the function takes (in_channels, channels, size, stride, stride_on) and returns "
            "a number; it builds no module.",
        )
        if isinstance(predicted, Tensor) and predicted.numel() == 1:
            predicted = predicted.item()
        if not isinstance(predicted, (int, float)) or predicted != int(predicted):
            _fail(
                f"{call} returned {predicted!r}, not a whole number.",
                "a count of multiply-adds is an integer: use // for the sizes, not /.",
            )
        with torch.device("meta"):  # shapes only: no weights to initialise
            shortcut = make_shortcut("B", in_channels, out_channels, stride)
            block = Bottleneck(in_channels, channels, stride, shortcut, stride_on=stride_on)
        expected = count_macs(block, (in_channels, size, size))
        if predicted == expected:
            continue
        projection = in_channels * out_channels * out_size**2  # Eq. conv-cost, k = 1
        first_saved = in_channels * channels * (size**2 - out_size**2)  # conv1 at size / stride
        diagnoses = [
            (2 * expected, "you counted 2 operations per multiply-add (FLOPs, not MACs)",
             "count one multiply-add per weight per output pixel, as the paper's Table 1 "
             "does: k² C_in C_out H_out W_out."),
            (expected - projection if shortcut is not None else None,
             "the projection shortcut is missing",
             f"the shape changes here ({in_channels} → {out_channels} channels"
             + (f", stride {stride}" if stride != 1 else "")
             + "), so option B adds a 1×1 convolution on the shortcut, at the output size."),
            (expected + projection if shortcut is None else None,
             "you counted a projection, but this block's shortcut is the identity",
             "option B projects only where the shape changes; here the input already has "
             f"{out_channels} channels at {size}×{size}."),
            (expected - first_saved if stride_on == "3x3" else expected + first_saved,
             "the first 1×1 runs at the wrong resolution",
             f"with the stride on the {stride_on.replace('x', '×')}, the first 1×1 runs on "
             + (f"the full {size}×{size} input; only the layers after the 3×3 run at "
                f"{out_size}×{out_size}." if stride_on == "3x3" else
                f"{out_size}×{out_size}: it strides itself, so every layer runs at the "
                "output size."))
            if stride != 1 else (None, "", ""),
        ]  # fmt: skip
        for candidate, problem, hint in diagnoses:
            if candidate is not None and predicted == candidate:
                _fail(f"{call} = {predicted:,}: {problem}.", hint)
        _fail(
            f"{call} = {predicted:,}, but rt.count_macs counts {expected:,} for that block "
            f"on a {size}×{size} input.",
            "add k² C_in C_out H_out W_out for each convolution: the 1×1 to `channels`, the "
            "3×3, the 1×1 to 4 · `channels` and, where the shape changes, the 1×1 projection "
            "of the shortcut; each at the size of its own output.",
        )
    _passed(
        f"Bottleneck MACs: {len(_MACS_CASES)} blocks, identity and projection shortcuts, "
        "stride on the 3×3 and on the 1×1, equal rt.count_macs"
    )


# --- shortcuts and stages ----------------------------------------------------------------------


@_keeps_random_state
def check_shortcut(shortcut: Callable[..., Tensor] | type[nn.Module]) -> None:
    """Check an option-A shortcut against `rt.ZeroPadShortcut` (He et al. 2016a, Sec. 3.3).

    Either a function `shortcut(x, out_channels, stride)` or an nn.Module class
    `Shortcut(in_channels, out_channels, stride)`: it subsamples by taking every stride-th
    pixel and pads the new channels with zeros, split evenly before and after the input's.

    Example:
        >>> def shortcut(x, out_channels, stride):
        ...     pad = out_channels - x.shape[1]
        ...     return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, pad // 2, pad - pad // 2))
        >>> rt.exercises.check_shortcut(shortcut)
        ✓ option-A shortcut: parameter-free, subsamples with x[:, :, ::2, ::2], …
    """
    is_module = isinstance(shortcut, type) and issubclass(shortcut, nn.Module)
    if not is_module and not callable(shortcut):
        raise TypeError(f"shortcut must be a function or an nn.Module class, got {shortcut!r}")
    for in_channels, out_channels, stride in [(16, 32, 2), (32, 64, 2), (16, 16, 1)]:
        name = getattr(shortcut, "__name__", "shortcut")
        where = f"{name}(in_channels={in_channels}, out_channels={out_channels}, stride={stride})"
        run = _build_shortcut(shortcut, is_module, in_channels, out_channels, stride, where)
        x = _randn(2, in_channels, 8, 8, seed=5)
        x_before = x.clone()
        with torch.no_grad():
            output = _call(run, (x,), f"{where} on (2, {in_channels}, 8, 8)", "see the error.")
        if not isinstance(output, Tensor):
            _fail(f"{where} returned {type(output).__name__}.", "return the padded tensor.")
        if not torch.equal(x, x_before):
            _fail(f"{where} changed its input in place.", "build a new tensor (slicing, F.pad).")
        _diagnose_zero_pad(where, x, output, in_channels, out_channels, stride)
    _passed(
        "option-A shortcut: parameter-free, subsamples with x[:, :, ::2, ::2], zeros split "
        "evenly before and after the channels, outputs equal rt.ZeroPadShortcut's (16 → 32 and "
        "32 → 64 at stride 2, the identity at 16 → 16)"
    )


def _build_shortcut(shortcut, is_module, in_channels, out_channels, stride, where):
    if not is_module:
        return lambda x: shortcut(x, out_channels, stride)
    module = _call(
        shortcut,
        (in_channels, out_channels, stride),
        where,
        "the module takes (in_channels, out_channels, stride).",
    )
    count = _count(module)
    if count:
        _fail(
            f"{where} has {count:,} parameters.",
            "option A is parameter-free: it subsamples and pads with zeros. A 1×1 convolution "
            "on the shortcut is option B.",
        )
    return module


def _diagnose_zero_pad(where, x, output, in_channels, out_channels, stride) -> None:
    pixels = "x[:, :, ::stride, ::stride]"
    expected = _zero_pad(x[:, :, ::stride, ::stride], in_channels, out_channels)
    if output.shape[1] != out_channels:
        _fail(
            f"{where} outputs {output.shape[1]} channels, expected {out_channels}.",
            "pad out_channels - in_channels zero channels: F.pad(x, (0, 0, 0, 0, before, "
            "after)) pads dimension 1, the channels (F.pad's pairs run from the last dimension).",
        )
    if output.shape != expected.shape:
        size = "×".join(map(str, output.shape[2:]))
        problem = "does not subsample" if output.shape[2:] == x.shape[2:] else "subsamples wrongly"
        _fail(
            f"{where} {problem}: the 8×8 map becomes {size}, expected "
            f"{expected.shape[2]}×{expected.shape[3]}.",
            f"take every stride-th pixel: {pixels}.",
        )
    if _close(output, expected):
        return
    used = (output.abs().sum(dim=(0, 2, 3)) > 0).nonzero().flatten().tolist()
    extra, before = out_channels - in_channels, (out_channels - in_channels) // 2
    start = used[0] if used else before
    if extra and start in (0, extra) and start != before:
        side = "after" if start == 0 else "before"
        _fail(
            f"{where} puts all {extra} zero channels {side} the input's.",
            "the public CIFAR checkpoints expect the zeros split evenly before and after: "
            "F.pad(x, (0, 0, 0, 0, p, p)) with p = (out_channels - in_channels) // 2.",
        )
    kept = output[:, start : start + in_channels]
    wrong_sampling = {
        "averages each window": F.avg_pool2d(x, stride) if stride > 1 else x,
        "max-pools each window": F.max_pool2d(x, stride) if stride > 1 else x,
        "takes the wrong pixel of each window": x[:, :, 1::stride, 1::stride],
    }
    for problem, candidate in wrong_sampling.items():
        if _close(kept, candidate):
            _fail(
                f"{where} {problem} instead of taking its top-left pixel.",
                f"option A subsamples with {pixels}, like the strided 1×1 convolution of "
                "option B, and as the CIFAR checkpoints expect.",
            )
    _fail(
        f"{where}: the outputs differ from rt.ZeroPadShortcut's (largest difference "
        f"{_relative_difference(output, expected):.2g} of the output's scale).",
        f"subsample with {pixels}, then pad (out_channels - in_channels) // 2 zero channels "
        "before and the rest after.",
    )


def _zero_pad(x: Tensor, in_channels: int, out_channels: int) -> Tensor:
    before = (out_channels - in_channels) // 2
    return F.pad(x, (0, 0, 0, 0, before, out_channels - in_channels - before))


@_keeps_random_state
def check_stage(make_stage_fn: Callable[..., nn.Module]) -> None:
    """Check a `make_stage` against `rt.make_stage` with option B (He et al. 2016a, Table 1).

    `make_stage_fn(block, in_channels, channels, depth, stride)` returns an `nn.Sequential` of
    `depth` blocks, each built as `block(in_channels, channels, stride, downsample)`; only the
    first block strides and, where it changes the shape, gets a projection (1×1 convolution
    with the stride, then BN). A `make_stage_fn` with a sixth argument (`shortcut`) gets "B".

    Example:
        >>> rt.exercises.check_stage(my_make_stage)
        ✓ make_stage: block counts, only the first block strides, …
    """
    cases = [
        (BasicBlock, 64, 64, 2, 1),
        (BasicBlock, 64, 128, 2, 2),
        (Bottleneck, 64, 64, 3, 1),
        (Bottleneck, 256, 128, 2, 2),
    ]
    takes_shortcut = _positional_count(make_stage_fn) >= 6
    compared = True
    for block, in_channels, channels, depth, stride in cases:
        call = f"make_stage(rt.{block.__name__}, {in_channels}, {channels}, {depth}, {stride})"
        args = (block, in_channels, channels, depth, stride) + (("B",) * takes_shortcut)
        stage = _call(
            make_stage_fn,
            args,
            call,
            "make_stage(block, in_channels, channels, depth, stride) builds its blocks with "
            "block(in_channels, channels, stride, downsample).",
        )
        if not isinstance(stage, nn.Sequential):
            _fail(f"{call} returned {type(stage).__name__}.", "return nn.Sequential(*blocks).")
        reference = make_stage(block, in_channels, channels, depth, stride, "B")
        _check_stage_structure(call, stage, reference, f"depth={depth} asks for")
        compared &= _compare_stage(call, stage, reference, in_channels, stride)
    note = "outputs equal rt.make_stage's" if compared else "outputs not compared (names differ)"
    _passed(
        "make_stage: block counts, only the first block strides, projections exactly where the "
        f"shape changes (64 → 256 at stride 1 included), input widths channels * expansion, {note}"
    )


def _compare_stage(call, stage, reference, in_channels, stride) -> bool:
    x = _randn(2, in_channels, 8, 8, seed=6)
    output = _forward(stage.eval(), x, call)
    expected = _forward(reference.eval(), x, "rt.make_stage")
    if output.shape != expected.shape:
        _fail(
            f"{call} outputs {tuple(output.shape)}, expected {tuple(expected.shape)}.",
            "the stage outputs channels * block.expansion channels at 1/stride of the size.",
        )
    _randomize_batchnorm(stage)
    if not _copy_weights(stage, reference):
        return False
    expected = _forward(reference, x, "rt.make_stage")
    if not _close(_forward(stage, x, call), expected):
        _fail(
            f"{call}: the outputs differ from rt.make_stage's with the same weights.",
            "the blocks are right, so check the projection: Sequential(conv1x1(in_channels, "
            "channels * expansion, stride), BatchNorm2d(channels * expansion)).",
        )
    return True


# The stages of rt.exercises.check_shortcut_parameters (chapter 2): (option, in_channels, channels,
# depth, stride) of basic-block stages of the CIFAR ResNet-20 and ResNet-34, and one that widens
# at stride 1.
_SHORTCUT_CASES = [
    ("A", 16, 32, 3, 2),
    ("B", 16, 32, 3, 2),
    ("B", 64, 64, 3, 1),
    ("C", 64, 64, 3, 1),
    ("C", 128, 256, 6, 2),
    ("D", 256, 512, 3, 2),
    ("B", 64, 128, 2, 1),
]


@_keeps_random_state
def check_shortcut_parameters(shortcut_parameters: Callable[..., int]) -> None:
    """Check a formula for the parameters on a stage's shortcuts against `rt.make_stage`.

    `shortcut_parameters(option, in_channels, channels, depth, stride)` predicts how many
    parameters the shortcuts of `rt.make_stage(rt.BasicBlock, in_channels, channels, depth,
    stride, option)` hold, for option "A", "B", "C" or "D" (He et al. 2016a, Sec. 3.3 and 4.1;
    He et al. 2019). It is called for the stages of `_SHORTCUT_CASES` and returns an integer.

    Example:
        >>> rt.exercises.check_shortcut_parameters(shortcut_parameters)
        ✓ shortcut parameters: 7 stages, …
    """
    if not callable(shortcut_parameters):
        raise TypeError(f"shortcut_parameters must be a function, got {shortcut_parameters!r}")
    for option, in_channels, channels, depth, stride in _SHORTCUT_CASES:
        args = (option, in_channels, channels, depth, stride)
        call = f"shortcut_parameters({', '.join(map(repr, args))})"
        predicted = _call(
            shortcut_parameters, args, call,
            "the function takes (option, in_channels, channels, depth, stride) and returns a "
            "number; it builds no module.",
        )  # fmt: skip
        if isinstance(predicted, Tensor) and predicted.numel() == 1:
            predicted = predicted.item()
        if (
            isinstance(predicted, bool)
            or not isinstance(predicted, (int, float))
            or predicted != int(predicted)
        ):
            _fail(
                f"{call} returned {predicted!r}, not a whole number.",
                "a count of parameters is an integer: use // for divisions, not /.",
            )
        with torch.device("meta"):  # shapes only: no weights to initialise
            stage = make_stage(BasicBlock, in_channels, channels, depth, stride, option)
        projections = [_count(block.downsample) for block in stage]
        if predicted != sum(projections):
            _diagnose_shortcut_parameters(call, int(predicted), args, stage, projections)
    _passed(
        f"shortcut parameters: {len(_SHORTCUT_CASES)} stages, options A, B, C and D, at stride 2 "
        "and at stride 1 (with and without a change of width), equal rt.make_stage's"
    )


def _diagnose_shortcut_parameters(call, predicted, args, stage, projections) -> None:
    option, in_channels, channels, depth, stride = args
    expected, first = sum(projections), projections[0]
    projected = [block.downsample for block in stage if _count(block.downsample)]
    norms = sum(2 * projection[-1].num_features for projection in projected)  # γ and β
    changes = f"{in_channels} → {channels} channels" + (f" at stride {stride}" * (stride > 1))
    c_style = first + (depth - 1) * (channels * channels + 2 * channels)  # a projection everywhere
    diagnoses = [
        (option == "A", "option A has no parameters",
         "it subsamples and pads with zeros: nothing to learn, on any block."),
        (predicted == expected - norms, "BatchNorm's parameters are missing",
         "each projection is a 1×1 convolution (C_in · C_out weights, no bias) and a BatchNorm "
         "with a scale γ and a shift β per output channel: C_in · C_out + 2 · C_out."),
        (predicted == expected + norms, "you counted BatchNorm's running mean and variance",
         "those are buffers, updated by averaging, not parameters: a BatchNorm has 2 · C_out "
         "parameters (γ and β)."),
        (option in "BD" and predicted == 0 and first > 0,
         "the first block changes the shape, so it needs a projection",
         f"its input has {in_channels} channels and its output {channels}"
         + (f", at 1/{stride} of the size" if stride > 1 else ", at the same size")
         + f": option {option} projects the shortcut exactly there."),
        (option in "BD" and predicted == c_style and depth > 1,
         f"option {option} projects only where the shape changes",
         "the blocks after the first keep their shape and keep the identity shortcut; "
         "projecting every block is option C."),
        (option == "C" and predicted == expected - first and first > 0,
         "option C projects the first block too",
         f"option C puts a projection on every block: the first one maps {changes}."),
        (option == "C" and predicted == first and depth > 1,
         "option C projects every block, not only the first",
         f"the other {depth - 1} blocks get a {channels} → {channels} projection each, where "
         "B and D keep the identity."),
    ]  # fmt: skip
    for applies, problem, hint in diagnoses:
        if applies:
            _fail(f"{call} = {predicted:,}: {problem}.", hint)
    _fail(
        f"{call} = {predicted:,}, but the shortcuts of rt.make_stage(rt.BasicBlock, "
        f"{in_channels}, {channels}, {depth}, {stride}, {option!r}) hold {expected:,} parameters.",
        "count the blocks whose shortcut is a projection (A: none; B and D: where the shape "
        "changes; C: every block) and add C_in · C_out + 2 · C_out for each; the average "
        "pooling of D has no parameters.",
    )


# --- whole networks ----------------------------------------------------------------------------


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


@_keeps_random_state
def check_resnet(
    model: nn.Module,
    depth: int | None = None,
    *,
    layers: Sequence[int] | None = None,
    block: type[nn.Module] | None = None,
    num_classes: int = 1000,
) -> None:
    """Check an ImageNet ResNet against `rt.ResNet` (He et al. 2016a, Table 1).

    Give `depth` (18, 34, 50, 101 or 152), or `layers` and `block` for another member of the
    family (ResNet-26: `layers=[2, 2, 2, 2], block=rt.Bottleneck`). The model keeps
    torchvision's names (conv1, bn1, maxpool, layer1 … layer4 with `downsample` in the blocks,
    fc), so that its weights load into rt's model and the outputs are compared at 64×64.

    Example:
        >>> rt.exercises.check_resnet(MyResNet(MyBasicBlock, [3, 4, 6, 3]), 34)
        ✓ ResNet-34: stem 7×7/2 conv and 3×3/2 max-pool, blocks per stage [3, 4, 6, 3], …
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
    _passed(
        f"{name}: stem 7×7/2 conv and 3×3/2 max-pool, blocks per stage {list(layers)}, no conv "
        "bias, strides and projections where the shape changes, fc "
        f"{reference.fc.in_features} → {num_classes}, {result}"
    )


@_keeps_random_state
def check_cifar_resnet(model: nn.Module, depth: int = 20, *, num_classes: int = 10) -> None:
    """Check a CIFAR ResNet of depth 6n + 2 against `rt.cifar_resnet` (He et al. 2016a, Sec. 4.2).

    A 3×3 stem with 16 channels and no pool, three stages of n basic blocks (16, 32, 64
    channels), option-A shortcuts (no projections), global pooling and fc; named as torchvision
    names its models (conv1, bn1, layer1 … layer3, fc). Outputs are compared at 32×32.

    Example:
        >>> rt.exercises.check_cifar_resnet(MyCifarResNet(n=3), 20)
        ✓ CIFAR ResNet-20: 3×3 stem with 16 channels and no pool, 3 blocks per stage, …
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
    _passed(
        f"{name}: 3×3 stem with 16 channels and no pool, {n} blocks per stage, widths 16/32/64, "
        f"no conv bias, option-A shortcuts (no projections), fc 64 → {num_classes}, {result}"
    )


# --- chapter 1: the residual sum, plain against residual ---------------------------------------


class _Counted(nn.Module):
    """A function f that counts its calls."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.f(x)


class _Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


@_keeps_random_state
def check_residual(residual: Callable[..., Any]) -> None:
    """Check a residual wrapper y = f(x) + x (He et al. 2016a, Eq. 1 and Fig. 2).

    Either a class `Residual(f)`, an nn.Module that stores the module `f` and returns
    `f(x) + x`, or a function `residual(x, f)`. Tried with three f's: a linear layer, x ↦ -2x
    and x ↦ 0·x (for which the gradient must still reach x through the shortcut).

    Example:
        >>> class Residual(nn.Module):
        ...     def __init__(self, f):
        ...         super().__init__()
        ...         self.f = f
        ...     def forward(self, x):
        ...         return self.f(x) + x
        >>> rt.exercises.check_residual(Residual)
        ✓ Residual: returns f(x) + x for three f's, calls f once, …
    """
    is_class = isinstance(residual, type)
    name = getattr(residual, "__name__", "residual")
    for f in (nn.Linear(6, 6), _Scale(-2.0), _Scale(0.0)):
        counted = _Counted(f)
        run = _residual_runner(residual, is_class, counted, name)
        x = _randn(4, 6, seed=7)
        x_before = x.clone()
        with torch.no_grad():
            output = _call(run, (x,), f"{name} on a (4, 6) input", "see the error.")
            expected = f(x_before) + x_before
            _diagnose_residual(name, counted.calls, x, x_before, output, expected, f)
    x = _randn(4, 6, seed=8).requires_grad_()
    output = run(x)
    if not output.requires_grad:
        _fail(
            f"{name}: the output carries no gradient.",
            "don't compute under torch.no_grad() or detach: the gradient reaches x through the "
            "shortcut (Sec. 3.1).",
        )
    output.sum().backward()
    if x.grad is None or not torch.allclose(x.grad, torch.ones_like(x)):
        _fail(
            f"{name}: with f(x) = 0·x the gradient of sum(y) with respect to x should be 1 "
            "everywhere (the shortcut's), but it is not.",
            "add x itself, not x.detach() or x.data: the identity path carries the gradient "
            "straight through, which is what lets deep residual nets train (Sec. 3.1).",
        )
    _passed(
        f"{name}: returns f(x) + x for three f's, calls f once, leaves x unchanged, and passes "
        "the gradient through the shortcut (∂y/∂x = 1 where f is 0)"
    )


def _residual_runner(residual, is_class, counted, name):
    if not is_class:
        return lambda x: residual(x, counted)
    return _call(
        residual,
        (counted,),
        f"{name}(f)",
        "Residual(f) takes the function f (an nn.Module) and stores it: self.f = f.",
    )


def _diagnose_residual(name, calls, x, x_before, output, expected, f) -> None:
    if calls != 1:
        _fail(
            f"{name} calls f {calls} times per forward pass"
            + (": f is applied twice." if calls == 2 else "."),
            "call f once and add the input: return self.f(x) + x.",
        )
    if not torch.equal(x, x_before):
        _fail(
            f"{name} changed its input x in place (an in-place add such as x += f(x)).",
            "write `return self.f(x) + x`, which makes a new tensor: the caller's x (and "
            "autograd, which needs it for the backward pass) must keep its value.",
        )
    if not isinstance(output, Tensor) or output.shape != expected.shape:
        _fail(f"{name} returned {output!r:.60}, expected a tensor like x.", "return f(x) + x.")
    if _close(output, expected):
        return
    diagnoses = {
        "returned f(x) only": f(x_before),
        "returned x only": x_before,
        "applied f twice": f(f(x_before)) + x_before,
        "subtracted x": f(x_before) - x_before,
    }
    for problem, candidate in diagnoses.items():
        if _close(output, candidate):
            _fail(
                f"{name} {problem}.",
                "the block learns the residual F(x) = H(x) - x and returns F(x) + x (Eq. 1): "
                "return self.f(x) + x.",
            )
    _fail(f"{name} does not return f(x) + x.", "return self.f(x) + x.")


class _AdditionCounter(TorchFunctionMode):
    """Counts additions of two feature maps (N, C, H, W), such as a block's F(x) + x."""

    names = frozenset({"add", "add_", "__add__", "__iadd__", "__radd__"})

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        operands = args[:2]
        if (
            getattr(func, "__name__", "") in self.names
            and len(operands) == 2
            and all(isinstance(a, Tensor) and a.dim() == 4 for a in operands)
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _additions(model: nn.Module, input_size: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    modes = _modes(model)
    x = _randn(2, *input_size, seed=9).to(_device(model))
    counter = _AdditionCounter()
    try:
        model.eval()
        with counter, torch.no_grad():
            output = _call(model, (x,), "the model", "see the error.")
    finally:
        _restore_modes(modes)
    return counter.count, tuple(output.shape)


def _conv_specs(model: nn.Module) -> list[tuple]:
    return [
        (m.kernel_size, m.in_channels, m.out_channels, _pair(m.stride))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]


@_keeps_random_state
def check_plain_vs_residual(
    plain_model: nn.Module,
    residual_model: nn.Module,
    *,
    input_size: Sequence[int] = (3, 32, 32),
) -> None:
    """Check a plain/residual pair for the degradation experiment (He et al. 2016a, Fig. 6).

    The two must have the same convolutions and the same number of parameters (so option-A,
    parameter-free shortcuts), the plain net must add no feature maps together and the
    residual net must (one addition per block). Runs one forward pass of each.

    Example:
        >>> rt.exercises.check_plain_vs_residual(rt.cifar_plain(20), rt.cifar_resnet(20))
        ✓ plain vs residual: the same 269,722 parameters in the same 19 convolutions; …
    """
    plain_count, residual_count = _count(plain_model), _count(residual_model)
    if plain_count != residual_count:
        _fail(
            f"The plain net has {plain_count:,} parameters, the residual net {residual_count:,}.",
            "the comparison is fair only if the two nets have the same layers: use parameter-"
            "free shortcuts (option A, zero-padding), as the paper does for Fig. 6 (Sec. 4.2); "
            "projections (option B) add parameters.",
        )
    plain_convs, residual_convs = _conv_specs(plain_model), _conv_specs(residual_model)
    if plain_convs != residual_convs:
        i = next(
            (i for i, (a, b) in enumerate(zip(plain_convs, residual_convs)) if a != b),
            min(len(plain_convs), len(residual_convs)),
        )
        _fail(
            f"The two nets differ at convolution {i}: {len(plain_convs)} convolutions in the "
            f"plain net, {len(residual_convs)} in the residual net.",
            "build both from the same table; the only difference is the shortcut "
            "(shortcut=None for the plain net).",
        )
    plain_adds, plain_shape = _additions(plain_model, input_size)
    residual_adds, residual_shape = _additions(residual_model, input_size)
    if plain_adds:
        _fail(
            f"The plain net adds feature maps together {plain_adds} times: it has shortcuts.",
            "the plain net is the same stack without shortcuts: each block returns "
            "relu(F(x)) (rt.cifar_plain, or shortcut=None).",
        )
    if not residual_adds:
        _fail(
            "The residual net adds no feature maps together: it has no shortcuts.",
            "each residual block returns relu(F(x) + shortcut(x)).",
        )
    if plain_shape != residual_shape:
        _fail(f"The outputs' shapes differ: {plain_shape} and {residual_shape}.", "see above.")
    _passed(
        f"plain vs residual: the same {plain_count:,} parameters in the same "
        f"{len(plain_convs)} convolutions; the plain net adds no shortcuts, the residual net "
        f"adds {residual_adds}"
    )


# --- chapter 5: training ---------------------------------------------------------------------


def check_lr_schedule(
    fn: Callable[[int], float], *, total_steps: int, base_lr: float = 0.1
) -> None:
    """Check the paper's step schedule: lr(step) for step = 0 … total_steps - 1 (Sec. 3.4, 4.2).

    `base_lr` until 50% of the steps, base_lr / 10 until 75%, base_lr / 100 after; steps count
    from 0 and step int(0.5 · total_steps) is the first at the new rate (as `rt.train` does;
    with an odd count, either neighbour of the 50% point is accepted).

    Example:
        >>> rt.exercises.check_lr_schedule(lambda s: 0.1 * 0.1 ** ((s >= 50) + (s >= 75)),
        ...                                total_steps=100)
        ✓ lr schedule: 0.1 for steps 0–49, 0.01 for 50–74, 0.001 for 75–99
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 4:
        raise ValueError(f"total_steps must be an int >= 4, got {total_steps!r}")
    rates = [
        float(_call(fn, (step,), f"lr({step})", "lr(step) returns a number."))
        for step in range(total_steps)
    ]
    same = lambda a, b: abs(a - b) <= 1e-6 * max(abs(a), abs(b)) + 1e-12
    if not same(rates[0], base_lr):
        returns_factor = same(rates[0], 1.0)
        _fail(
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
        _fail(
            f"The lr changes {len(changes)} times (at {at}); the paper divides it by 10 twice, at "
            f"50% and 75% of the {total_steps} steps (steps {described[0]} and {described[1]}).",
            "lr = base_lr * 0.1 ** ((step >= m1) + (step >= m2)), with m1 = int(0.5 * "
            "total_steps) and m2 = int(0.75 * total_steps).",
        )
    for (step, before, after), allowed, percent in zip(changes, milestones, (50, 75)):
        if step not in allowed:
            distance = min(abs(step - m) for m in allowed)
            late = "late" if step > max(allowed) else "early"
            problem = f"one step {late} (off by one)" if distance == 1 else "at the wrong step"
            _fail(
                f"The lr drops at step {step}, {problem}: {percent}% of total_steps="
                f"{total_steps} is step {min(allowed)}.",
                f"steps count from 0 and step {min(allowed)} is the first at the new rate: "
                "compare with `step >= milestone`, not `step > milestone`.",
            )
        if not same(before / after, 10.0):
            _fail(
                f"The lr goes from {before:g} to {after:g} at step {step}: divided by "
                f"{before / after:g}, not by 10.",
                "multiply by 0.1 at each milestone: base_lr, base_lr / 10, base_lr / 100.",
            )
    (m1, _, lr1), (m2, _, lr2) = changes
    _passed(
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

    `param_groups` is an optimizer or the list of groups given to one. Every trainable
    parameter sits in exactly one group; those with p.ndim <= 1 (BN's γ and β, biases) get
    weight_decay 0, the others a positive one (`weight_decay`, if given; 1e-4 in the paper).

    Example:
        >>> rt.exercises.check_weight_decay_groups(optimizer, model, weight_decay=1e-4)
        ✓ weight decay: 0.0001 on 21 conv/linear weights, none on 41 BN parameters and biases
    """
    groups = getattr(param_groups, "param_groups", param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    decay: dict[int, float] = {}
    for i, group in enumerate(groups):
        if "weight_decay" not in group:
            _fail(
                f"Parameter group {i} has no 'weight_decay'.",
                "give every group its own: weight_decay=0 for BN and biases, 1e-4 for weights.",
            )
        params = group["params"]
        for p in [params] if isinstance(params, Tensor) else list(params):
            if id(p) not in names:
                _fail(
                    f"Parameter group {i} holds a tensor of shape {tuple(p.shape)} that is not "
                    "a parameter of the model.",
                    "build the groups from model.named_parameters() of this model.",
                )
            if id(p) in decay:
                _fail(f"{names[id(p)]} is in two groups.", "put each parameter in one group.")
            decay[id(p)] = float(group["weight_decay"])
    _check_decay_values(model, decay, weight_decay)
    values = sorted({v for v in decay.values() if v})
    decayed = sum(1 for v in decay.values() if v)
    _passed(
        f"weight decay: {', '.join(f'{v:g}' for v in values)} on {decayed} conv/linear weights, "
        f"none on {len(decay) - decayed} BN parameters and biases"
    )


def _check_decay_values(model, decay, weight_decay) -> None:
    owners = {id(p): m for m in model.modules() for p in m.parameters(recurse=False)}
    hint_none = (
        "no weight decay on BN's γ and β or on biases: put every parameter with p.ndim <= 1 "
        "in a group with weight_decay=0 (the decay would only shrink what BN rescales anyway)."
    )
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) not in decay:
            _fail(
                f"{name} is in no parameter group, so it never trains.",
                "every trainable parameter goes in exactly one group.",
            )
        value = decay[id(p)]
        if p.ndim <= 1 and value:
            is_bn = isinstance(owners[id(p)], _BATCH_NORMS)
            what = (
                ("BatchNorm γ" if name.endswith("weight") else "BatchNorm β") if is_bn else "a bias"
            )
            _fail(f"{name} ({what}) gets weight decay {value:g}.", hint_none)
        if p.ndim > 1 and not value:
            _fail(
                f"{name} (a weight of {type(owners[id(p)]).__name__}) gets no weight decay.",
                "decay the convolution and linear weights (p.ndim > 1): weight_decay=1e-4 in "
                "the paper (Sec. 3.4).",
            )
        if p.ndim > 1 and weight_decay is not None and abs(value - weight_decay) > 1e-12:
            _fail(
                f"{name} gets weight decay {value:g}, expected {weight_decay:g}.",
                f"use weight_decay={weight_decay:g} for the weights.",
            )


def check_eval_mode(
    evaluate_fn: Callable[[nn.Module, Any], Any],
    model: nn.Module | None = None,
    data: Any = None,
) -> None:
    """Check that an `evaluate(model, data)` runs the model in eval mode and without gradients.

    The model is put in train mode first; during the call every forward pass must see the
    model and its BN layers in eval mode (BN then uses its running statistics and leaves them
    unchanged) and gradients off (torch.no_grad or torch.inference_mode). By default the model
    is a small CIFAR ResNet and `data` a tuple (images (16, 3, 32, 32) float, labels (16,)).

    Example:
        >>> rt.exercises.check_eval_mode(my_evaluate)
        ✓ evaluate: 1 forward pass, all in eval mode under no_grad; BN statistics unchanged
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if model is None:
            model = cifar_resnet(8, width=4)
        if data is None:
            data = (torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,)))
    modes = _modes(model)
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS)]
    before = [b.clone() for m in norms for b in (m.running_mean, m.running_var) if b is not None]
    calls: list[tuple[bool, bool]] = []
    record = lambda m, args: calls.append((m.training, torch.is_grad_enabled()))
    handles = [m.register_forward_pre_hook(record) for m in [model, *norms]]
    try:
        model.train()
        _call(evaluate_fn, (model, data), "evaluate(model, data)", "see the error.")
    finally:
        for handle in handles:
            handle.remove()
        _restore_modes(modes)
    after = [b for m in norms for b in (m.running_mean, m.running_var) if b is not None]
    _check_eval_calls(calls, before, after)
    passes = sum(1 for _ in calls) // (1 + len(norms))
    _passed(
        f"evaluate: {passes} forward pass{'es' * (passes != 1)}, all in eval mode under "
        "no_grad; BN statistics unchanged"
    )


def _check_eval_calls(calls, before, after) -> None:
    if not calls:
        _fail("evaluate never ran the model.", "call model(images) on the data.")
    if any(training for training, _ in calls):
        _fail(
            "evaluate ran the model in train mode: BN normalised with each batch's statistics "
            "and updated its running ones.",
            "call model.eval() before evaluating (and model.train() again before training).",
        )
    if any(grad for _, grad in calls):
        _fail(
            "evaluate ran the model with gradients on: autograd kept every activation for a "
            "backward pass that never comes.",
            "wrap the loop in `with torch.no_grad():` (or torch.inference_mode()).",
        )
    if any(not torch.equal(a, b) for a, b in zip(before, after)):
        _fail(
            "evaluate changed BN's running statistics.",
            "evaluation must not change the model: call model.eval() first.",
        )


# --- chapter 6: transfer learning --------------------------------------------------------------


def _in_parts(name: str, parts: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in parts)


def check_frozen(model: nn.Module, trainable: Sequence[str], *, bn_frozen: bool = True) -> None:
    """Check that exactly the named parts of `model` train, and that frozen BN stays frozen.

    `trainable` lists the parts that train, as names or name prefixes (`["fc"]` for feature
    extraction, `["layer4", "fc"]` to fine-tune the last stage); every other parameter must
    have requires_grad=False. With `bn_frozen=True` the BatchNorm layers of the frozen part
    must also stay in eval mode after `model.train()` (which a training loop calls every
    epoch), so that their running statistics do not drift.

    Example:
        >>> rt.exercises.check_frozen(model, ["fc"])
        ✓ frozen: 2 parameter tensors train (fc), 60 are frozen; …
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
        _fail(
            f"{len(should_freeze)} parameters outside {parts} still require grad, e.g. "
            f"{', '.join(should_freeze[:3])}.",
            "freeze the rest: for p in model.parameters(): p.requires_grad_(False), then "
            "unfreeze (or create) the parts that train.",
        )
    if should_train:
        _fail(
            f"{len(should_train)} parameters in {parts} are frozen, e.g. "
            f"{', '.join(should_train[:3])}.",
            "freeze first, then replace or unfreeze the parts that train; a new layer created "
            "after freezing requires grad by default.",
        )
    frozen_norms = _frozen_norms_in_train_mode(model, parts) if bn_frozen else []
    if frozen_norms:
        _fail(
            f"{len(frozen_norms)} BatchNorm layers of the frozen part (e.g. "
            f"{', '.join(frozen_norms[:2])}) are in train mode after model.train().",
            "requires_grad=False freezes γ and β but not the running statistics: in train mode "
            "BN normalises with each batch's statistics and keeps updating its running ones, "
            "so the frozen backbone drifts. After every model.train(), put the frozen BN "
            "layers back in eval mode (or override the model's train method to do so); pass "
            "bn_frozen=False if you mean to adapt the statistics.",
        )
    trained = len(params) - sum(1 for _, p in params if not p.requires_grad)
    norms = [n for n, m in model.named_modules() if isinstance(m, _BATCH_NORMS)]
    frozen_count = sum(1 for n in norms if not _in_parts(n, parts))
    bn_note = f"; the frozen part's {frozen_count} BN layers stay in eval mode after model.train()"
    _passed(
        f"frozen: {trained} parameter tensors train ({', '.join(parts)}), "
        f"{len(params) - trained} are frozen{bn_note if bn_frozen else ''}"
    )


def _frozen_norms_in_train_mode(model: nn.Module, parts: Sequence[str]) -> list[str]:
    modes = _modes(model)
    try:
        model.train()
        return [
            n
            for n, m in model.named_modules()
            if isinstance(m, _BATCH_NORMS) and not _in_parts(n, parts) and m.training
        ]
    finally:
        _restore_modes(modes)


def check_new_head(
    model: nn.Module, num_classes: int, *, old_head: nn.Module | None = None
) -> None:
    """Check a replaced classifier: `model.fc` is a new, trainable Linear(features → num_classes).

    Its input width must match what the backbone gives (found by running the model on a small
    batch), its weights must look freshly initialised (within nn.Linear's ±1/√in_features,
    or zero) and, if `old_head` is given, it must not be that layer.

    Example:
        >>> old = model.fc
        >>> model.fc = nn.Linear(model.fc.in_features, 10)
        >>> rt.exercises.check_new_head(model, 10, old_head=old)
        ✓ new head: fc = Linear(512 → 10), new, freshly initialised and trainable; …
    """
    fc = getattr(model, "fc", None)
    linears = [m for m in fc.modules() if isinstance(m, nn.Linear)] if fc is not None else []
    if not linears:
        _fail(
            f"model.fc is {type(fc).__name__}, expected an nn.Linear.",
            "replace the head: model.fc = nn.Linear(model.fc.in_features, num_classes).",
        )
    head = linears[-1]
    if old_head is not None and (
        head is old_head or head.weight is getattr(old_head, "weight", None)
    ):
        _fail("model.fc is still the old head.", "assign a new nn.Linear to model.fc.")
    if head.out_features != num_classes:
        _fail(
            f"model.fc outputs {head.out_features} classes, expected {num_classes}.",
            "model.fc = nn.Linear(model.fc.in_features, num_classes).",
        )
    features = _head_input_width(model, linears[0])
    if features != linears[0].in_features:
        _fail(
            f"model.fc takes {linears[0].in_features} features, but the backbone gives {features}.",
            "take the old head's width: nn.Linear(model.fc.in_features, num_classes) (512 for "
            "ResNet-18/34, 2048 for ResNet-50 and deeper, 64 for the CIFAR nets).",
        )
    if not all(p.requires_grad for p in fc.parameters()):
        _fail(
            "the new head is frozen (requires_grad=False).",
            "freeze the backbone first, then attach the new head: a new layer requires grad.",
        )
    bound = 1 / math.sqrt(head.in_features)
    largest = float(head.weight.detach().abs().max())
    if largest > 3 * bound:
        _fail(
            f"model.fc looks trained rather than new: its largest weight is {largest:.3g}, "
            f"while a new nn.Linear({head.in_features}, {num_classes}) draws from ±{bound:.3g}.",
            "create a new layer for the new classes rather than reusing trained weights.",
        )
    _passed(
        f"new head: fc = Linear({head.in_features} → {num_classes}), new, freshly initialised "
        f"and trainable; the model outputs (N, {num_classes})"
    )


def _head_input_width(model: nn.Module, first_linear: nn.Linear) -> int:
    """Width of what reaches the head, from one forward pass on two small images."""
    seen: list[int] = []
    handle = first_linear.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    in_channels = convs[0].in_channels if convs else 3
    modes = _modes(model)
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(2, in_channels, 64, 64, device=_device(model)))
    except Exception as error:
        if not seen:
            _fail(f"the model raised {type(error).__name__}: {error}", "see the error.")
    finally:
        handle.remove()
        _restore_modes(modes)
    if not seen:
        _fail("the model's forward never calls model.fc.", "end forward with self.fc(features).")
    return seen[0]


def check_optimizer_params(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Check that `optimizer` holds exactly the model's trainable parameters (chapter 6).

    Create the optimizer after replacing the head and freezing: it must hold every parameter
    with requires_grad=True, no frozen one and nothing that is not in the model (an old head).

    Example:
        >>> optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], 0.01)
        >>> rt.exercises.check_optimizer_params(optimizer, model)
        ✓ optimizer: holds exactly the 2 trainable parameter tensors (fc.weight, fc.bias), …
    """
    held = [p for group in optimizer.param_groups for p in group["params"]]
    names = {id(p): n for n, p in model.named_parameters()}
    foreign = [p for p in held if id(p) not in names]
    if foreign:
        _fail(
            f"The optimizer holds {len(foreign)} tensors that are not parameters of the model "
            f"(shapes {', '.join(str(tuple(p.shape)) for p in foreign[:2])}).",
            "it was created before the model changed (an old head?): create the optimizer "
            "after replacing the head and freezing.",
        )
    frozen = [names[id(p)] for p in held if not p.requires_grad]
    if frozen:
        _fail(
            f"The optimizer still holds {len(frozen)} frozen parameters, e.g. "
            f"{', '.join(frozen[:3])}.",
            "pass only the parameters that train: [p for p in model.parameters() if "
            "p.requires_grad]; the optimizer then keeps state only for them, and nothing "
            "frozen moves if a gradient or weight decay ever reaches it.",
        )
    held_ids = {id(p) for p in held}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in held_ids]
    if missing:
        _fail(
            f"The optimizer misses {len(missing)} trainable parameters, e.g. "
            f"{', '.join(missing[:3])}: they would never change.",
            "create the optimizer after replacing the head and choosing what to freeze.",
        )
    trained = [names[id(p)] for p in held]
    shown = ", ".join(trained[:3]) + (", …" if len(trained) > 3 else "")
    frozen_count = len(names) - len(trained)
    _passed(
        f"optimizer: holds exactly the {len(trained)} trainable parameter tensors ({shown}), "
        f"none of the {frozen_count} frozen ones"
    )
