"""resnet_tutorial.data (and _storage, which reads its files) against independent oracles:
published counts, torchvision's readers and transforms, PIL decoding, and hand-built image
trees and CIFAR batches in tmp_path.

The full splits come from $RESNET_TUTORIAL_DATA (the offline copy in CI) and go through the
package's default cache ($RESNET_TUTORIAL_CACHE, else ~/.cache/resnet_tutorial), which the
notebooks share: the 60,000 JPEGs are decoded at most once per machine, not once per test run.
Tests of the cache itself use their own cache folders under tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import shutil
import subprocess
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import datasets, transforms

from resnet_tutorial import _storage
from resnet_tutorial import data as rtdata

CIFAR_PER_CLASS = {"train": 5000, "test": 1000}  # Krizhevsky 2009
FASHION_PER_CLASS = {"train": 6000, "test": 1000}  # Xiao et al. 2017
# Train-set statistics of the offline JPEG copy, as its data README states them.
README_MEAN, README_STD = (0.4913, 0.4821, 0.4465), (0.2452, 0.2428, 0.2606)
# The statistics usually quoted for the official CIFAR-10 python batches.
OFFICIAL_MEAN, OFFICIAL_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.fixture(scope="session")
def data_root() -> Path:
    value = os.environ.get("RESNET_TUTORIAL_DATA")
    if not value:
        pytest.fail(
            "these tests read the offline data: set RESNET_TUTORIAL_DATA to the folder that "
            "holds cifar10/ and FashionMNIST/ (CI: see .ci/run)"
        )
    root = Path(value)
    for name in ("cifar10/train", "cifar10/test", "FashionMNIST/raw"):
        if not (root / name).is_dir():
            pytest.fail(f"RESNET_TUTORIAL_DATA={value} has no {name}/")
    return root


@pytest.fixture(scope="session")
def cifar_train(data_root: Path) -> rtdata.ImageSet:
    return rtdata.cifar10("train", root=data_root, download=False)


@pytest.fixture(scope="session")
def cifar_test(data_root: Path) -> rtdata.ImageSet:
    return rtdata.cifar10("test", root=data_root, download=False)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty cache folder for this test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("RESNET_TUTORIAL_CACHE", str(folder))
    return folder


def write_tree(root: Path, per_class: int = 2, seed: int = 0) -> list[tuple[Path, np.ndarray]]:
    """A tiny CIFAR-10 ImageFolder tree of random 32×32 PNGs (lossless) under root/cifar10/test."""
    rng = np.random.default_rng(seed)
    written = []
    for name in rtdata.CIFAR10_CLASSES:
        folder = root / "cifar10" / "test" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.png")
            written.append((folder / f"{i:04d}.png", pixels))
    return written


def as_chw(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(pixels)).permute(2, 0, 1)  # a writable copy


# --------------------------------------------------------------------------------------------
# The real data sets: counts, shapes, order, statistics


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_counts_shapes_and_classes(split, cifar_train, cifar_test):
    data = cifar_train if split == "train" else cifar_test
    n = 10 * CIFAR_PER_CLASS[split]
    assert data.images.shape == (n, 3, 32, 32) and data.images.dtype == torch.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == [CIFAR_PER_CLASS[split]] * 10
    assert data.classes == ("airplane", "automobile", "bird", "cat", "deer",
                            "dog", "frog", "horse", "ship", "truck")  # fmt: skip
    assert len(data) == n and data.tensors[0] is data.images and data.tensors[1] is data.labels
    assert "ImageFolder" in data.source and str(Path("cifar10") / split) in data.source
    assert str(Path("/")) not in repr(data)  # notebooks may show it: no absolute path


def test_cifar10_follows_imagefolder_order_and_pixels(data_root, cifar_test):
    oracle = datasets.ImageFolder(str(data_root / "cifar10" / "test"))
    assert cifar_test.labels.tolist() == oracle.targets
    for i in (0, 1, 4321, 9999):
        path, label = oracle.samples[i]
        with Image.open(path) as image:
            pixels = as_chw(np.asarray(image.convert("RGB")))
        assert torch.equal(cifar_test.images[i], pixels), path
        assert cifar_test.labels[i] == label


def test_per_class_takes_the_first_k_in_source_order(data_root, cifar_test):
    subset = rtdata.cifar10("test", root=data_root, per_class=3, download=False)
    oracle = datasets.ImageFolder(str(data_root / "cifar10" / "test"))
    expected = [s for c in range(10) for s in [s for s in oracle.samples if s[1] == c][:3]]
    assert subset.labels.tolist() == [label for _, label in expected]
    for image, (path, _) in zip(subset.images, expected):
        with Image.open(path) as pil:
            assert torch.equal(image, as_chw(np.asarray(pil.convert("RGB")))), path
    assert "first 3 per class" in subset.source


def test_per_class_keeps_the_source_order_when_classes_interleave():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2, 1])
    data = rtdata.ImageSet(torch.arange(9, dtype=torch.uint8).view(9, 1, 1, 1), labels,
                           ("a", "b", "c"), "hand-made")  # fmt: skip
    subset = rtdata._first_per_class(data, 2, "test")
    assert subset.images.flatten().tolist() == [0, 1, 2, 3, 4, 5]  # positions, in order


def test_select_classes_keeps_those_classes_relabelled_in_the_order_given():
    labels = torch.tensor([2, 0, 1, 0, 2, 1])
    data = rtdata.ImageSet(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1), labels,
                           ("a", "b", "c"), "hand-made")  # fmt: skip
    subset = rtdata.select_classes(data, [2, 0])  # "c" becomes label 0, "a" label 1
    assert subset.images.flatten().tolist() == [0, 1, 3, 4]  # positions 0, 1, 3, 4, in order
    assert subset.labels.tolist() == [0, 1, 1, 0] and subset.classes == ("c", "a")
    for bad in ([], [0, 0], [3], [-1]):
        with pytest.raises(ValueError, match=r"distinct labels from 0 to 2, got"):
            rtdata.select_classes(data, bad)


def test_validation_split_holds_out_the_last_500_of_each_class(data_root, cifar_train):
    # Oracle: the positions of each class in the training set, by hand; the last 500 are held out.
    held_out = []
    for c in range(10):
        positions = [i for i, label in enumerate(cifar_train.labels.tolist()) if label == c]
        held_out += positions[-500:]
    held_out = torch.tensor(sorted(held_out))
    kept = torch.tensor(sorted(set(range(50_000)) - set(held_out.tolist())))
    val = rtdata.cifar10("val5k", root=data_root, download=False)
    train = rtdata.cifar10("train45k", root=data_root, download=False)
    assert torch.bincount(val.labels).tolist() == [500] * 10  # balanced
    assert torch.bincount(train.labels).tolist() == [4500] * 10
    # disjoint and together the training set: a partition of its positions, in source order
    assert torch.equal(val.images, cifar_train.images[held_out])
    assert torch.equal(val.labels, cifar_train.labels[held_out])
    assert torch.equal(train.images, cifar_train.images[kept])
    assert torch.equal(train.labels, cifar_train.labels[kept])
    assert "(val5k)" in val.source and "(train45k)" in train.source
    again = rtdata.cifar10("val5k", root=data_root, download=False)  # fixed: no random draw
    assert torch.equal(again.images, val.images)


def test_validation_split_by_hand_on_interleaved_classes(monkeypatch):
    # Classes 0, 1, 2 at positions 1 3 6 9 / 2 5 8 10 / 0 4 7 11; two held out per class: the
    # last two of each, positions 6 9, 8 10 and 7 11.
    monkeypatch.setattr(rtdata, "VALIDATION_PER_CLASS", 2)
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 0, 2, 1, 0, 1, 2])
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1)
    data = rtdata.ImageSet(images, labels, ("a", "b", "c"), "hand-made")
    val = rtdata._validation_split(data, "val5k")
    train = rtdata._validation_split(data, "train45k")
    assert val.images.flatten().tolist() == [6, 7, 8, 9, 10, 11]
    assert train.images.flatten().tolist() == [0, 1, 2, 3, 4, 5]
    monkeypatch.setattr(rtdata, "VALIDATION_PER_CLASS", 4)
    with pytest.raises(ValueError, match="holds out 4 images per class, but .* only 4"):
        rtdata._validation_split(data, "val5k")


def test_per_class_subsets_of_the_splits_stay_apart(data_root, monkeypatch):
    # The quick subsets take the first images of each class: never the held-out last 500.
    first = rtdata.cifar10("train", root=data_root, per_class=200, download=False)
    val = rtdata.cifar10("val5k", root=data_root, per_class=100, download=False)
    full_val = rtdata.cifar10("val5k", root=data_root, download=False)
    assert torch.bincount(val.labels).tolist() == [100] * 10
    assert torch.equal(val.images, rtdata._first_per_class(full_val, 100, "val5k").images)
    subset = rtdata.cifar10("train45k", root=data_root, per_class=200, download=False)
    assert torch.equal(subset.images, first.images)  # the first 200 are never held out
    # the cap of `make test-full-path` applies after the split, not before it
    monkeypatch.setenv("RESNET_TUTORIAL_MAX_PER_CLASS", "10")
    capped = rtdata.cifar10("val5k", root=data_root, download=False)
    assert torch.equal(capped.images, rtdata._first_per_class(full_val, 10, "val5k").images)


def test_cifar10_train_statistics(cifar_train):
    mean, std = rtdata.channel_stats(cifar_train.images)
    assert mean == pytest.approx(README_MEAN, abs=6e-5)
    assert std == pytest.approx(README_STD, abs=6e-5)
    assert mean == pytest.approx(rtdata.CIFAR10_MEAN, abs=6e-5)
    assert std == pytest.approx(rtdata.CIFAR10_STD, abs=6e-5)
    # The JPEG copy and the official pixels differ, but not by enough to matter for training.
    ours, official = rtdata.CIFAR10_MEAN + rtdata.CIFAR10_STD, OFFICIAL_MEAN + OFFICIAL_STD
    assert max(abs(a - b) for a, b in zip(ours, official)) < 2e-3


def test_channel_stats_against_float64_on_a_small_case():
    images = torch.randint(0, 256, (7, 3, 5, 6), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    x = images.double().div(255)
    mean, std = rtdata.channel_stats(images)
    torch.testing.assert_close(torch.tensor(mean), x.mean((0, 2, 3)), check_dtype=False)
    torch.testing.assert_close(torch.tensor(std), x.std((0, 2, 3), correction=0),
                               check_dtype=False)  # fmt: skip
    with pytest.raises(ValueError, match="uint8"):
        rtdata.channel_stats(x)


@pytest.mark.parametrize("split", ["train", "test"])
def test_fashion_mnist_against_torchvision(split, data_root):
    data = rtdata.fashion_mnist(split, root=data_root, download=False)
    oracle = datasets.FashionMNIST(str(data_root), train=split == "train", download=False)
    n = 10 * FASHION_PER_CLASS[split]
    assert data.images.shape == (n, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == [FASHION_PER_CLASS[split]] * 10
    assert torch.equal(data.images[:, 0], oracle.data)
    assert torch.equal(data.labels, oracle.targets)
    assert data.classes == tuple(oracle.classes)
    subset = rtdata.fashion_mnist(split, root=data_root, per_class=4, download=False)
    first = [i for c in range(10) for i in (oracle.targets == c).nonzero().flatten()[:4].tolist()]
    assert torch.equal(subset.images, data.images[sorted(first)])


def test_fashion_mnist_statistics(data_root):
    mean, std = rtdata.channel_stats(rtdata.fashion_mnist("train", root=data_root).images)
    assert mean == pytest.approx(rtdata.FASHION_MNIST_MEAN, abs=6e-5)
    assert std == pytest.approx(rtdata.FASHION_MNIST_STD, abs=6e-5)


def test_as_cifar_like_pads_with_zeros_and_replicates(data_root):
    grey = rtdata.fashion_mnist("test", root=data_root, per_class=2)
    rgb = rtdata.as_cifar_like(grey)
    assert rgb.images.shape == (20, 3, 32, 32) and rgb.images.dtype == torch.uint8
    for channel in range(3):
        assert torch.equal(rgb.images[:, channel, 2:30, 2:30], grey.images[:, 0])
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (rgb.images[:, :, border] == 0).all()
    assert torch.equal(rgb.labels, grey.labels) and rgb.classes == grey.classes
    with pytest.raises(ValueError, match=r"28×28.*\(20, 3, 32, 32\)"):
        rtdata.as_cifar_like(rgb)


# --------------------------------------------------------------------------------------------
# Where the data comes from, and the error when it is nowhere


@pytest.mark.parametrize("load", [rtdata.cifar10, rtdata.fashion_mnist])
def test_missing_data_says_where_it_looked_and_how_to_fix_it(load, tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        load("test", root=tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path) in message and "the root= argument" in message
    expected = ["cifar-10-batches-py", str(Path("cifar10") / "test")] if load is rtdata.cifar10 \
        else [str(Path("FashionMNIST") / "raw")]  # fmt: skip
    for place in expected:
        assert place in message
    assert "not tried (download=False)" in message
    for fix in ("root=", "RESNET_TUTORIAL_DATA", "download=True"):
        assert fix in message


def test_a_failed_download_is_reported(tmp_path, monkeypatch):
    def offline(folder):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr(_storage, "_download_cifar10", offline)
    with pytest.raises(FileNotFoundError, match="failed \\(URLError: <urlopen error no internet>"):
        rtdata.cifar10("train", root=tmp_path)


def write_cifar_batches(folder: Path, per_batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Fake torchvision CIFAR-10 batches; returns all train images (N, 3, 32, 32) and labels."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    images, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        targets = rng.integers(0, 10, per_batch).tolist()
        with open(folder / name, "wb") as file:
            pickle.dump({"data": rows, "labels": targets}, file)
        if name != "test_batch":
            images.append(torch.from_numpy(rows.reshape(-1, 3, 32, 32)))
            labels += targets
    return torch.cat(images), torch.tensor(labels)


def test_cifar10_reads_python_batches_and_downloads_into_the_root(tmp_path, monkeypatch):
    expected = {}
    monkeypatch.setattr(_storage, "_download_cifar10", lambda folder: expected.update(
        zip(("images", "labels"), write_cifar_batches(folder / "cifar-10-batches-py")))
    )  # fmt: skip
    data = rtdata.cifar10("train", root=tmp_path)
    assert data.source.startswith("torchvision download into")
    assert torch.equal(data.images, expected["images"])
    assert torch.equal(data.labels, expected["labels"])
    again = rtdata.cifar10("train", root=tmp_path, download=False)  # now found in the root
    assert again.source.startswith("torchvision CIFAR-10 batches")
    assert torch.equal(again.images, expected["images"])


def test_python_batches_take_precedence_over_a_tree(tmp_path, cache):
    write_tree(tmp_path)
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    assert "batches" in rtdata.cifar10("test", root=tmp_path, download=False).source


def test_root_then_env_then_home(tmp_path, monkeypatch, cache):
    for name in ("arg", "env", "home/.cache/resnet_tutorial"):
        write_tree(tmp_path / name, per_class=1, seed=len(name))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RESNET_TUTORIAL_DATA", str(tmp_path / "env"))
    assert str(tmp_path / "arg") in rtdata.cifar10("test", root=tmp_path / "arg").source
    assert str(tmp_path / "env") in rtdata.cifar10("test").source
    monkeypatch.delenv("RESNET_TUTORIAL_DATA")
    assert str(tmp_path / "home") in rtdata.cifar10("test").source


def test_tree_pixels_and_labels_are_exact(tmp_path, cache):
    written = write_tree(tmp_path, per_class=2)
    data = rtdata.cifar10("test", root=tmp_path)
    assert torch.equal(data.images, torch.stack([as_chw(p) for _, p in written]))
    assert data.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_a_tree_with_other_classes_or_sizes_is_refused(tmp_path, cache):
    write_tree(tmp_path, per_class=1)
    (tmp_path / "cifar10" / "test" / "unicorn").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "cifar10" / "test" / "unicorn" / "0.png")
    with pytest.raises(ValueError, match="unicorn"):
        rtdata.cifar10("test", root=tmp_path)
    (tmp_path / "cifar10" / "test" / "unicorn" / "0.png").unlink()
    (tmp_path / "cifar10" / "test" / "unicorn").rmdir()
    Image.new("RGB", (28, 30)).save(tmp_path / "cifar10" / "test" / "cat" / "9.png")
    with pytest.raises(ValueError, match=r"9\.png decodes to shape \(3, 30, 28\)"):
        rtdata.cifar10("test", root=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, r"split='val'.*'train', 'test', 'train45k', 'val5k'"),
        ({"split": "test", "per_class": 0}, r"per_class=0.*1 to 2"),
        ({"split": "test", "per_class": -1}, r"per_class=-1.*1 to 2"),
        ({"split": "test", "per_class": 3}, r"per_class=3.*1 to 2"),
        ({"split": "test", "per_class": 1.5}, r"per_class=1\.5.*1 to 2"),
        ({"split": "test", "per_class": True}, r"per_class=True"),
    ],
)
def test_bad_arguments(kwargs, match, tmp_path, cache):
    write_tree(tmp_path, per_class=2)
    with pytest.raises(ValueError, match=match):
        rtdata.cifar10(root=tmp_path, **kwargs)


# --------------------------------------------------------------------------------------------
# The book's copy of CIFAR-10: its hash, its download, and that it wins when asked for


def manifest_sha256(files: list[tuple[str, bytes]]) -> str:
    """The hash tree_sha256 documents, from (relative path, bytes) pairs in the order given."""
    lines = "".join(f"{hashlib.sha256(content).hexdigest()}  {path}\n" for path, content in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_tree_sha256_of_a_tree_by_hand(tmp_path):
    # In byte order, "-" (0x2d) < "." (0x2e) < "/" (0x2f) < "z" < "é" (0xc3 0xa9): whole paths
    # sort so, not folder by folder (which would put "a/b" before "a-b").
    files = [("a-b", b""), ("a.b", b"dot"), ("a/b", b"slash"), ("a/c/d.bin", bytes(range(256))),
             ("z.txt", b"zed\n"), ("é.txt", "é".encode())]  # fmt: skip
    for path, content in reversed(files):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    (tmp_path / "empty" / "folder").mkdir(parents=True)  # counts for nothing
    if hasattr(os, "symlink"):
        os.symlink(tmp_path / "z.txt", tmp_path / "link")  # a link is not a regular file
    expected = manifest_sha256(files)
    assert rtdata.tree_sha256(tmp_path) == expected
    assert rtdata.tree_sha256(str(tmp_path)) == expected
    (tmp_path / "a" / "b").write_bytes(b"Slash")  # one byte changed
    assert rtdata.tree_sha256(tmp_path) == manifest_sha256(
        [(p, b"Slash" if p == "a/b" else c) for p, c in files]
    )
    (tmp_path / "z.txt").rename(tmp_path / "y.txt")  # the same bytes under another name
    assert rtdata.tree_sha256(tmp_path) != manifest_sha256(files)
    with pytest.raises(NotADirectoryError, match="y.txt is not a folder"):
        rtdata.tree_sha256(tmp_path / "y.txt")


@pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("find", "sort", "xargs", "sha256sum")),
    reason="the GNU tools of the docstring's shell line are not installed",
)
def test_tree_sha256_is_the_docstring_shell_line(tmp_path):
    write_tree(tmp_path, per_class=2)
    (tmp_path / "cifar10" / "a file with spaces.txt").write_text("spaces")
    line = "find . -type f | cut -c3- | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    done = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert rtdata.tree_sha256(tmp_path) == done.stdout.split()[0]


def test_the_offline_copy_is_the_books_copy(data_root):
    assert len(_storage.tree_files(data_root / "cifar10")) == 60_000  # Krizhevsky 2009
    assert rtdata.tree_sha256(data_root / "cifar10") == rtdata.BOOK_CIFAR10_SHA256
    assert rtdata.BOOK_CIFAR10_COMMIT in rtdata.BOOK_CIFAR10_URL
    assert re.fullmatch("[0-9a-f]{40}", rtdata.BOOK_CIFAR10_COMMIT)


def book_images(per_class: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 32×32 images by their path in the tree, "test/<class>/NNNN.png" and "train/…"."""
    rng = np.random.default_rng(seed)
    return {f"{split}/{name}/{i:04d}.png": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            for split in ("test", "train") for name in rtdata.CIFAR10_CLASSES
            for i in range(per_class)}  # fmt: skip


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


