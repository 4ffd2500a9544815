"""Reusing trained ResNets: the public CIFAR-10 checkpoints (and, later, ImageNet weights)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from .resnet import ResNet, cifar_resnet

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
CIFAR_CHECKPOINT_MEAN = (0.485, 0.456, 0.406)
CIFAR_CHECKPOINT_STD = (0.229, 0.224, 0.225)


def load_pretrained_cifar(depth: int, *, device: torch.device | str = "cpu") -> ResNet:
    """Our `cifar_resnet(depth)` with Idelbayev's (2018) trained weights, in eval mode.

    Downloads the checkpoint once into `$TORCH_HOME/hub/checkpoints` (offline, it is found
    there) and checks its hash. Its inputs must be normalised with `CIFAR_CHECKPOINT_MEAN` and
    `CIFAR_CHECKPOINT_STD`, which the returned model also carries as `model.normalization`.
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
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(
            CIFAR_CHECKPOINT_URL + file_name, os.fspath(path), hash_prefix=_hash_prefix(file_name)
        )
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
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise RuntimeError(
            f"invalid hash value for {path}: its SHA-256 starts with {digest[: len(expected)]}, "
            f"expected {expected}. Delete the file to download it again."
        )


def cifar_checkpoint_to_ours(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Map Idelbayev's keys onto ours: drop DataParallel's `module.`, `linear` becomes `fc`.

    The file was saved before BatchNorm had a `num_batches_tracked` buffer; we add the buffer
    as 0 (it only matters for BN with momentum=None) so that the load can be strict.
    """
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
