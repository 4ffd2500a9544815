"""Chapter 6's reference grid: transfer from CIFAR-10's first five classes, measured.

    python book/results/transfer_grid.py            # (make results-transfer) resumes by itself

The source is `cifar5_source` (ResNet-20, the fast recipe, on the 25,000 training images of
labels 0-4). Two targets: `cifar5` (labels 5-9, relabelled 0-4: a near domain, the same kind of
photos) and `fashion_mnist` (greyscale garments padded to 32 x 32 and repeated on three channels:
a far domain). For each target, budget k (labelled images per class) and seed (which draws the
labelled images and initialises the new head or the network):

- "chance", and three linear fits to convergence (`rt.fit_linear_probe`, L-BFGS): "pixels" on
  the raw values, "linear probe" on the source's 64 pooled features (computed once), and
  "linear probe, AdaBN" on the features of the source whose BN statistics were re-estimated on
  the target's unlabelled training images (`rt.reestimate_bn` on the whole pool: no labels);
- three SGD runs with the same number of steps (STEPS[k]), each schedule run to its end:
  "fine-tune" (everything trains, the body at a tenth of the head's rate), "fine-tune, BN eval"
  (the same, the BN layers held at the source's statistics) and "from scratch"; and
  "from scratch, 4x steps", the long budget.

Every choice is made on a validation split, the last 500 training images of each target class,
which no labelled draw uses: the linear fits' L2 penalty per fit, the SGD runs' learning rate per
budget (seed 0's draw; the long runs use the from-scratch rate). A run whose loss turns NaN is
recorded as diverged, with chance's error; a rate that diverged on validation is not chosen.
Each finished row is written at once (atomically), so that an interrupted run resumes where it
stopped; every commit it ran under is recorded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import torch

import resnet_tutorial as rt
from resnet_tutorial.__main__ import provenance
from resnet_tutorial.results import build_model

OUT = Path(__file__).resolve().parent / "transfer_grid.json"
SOURCE = "cifar5_source"
MODEL = "cifar_resnet20"  # the source's network, and the one trained from scratch
SOURCE_CLASSES, TARGET_CLASSES = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
TARGETS = ("cifar5", "fashion_mnist")
BUDGETS = (10, 100, 1000)  # labelled images per target class
SEEDS = (0, 1, 2)
STEPS = {10: 100, 100: 200, 1000: 400}  # SGD steps of every SGD method at each budget
LONG = 4  # the long from-scratch budget: this many times the steps
BATCH = 100  # images per step (all of them where a draw has fewer)
LRS = (0.03, 0.1, 0.3, 1.0)  # peak learning rates tried on the validation split (the head's)
BODY_LR = 0.1  # fine-tuning: the body's rate, a fraction of the head's
WEIGHT_DECAYS = (1e-3, 1e-2, 1e-1, 1.0)  # the linear fits' L2 penalty, tried on validation
VAL_PER_CLASS = 500
SELECTED = ("fine-tune", "fine-tune, BN eval", "from scratch")  # each chooses its own rate
SGD_METHODS = ("fine-tune", "fine-tune, BN eval", "from scratch", "from scratch, 4x steps")
CHOSEN_BY = {**{m: m for m in SELECTED}, "from scratch, 4x steps": "from scratch"}


def targets(names=TARGETS) -> dict[str, tuple[rt.data.ImageSet, rt.data.ImageSet]]:
    """The named targets' training and test images, each read only if asked for:
    {name: (train, test)}."""
    read = {
        "cifar5": lambda s: rt.data.select_classes(rt.data.cifar10(s), TARGET_CLASSES),
        "fashion_mnist": lambda s: rt.data.as_cifar_like(rt.data.fashion_mnist(s)),
    }
    return {name: (read[name]("train"), read[name]("test")) for name in names}


def split_validation(train: rt.data.ImageSet):
    """(validation, pool) as (images, labels): the last VAL_PER_CLASS images of each class, and
    all the others (for cifar5 the target's classes of rt.data.cifar10's "val5k", "train45k")."""
    return tuple(part.tensors for part in rt.data.hold_out_last(train, VAL_PER_CLASS))


def new_model(method: str, source: torch.nn.Module, classes: int, seed: int) -> torch.nn.Module:
    """The network a method starts from; `seed` fixes the random weights (the head's, or all)."""
    if method.startswith("from scratch"):
        torch.manual_seed(seed)
        return build_model(MODEL, classes)
    bn = "eval" if method == "fine-tune, BN eval" else "train"
    return rt.transfer.fine_tune_start(source, classes, bn=bn, seed=seed)


def sgd_run(method, source, train, test, k, seed, lr, precision, steps=None):
    """Train `method` on `train` and test it on `test`: (test error, steps, seconds, diverged).
    A run whose loss turns NaN has diverged: its error is then chance's, 1 - 1/C, which is what
    its NaN outputs would score (every image given the first class)."""
    classes = int(train[1].max()) + 1
    steps = steps or STEPS[k] * (LONG if method.endswith("4x steps") else 1)
    model = new_model(method, source, classes, seed)
    body_lr = lr * BODY_LR if method.startswith("fine-tune") else None
    start = time.perf_counter()
    try:
        history = rt.transfer.train_target(model, train, test, steps=steps, lr=lr,
                                           body_lr=body_lr, seed=seed, batch_size=BATCH,
                                           precision=precision)  # fmt: skip
    except rt.NonFiniteLossError:
        return 1 - 1 / classes, steps, time.perf_counter() - start, True
    done = len(history) * -(-len(train[1]) // min(BATCH, len(train[1])))
    return history.final["test_error"], done, time.perf_counter() - start, False


def best_lr(tried: list[dict]) -> float:
    """The learning rate of the lowest validation error among the runs that did not diverge."""
    finished = [s for s in tried if not s.get("diverged")]
    if not finished:
        raise RuntimeError(f"every learning rate diverged: {tried}")
    return min(finished, key=lambda s: s["val_error"])["lr"]


def linear_error(features, labels, test_features, test_labels, weight_decay) -> float:
    head = rt.fit_linear_probe(features, labels, int(labels.max()) + 1, weight_decay=weight_decay)
    with torch.no_grad():
        return (head(test_features).argmax(1) != test_labels).float().mean().item()


def run_grid(out: Path = OUT, *, source=None, data=None, budgets=BUDGETS, seeds=SEEDS,
             lrs=LRS, precision="bf16", steps=None, log=print) -> dict:  # fmt: skip
    """Fill `out` with every row not yet there; returns the grid. `source`, `data` and `steps`
    default to the book's (tests pass small stand-ins)."""
    if source is None:
        source = rt.results.load(SOURCE).model()
    data = data or targets()
    made = provenance("cpu")
    grid = json.loads(out.read_text()) if out.exists() else {"rows": [], "selection": []}
    commits = grid.get("git_commits", [])
    if not commits or commits[-1] != made["git_commit"]:
        commits.append(made["git_commit"])
    grid.update(made, git_commits=commits, source=SOURCE, budgets=list(budgets),
                steps={str(k): (steps or STEPS)[k] for k in budgets}, long_factor=LONG,
                batch_size=BATCH, body_lr_fraction=BODY_LR, learning_rates=list(lrs),
                weight_decays=list(WEIGHT_DECAYS), validation_per_class=VAL_PER_CLASS,
                precision=precision)  # fmt: skip
    done = {(r["target"], r["method"], r["labels_per_class"], r["seed"]) for r in grid["rows"]}

    def save(row: dict, table: str = "rows") -> None:
        grid[table].append(row)
        partial = out.with_name(out.name + ".part")
        partial.write_text(json.dumps(grid, indent=1) + "\n")
        os.replace(partial, out)  # never a half-written grid

    def add(target, method, k, seed, error, n_test, **more) -> None:
        row = {"target": target, "method": method, "labels_per_class": k, "seed": seed,
               "test_error": error, "test_images": n_test, **more}  # fmt: skip
        save(row)
        done.add((target, method, k, seed))
        log(f"{target:<14} {method:<24} k={k:<5} seed {seed}  error {error:6.2%}  "
            f"{more.get('seconds', 0):6.1f} s")  # fmt: skip

    for target, (train, test) in data.items():
        classes = len(train.classes)
        val, pool = split_validation(train)
        test_t = (test.images, test.labels)
        stats = {"mean": rt.data.CIFAR10_MEAN, "std": rt.data.CIFAR10_STD}
        adapted = rt.reestimate_bn(copy.deepcopy(source), pool, **stats)  # AdaBN, no labels
        parts = (("pool", pool), ("val", val), ("test", test_t))
        features = {name: rt.extract_features(source, part, **stats) for name, part in parts}
        adabn = {name: rt.extract_features(adapted, part, **stats) for name, part in parts}
        pixels = {name: part[0].flatten(1).float() / 255 if target == "cifar5"
                  else part[0][:, 0].flatten(1).float() / 255
                  for name, part in (("pool", pool), ("val", val), ("test", test_t))}  # fmt: skip
        for k in budgets:
            draws = {s: rt.data.sample_per_class(pool[1], k, s, classes) for s in seeds}
            for seed in seeds:
                if (target, "chance", k, seed) not in done:
                    add(target, "chance", k, seed, 1 - 1 / classes, len(test), steps=0, seconds=0)
                for method, x in (("pixels", pixels), ("linear probe", features),
                                  ("linear probe, AdaBN", adabn)):  # fmt: skip
                    if (target, method, k, seed) in done:
                        continue
                    start, index = time.perf_counter(), draws[seed]
                    fit = (x["pool"][index], pool[1][index])
                    val_errors = [linear_error(*fit, x["val"], val[1], wd) for wd in WEIGHT_DECAYS]
                    best = WEIGHT_DECAYS[val_errors.index(min(val_errors))]
                    error = linear_error(*fit, x["test"], test.labels, best)
                    add(target, method, k, seed, error, len(test), steps=0, weight_decay=best,
                        val_errors=val_errors, seconds=time.perf_counter() - start)  # fmt: skip
            chosen = {}
            for method in SELECTED:  # the learning rate, on validation
                key = (target, method, k)
                tried = [s for s in grid["selection"]
                         if (s["target"], s["method"], s["labels_per_class"]) == key]  # fmt: skip
                for lr in lrs:
                    if any(s["lr"] == lr for s in tried):
                        continue
                    draw = draws[seeds[0]]
                    error, n, seconds, diverged = sgd_run(
                        method, source, (pool[0][draw], pool[1][draw]), val, k, seeds[0], lr,
                        precision, steps and steps[k])  # fmt: skip
                    row = {"target": target, "method": method, "labels_per_class": k,
                           "seed": seeds[0], "lr": lr, "val_error": None if diverged else error,
                           "diverged": diverged, "steps": n, "seconds": seconds}  # fmt: skip
                    save(row, "selection")
                    tried.append(row)
                    log(f"{target:<14} {method:<24} k={k:<5} lr {lr:<5} val error {error:6.2%}"
                        + (" (diverged)" if diverged else ""))  # fmt: skip
                chosen[method] = best_lr(tried)
            for seed in seeds:
                for method in SGD_METHODS:
                    if (target, method, k, seed) in done:
                        continue
                    lr = chosen[CHOSEN_BY[method]]
                    draw = draws[seed]
                    few = steps and steps[k] * (LONG if method.endswith("4x steps") else 1)
                    error, n, seconds, diverged = sgd_run(
                        method, source, (pool[0][draw], pool[1][draw]), test_t, k, seed, lr,
                        precision, few)  # fmt: skip
                    add(target, method, k, seed, error, len(test), steps=n, lr=lr,
                        diverged=diverged, seconds=seconds)  # fmt: skip
    return grid


def merge(parts: list[Path], out: Path) -> dict:
    """One grid from grids made apart (`--targets`, `--budgets`, each its own `--out`): every row
    and validation run of each, each commit any of them ran under; the settings must agree."""
    grids = [json.loads(Path(p).read_text()) for p in parts]
    settings = ("source", "long_factor", "batch_size", "body_lr_fraction", "learning_rates",
                "weight_decays", "validation_per_class", "precision")  # fmt: skip
    for other in grids[1:]:
        differ = [k for k in settings if other[k] != grids[0][k]]
        if differ:
            raise ValueError(f"the grids differ in {differ}: not parts of one grid")
    merged = {**grids[0], "rows": [], "selection": [], "git_commits": [], "budgets": [],
              "steps": {}}  # fmt: skip
    for grid in grids:
        for table in ("rows", "selection"):
            merged[table] += grid[table]
        merged["git_commits"] += [c for c in grid["git_commits"] if c not in merged["git_commits"]]
        merged["budgets"] = sorted({*merged["budgets"], *grid["budgets"]})
        merged["steps"].update(grid["steps"])
    keys = [(r["target"], r["method"], r["labels_per_class"], r["seed"]) for r in merged["rows"]]
    if len(set(keys)) < len(keys):
        raise ValueError("a row is in more than one of the grids")
    out.write_text(json.dumps(merged, indent=1) + "\n")
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    parser.add_argument("--targets", nargs="+", choices=("cifar5", "fashion_mnist"),
                        help="only these targets (default: both)")  # fmt: skip
    parser.add_argument("--budgets", nargs="+", type=int, choices=BUDGETS,
                        help="only these labels per class (default: all)")  # fmt: skip
    parser.add_argument("--merge", nargs="+", type=Path, metavar="GRID",
                        help="merge grids made apart into --out; train nothing")  # fmt: skip
    parser.add_argument("--allow-dirty", action="store_true")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    commit = provenance("cpu")["git_commit"] or ""
    if commit.endswith("+dirty") and not args.allow_dirty:
        parser.error("the checkout has uncommitted changes: commit first (or --allow-dirty)")
    data = targets(args.targets or TARGETS)
    run_grid(args.out, data=data, budgets=tuple(args.budgets or BUDGETS), precision=args.precision)


if __name__ == "__main__":
    main()
