"""Reusing trained ResNets: pretrained weights, new heads, freezing and per-part learning rates.

A ResNet's parts, input to output: the stem, the stages `layer1` … `layerN` (together the body)
and the head (pooling and `fc`); `replace_head`, `freeze`, `unfreeze` and `parameter_groups`
work on them, for feature extraction and fine-tuning (Yosinski et al. 2014; Kornblith et al.
2019).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._util import check_positive_int, eval_mode, file_sha256, model_device, training_mode
from .config import recipe
from .data import IMAGENET_MEAN, IMAGENET_STD, DeviceLoader, as_tensors
from .models import ResNet, cifar_resnet, resnet
from .train import History, fit

# Option-A CIFAR-10 ResNets of Idelbayev (2018), BSD-2-Clause. The hex in each file name is the
# start of the file's SHA-256, which `load_pretrained_cifar` verifies on every load.
# Values: (file name, stated clean test accuracy in %).
CIFAR_CHECKPOINTS: dict[int, tuple[str, float]] = {
    20: ("resnet20-12fca82f.th", 91.73),
    32: ("resnet32-d509ac18.th", 92.63),
    44: ("resnet44-014dd654.th", 93.10),
    56: ("resnet56-4bfd9763.th", 93.39),
}
CIFAR_CHECKPOINT_URL = (
    "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
)
# The checkpoints were trained on inputs in [0, 1] normalised with ImageNet's statistics.
CIFAR_CHECKPOINT_MEAN = IMAGENET_MEAN
CIFAR_CHECKPOINT_STD = IMAGENET_STD


class WeightsUnavailableError(OSError):
    """Pretrained weights that are not in torch.hub's cache and cannot be downloaded (offline);
    an `OSError`, as the `URLError` of a failed download is."""

    def __init__(self, what: str, path: Path, url: str, cause: BaseException) -> None:
        super().__init__(
            f"{what} weights are not in torch.hub's cache ({path}) and could not be downloaded "
            f"from {url} ({type(cause).__name__}: {cause}). Connect to the internet once, or "
            "copy the file to that path."
        )
        self.path, self.url = path, url


def load_pretrained_cifar(depth: int, *, device: torch.device | str = "cpu") -> ResNet:
    """Our `cifar_resnet(depth)` with Idelbayev's (2018) trained weights, in eval mode.

    The checkpoint is downloaded once into `$TORCH_HOME/hub/checkpoints` and its hash checked on
    every load. Its inputs are normalised with `model.normalization` (ImageNet's statistics).
    """
    if depth not in CIFAR_CHECKPOINTS:
        raise ValueError(
            f"depth must be one of {sorted(CIFAR_CHECKPOINTS)} (the published checkpoints), "
            f"got {depth!r}"
        )
    file_name, _ = CIFAR_CHECKPOINTS[depth]
    path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not path.exists():
        # torch.hub checks the hash of what it downloads ...
        url = CIFAR_CHECKPOINT_URL + file_name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, os.fspath(path), hash_prefix=_hash_prefix(file_name)
            )
        except OSError as error:
            raise WeightsUnavailableError(
                f"the CIFAR-10 ResNet-{depth}", path, url, error
            ) from error
    # ... but not of a file already in the cache, so we check it on every load.
    _check_hash(path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = cifar_resnet(depth)
    model.load_state_dict(cifar_checkpoint_to_ours(checkpoint["state_dict"], model), strict=True)
    model.normalization = (CIFAR_CHECKPOINT_MEAN, CIFAR_CHECKPOINT_STD)
    return model.to(device).eval()


def _hash_prefix(file_name: str) -> str:
    return file_name.rsplit("-", 1)[1].split(".")[0]


def _check_hash(path: Path) -> None:
    expected = _hash_prefix(path.name)
    digest = file_sha256(path)
    if not digest.startswith(expected):
        raise RuntimeError(
            f"invalid hash value for {path}: its SHA-256 starts with {digest[: len(expected)]}, "
            f"expected {expected}. Delete the file to download it again."
        )


def cifar_checkpoint_to_ours(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Map Idelbayev's keys onto ours: drop DataParallel's `module.`, `linear` becomes `fc`, and
    add BN's `num_batches_tracked` (newer than the file) as 0, so that the load can be strict."""
    mapped = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith("linear."):
            key = "fc." + key.removeprefix("linear.")
        mapped[key] = value
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            mapped.setdefault(f"{name}.num_batches_tracked", torch.tensor(0))
    return mapped


# --- torchvision's ImageNet weights -----------------------------------------------------------

IMAGENET_DEPTHS = (18, 34, 50)


def load_pretrained_imagenet(
    depth: int, weights: str = "DEFAULT", *, progress: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[ResNet, nn.Module]:  # fmt: skip
    """Our `resnet(depth)` with torchvision's ImageNet weights, in eval mode, and their transform.

    `weights` is a member of torchvision's `ResNet50_Weights`, … or its name ("DEFAULT",
    "IMAGENET1K_V1"); the model carries their transform's mean and std as `model.normalization`.
    Offline and not cached, it raises `WeightsUnavailableError` at once.
    """
    from torchvision.models import get_model_weights

    if isinstance(depth, bool) or depth not in IMAGENET_DEPTHS:
        raise ValueError(f"depth must be one of {IMAGENET_DEPTHS}, got {depth!r}")
    enum = get_model_weights(f"resnet{depth}")
    if isinstance(weights, enum):
        chosen = weights
    elif isinstance(weights, str) and weights in enum.__members__:
        chosen = enum[weights]
    else:
        allowed = ", ".join(repr(name) for name in enum.__members__)
        raise ValueError(
            f"weights must be one of {allowed} (members of {enum.__name__}) or such a member, "
            f"got {weights!r}"
        )
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(chosen.url)
    # torch.hub prints 'Downloading: "<url>" to <path>' even with progress=False: keep it quiet.
    quiet = contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO())
    try:
        with quiet:
            state_dict = chosen.get_state_dict(progress=progress, check_hash=True)
    except OSError as error:
        if path.exists():  # cached, so not a failed download: an error reading the file
            raise
        raise WeightsUnavailableError(f"torchvision's {chosen}", path, chosen.url, error) from error
    model = resnet(depth, num_classes=len(chosen.meta["categories"]))
    model.load_state_dict(state_dict, strict=True)
    preprocess = chosen.transforms()
    model.normalization = (tuple(preprocess.mean), tuple(preprocess.std))
    return model.to(device).eval(), preprocess


def resize_and_crop(
    images: torch.Tensor, preprocess: nn.Module, *, batch_size: int = 500
) -> torch.Tensor:
    """The resize and centre crop of `preprocess` (the weights' `transforms()`), in uint8.

    The scaling and normalisation of `preprocess` are left to the loaders of `fit`, `evaluate`
    and `extract_features` (with `model.normalization`); CIFAR's (N, 3, 32, 32) become
    (N, 3, 224, 224), `batch_size` images at a time.
    """
    from torchvision.transforms import functional as TF

    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}"
        )
    chunks = []
    for x in images.split(batch_size):
        x = TF.resize(x, preprocess.resize_size, interpolation=preprocess.interpolation,
                      antialias=preprocess.antialias)  # fmt: skip
        chunks.append(TF.center_crop(x, preprocess.crop_size))
    return torch.cat(chunks)


