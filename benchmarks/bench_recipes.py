"""The fast recipe against the paper's: seconds per training epoch of each, in the same run.

Both train CIFAR ResNet-20 (option A) from the same initial weights on the same real CIFAR-10
images with `fit`, one epoch per run, each recipe as `rt.recipe` names it: "paper" (He et al.
2016a, Sec. 4.2; precision "auto", so fp32 on the CPU) and "fast" (chapter 5: bf16 autocast,
one-cycle, Nesterov, label smoothing, decay on weights only). Epochs differ only in what a step
computes, so the ratio paper / fast is what the fast recipe's 25 epochs gain per epoch over the
paper's 164; a change that slows either shows here. Runs are timed in turns; the table gives
the median run, images/s and the ratio paper / run.

    python benchmarks/bench_recipes.py            # the device is CUDA when present, else the CPU
    python benchmarks/bench_recipes.py --quick    # a smoke test of seconds
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from _common import (
    interleaved_median_seconds,
    load_cifar10,
    parse_args,
    print_table,
    write_json,
)

from resnet_tutorial.config import recipe
from resnet_tutorial.models import cifar_resnet
from resnet_tutorial.train import fit

# (train images per class, test images per class, repeats, warm-up runs)
SIZES = {
    "cpu": (128, 1, 5, 1),  # 1,280 training images: 10 steps of 128, a test pass of 10 images
    "cuda": (5000, 1, 5, 1),  # all 50,000
    "quick": (4, 1, 1, 0),
}


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    size = "quick" if args.quick else device.type
    per_class, test_per_class, repeats, warmup = SIZES[size]
    train, test = load_cifar10(per_class, test_per_class)
    n = len(train)

    torch.manual_seed(0)
    models = {"paper": cifar_resnet(20)}
    models["fast"] = copy.deepcopy(models["paper"])  # the same initial weights
    configs = {
        name: dataclasses.replace(
            recipe(name), epochs=1, iterations=None, device=str(device), progress=False
        )  # fmt: skip
        for name in models
    }
    seconds = interleaved_median_seconds(
        {
            f"{name} recipe ({configs[name].precision})": (
                lambda name=name: fit(models[name], train, test, configs[name])
            )
            for name in models
        },  # fmt: skip
        repeats=repeats,
        warmup=warmup,
        device=device,
    )
    reference = next(iter(seconds.values()))
    rows = [
        {"recipe": name, "run s": s, "images/s": n / s, "ratio": reference / s}
        for name, s in seconds.items()
    ]
    print_table(
        f"CIFAR ResNet-20, one epoch of {n:,} images with each recipe, {device.type} "
        f"(median of {repeats})",
        rows,
    )
    print(f"\nseconds per epoch, paper / fast = {rows[1]['ratio']:.2f}x")
    write_json("recipes", rows, directory=args.out, images=n, test_images=len(test),
               repeats=repeats, device=str(device), quick=args.quick)  # fmt: skip


if __name__ == "__main__":
    main()
