"""Our models against reference implementations: one training step's forward + backward.

Pairs, each run on the same batch of random images, in train mode, fp32, contiguous:

- `rt.resnet50()` against `torchvision.models.resnet50()` (224×224);
- `rt.cifar_resnet(20)` against `HandResNet20` below, the CIFAR ResNet-20 of the paper
  (option-A shortcuts) written out plainly (32×32).

Before timing, each pair gets the same weights and must give the same outputs, so that both
sides compute the same thing. Their steps are timed in turns; the table gives the median step,
images/s and the ratio ours / reference (target on the CPU: >= 0.98).

On CUDA also: ResNet-50 training at 224×224 (SGD steps) in fp32, in bf16 autocast with
channels_last, and the same under `torch.compile`; and the time of one CIFAR ResNet-20 epoch
(50,000 images, then the 10,000 test images) with `fit`'s defaults (bf16, channels_last).

    python benchmarks/bench_models.py            # the device is CUDA when present, else the CPU
    python benchmarks/bench_models.py --quick    # a smoke test of seconds
"""

from __future__ import annotations

import statistics

import torch
import torchvision
from _common import interleaved_median_seconds, median_seconds, parse_args, print_table, write_json
from torch import Tensor, nn
from torch.nn import functional as F

import resnet_tutorial as rt


class HandBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus x (or x subsampled and zero-padded: option A), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.stride, self.pad = stride, (channels - in_channels) // 2

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.stride != 1 or self.pad:
            x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + x)


class HandResNet20(nn.Module):
    """CIFAR ResNet-20: a 3×3 conv, 3 stages of 3 blocks (16, 32, 64 channels), pool, linear."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, in_channels = [], 16
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(HandBlock(in_channels, channels, stride if i == 0 else 1))
                in_channels = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))  # (N, 64, 8, 8)
        return self.fc(x.mean((2, 3)))


def copy_weights(source: nn.Module, target: nn.Module) -> None:
    """Load `source`'s weights into `target`: by name if the names match, else in order."""
    state, target_state = source.state_dict(), target.state_dict()
    if state.keys() == target_state.keys():  # torchvision's names (see models.py)
        target.load_state_dict(state, strict=True)
        return
    with torch.no_grad():  # the hand-written model: other names, the same order and shapes
        for (name, a), (target_name, b) in zip(state.items(), target_state.items(), strict=True):
            if a.shape != b.shape:
                raise ValueError(f"{name} {tuple(a.shape)} != {target_name} {tuple(b.shape)}")
            b.copy_(a)


@torch.no_grad()
def check_same_outputs(ours: nn.Module, reference: nn.Module, x: Tensor) -> None:
    """Both models, with the same weights, give the same logits (eval mode)."""
    ours.eval()
    reference.eval()
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-3, atol=1e-3)  # TF32 on CUDA
    ours.train()
    reference.train()


def step_of(model: nn.Module, x: Tensor, y: Tensor):
    """A function running one forward + backward (the gradients are kept, as in training)."""

    def run() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    return run


def compare(device: torch.device, quick: bool) -> list[dict[str, object]]:
    """Ours against the reference, forward + backward, for ResNet-50 and CIFAR ResNet-20."""
    cpu = device.type == "cpu"
    cases = [  # (model, ours, reference's name, reference, batch, image size)
        ("ResNet-50", rt.resnet50, "torchvision", torchvision.models.resnet50,
         2 if quick else 8 if cpu else 64, 64 if quick else 224),
        ("CIFAR ResNet-20", lambda: rt.cifar_resnet(20), "hand-written", HandResNet20,
         8 if quick else 128 if cpu else 512, 32),
    ]  # fmt: skip
    repeats, warmup = (1, 0) if quick else (5, 1)
    rows = []
    for model_name, build_ours, reference_name, build_reference, batch, size in cases:
        torch.manual_seed(0)
        ours, reference = build_ours().to(device), build_reference().to(device)
        copy_weights(reference, ours)
        x = torch.randn(batch, 3, size, size, device=device)
        y = torch.randint(0, 10, (batch,), device=device)
        check_same_outputs(ours, reference, x[:2])
        seconds = interleaved_median_seconds(
            {reference_name: step_of(reference, x, y), "resnet_tutorial": step_of(ours, x, y)},
            repeats=repeats,
            warmup=warmup,
            device=device,
        )
        for name, s in seconds.items():
            rows.append({
                "model": model_name, "implementation": name, "input": f"{batch}×3×{size}×{size}",
                "step s": s, "images/s": batch / s, "ratio": seconds[reference_name] / s,
            })  # fmt: skip
    return rows