def write_archive(
    path: Path, files: dict[str, bytes], top: str = "CIFAR-10-images-0123abc"
) -> Path:
    """A .tar.gz laid out as GitHub's archive of the repository: everything under one folder,
    with a README beside train/ and test/, plus members that must never be unpacked."""
    with tarfile.open(path, "w:gz") as archive:

        def add(name: str, content: bytes) -> None:
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))

        add(f"{top}/README.md", b"# CIFAR-10-images\n")
        for name, content in files.items():
            add(f"{top}/{name}", content)
        add(f"{top}/test/../../escaped.png", b"outside")  # a path out of the tree
        add(f"{top}/test/cat/..", b"dots")
        link = tarfile.TarInfo(f"{top}/test/cat/9999.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return path


@pytest.fixture
def book_archive(tmp_path, monkeypatch):
    """A small archive at a file:// URL in place of the book's, and its tree's expected hash."""
    images = book_images()
    files = {path: png_bytes(pixels) for path, pixels in images.items()}
    archive = write_archive(tmp_path / "archive.tar.gz", files)
    monkeypatch.setattr(rtdata, "BOOK_CIFAR10_URL", archive.as_uri())
    expected = manifest_sha256(sorted(files.items()))  # ASCII names: str order is byte order
    monkeypatch.setattr(rtdata, "BOOK_CIFAR10_SHA256", expected)
    return images, files, expected


def test_download_book_cifar10_unpacks_the_archive_into_the_tree(tmp_path, book_archive, cache):
    images, files, _ = book_archive
    root = tmp_path / "root"
    folder = rtdata.download_book_cifar10(root)
    assert folder == root / "cifar10"
    assert sorted(os.listdir(root)) == ["cifar10"]  # no temporary folder left
    assert _storage.tree_files(folder) == sorted(files)  # no README, link or escaped file
    for path, content in files.items():
        assert (folder / path).read_bytes() == content
    assert not (tmp_path / "escaped.png").exists() and not (root / "escaped.png").exists()
    data = rtdata.cifar10("test", root=root, book_copy=True, download=False)
    expected = torch.stack([as_chw(images[f"test/{name}/0000.png"])
                            for name in rtdata.CIFAR10_CLASSES])  # fmt: skip
    assert torch.equal(data.images, expected) and data.labels.tolist() == list(range(10))
    # Found again, it is checked, not downloaded: a URL that cannot be read does not matter.
    (tmp_path / "archive.tar.gz").unlink()
    assert rtdata.download_book_cifar10(root) == folder


def test_cifar10_book_copy_downloads_it_when_the_root_has_none(tmp_path, book_archive, cache):
    images, _, _ = book_archive
    data = rtdata.cifar10("train", root=tmp_path / "root", book_copy=True)
    assert "ImageFolder tree" in data.source and "downloaded" in data.source
    assert torch.equal(data.images[3], as_chw(images["train/cat/0000.png"]))


def test_book_copy_wins_over_python_batches_that_win_by_default(tmp_path, book_archive, cache,
                                                                caplog):  # fmt: skip
    batches, _ = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    images, _, _ = book_archive
    with caplog.at_level(logging.WARNING, logger="resnet_tutorial.data"):
        rtdata.download_book_cifar10(tmp_path)
    assert "cifar10() reads before the book's copy unless book_copy=True" in caplog.text
    default = rtdata.cifar10("train", root=tmp_path, download=False)
    assert "batches" in default.source and torch.equal(default.images, batches)
    book = rtdata.cifar10("train", root=tmp_path, book_copy=True, download=False)
    assert "ImageFolder tree" in book.source
    assert torch.equal(book.images[0], as_chw(images["train/airplane/0000.png"]))


def test_a_download_with_another_hash_is_refused_and_nothing_kept(tmp_path, book_archive,
                                                                 monkeypatch):  # fmt: skip
    _, _, actual = book_archive
    monkeypatch.setattr(rtdata, "BOOK_CIFAR10_SHA256", "0" * 64)
    root = tmp_path / "root"
    with pytest.raises(ValueError) as error:
        rtdata.download_book_cifar10(root)
    message = str(error.value)
    for part in (rtdata.BOOK_CIFAR10_URL, actual, "0" * 64, "20 files", "nothing was kept"):
        assert part in message
    assert os.listdir(root) == []  # neither the tree nor its temporary folder
    with pytest.raises(ValueError, match=actual):  # cifar10 does not hide it as "not found"
        rtdata.cifar10("test", root=root, book_copy=True)


def test_a_tree_already_there_with_another_hash_is_refused_not_replaced(tmp_path, book_archive):
    written = write_tree(tmp_path, per_class=1)  # random PNGs: not the archive's images
    found = manifest_sha256(
        sorted((p.relative_to(tmp_path / "cifar10").as_posix(), p.read_bytes()) for p, _ in written)
    )
    with pytest.raises(ValueError) as error:
        rtdata.download_book_cifar10(tmp_path)
    message = str(error.value)
    for part in (str(tmp_path / "cifar10"), found, rtdata.BOOK_CIFAR10_SHA256, "move it away"):
        assert part in message
    assert all(path.read_bytes() == png_bytes(pixels) for path, pixels in written)  # untouched


def test_a_failed_book_download_says_where_it_looked_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(rtdata, "BOOK_CIFAR10_URL", (tmp_path / "missing.tar.gz").as_uri())
    with pytest.raises(FileNotFoundError) as error:
        rtdata.cifar10("test", root=tmp_path, book_copy=True)
    message = str(error.value)
    assert str(Path("cifar10") / "test") in message and "failed (URLError" in message
    assert "cifar-10-batches-py" not in message  # the batches would not have been read
    with pytest.raises(FileNotFoundError, match=r"not tried \(download=False\)"):
        rtdata.cifar10("test", root=tmp_path, book_copy=True, download=False)
    (tmp_path / "page.html").write_text("<html>rate limited</html>")  # not an archive
    monkeypatch.setattr(rtdata, "BOOK_CIFAR10_URL", (tmp_path / "page.html").as_uri())
    with pytest.raises(OSError, match=r"page\.html is not a readable \.tar\.gz"):
        rtdata.download_book_cifar10(tmp_path / "root")
    assert os.listdir(tmp_path / "root") == []


# --------------------------------------------------------------------------------------------
# The cache of decoded trees


def test_second_load_reads_the_cache_not_the_images(tmp_path, cache, monkeypatch):
    write_tree(tmp_path)
    first = rtdata.cifar10("test", root=tmp_path)
    assert [p.suffix for p in cache.iterdir()] == [".pt"]  # one file, no temp file left
    assert not list(tmp_path.glob("cifar10/**/*.pt"))  # nothing written into the data root

    def no_decoding(*args):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(_storage, "_decode_images", no_decoding)
    second = rtdata.cifar10("test", root=tmp_path)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_cache_is_rebuilt_when_the_tree_changes(tmp_path, cache):
    written = write_tree(tmp_path)
    assert len(rtdata.cifar10("test", root=tmp_path)) == 20
    # A new image in class "dog".
    extra = np.full((32, 32, 3), 7, dtype=np.uint8)
    Image.fromarray(extra).save(tmp_path / "cifar10" / "test" / "dog" / "0005.png")
    grown = rtdata.cifar10("test", root=tmp_path)
    assert len(grown) == 21 and grown.labels.tolist().count(5) == 3
    assert torch.equal(grown.images[12], as_chw(extra))
    # An image rewritten in place (same name, same size on disk is possible: bump mtime too).
    path = written[0][0]
    Image.fromarray(255 - written[0][1]).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = rtdata.cifar10("test", root=tmp_path)
    assert torch.equal(changed.images[0], as_chw(255 - written[0][1]))
    assert len(list(cache.iterdir())) == 1  # replaced, not accumulated


def test_an_unreadable_cache_is_rebuilt(tmp_path, cache, caplog):
    write_tree(tmp_path)
    expected = rtdata.cifar10("test", root=tmp_path)
    (cached,) = cache.iterdir()
    cached.write_bytes(b"not a tensor file")
    with caplog.at_level(logging.WARNING, logger="resnet_tutorial.data"):
        again = rtdata.cifar10("test", root=tmp_path)
    assert "unreadable cache" in caplog.text
    assert torch.equal(again.images, expected.images)


def test_a_crash_while_writing_the_cache_leaves_no_file(tmp_path, cache, monkeypatch, caplog):
    write_tree(tmp_path)

    def half_then_crash(obj, file):
        file.write(b"half a cache")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_crash)
    with caplog.at_level(logging.WARNING, logger="resnet_tutorial.data"):
        data = rtdata.cifar10("test", root=tmp_path)  # decoded, just not cached
    assert "could not write the cache" in caplog.text and "disk full" in caplog.text
    assert len(data) == 20 and list(cache.iterdir()) == []  # no half file, no temporary file


