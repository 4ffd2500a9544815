"""Where the data sets' files are and how they are read (private: `data.py` is what a reader uses).

ImageFolder trees are decoded on a few threads, then cached as one tensor file under
`$RESNET_TUTORIAL_CACHE` (else `~/.cache/resnet_tutorial`) with a fingerprint of the tree, so
that the second load takes about a second.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import re
import shutil
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from resnet_tutorial._util import atomic_save

# Under data's name: these are the messages of `rt.data.cifar10` and `rt.data.fashion_mnist`.
log = logging.getLogger("resnet_tutorial.data")

Read = tuple[Tensor, Tensor, str]  # uint8 images (N, C, H, W), int64 labels (N,), source

_CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_FASHION_PREFIX = {"train": "train", "test": "t10k"}
_CACHE_VERSION = 1


# --------------------------------------------------------------------------------------------
# The two data sets: the first source found, else a download


def read_cifar10(
    split: str, root: str | os.PathLike | None, download: bool, classes: tuple[str, ...],
    fetch_tree: Callable[[Path], object] | None = None,
) -> Read:  # fmt: skip
    """The whole split, from the first source found (see `data.cifar10`). With `fetch_tree` (a
    function of the root that puts the tree `<root>/cifar10/` there), only the tree is read."""
    folder, origin = _data_root(root)
    batches, tree = folder / "cifar-10-batches-py", folder / "cifar10" / split
    if fetch_tree is None and _has_cifar_batches(batches, split):
        return _read_cifar_batches(batches, split, f"torchvision CIFAR-10 batches {batches}")
    if tree.is_dir():
        return _read_image_tree(tree, classes, (3, 32, 32), f"ImageFolder tree {tree}")
    looked = [] if fetch_tree else [f"{batches} (torchvision's CIFAR-10 python batches): not found"]
    looked.append(f"{tree} (an ImageFolder tree, one folder per class): not found")
    failure = _try_download(fetch_tree or _download_cifar10, folder, download)
    if failure is not None:
        raise _not_found("CIFAR-10", split, folder, origin, [*looked, failure])
    if fetch_tree is not None:
        return _read_image_tree(tree, classes, (3, 32, 32), f"ImageFolder tree {tree}, downloaded")
    return _read_cifar_batches(batches, split, f"torchvision download into {batches}")


def read_fashion_mnist(split: str, root: str | os.PathLike | None, download: bool) -> Read:
    """The whole split (see `data.fashion_mnist`)."""
    folder, origin = _data_root(root)
    raw = folder / "FashionMNIST" / "raw"
    source = f"torchvision FashionMNIST files {raw}"
    if not _has_fashion_files(raw, split):
        looked = [f"{raw} (torchvision's FashionMNIST raw files): not found"]
        failure = _try_download(_download_fashion_mnist, folder, download)
        if failure is not None:
            raise _not_found("Fashion-MNIST", split, folder, origin, [*looked, failure])
        source = f"torchvision download into {raw}"
    from torchvision.datasets.mnist import read_image_file, read_label_file

    prefix = _FASHION_PREFIX[split]
    images = read_image_file(str(raw / f"{prefix}-images-idx3-ubyte")).unsqueeze(1)  # (N,1,28,28)
    labels = read_label_file(str(raw / f"{prefix}-labels-idx1-ubyte")).long()
    log.info("Fashion-MNIST %s: %d images from %s", split, len(labels), source)
    return images, labels, source


# --------------------------------------------------------------------------------------------
# Where the data is, and what to say when it is not there


def _data_root(root: str | os.PathLike | None) -> tuple[Path, str]:
    """The data folder and where that choice came from."""
    if root is not None:
        return Path(root).expanduser(), "the root= argument"
    env = os.environ.get("RESNET_TUTORIAL_DATA")
    if env:
        return Path(env).expanduser(), "$RESNET_TUTORIAL_DATA"
    return Path.home() / ".cache" / "resnet_tutorial", "the default (no root=, no env var)"


def _cache_dir() -> Path:
    env = os.environ.get("RESNET_TUTORIAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet_tutorial"


def _try_download(download: Callable[[Path], object], folder: Path, allowed: bool) -> str | None:
    """Run the download; None when it worked, else a line saying why not."""
    if not allowed:
        return f"download into {folder}: not tried (download=False)"
    try:
        download(folder)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; torchvision raises both
        return f"download into {folder}: failed ({type(error).__name__}: {error})"
    return None


def _download_cifar10(folder: Path) -> None:
    from torchvision.datasets import CIFAR10

    CIFAR10(str(folder), train=True, download=True)  # fetches, checks and unpacks both splits


def _download_fashion_mnist(folder: Path) -> None:
    from torchvision.datasets import FashionMNIST

    FashionMNIST(str(folder), train=True, download=True)  # fetches all four files


def download_image_tree(
    url: str, folder: Path, splits: tuple[str, ...], classes: tuple[str, ...],
    check: Callable[[Path], None],
) -> int:  # fmt: skip
    """Unpack the files `<top>/<split>/<class>/<name>` of the .tar.gz at `url` into
    `folder/<split>/<class>/<name>`, through a temporary folder that becomes `folder` only once
    `check(that folder)` returns. Returns the number of files."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        log.info("downloading %s into %s", url, folder)
        request = urllib.request.Request(url, headers={"User-Agent": "resnet_tutorial"})
        with urllib.request.urlopen(request, timeout=60) as response:  # follows redirects
            count = _unpack_tree(response, part, splits, classes, url)
        check(part)
        os.chmod(part, 0o755)  # mkdtemp makes it private; a data folder is for sharing
        part.rename(folder)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    log.info("unpacked %d files of %s into %s", count, url, folder)
    return count