# --- parts: stem, stages, head ----------------------------------------------------------------


def model_parts(model: ResNet) -> dict[str, list[str]]:
    """The parts of `model`, input to output, each with the names of its top-level modules.

    `{"stem": ["conv1", "bn1", "relu", "maxpool"], "layer1": ["layer1"], …,
    "head": ["avgpool", "fc"]}`; a pre-activation net's head starts with `post_norm`.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"model must be a resnet_tutorial ResNet, got {type(model).__name__}")
    parts = {"stem": ["conv1", "bn1", "relu", "maxpool"]}
    parts.update({f"layer{i}": [f"layer{i}"] for i in range(1, model.num_stages + 1)})
    parts["head"] = (["post_norm"] if model.post_norm is not None else []) + ["avgpool", "fc"]
    return parts


def _resolve(model: ResNet, parts: str | Sequence[str]) -> list[str]:
    """Top-level module names of `parts`: part names, "body" (every stage) or "all"."""
    table = model_parts(model)
    stages = [name for name in table if name.startswith("layer")]
    aliases = {"body": stages, "all": list(table)}
    requested = [parts] if isinstance(parts, str) else list(parts)
    names: list[str] = []
    for part in requested:
        if part not in table and part not in aliases:
            allowed = ", ".join(repr(p) for p in [*table, "body", "all"])
            raise ValueError(f"unknown part {part!r}; allowed: {allowed}")
        for name in aliases.get(part, [part]):
            names += [m for m in table[name] if m not in names]
    return names


def _batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that stays in eval mode: it normalises with its running statistics and never
    updates them, whatever `model.train()` asks. Same parameters, buffers and keys as the layer
    it replaces, so state_dicts and optimizers do not notice the swap."""

    def train(self, mode: bool = True) -> FrozenBatchNorm2d:
        return super().train(False)