def training_steps(model: nn.Module, x: Tensor, y: Tensor, dtype: torch.dtype | None,
                   steps: int, compiled: bool):  # fmt: skip
    """A function running `steps` SGD steps of `model` (compiled if asked) under autocast."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model) if compiled else model

    def run() -> None:
        for _ in range(steps):
            with torch.autocast(x.device.type, dtype, enabled=dtype is not None):
                loss = F.cross_entropy(forward(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def cuda_training(quick: bool) -> list[dict[str, object]]:
    """ResNet-50 SGD steps at 224×224 on CUDA: fp32; bf16 + channels_last; the same compiled."""
    torch.backends.cudnn.benchmark = True
    batch, size, steps = (8, 64, 2) if quick else (128, 224, 20)
    settings = [("fp32 eager", None, False, False), ("bf16 + channels_last", torch.bfloat16, True,
                False)]  # fmt: skip
    if not quick:  # compiling takes a minute or more
        settings.append(("bf16 + channels_last + compile", torch.bfloat16, True, True))
    rows = []
    for name, dtype, channels_last, compiled in settings:
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(0)
        model = rt.resnet50().cuda().to(memory_format=memory_format)
        x = torch.randn(batch, 3, size, size, device="cuda").contiguous(memory_format=memory_format)
        y = torch.randint(0, 1000, (batch,), device="cuda")
        run = training_steps(model, x, y, dtype, steps, compiled)
        s = median_seconds(run, repeats=1 if quick else 5, warmup=1, device="cuda")
        rows.append({"setting": name, "input": f"{batch}×3×{size}×{size}", "step s": s / steps,
                     "images/s": batch * steps / s})  # fmt: skip
        del model, run
        torch.cuda.empty_cache()
    for row in rows:
        row["speed-up"] = row["images/s"] / rows[0]["images/s"]
    return rows


def cuda_cifar_epoch(quick: bool) -> dict[str, object]:
    """CIFAR ResNet-20 epochs with `fit`'s defaults on CUDA; the first epoch is a warm-up."""
    per_class, epochs = (10, 2) if quick else (None, 4)
    train = rt.data.cifar10("train", per_class=per_class)
    test = rt.data.cifar10("test", per_class=per_class)
    torch.manual_seed(0)
    config = rt.TrainConfig(epochs=epochs, progress=False)
    history = rt.fit(rt.cifar_resnet(20), train, test, config)
    seconds = statistics.median(history.seconds[1:])
    return {"model": "CIFAR ResNet-20", "train images": len(train), "test images": len(test),
            "epoch s": seconds, "images/s": len(train) / seconds}  # fmt: skip


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = compare(device, args.quick)
    print_table(f"Forward + backward, fp32, train mode, {device.type} (median)", rows)
    extra: dict[str, object] = {}
    if device.type == "cuda":
        extra["cuda_training"] = cuda_training(args.quick)
        print_table("ResNet-50 training on CUDA (SGD steps)", extra["cuda_training"])
        extra["cifar_epoch"] = [cuda_cifar_epoch(args.quick)]
        print_table("CIFAR ResNet-20, one epoch of fit (train + test), bf16, channels_last",
                    extra["cifar_epoch"])  # fmt: skip
    write_json("models", rows, directory=args.out, device=str(device), quick=args.quick, **extra)


if __name__ == "__main__":
    main()
