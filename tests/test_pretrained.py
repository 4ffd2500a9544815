"""The public CIFAR-10 checkpoints load into our models, offline and hash-checked, and work."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import datasets, transforms

import resnet_tutorial as rt
from resnet_tutorial.transfer import CIFAR_CHECKPOINT_MEAN, CIFAR_CHECKPOINT_STD, CIFAR_CHECKPOINTS


def _env_dir(name: str) -> Path:
    value = os.environ.get(name)
    if not value or not Path(value).is_dir():
        pytest.fail(f"${name} must point at the offline data (CI: see .ci/run)")
    return Path(value)


class _ReferenceBlock(nn.Module):
    """Idelbayev's (2018) `BasicBlock` with its option-A lambda, written out as in his code."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        p = self.planes // 4
        out += F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p)) if self.pad else x
        return F.relu(out)


class _ReferenceResNet(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(_ReferenceBlock(in_planes, planes, s))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x))))))
        return self.linear(F.avg_pool2d(out, out.size(3)).flatten(1))


def _raw_checkpoint(depth: int) -> dict:
    path = _env_dir("TORCH_HOME") / "hub" / "checkpoints" / CIFAR_CHECKPOINTS[depth][0]
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.parametrize("depth", [20, 56])
def test_pretrained_equals_the_reference_architecture(depth):
    reference = _ReferenceResNet((depth - 2) // 6).eval()
    raw = {k.removeprefix("module."): v for k, v in _raw_checkpoint(depth).items()}
    reference.load_state_dict(raw, strict=True)
    ours = rt.load_pretrained_cifar(depth)
    assert not ours.training
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


def test_a_corrupted_checkpoint_fails_the_hash_check(tmp_path, monkeypatch):
    name = CIFAR_CHECKPOINTS[20][0]
    target = tmp_path / "hub" / "checkpoints"
    target.mkdir(parents=True)
    shutil.copy(_env_dir("TORCH_HOME") / "hub" / "checkpoints" / name, target / name)
    with open(target / name, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02\x03")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="invalid hash value"):
        rt.load_pretrained_cifar(20)


PER_CLASS = 200


@pytest.fixture(scope="module")
def cifar10_test_set():
    # Decoded by torchvision's ImageFolder, independently of the package's own data code.
    root = _env_dir("RESNET_TUTORIAL_DATA") / "cifar10" / "test"
    normalise = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(CIFAR_CHECKPOINT_MEAN, CIFAR_CHECKPOINT_STD)]
    )
    dataset = datasets.ImageFolder(str(root), transform=normalise)
    # The first PER_CLASS images of each class: 2,000 images keep the test fast on two cores.
    seen = [0] * len(dataset.classes)
    first = []
    for index, label in enumerate(dataset.targets):
        if seen[label] < PER_CLASS:
            seen[label] += 1
            first.append(index)
    subset = torch.utils.data.Subset(dataset, first)
    images, labels = zip(*torch.utils.data.DataLoader(subset, batch_size=500))
    return torch.cat(images), torch.cat(labels)


@pytest.mark.parametrize("depth", sorted(CIFAR_CHECKPOINTS))
def test_pretrained_scores_above_75_percent_on_cifar10_test_images(depth, cifar10_test_set):
    # Stated clean accuracy is 91.7-93.4%; the JPEG copy costs about ten points (ResNet-20
    # measured 81.0% on all 10,000). A wrong shortcut or key mapping gives near-chance accuracy.
    images, labels = cifar10_test_set
    assert torch.bincount(labels).tolist() == [PER_CLASS] * 10
    model = rt.load_pretrained_cifar(depth)
    with torch.no_grad():
        correct = sum(
            (model(images[i : i + 500]).argmax(1) == labels[i : i + 500]).sum().item()
            for i in range(0, len(labels), 500)
        )
    accuracy = correct / len(labels)
    print(f"ResNet-{depth}: {accuracy:.2%} top-1 on the CIFAR-10 test images")
    assert accuracy > 0.75