def _swap_batch_norms(module: nn.Module, kind: type[nn.BatchNorm2d]) -> nn.Module:
    """`module` with every BatchNorm2d in it a `kind` that holds the same tensors."""
    if isinstance(module, nn.BatchNorm2d):
        if type(module) is kind:
            return module
        swapped = kind(module.num_features, module.eps, module.momentum, device="meta")
        swapped.weight, swapped.bias = module.weight, module.bias  # the same Parameters
        for buffer in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(swapped, buffer, getattr(module, buffer))
        return swapped
    for name, child in module.named_children():
        setattr(module, name, _swap_batch_norms(child, kind))
    return module


def replace_head(model: ResNet, num_classes: int) -> ResNet:
    """Give `model` a new classifier for `num_classes`: `fc = nn.Linear(fc.in_features, …)`.

    The new layer is freshly initialised (nn.Linear's default) and trainable, whatever was
    frozen before; the model is changed in place and returned. Create the optimizer after this.
    """
    model_parts(model)  # checks the type
    check_positive_int("num_classes", num_classes)
    old = model.fc
    model.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
    return model


def freeze(model: ResNet, parts: str | Sequence[str] = "all", *, freeze_bn: bool = True) -> ResNet:
    """Stop `parts` from training: requires_grad=False on their parameters.

    `parts` are names from `model_parts` ("stem", "layer1" …, "head"), "body" (all stages) or
    "all". With `freeze_bn=True` their BatchNorm layers also become `FrozenBatchNorm2d`, which
    stays in eval mode through later `model.train()` calls (a training loop calls it every
    epoch), so they keep normalising with their running statistics and never update them. With
    `freeze_bn=False` BN follows `model.train()` as usual: γ and β are fixed but the statistics
    adapt to the new data. Returns `model`, changed in place.
    """
    if not isinstance(freeze_bn, bool):
        raise TypeError(f"freeze_bn must be True or False, got {freeze_bn!r}")
    for name in _resolve(model, parts):
        getattr(model, name).requires_grad_(False)
        kind = FrozenBatchNorm2d if freeze_bn else nn.BatchNorm2d
        setattr(model, name, _swap_batch_norms(getattr(model, name), kind))
        getattr(model, name).train(model.training)  # a FrozenBatchNorm2d stays in eval mode
    return model


def unfreeze(model: ResNet, parts: str | Sequence[str] = "all") -> ResNet:
    """Let `parts` train again: requires_grad=True, and their BN layers follow `model.train()`."""
    for name in _resolve(model, parts):
        getattr(model, name).requires_grad_(True)
        setattr(model, name, _swap_batch_norms(getattr(model, name), nn.BatchNorm2d))
        getattr(model, name).train(model.training)
    return model


