"""The book's copy of CIFAR-10 for the GitHub workflows (book.yml, gpu.yml).

Every stored output of the notebooks, tests/test_results.py and the checkpoint accuracies the
book quotes were computed on a JPEG copy of CIFAR-10, not on torchvision's python batches. This
puts that copy into $RESNET_TUTORIAL_DATA/cifar10 (downloaded from the pinned commit's archive
unless the workflow's cache restored it), checks its hash with the package's own function,
and prints what it is. It fails when the hash differs, and when torchvision's CIFAR-10 batches
are in the same data root: `rt.data.cifar10()` would read those instead of the copy.

    .venv/bin/python .ci/book_cifar10.py
"""

from __future__ import annotations

import sys

from resnet_tutorial import data


def main() -> int:
    root = data.data_root()
    batches = root / "cifar-10-batches-py"
    if batches.exists():
        print(f"book_cifar10: {batches} would shadow the book's copy (rt.data.cifar10 reads "
              "torchvision's batches first): remove it", file=sys.stderr)  # fmt: skip
        return 1
    folder = root / "cifar10"
    origin = "already in the data root" if folder.exists() else "downloaded"
    if not folder.exists():
        data.download_book_cifar10(root)  # checks the hash too: a ValueError names both
    found = data.tree_sha256(folder)
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    print(f"CIFAR-10, the book's JPEG copy, {origin}: {folder}")
    print(f"  url       {data.BOOK_CIFAR10_URL}")
    print(f"  commit    {data.BOOK_CIFAR10_COMMIT}")
    print(f"  files     {files:,}")
    print(f"  sha256    {found}  (rt.data.tree_sha256)")
    print(f"  expected  {data.BOOK_CIFAR10_SHA256}  (rt.data.BOOK_CIFAR10_SHA256)")
    if found != data.BOOK_CIFAR10_SHA256:
        print("book_cifar10: the tree is not the book's copy (the hashes differ)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
