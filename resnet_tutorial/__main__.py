"""The command line: `python -m resnet_tutorial --model cifar_resnet20 --out runs/r20`.

Trains a CIFAR-10 network with a named recipe, writing `<out>/checkpoint.pt` after every epoch
(`--resume` continues from it), then `<out>/result.json` (curves, configuration, provenance) and
the final weights beside it. Every field of `TrainConfig` is an option that overrides the
recipe (`batch_size` is `--batch-size`, a bool `augment` is `--augment` / `--no-augment`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resnet_tutorial import data
from resnet_tutorial._util import atomic_save, check_positive_int
from resnet_tutorial.checkpoint import seed_everything
from resnet_tutorial.config import (
    PAPER_ITERATIONS,
    RECIPES,
    TrainConfig,
    default_device,
    pick_precision,
    recipe,
)
from resnet_tutorial.results import CHECKOUT, MODEL_NAME, build_model
from resnet_tutorial.train import evaluate, fit, training_throughput

PROG = "python -m resnet_tutorial"
# TrainConfig's fields that are no options: the checkpoint is always <out>/checkpoint.pt.
NOT_OPTIONS = ("checkpoint",)
# --split: (the training split, the split tested after the epochs)
SPLITS = {"test": ("train", "test"), "val5k": ("train45k", "val5k")}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Train, then write `<out>/result.json` and the final weights beside it; returns the result."""
    parser = _parser()
    args = parser.parse_args(argv)
    checkpoint = args.out / "checkpoint.pt"
    if args.resume and not checkpoint.exists():
        parser.error(f"--resume: no checkpoint at {checkpoint}")
    result_path = args.result or args.out / "result.json"
    try:
        if args.classes is not None:  # checked before any data is read
            data.check_classes(args.classes, len(data.CIFAR10_CLASSES))
        config = config_from_args(args)
        seed_everything(config.seed)  # the same initial weights for the same seed
        classes = data.CIFAR10_CLASSES if args.classes is None else args.classes
        model = build_model(args.model, len(classes), zero_init_residual=args.zero_init_residual)
    except (TypeError, ValueError) as error:
        parser.error(str(error))
    device = torch.device(config.device) if config.device is not None else default_device()
    made_with = provenance(device)  # now: the code that runs is the code of this commit
    if (
        made_with["git_commit"]
        and made_with["git_commit"].endswith("+dirty")
        and (result_path.resolve().parent == CHECKOUT and not args.allow_dirty)
    ):
        parser.error(
            f"--result {result_path}: the checkout has uncommitted changes, and a reference run "
            "must record the commit whose code ran; commit first (or pass --allow-dirty to try)"
        )
    commits = _record_commit(args.out, made_with["git_commit"], resumed=args.resume)
    train_split, test_split = SPLITS[args.split]
    train = data.cifar10(train_split, root=args.data_root, per_class=args.per_class)
    test = data.cifar10(test_split, root=args.data_root, per_class=args.per_class)
    if args.classes is not None:
        train, test = (data.select_classes(d, args.classes) for d in (train, test))
    baseline = _paper_baseline(args, train, device)
    start = time.perf_counter()
    history = fit(model, train, test, config, resume=checkpoint if args.resume else None)
    weights = result_path.with_suffix(".pt")
    if baseline:
        baseline["speedup_over_paper"] = baseline["paper_recipe_seconds"] / sum(history.seconds)
    result = {
        "name": result_path.stem,
        "recipe": args.recipe,
        "model": args.model,
        "split": args.split,
        "final_test_error": history.final["test_error"],
        "best_test_error": history.best()["test_error"],
        "best_epoch": history.best()["epoch"],
        "history": history.to_dict(),
        "total_seconds": sum(history.seconds),
        "seconds_this_run": time.perf_counter() - start,
        "epoch_seconds": history.seconds,
        **baseline,
        "command": f"{PROG} " + " ".join(sys.argv[1:] if argv is None else argv),
        "weights": weights.name,
        **made_with,
        "git_commits": commits,
        "seed": config.seed,
        "precision": config.precision,
        "data_source": data_source(train, args.data_root),
        "classes": list(train.classes),
        "train_images": len(train.labels),
        "test_images": len(test.labels),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "config": config.to_dict(),
    }
    result["final_test_error_flip"] = evaluate(  # flip test-time augmentation, apart
        model, test, device=device, mean=config.mean, std=config.std, flip=True
    )[1]
    if int(os.environ.get("RANK", "0")) == 0:
        result_path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.cpu() for k, v in model.state_dict().items()}
        atomic_save(state, weights)  # a plain state_dict, loadable with weights_only=True
        result_path.write_text(json.dumps(result, indent=1) + "\n")
        epochs = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
        print(f"test error {result['final_test_error']:.2%} after {epochs}")
        print(f"wrote {result_path}, {weights} and {checkpoint}")
    return result


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of `--recipe` with the options given on top, its checkpoint at
    `<out>/checkpoint.pt`."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in NOT_OPTIONS and hasattr(args, f.name)}  # fmt: skip
    return recipe(args.recipe, **given, checkpoint=str(args.out / "checkpoint.pt"))