# --------------------------------------------------------------------------------------------
# Augmentation and normalisation against oracles


def all_crops(image: torch.Tensor, padding: int) -> list[torch.Tensor]:
    """Every H×W window of the zero-padded image (the oracle of random_crop)."""
    padded = F.pad(image, (padding,) * 4)
    h, w = image.shape[-2:]
    return [padded[:, i : i + h, j : j + w] for i in range(2 * padding + 1)
            for j in range(2 * padding + 1)]  # fmt: skip


@pytest.mark.parametrize(("shape", "padding"), [((300, 3, 32, 32), 4), ((40, 1, 5, 7), 2),
                                                ((10, 3, 6, 6), 0)])  # fmt: skip
def test_random_crop_is_a_window_of_the_zero_padded_image(shape, padding):
    x = torch.randint(1, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = rtdata.random_crop(x, padding, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for image, crop in zip(x, out):
        windows = all_crops(image, padding)
        matches = [k for k, window in enumerate(windows) if torch.equal(window, crop)]
        assert len(matches) == 1
        offsets.add(matches[0])
    if shape[0] == 300:  # all 81 offsets are possible, and nearly all appear
        assert len(offsets) >= 75
    again = rtdata.random_crop(x, padding, torch.Generator().manual_seed(2))
    assert torch.equal(out, again)  # bit for bit, from the same seed


def crop_one_by_one(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """The oracle of random_crop: its documented draw, then F.pad and a slice, image by image."""
    h, w = x.shape[-2:]
    top, left = torch.randint(0, 2 * padding + 1, (2, len(x)), generator=generator).tolist()
    crops = []
    for image, i, j in zip(x, top, left):
        crops.append(F.pad(image, (padding,) * 4)[:, i : i + h, j : j + w])
    return torch.stack(crops)


def flip_one_by_one(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The oracle of random_flip: its documented coins, then torch.flip, image by image."""
    coins = torch.randint(0, 2, (len(x),), generator=generator).tolist()
    return torch.stack([torch.flip(image, dims=[-1]) if coin else image
                        for image, coin in zip(x, coins)])  # fmt: skip


def some_images(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(shape, generator=generator) < 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=generator) * 50).to(dtype)
    return torch.randint(0, 100, shape, generator=generator).to(dtype)


AUGMENT_DTYPES = [torch.uint8, torch.int64, torch.float32, torch.float64, torch.bfloat16,
                  torch.bool]  # fmt: skip
AUGMENT_SHAPES = [(1, 3, 32, 32), (7, 1, 5, 7), (128, 3, 32, 32), (33, 4, 9, 6)]


@pytest.mark.parametrize("dtype", AUGMENT_DTYPES, ids=str)
@pytest.mark.parametrize("shape", AUGMENT_SHAPES, ids=str)
@pytest.mark.parametrize("padding", [0, 1, 4])
def test_random_crop_and_flip_equal_a_loop_over_images(dtype, shape, padding):
    for seed in range(3):
        x = some_images(shape, dtype, seed)
        # A generator shared by two batches in a row, crop then flip, as the loader uses it: the
        # same draws in the same order, and no extra draws (the second batch would differ).
        ours, oracle = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        for _ in range(2):
            crops = rtdata.random_crop(x, padding, ours)
            expected = crop_one_by_one(x, padding, oracle)
            assert crops.dtype == dtype and torch.equal(crops, expected)
            flips = rtdata.random_flip(crops, ours)
            assert flips.dtype == dtype and torch.equal(flips, flip_one_by_one(crops, oracle))


@pytest.mark.parametrize(
    "layout",
    [
        lambda x: x.to(memory_format=torch.channels_last),
        lambda x: x.repeat_interleave(2, dim=-1)[..., ::2],  # strided, not contiguous
        lambda x: torch.cat([x, x])[len(x) :],  # a view that starts inside its storage
    ],
    ids=["channels_last", "strided", "offset"],
)
def test_random_crop_and_flip_of_any_memory_layout(layout):
    x = some_images((20, 3, 9, 11), torch.uint8, seed=5)
    view = layout(x)
    crops = rtdata.random_crop(view, 3, torch.Generator().manual_seed(1))
    assert torch.equal(crops, crop_one_by_one(x, 3, torch.Generator().manual_seed(1)))
    flips = rtdata.random_flip(view, torch.Generator().manual_seed(2))
    assert torch.equal(flips, flip_one_by_one(x, torch.Generator().manual_seed(2)))


def test_random_flip_is_torch_flip_or_identity():
    x = torch.randint(0, 256, (200, 3, 8, 8), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(3))  # fmt: skip
    out = rtdata.random_flip(x, torch.Generator().manual_seed(4))
    flipped = [torch.equal(o, torch.flip(i, dims=[-1])) for i, o in zip(x, out)]
    same = [torch.equal(o, i) for i, o in zip(x, out)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 70 < sum(flipped) < 130  # about half, fixed by the seed
    assert torch.equal(out, rtdata.random_flip(x, torch.Generator().manual_seed(4)))


def test_normalize_equals_totensor_then_normalize(cifar_test):
    oracle = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize(rtdata.CIFAR10_MEAN, rtdata.CIFAR10_STD)]
    )
    images = cifar_test.images[:16]
    expected = torch.stack([oracle(Image.fromarray(i.permute(1, 2, 0).numpy())) for i in images])
    got = rtdata.normalize(images, rtdata.CIFAR10_MEAN, rtdata.CIFAR10_STD)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)
    with pytest.raises(TypeError, match="uint8"):
        rtdata.normalize(images.float(), rtdata.CIFAR10_MEAN, rtdata.CIFAR10_STD)
    with pytest.raises(ValueError, match=r"one value per channel \(3\)"):
        rtdata.normalize(images, rtdata.FASHION_MNIST_MEAN, rtdata.FASHION_MNIST_STD)


# --------------------------------------------------------------------------------------------
# The loader


def numbered(n: int, channels: int = 3, size: int = 8, seed: int = 0):
    """Random images whose labels are their own positions, so batches can be traced back."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(
        0, 256, (n, channels, size, size), dtype=torch.uint8, generator=generator
    )
    return images, torch.arange(n)


MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def loader(data, batch_size=16, **kwargs) -> rtdata.DeviceLoader:
    return rtdata.DeviceLoader(data, batch_size, mean=MEAN, std=STD, device="cpu", **kwargs)


def batches(dataloader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(dataloader)


def test_test_mode_keeps_the_order_and_the_pixels():
    images, labels = numbered(50)
    batches_ = batches(loader((images, labels), train=False))
    assert len(batches_) == 4 == len(loader((images, labels), train=False))
    assert [len(y) for _, y in batches_] == [16, 16, 16, 2]
    x = torch.cat([x for x, _ in batches_])
    assert x.dtype == torch.float32 and x.shape == (50, 3, 8, 8)
    assert torch.cat([y for _, y in batches_]).tolist() == list(range(50))
    torch.testing.assert_close(x, rtdata.normalize(images, MEAN, STD))


def test_train_batches_are_augmented_crops_of_each_shuffled_image():
    images, labels = numbered(64, size=10)
    seen = []
    for x, y in loader((images, labels), batch_size=20):
        for xi, i in zip(x, y.tolist()):
            candidates = [w for c in all_crops(images[i], 4) for w in (c, c.flip(-1))]
            candidates = rtdata.normalize(torch.stack(candidates), MEAN, STD)
            assert (candidates - xi).abs().amax((1, 2, 3)).min() < 1e-5
            seen.append(i)
    assert sorted(seen) == list(range(64)) and seen != list(range(64))  # shuffled, each once


def test_a_train_batch_is_random_crop_then_random_flip_of_its_images():
    # The loader's documented recipe, by the public functions: the generator of (seed, epoch,
    # rank) draws each batch's crops, then its flips.
    images, labels = numbered(70, size=9)
    dataloader = loader((images, labels), batch_size=32, seed=5, rank=1, world_size=2)
    dataloader.set_epoch(2)
    generator = rtdata.seeded_generator(5, 2, 1)
    order = dataloader.indices(2)
    for k, (x, y) in enumerate(dataloader):
        index = order[32 * k : 32 * (k + 1)]
        crops = rtdata.random_crop(images[index], rtdata.CROP_PADDING, generator)
        expected = rtdata.normalize(rtdata.random_flip(crops, generator), MEAN, STD)
        assert torch.equal(x, expected) and torch.equal(y, labels[index])


def same(run1, run2) -> bool:
    return len(run1) == len(run2) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(run1, run2)
    )


def test_same_seed_and_epoch_give_the_same_batches_bit_for_bit():
    data = numbered(100, size=12)
    first, second = loader(data, seed=7), loader(data, seed=7)
    epochs = [batches(first) for _ in range(2)]  # no set_epoch: the epoch advances by itself
    assert first.epoch == 2
    assert same(epochs[0], batches(second)) and same(epochs[1], batches(second))
    resumed = loader(data, seed=7)
    resumed.set_epoch(1)  # as a run resumed at epoch 1 does
    assert same(epochs[1], batches(resumed))
    assert not same(epochs[0], batches(loader(data, seed=8)))


def test_different_epochs_give_different_orders():
    data = numbered(100)
    dataloader = loader(data)
    orders = [torch.cat([y for _, y in dataloader]).tolist() for _ in range(3)]
    assert orders[0] != orders[1] != orders[2]
    assert all(sorted(order) == list(range(100)) for order in orders)


def test_augment_false_and_drop_last():
    images, labels = numbered(50)
    plain = loader((images, labels), augment=False, drop_last=True)
    assert len(plain) == 3
    batches_ = batches(plain)
    assert [len(y) for _, y in batches_] == [16, 16, 16]
    for x, y in batches_:  # shuffled, but the pixels untouched
        torch.testing.assert_close(x, rtdata.normalize(images[y], MEAN, STD))


@pytest.mark.parametrize(("n", "world_size"), [(100, 4), (103, 4), (7, 3), (5, 5)])
def test_ddp_shards_are_equal_disjoint_and_cover_the_set(n, world_size):
    data = numbered(n)
    per_rank = -(-n // world_size)
    single = loader(data, world_size=1).indices(3).tolist()
    padded = single + single[: per_rank * world_size - n]  # as DistributedSampler pads
    shards = []
    for rank in range(world_size):
        shard = loader(data, batch_size=4, rank=rank, world_size=world_size)
        shard.set_epoch(3)
        ids = torch.cat([y for _, y in shard]).tolist()
        assert len(ids) == per_rank and len(shard) == -(-per_rank // 4)
        assert ids == padded[rank::world_size]  # every rank cut from the same permutation
        shards.append(ids)
    everything = [i for shard in shards for i in shard]
    assert set(everything) == set(range(n))  # covered
    assert len(everything) - len(set(everything)) == per_rank * world_size - n  # padding only


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, r"batch_size must be a positive int, got 0"),
        ({"world_size": 0}, r"world_size must be a positive int, got 0"),
        ({"rank": 2, "world_size": 2}, r"rank=2.*0 to world_size - 1 = 1"),
        ({"rank": -1}, r"rank=-1"),
        ({"mean": (0.5,)}, r"one value per channel \(3\)"),
        ({"std": (0.2, 0.0, 0.3)}, r"std > 0"),
    ],
)
def test_loader_bad_arguments(kwargs, match):
    arguments = {"mean": MEAN, "std": STD, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match=match):
        rtdata.DeviceLoader(numbered(10), **arguments)


def test_loader_bad_data():
    images, labels = numbered(10)
    with pytest.raises(ValueError, match="uint8"):
        loader((images.float(), labels))
    with pytest.raises(ValueError, match=r"shape \(10,\); got \(9,\)"):
        loader((images, labels[:9]))
    with pytest.raises(ValueError, match="at least one image per rank"):
        loader(numbered(2), world_size=3, rank=0)
    with pytest.raises(ValueError, match="epoch must be an int >= 0, got -1"):
        loader(numbered(10)).set_epoch(-1)


def test_loader_accepts_an_image_set(cifar_test):
    subset = rtdata._first_per_class(cifar_test, 2, "test")
    x, y = next(iter(rtdata.DeviceLoader(subset, 8, train=False, mean=rtdata.CIFAR10_MEAN,
                                         std=rtdata.CIFAR10_STD, device="cpu")))  # fmt: skip
    assert x.shape == (8, 3, 32, 32) and torch.equal(y, subset.labels[:8])


@pytest.mark.cuda
def test_cuda_batches_equal_cpu_batches():
    data = numbered(300, size=32)
    on_cpu = loader(data, batch_size=64)
    on_gpu = rtdata.DeviceLoader(data, 64, mean=MEAN, std=STD, device="cuda")
    assert on_gpu.images.device.type == "cuda"
    for (x1, y1), (x2, y2) in zip(on_cpu, on_gpu):
        assert x2.device.type == "cuda" and y2.device.type == "cuda"
        assert torch.equal(y1, y2.cpu())
        torch.testing.assert_close(x1, x2.cpu())


def test_per_class_indices_pick_the_first_k_of_each_class_in_class_order():
    labels = torch.tensor([2, 0, 1, 0, 2, 1, 1, 0])
    # by hand: class 0 at 1, 3 (7 left out); class 1 at 2, 5; class 2 at 0, 4
    assert rtdata.per_class_indices(labels, 2, 3).tolist() == [1, 3, 2, 5, 0, 4]
    assert rtdata.per_class_indices([2, 0, 1, 0, 2, 1, 1, 0], 1, 2).tolist() == [1, 2]
    with pytest.raises(ValueError, match="per_class=4 but class 0 has only 3 images"):
        rtdata.per_class_indices(labels, 4, 3)
    with pytest.raises(ValueError, match="per_class must be a positive int, got 0"):
        rtdata.per_class_indices(labels, 0, 3)


def test_as_tensors_of_every_kind_of_data():
    images, labels = numbered(4)
    image_set = rtdata.ImageSet(images, labels, tuple("abcd"), "numbered")
    for data in (image_set, (images, labels), [images, labels]):
        got = rtdata.as_tensors(data)
        assert got[0] is images and got[1] is labels
    bare_images, placeholders = rtdata.as_tensors(images)  # for predict: labels are zeros
    assert bare_images is images and placeholders.tolist() == [0, 0, 0, 0]
    with pytest.raises(TypeError, match="data must be an ImageSet or a tuple"):
        rtdata.as_tensors((images,))


def test_sample_per_class_draws_k_distinct_images_of_each_class_reproducibly():
    labels = torch.arange(100) % 10  # ten images of each class
    picked = rtdata.sample_per_class(labels, 3, seed=5)
    assert picked.tolist() == rtdata.sample_per_class(labels, 3, seed=5).tolist()
    assert picked.tolist() != rtdata.sample_per_class(labels, 3, seed=6).tolist()
    assert len(set(picked.tolist())) == 30
    assert torch.bincount(labels[picked], minlength=10).tolist() == [3] * 10
    with pytest.raises(ValueError, match="per_class=11; allowed: an int from 1 to 10"):
        rtdata.sample_per_class(labels, 11, seed=0)


@pytest.mark.parametrize(
    ("source", "short"),
    [
        ("ImageFolder tree /home/ada/data/cifar10/train", "ImageFolder tree …/cifar10/train"),
        (
            "torchvision FashionMNIST files /srv/d/FashionMNIST/raw; zero-padded to 32×32",
            "torchvision FashionMNIST files …/FashionMNIST/raw; zero-padded to 32×32",
        ),
        ("tree /cifar10/test", "tree …/cifar10/test"),
        ("in memory", "in memory"),
    ],
)
def test_short_source_keeps_the_last_two_parts_of_each_path(source, short):
    images = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    data = rtdata.ImageSet(images, torch.zeros(1, dtype=torch.long), ("a",), source)
    assert data.short_source == short
