"""One epoch of augmented CIFAR-10 training batches: `DeviceLoader` against the usual pipeline.

The baseline is what most CIFAR-10 code does: torchvision's CIFAR10 dataset (decoded images held
in memory as one uint8 array, a PIL image made per item) with RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor and Normalize, through a DataLoader with 2 worker processes.
`DeviceLoader` holds the split as one tensor on the device and augments whole batches there.
Both: 50,000 images, batch 128, shuffled, each batch moved to the training device.

    python benchmarks/bench_loader.py            # the device is CUDA when present, else the CPU
    python benchmarks/bench_loader.py --quick    # 500 images, one repeat: a smoke test
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _common import median_seconds, parse_args, print_table, sync, write_json
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from resnet_tutorial import data

BATCH = 128


class InMemoryCIFAR(Dataset):
    """torchvision.datasets.CIFAR10's item access: uint8 HWC array → PIL image → transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images.permute(0, 2, 3, 1).numpy().copy()  # (N, 32, 32, 3), as CIFAR10
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def epoch_of(loader, device: torch.device):
    """A function that reads every batch of one epoch and moves it to the device."""

    def run() -> None:
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
        sync(device)

    return run


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    train = data.cifar10("train", per_class=50 if args.quick else None)
    repeats, warmup = (1, 0) if args.quick else (5, 1)
    n = len(train)
    print(f"CIFAR-10 train: {n:,} images, loaded in {time.perf_counter() - start:.1f} s")
    mean, std = data.CIFAR10_MEAN, data.CIFAR10_STD

    augment = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])  # fmt: skip
    baseline = DataLoader(InMemoryCIFAR(*train.tensors, augment), BATCH, shuffle=True,
                          num_workers=2, pin_memory=device.type == "cuda")  # fmt: skip
    device_loader = data.DeviceLoader(train, BATCH, mean=mean, std=std, device=device)

    # The baseline's epochs include starting its workers, as a training loop's epochs do.
    seconds = {
        "DataLoader, 2 workers (torchvision transforms)": median_seconds(
            epoch_of(baseline, device), repeats=min(repeats, 3), warmup=0, device=device
        ),
        f"DeviceLoader on {device.type}": median_seconds(
            epoch_of(device_loader, device), repeats=repeats, warmup=warmup, device=device
        ),
    }
    if device.type == "cpu" and torch.get_num_threads() > 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the DataLoader's workers run one thread each, too
        seconds["DeviceLoader on cpu, 1 thread"] = median_seconds(
            epoch_of(device_loader, device), repeats=repeats, warmup=warmup, device=device
        )
        torch.set_num_threads(threads)

    reference = next(iter(seconds.values()))
    rows = [
        {"pipeline": name, "epoch s": s, "images/s": n / s, "ratio": reference / s}
        for name, s in seconds.items()
    ]
    print_table(f"One epoch of CIFAR-10 train ({n:,} images, batch {BATCH}, crop + flip)", rows)
    write_json("loader", rows, directory=args.out, images=n, batch_size=BATCH,
               device=str(device), numpy=np.__version__, quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
