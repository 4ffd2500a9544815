"""Worker of tests/test_ddp.py: `torchrun --nproc_per_node 2 tests/support/ddp_worker.py OUT`.

Each rank trains two tiny models with `fit` (which joins torchrun's process group itself) and
saves what it ended with to OUT/rank<r>.pt, for the test to compare across ranks.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import sys

import torch
from torch import nn

from resnet_tutorial.config import TrainConfig
from resnet_tutorial.train import fit


def images_and_labels(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 3x8x8 uint8 images; the label is the argmax of the first ten red pixels."""
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return images, images[:, 0].flatten(1)[:, :10].argmax(1)


def bn_net() -> nn.Module:
    """With BatchNorm: every rank has its own batch statistics, rank 0's are kept."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(144, 10))  # fmt: skip


def linear_net() -> nn.Module:
    """Without BatchNorm: DDP's averaged gradient equals the one of the global batch."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 10))


# 160 images = 2 ranks x 5 steps x 16: every step's global batch is 32 whole images.
TRAIN, TEST = images_and_labels(160, seed=1), images_and_labels(50, seed=2)
# fp32: the test compares two runs, which must not round differently on a CPU with native bf16.
CONFIG = TrainConfig(epochs=2, batch_size=16, lr=0.05, augment=False, device="cpu",
                     precision="fp32", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))  # fmt: skip
# The BN run also augments: the ranks draw different crops and flips, yet must stay in step.
RUNS = {"bn": (bn_net, dataclasses.replace(CONFIG, augment=True)), "linear": (linear_net, CONFIG)}


def main(out: str) -> None:
    rank = int(os.environ["RANK"])
    results = {}
    for name, (build, config) in RUNS.items():
        model = build()
        history = fit(model, TRAIN, TEST, config)
        results[name] = {"state": model.state_dict(), "history": history.to_dict()}
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    faulthandler.dump_traceback_later(120, exit=True)  # a hang shows where, then ends
    main(sys.argv[1])