def data_source(train: data.ImageSet, root: Path | None) -> dict[str, Any]:
    """What the run trained on, without this machine's folders: the kind of source and its tree
    relative to the data root, a SHA-256 of the uint8 images and labels as loaded, and, for
    CIFAR-10's ImageFolder tree, the tree's `data.tree_sha256` (the book's copy has
    `data.BOOK_CIFAR10_SHA256`)."""
    folder = data.data_root(root).resolve()
    digest = hashlib.sha256(train.images.contiguous().numpy().tobytes())
    digest.update(train.labels.numpy().tobytes())
    source = train.source.replace(str(folder) + os.sep, "").replace(str(folder), ".")
    found = {"source": source, "images_sha256": digest.hexdigest()}
    tree = folder / "cifar10"
    if source.split(";")[0].split()[-1].startswith("cifar10/") and tree.is_dir():  # subsets too
        found["tree_sha256"] = data.tree_sha256(tree)
    return found


def _record_commit(out: Path, commit: str | None, *, resumed: bool) -> list[str | None]:
    """The commits a run has run under, one per start (`<out>/commits.json`), this one last."""
    path = out / "commits.json"
    commits = json.loads(path.read_text()) if resumed and path.exists() else []
    if not commits or commits[-1] != commit:
        commits.append(commit)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(commits) + "\n")
    return commits


def _paper_baseline(args, train, device: torch.device) -> dict[str, Any]:
    """The paper recipe's training speed on this machine, measured for `--baseline-seconds`
    just before the run (with a copy of the model and its own seed): the yardstick of
    `speedup_over_paper`, the paper's 64k iterations at that speed ÷ the run's seconds."""
    if args.baseline_seconds == 0:
        return {}
    paper = recipe("paper", device=str(device), progress=False)
    model = build_model(args.model)
    images_per_second = training_throughput(model, train, paper, seconds=args.baseline_seconds)
    steps_per_epoch = math.ceil(len(train.labels) / paper.batch_size)
    images = paper.epochs_for(steps_per_epoch) * len(train.labels)
    return {
        "paper_recipe_images_per_second": images_per_second,
        "paper_recipe_precision": pick_precision(device, paper.precision)[0],
        "paper_recipe_seconds": images / images_per_second,  # training only, no test passes
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train a CIFAR-10 ResNet with the paper's recipe (He et al. 2016a, Sec. 4.2).",
    )
    add = parser.add_argument
    add("--model", type=_model_name, default="cifar_resnet20",
        help="cifar_resnetN or cifar_plainN, N = 6n + 2 (default: cifar_resnet20)")  # fmt: skip
    add("--out", type=Path, required=True, help="folder for result.json and checkpoint.pt")
    add("--result", type=Path, default=None,
        help="the result's JSON file (default <out>/result.json); the final weights go beside "
        "it, with the suffix .pt")  # fmt: skip
    add("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    add("--zero-init-residual", action="store_true", help="zero the last BN of each block")
    add("--per-class", type=_positive_int, default=None,
        help="train and test on this many images per class (a quick subset)")  # fmt: skip
    add("--classes", type=int, nargs="+", default=None,
        help="train and test on these CIFAR-10 labels only, relabelled 0 … k - 1 in this order, "
        "with a k-way head (default: all ten)")  # fmt: skip
    add("--data-root", type=Path, default=None, help="default: $RESNET_TUTORIAL_DATA")
    add("--recipe", choices=tuple(RECIPES), default="paper",
        help="the settings to start from: 'paper' (He et al. 2016a, Sec. 4.2, "
        f"{PAPER_ITERATIONS:,} iterations) or 'fast' (the course's CPU recipe, chapter 5); "
        "the training options below override them")  # fmt: skip
    add("--split", choices=tuple(SPLITS), default="test",
        help="'test': train on all 50,000 training images, test on the 10,000 test images; "
        "'val5k': train on 45,000 and test on the 5,000 held out (to choose settings)")  # fmt: skip
    add("--baseline-seconds", type=_non_negative_float, default=30.0,
        help="measure the paper recipe's training speed this long before the run, for the "
        "result's speedup_over_paper; 0 skips it (default: 30)")  # fmt: skip
    add(
        "--allow-dirty",
        action="store_true",
        help="write a result into book/results/ from a checkout with uncommitted changes",
    )
    _add_config_options(parser)
    return parser


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of TrainConfig, its kind read from the field's type."""
    group = parser.add_argument_group("training (the fields of TrainConfig)")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_OPTIONS:
            continue
        kind = hints[field.name]
        if isinstance(kind, types.UnionType):  # `int | None`: an option that may be left out
            (kind,) = [t for t in typing.get_args(kind) if t is not type(None)]
        options: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = typing.get_args(kind)
        elif typing.get_origin(kind) is tuple:  # mean, std: tuple[float, ...]
            options.update(type=float, nargs="+")
        else:
            options["type"] = kind  # int, float, str
        help = field.metadata["help"].replace("%", "%%")  # argparse formats help with %
        group.add_argument("--" + field.name.replace("_", "-"), help=help, **options)


def _model_name(value: str) -> str:
    if not MODEL_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}: use cifar_resnetN, cifar_plainN or cifar_preact_resnetN "
            "with N = 6n + 2 (20, 32, 44, 56, 110, ...)"
        )
    return value


def _non_negative_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not 0 <= number < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return number


def _positive_int(text: str) -> int:
    try:
        number = int(text)
        check_positive_int("value", number)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"must be a positive int, got {text!r}") from error
    return number


# --- provenance ---------------------------------------------------------------------------------


def provenance(device: torch.device | str) -> dict[str, Any]:
    """Where a run was made: device and its model, threads, torch, Python, and the git commit
    of the package's checkout (read when the run starts: the code it runs)."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
    }


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else platform.machine()


def _git_commit() -> str | None:
    """The commit of the checkout the package runs from (with "+dirty" for local changes)."""
    folder = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit, dirty = git("rev-parse", "HEAD"), git("status", "--porcelain", "-uno")
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


if __name__ == "__main__":
    main()