def parameter_groups(
    model: ResNet, lrs: Mapping[str, float], *, default: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with a learning rate per part, trainable parameters only.

    `lrs` maps parts that do not overlap ("stem", "layer1" …, "head", "body", "all") to
    learning rates, e.g. `{"body": 0.01, "head": 0.1}`; trainable parameters of no listed part
    get `default` (an error when it is None). Each group holds "params", "lr" and "name".
    """
    if not lrs:
        raise ValueError("lrs is empty; give at least one part → learning rate")
    rates = {**lrs, **({"default": default} if default is not None else {})}
    for part, lr in rates.items():
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
            raise ValueError(f"the learning rate of {part!r} must be a number > 0, got {lr!r}")
    owner: dict[str, str] = {}
    for part in lrs:
        for name in _resolve(model, part):
            if name in owner:
                raise ValueError(
                    f"parts {owner[name]!r} and {part!r} overlap (both hold {name!r}); "
                    "give each module one learning rate"
                )
            owner[name] = part
    groups = {part: [] for part in lrs}
    rest = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            part = owner.get(name.split(".")[0])
            (groups[part] if part is not None else rest).append(p)
    if rest and default is None:
        raise ValueError(
            f"{len(rest)} trainable parameters belong to no part in lrs ({', '.join(lrs)}); "
            "add their part or give default=<lr>"
        )
    result = [{"params": ps, "lr": float(lrs[part]), "name": part} for part, ps in groups.items()]
    if rest:
        result.append({"params": rest, "lr": float(default), "name": "default"})
    return [group for group in result if group["params"]]


def fine_tune_start(
    source: ResNet, num_classes: int, *, bn: str = "train", seed: int = 0
) -> ResNet:
    """A copy of `source` with a new head for `num_classes` (its random weights fixed by `seed`),
    ready to fine-tune. `bn="eval"` holds its BN layers at the source's statistics while every
    parameter, γ and β included, still trains (`freeze`, then `requires_grad_(True)`)."""
    if bn not in ("train", "eval"):
        raise ValueError(f"bn must be 'train' or 'eval', got {bn!r}")
    torch.manual_seed(seed)
    model = replace_head(copy.deepcopy(source), num_classes)
    return freeze(model, "all").requires_grad_(True) if bn == "eval" else model


def train_target(
    model: ResNet, train: Any, test: Any, *, steps: int, lr: float, body_lr: float | None = None,
    seed: int = 0, batch_size: int = 100, precision: str = "fp32", device: str | None = None,
) -> History:  # fmt: skip
    """Train every trainable parameter of `model` for `steps` SGD steps on the target's `train`,
    tested once, at the end, on `test`: the fast recipe's settings (one-cycle to `lr`, Nesterov,
    label smoothing 0.1, weight decay 5e-4 on weights only, crops and flips) in batches of
    min(batch_size, n) images. With `body_lr` (fine-tuning) all but the head train at that rate."""
    batch = min(batch_size, len(as_tensors(train)[1]))
    config = recipe("fast", iterations=steps, batch_size=batch, lr=lr, seed=seed, device=device,
                    precision=precision, test_every=steps, progress=False)  # fmt: skip
    groups = None if body_lr is None else parameter_groups(model, {"head": lr}, default=body_lr)
    return fit(model, train, test, config, param_groups=groups)


@torch.no_grad()
def reestimate_bn(
    model: nn.Module,
    data: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool = True,
    batch_size: int = 100,
    seed: int = 0,
) -> nn.Module:
    """Recompute the BN running statistics of `model` on `data` (AdaBN, Li et al. 2018).

    One pass over `data` (an ImageSet or (uint8 images, labels)), normalised with `mean` and
    `std` and, with `augment=True`, cropped and flipped as in training: the statistics a
    network was trained with include the zero borders of its padded crops. Each BN layer's
    running mean and variance become the average over the batches (momentum=None), as
    `torch.optim.swa_utils.update_bn` computes them. BN layers that `freeze` holds in eval
    mode keep their statistics. No weight changes; the model's train/eval mode is restored.
    """
    images, labels = as_tensors(data)
    device = model_device(model)
    loader = DeviceLoader(
        (images, labels),
        batch_size,
        train=True,
        augment=augment,
        mean=mean,
        std=std,
        device=device,
        seed=seed,
    )
    norms = [m for m in _batch_norms(model) if not isinstance(m, FrozenBatchNorm2d)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    try:
        with training_mode(model, True):
            for x, _ in loader:
                model(x)
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
    return model


# --- feature extraction and the linear probe --------------------------------------------------


@torch.no_grad()
def extract_features(
    model: ResNet,
    data: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 500,
) -> torch.Tensor:
    """What the head reads: the globally pooled output of the body, (N, d) float32 on the CPU.

    Computed once in eval mode (BN uses its running statistics, nothing changes), so that a
    linear probe can be fitted on the features many times without running the network again.
    """
    images, labels = as_tensors(data)
    device = model_device(model)
    loader = DeviceLoader(
        (images, labels), batch_size, train=False, augment=False, mean=mean, std=std, device=device
    )
    with eval_mode(model):
        chunks = [model.features(x).float().cpu() for x, _ in loader]  # (N, C) each
    return torch.cat(chunks)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    weight_decay: float = 1e-2,
    max_iter: int = 1000,
    tolerance: float = 1e-5,
) -> nn.Linear:
    """Multinomial logistic regression on fixed features, fitted to convergence with L-BFGS.

    Minimises mean cross-entropy + weight_decay / 2 · ‖W‖² over (W, b) on standardised features
    (each feature shifted and scaled by its mean and standard deviation on `features`), in
    float64. The problem is convex, so the result does not depend on an initialisation, a
    learning rate or a number of epochs, only on `weight_decay`. L-BFGS stops when no gradient
    entry exceeds `tolerance` (a warning says so if `max_iter` iterations come first). Returns an
    `nn.Linear` that takes the raw features (the standardisation folded into it), ready to be a
    model's `fc`.
    """
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"features must be (N, d) and labels (N,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    from .data import check_labels

    check_labels(labels, num_classes)
    x = features.double()
    shift, scale = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - shift) / scale
    weight = torch.zeros(num_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tolerance,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(x @ weight.T + bias, labels)
        loss = loss + weight_decay / 2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(objective)
    if optimizer.state[weight]["n_iter"] >= max_iter:
        warnings.warn(
            f"fit_linear_probe: L-BFGS stopped at max_iter={max_iter} before every gradient "
            f"entry was below tolerance={tolerance}; raise max_iter or weight_decay",
            stacklevel=2,
        )
    head = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():  # W (z - shift) / scale + b  =  (W / scale) z + (b - W shift / scale)
        folded = weight / scale
        head.weight.copy_(folded)
        head.bias.copy_(bias - folded @ shift)
    return head