def _unpack_tree(
    stream: BinaryIO, folder: Path, splits: tuple[str, ...], classes: tuple[str, ...], url: str
) -> int:
    """Write the regular files `<top>/<split>/<class>/<name>` of a .tar.gz stream under folder."""
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as archive:  # read as a stream: no seeks
            for member in archive:
                parts = member.name.split("/")  # [top, split, class, name] for an image
                wanted = len(parts) == 4 and parts[1] in splits and parts[2] in classes
                if member.isfile() and wanted and _PLAIN_NAME.fullmatch(parts[3]):
                    target = folder.joinpath(*parts[1:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
                    count += 1
    except (tarfile.TarError, EOFError, zlib.error) as error:  # not a whole .tar.gz
        raise OSError(f"{url} is not a readable .tar.gz ({error})") from error
    return count


# A file name from an archive: word characters and dashes, then an extension (never "..").
_PLAIN_NAME = re.compile(r"[\w-]+\.\w+")


def _not_found(name: str, split: str, folder: Path, origin: str, looked: list[str]) -> Exception:
    places = "\n".join(f"  - {line}" for line in looked)
    return FileNotFoundError(
        f"{name} ({split} split) not found. The data root is {folder}, from {origin}. "
        f"Looked at:\n{places}\n"
        "Fix it in one of three ways:\n"
        "  1. pass root='path/to/data', a folder that holds the data;\n"
        "  2. set the environment variable RESNET_TUTORIAL_DATA to that folder;\n"
        "  3. allow the download (download=True, the default) on a machine with internet access."
    )


# --------------------------------------------------------------------------------------------
# Readers


def tree_files(folder: str | os.PathLike) -> list[str]:
    """The relative paths ("/" between parts) of a folder's regular files, sorted by bytes."""
    if not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder} is not a folder")
    paths = []
    for top, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(top, name)
            if os.path.isfile(path) and not os.path.islink(path):
                paths.append(os.path.relpath(path, folder).replace(os.sep, "/"))
    return sorted(paths, key=lambda path: path.encode())


def _has_cifar_batches(folder: Path, split: str) -> bool:
    return all((folder / name).is_file() for name in _CIFAR_BATCHES[split])


def _has_fashion_files(folder: Path, split: str) -> bool:
    prefix = _FASHION_PREFIX[split]
    names = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    return all((folder / name).is_file() for name in names)


def _read_cifar_batches(folder: Path, split: str, source: str) -> Read:
    """Read torchvision's CIFAR-10 pickles (raw pixels already: nothing to decode or cache)."""
    images, labels = [], []
    for name in _CIFAR_BATCHES[split]:
        with open(folder / name, "rb") as file:
            entry = pickle.load(file, encoding="latin1")  # as torchvision.datasets.CIFAR10 does
        images.append(torch.from_numpy(np.asarray(entry["data"], dtype=np.uint8)))  # (n, 3072)
        labels.append(torch.as_tensor(entry["labels"], dtype=torch.int64))
    images = torch.cat(images).view(-1, 3, 32, 32)
    log.info("CIFAR-10 %s: %d images from %s", split, len(images), source)
    return images, torch.cat(labels), source


def _read_image_tree(
    folder: Path, classes: tuple[str, ...], shape: tuple[int, int, int], source: str
) -> Read:
    """Read an ImageFolder tree in ImageFolder's order, through a cache of the decoded tensor."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    found, class_to_index = find_classes(str(folder))
    if tuple(found) != classes:
        raise ValueError(f"{folder} holds the class folders {found}; expected {list(classes)}")
    samples = make_dataset(str(folder), class_to_index, extensions=IMG_EXTENSIONS)
    paths = [path for path, _ in samples]
    key = _fingerprint(folder, paths)
    where = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    cache = _cache_dir() / f"{folder.parent.name}-{folder.name}-{where}.pt"  # one file per tree
    cached = _load_cache(cache, key)
    if cached is None:
        images = _decode_images(paths, shape)
        labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
        _save_cache(cache, key, images, labels)
        log.info("decoded %d images of %s; cached in %s", len(paths), folder, cache)
    else:
        images, labels = cached
        log.info("read %d images of %s from the cache %s", len(paths), folder, cache)
    return images, labels, source


def _fingerprint(folder: Path, paths: list[str]) -> list[object]:
    """A cheap signature of a tree: file count, total size, newest mtime, hash of the names."""
    stats = [os.stat(path) for path in paths]
    names = hashlib.sha256("\n".join(os.path.relpath(p, folder) for p in paths).encode())
    return [
        _CACHE_VERSION, len(paths), sum(s.st_size for s in stats),
        max((s.st_mtime_ns for s in stats), default=0), names.hexdigest(),
    ]  # fmt: skip


def _load_cache(path: Path, key: list[object]) -> tuple[Tensor, Tensor] | None:
    """The cached (images, labels) if the file exists and was made from this very tree."""
    try:
        entry = torch.load(path, weights_only=True)
    except FileNotFoundError:
        return None
    except Exception as error:  # truncated or foreign: decode again and overwrite it
        log.warning("ignoring the unreadable cache %s (%s)", path, error)
        return None
    if not isinstance(entry, dict) or entry.get("key") != key:
        return None
    return entry["images"], entry["labels"]


def _save_cache(path: Path, key: list[object], images: Tensor, labels: Tensor) -> None:
    """Write atomically (`_util.atomic_save`): never a half-written cache file."""
    try:
        atomic_save({"key": key, "images": images, "labels": labels}, path)
    except OSError as error:  # an unwritable cache costs speed, not correctness
        log.warning("could not write the cache %s (%s)", path, error)


def _decode_images(paths: list[str], shape: tuple[int, int, int]) -> Tensor:
    """Decode image files into one uint8 tensor (N, C, H, W), in chunks on a few threads."""
    chunks = [paths[i : i + 1000] for i in range(0, len(paths), 1000)]
    with warnings.catch_warnings(), ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        # torchvision 0.29 deprecates its decoders in favour of TorchCodec's; they are still the
        # fastest here (libjpeg-turbo, GIL released: 2× PIL), and PIL takes over without them.
        warnings.simplefilter("ignore", DeprecationWarning)
        parts = list(pool.map(lambda chunk: _decode_chunk(chunk, shape), chunks))
    return torch.cat(parts) if parts else torch.empty((0, *shape), dtype=torch.uint8)


def _decode_chunk(paths: list[str], shape: tuple[int, int, int]) -> Tensor:
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # a torchvision without image decoders
        decode_image = None
    images = []
    for path in paths:
        image = None
        if decode_image is not None:
            mode = ImageReadMode.RGB if shape[0] == 3 else ImageReadMode.GRAY
            with contextlib.suppress(RuntimeError):  # a format it does not read: bmp, tiff...
                image = decode_image(read_file(path), mode=mode)  # (C, H, W) uint8
        if image is None:
            image = _decode_with_pil(path, shape[0])
        if tuple(image.shape) != shape:
            raise ValueError(f"{path} decodes to shape {tuple(image.shape)}; expected {shape}")
        images.append(image)
    return torch.stack(images)


def _decode_with_pil(path: str, channels: int) -> Tensor:
    from PIL import Image

    with Image.open(path) as image:
        array = np.array(image.convert("RGB" if channels == 3 else "L"))  # (H, W[, 3])
    return torch.from_numpy(array).view(*array.shape[:2], -1).permute(2, 0, 1)
