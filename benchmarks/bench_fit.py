"""`fit` against a minimal hand-written SGD loop: what the training loop's extras cost.

Both train CIFAR ResNet-20 (option A) from the same initial weights on the same real CIFAR-10
images, held on the training device, for one epoch per run: SGD (momentum 0.9, weight decay
1e-4), batch 128, shuffled, fp32, channels_last, no augmentation; then both test on the same
small test set. `fit` adds what the bare loop lacks: the DeviceLoader's seeded shuffling and
per-batch normalisation, the lr schedule, the finite-loss check, running loss and error, the
history. A third run is `fit` in bf16 autocast, there by asking for it ("auto" is fp32 on every
CPU): the ratio bf16 / fp32 shows what it buys on this device. Runs are timed in turns; the
table gives the median run, images/s (training images per second of run) and the ratio
bare loop / run (target for fit in fp32 on the CPU: >= 0.97), with the lowest and highest ratio
of one round's pair of runs.

    python benchmarks/bench_fit.py            # the device is CUDA when present, else the CPU
    python benchmarks/bench_fit.py --quick    # a smoke test of seconds
"""

from __future__ import annotations

import copy
import dataclasses
import re
import statistics
from pathlib import Path

import torch
from _common import (
    interleaved_seconds,
    load_cifar10,
    parse_args,
    print_table,
    write_json,
)
from torch import nn
from torch.nn import functional as F

from resnet_tutorial import data
from resnet_tutorial.models import cifar_resnet
from resnet_tutorial.train import TrainConfig, fit

# (train images per class, test images per class, batch size, repeats, warm-up runs)
SIZES = {
    # 2,000 training images: 16 steps of 128, about 10 s a run on 2 cores, 7 rounds of the three
    # loops, so that the spread of the paired ratios can tell 0.97 from 1.00.
    "cpu": (200, 10, 128, 7, 1),
    "cuda": (5000, 100, 128, 5, 1),  # all 50,000
    "quick": (4, 1, 16, 1, 0),
}


def bare_run(model: nn.Module, train: data.ImageSet, test: data.ImageSet, batch_size: int,
             device: torch.device) -> None:  # fmt: skip
    """One epoch of plain SGD on normalised tensors, then the test error: nothing more."""
    mean = torch.tensor(data.CIFAR10_MEAN, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.CIFAR10_STD, device=device).view(1, -1, 1, 1)
    images = (train.images.to(device).float() / 255 - mean) / std  # (N, 3, 32, 32)
    labels = train.labels.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    order = torch.randperm(len(labels), device=device)
    for start in range(0, len(labels), batch_size):
        index = order[start : start + batch_size]
        x = images[index].contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        x = ((test.images.to(device).float() / 255 - mean) / std).contiguous(
            memory_format=torch.channels_last
        )
        (model(x).argmax(1) != test.labels.to(device)).float().mean().item()


def native_bf16() -> str:
    """What the CPU's flags say about bf16 (Linux only)."""
    try:
        flags = set(
            re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)[1].split()
        )
    except (OSError, TypeError):
        return "bf16 support unknown"
    native = sorted({"avx512_bf16", "amx_bf16"} & flags)
    return f"native bf16: {', '.join(native)}" if native else "no native bf16 (emulated)"


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = "quick" if args.quick else device.type
    per_class, test_per_class, batch, repeats, warmup = SIZES[size]
    train, test = load_cifar10(per_class, test_per_class)
    n = len(train)

    torch.manual_seed(0)
    fit_model = cifar_resnet(20).to(device, memory_format=torch.channels_last)
    bare_model = copy.deepcopy(fit_model)  # the same initial weights
    bf16_model = copy.deepcopy(fit_model)
    config = TrainConfig(epochs=1, batch_size=batch, precision="fp32", channels_last=True,
                         augment=False, device=str(device), progress=False)  # fmt: skip
    bf16 = dataclasses.replace(config, precision="bf16")
    times = interleaved_seconds(
        {
            "bare SGD loop": lambda: bare_run(bare_model, train, test, batch, device),
            "fit": lambda: fit(fit_model, train, test, config),
            "fit, bf16 autocast": lambda: fit(bf16_model, train, test, bf16),
        },
        repeats=repeats,
        warmup=warmup,
        device=device,
    )

    seconds = {name: statistics.median(t) for name, t in times.items()}
    reference = seconds["bare SGD loop"]
    rows = []
    for name, s in seconds.items():
        # round i's bare-loop time / this loop's time of the same round: the spread of the pairs
        pairs = [b / t for b, t in zip(times["bare SGD loop"], times[name], strict=True)]
        rows.append({"loop": name, "run s": s, "images/s": n / s, "ratio": reference / s,
                     "ratio min": min(pairs), "ratio max": max(pairs)})  # fmt: skip
    print_table(
        f"CIFAR ResNet-20, one epoch of {n:,} images + test on {len(test):,}, batch {batch}, "
        f"fp32 (and bf16), channels_last, {device.type} (median of {repeats})",
        rows,
    )
    print(f"\nfit / bare loop = {rows[1]['ratio']:.3f} (target >= 0.97; rounds "
          f"{rows[1]['ratio min']:.3f} to {rows[1]['ratio max']:.3f})")  # fmt: skip
    # "auto" is fp32 on every CPU; bf16 pays only where the CPU computes it natively.
    print(f"fit in bf16 / fit in fp32 = {seconds['fit'] / seconds['fit, bf16 autocast']:.2f}x "
          f"({device.type}{', ' + native_bf16() if device.type == 'cpu' else ''})")  # fmt: skip
    write_json("fit", rows, directory=args.out, images=n, test_images=len(test),
               batch_size=batch, repeats=repeats, device=str(device), quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
