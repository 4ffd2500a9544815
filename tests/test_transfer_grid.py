"""book/results/transfer_grid.py, chapter 6's grid: every row made once, with matched step counts,
and a run that stops resumes without redoing a row.

Oracles: the rows a grid must hold and the steps each SGD row takes, counted by hand for tiny
stand-in data (4 labelled images in batches of 4: one step an epoch); BN statistics that must not
move, compared with a copy taken before training.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import resnet_tutorial as rt

SCRIPT = Path(__file__).resolve().parent.parent / "book" / "results" / "transfer_grid.py"


def script():
    """book/results/transfer_grid.py as a module, as the book runs it."""
    spec = importlib.util.spec_from_file_location("transfer_grid", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def grid(monkeypatch):
    """The script, scaled down for tiny stand-in data."""
    module = script()
    monkeypatch.setattr(module, "VAL_PER_CLASS", 2)
    monkeypatch.setattr(module, "MODEL", "cifar_resnet8")
    return module


def two_classes(per_class: int, seed: int) -> rt.data.ImageSet:
    """32x32 images whose class brightens the left or the right half: learnable, tiny."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(2 * per_class) % 2
    images = torch.randint(
        0, 100, (2 * per_class, 3, 32, 32), dtype=torch.uint8, generator=generator
    )
    for i, label in enumerate(labels.tolist()):
        images[i, :, :, 16 * label : 16 * label + 16] += 120
    return rt.data.ImageSet(images, labels, ("left", "right"), f"synthetic {seed}")


def test_the_grid_makes_every_row_once_and_resumes_where_it_stopped(grid, tmp_path):
    data = {name: (two_classes(4, i), two_classes(3, 10 + i))  # 2 held out + 2 labelled a class
            for i, name in enumerate(("cifar5", "fashion_mnist"))}  # fmt: skip
    source = rt.cifar_resnet(8, 2)
    out = tmp_path / "grid.json"
    run = dict(source=source, data=data, budgets=(2,), seeds=(0, 1), lrs=(0.1, 0.05),
               precision="fp32", steps={2: 2}, log=lambda line: None)  # fmt: skip
    made = grid.run_grid(out, **run)
    assert json.loads(out.read_text()) == json.loads(json.dumps(made))
    methods = ("chance", "pixels", "linear probe", "linear probe, AdaBN", *grid.SGD_METHODS)
    keys = [(r["target"], r["method"], r["labels_per_class"], r["seed"]) for r in made["rows"]]
    assert sorted(keys) == sorted((t, m, 2, s) for t in data for m in methods for s in (0, 1))
    for row in made["rows"]:
        assert row["test_images"] == 6 and 0 <= row["test_error"] <= 1
        if row["method"] == "chance":
            assert row["test_error"] == 0.5  # two classes
        # 4 labelled images in one batch: 2 steps, the long budget 4 x 2
        if row["method"] in grid.SGD_METHODS:
            assert row["steps"] == (8 if row["method"] == "from scratch, 4x steps" else 2)
    # each learning rate tried once per target and method, on the validation split (2 a class)
    tried = sorted((s["target"], s["method"], s["lr"]) for s in made["selection"])
    assert tried == sorted((t, m, lr) for t in data for m in grid.SELECTED
                           for lr in (0.1, 0.05))  # fmt: skip
    # stopped after all but the last three rows: the rerun makes exactly those three
    stopped = json.loads(out.read_text())
    lost = stopped["rows"][-3:]
    stopped["rows"] = stopped["rows"][:-3]
    out.write_text(json.dumps(stopped))
    redone = []
    sgd_run = grid.sgd_run
    grid.sgd_run = lambda method, *args, **kw: redone.append(method) or sgd_run(method, *args, **kw)
    again = grid.run_grid(out, **run)
    assert redone == [r["method"] for r in lost]  # the last rows are SGD rows
    assert len(again["rows"]) == len(made["rows"])
    assert again["git_commits"] == made["git_commits"]  # the same commit, recorded once


def test_grids_made_apart_merge_into_one(grid, tmp_path):
    data = {"cifar5": (two_classes(5, 0), two_classes(3, 10))}  # 2 held out + 3 a class
    run = dict(source=rt.cifar_resnet(8, 2), data=data, seeds=(0,), lrs=(0.1,),
               precision="fp32", steps={2: 2, 3: 2}, log=lambda line: None)  # fmt: skip
    parts = [tmp_path / "a.json", tmp_path / "b.json"]
    grid.run_grid(parts[0], budgets=(2,), **run)
    grid.run_grid(parts[1], budgets=(3,), **run)
    merged = grid.merge(parts, tmp_path / "grid.json")
    assert merged["budgets"] == [2, 3] and merged["steps"] == {"2": 2, "3": 2}
    both = [json.loads(p.read_text()) for p in parts]
    for table in ("rows", "selection"):  # every row of each part, once
        assert merged[table] == both[0][table] + both[1][table]
    with pytest.raises(ValueError, match="more than one of the grids"):
        grid.merge([parts[0], parts[0]], tmp_path / "twice.json")


def test_a_run_that_diverges_is_recorded_so_and_its_rate_not_chosen(grid, tmp_path, monkeypatch):
    train_target = rt.transfer.train_target

    def diverging(model, train, test, *, steps, lr, **options):
        if lr == 0.1 or steps == 8:  # the rate 0.1 everywhere, and the long budget (8 steps)
            raise rt.NonFiniteLossError("loss is nan")
        return train_target(model, train, test, steps=steps, lr=lr, **options)

    monkeypatch.setattr(rt.transfer, "train_target", diverging)
    data = {"cifar5": (two_classes(4, 0), two_classes(3, 10))}
    made = grid.run_grid(tmp_path / "grid.json", source=rt.cifar_resnet(8, 2), data=data,
                         budgets=(2,), seeds=(0,), lrs=(0.1, 0.05), precision="fp32",
                         steps={2: 2}, log=lambda line: None)  # fmt: skip
    for s in made["selection"]:
        assert s["diverged"] == (s["lr"] == 0.1) and (s["val_error"] is None) == s["diverged"]
    for row in made["rows"]:
        if row["method"] in grid.SGD_METHODS:
            assert row["lr"] == 0.05  # the rate that did not diverge
            assert row["diverged"] == (row["method"] == "from scratch, 4x steps")
            if row["diverged"]:
                assert row["test_error"] == 0.5  # chance for two classes


def test_fine_tuning_with_bn_in_eval_mode_trains_everything_but_keeps_the_statistics(grid):
    source = rt.cifar_resnet(8, 2)
    for norm in source.modules():  # statistics a training step would visibly change
        if isinstance(norm, torch.nn.BatchNorm2d):
            norm.running_mean.fill_(5.0)
    data = two_classes(4, 0)
    for method, moves in (("fine-tune", True), ("fine-tune, BN eval", False)):
        model = grid.new_model(method, source, 2, seed=0)
        assert all(p.requires_grad for p in model.parameters())
        before = copy.deepcopy(model.state_dict())
        rt.transfer.train_target(model, data.tensors, data.tensors, steps=3, lr=0.1)
        after = model.state_dict()
        stats = [k for k in before if k.endswith("running_mean")]
        assert all(not torch.equal(before[k], after[k]) for k in stats) == moves, method
        assert not torch.equal(before["conv1.weight"], after["conv1.weight"])  # the body trains


def test_the_validation_split_holds_out_the_last_images_of_each_class(grid):
    labels = torch.tensor([0, 1, 1, 0, 0, 1, 1])
    images = torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1).expand(7, 3, 1, 1)
    data = rt.data.ImageSet(images.contiguous(), labels, ("a", "b"), "hand-made")
    grid.VAL_PER_CLASS = 1  # the fixture restores it
    (val_x, val_y), (pool_x, pool_y) = grid.split_validation(data)
    assert val_x[:, 0].flatten().tolist() == [4, 6] and val_y.tolist() == [
        0,
        1,
    ]  # each class's last
    assert pool_x[:, 0].flatten().tolist() == [0, 1, 2, 3, 5]  # the others, in source order


# --- the stored grid, book/results/transfer_grid.json ------------------------------------------

STORED = SCRIPT.with_name("transfer_grid.json")
METHODS = ("chance", "pixels", "linear probe", "linear probe, AdaBN", "fine-tune",
           "fine-tune, BN eval", "from scratch", "from scratch, 4x steps")  # fmt: skip
TEST_IMAGES = {"cifar5": 5_000, "fashion_mnist": 10_000}  # each target's whole test split


def test_the_stored_grid_is_complete_matched_and_chosen_on_validation():
    grid = script()
    stored = json.loads(STORED.read_text())
    assert not any(c.endswith("+dirty") for c in stored["git_commits"])
    keys = [(r["target"], r["method"], r["labels_per_class"], r["seed"]) for r in stored["rows"]]
    # The near target at every budget; the far one at the budgets made so far (the grid
    # resumes), each of them whole: every method and seed.
    made = sorted({(t, k) for t, _, k, _ in keys})
    assert {("cifar5", k) for k in grid.BUDGETS} <= set(made)
    assert sorted(keys) == sorted((t, m, k, s) for t, k in made for m in METHODS
                                  for s in grid.SEEDS)  # fmt: skip
    for row in stored["rows"]:
        target, method, k = row["target"], row["method"], row["labels_per_class"]
        assert row["test_images"] == TEST_IMAGES[target] and 0 <= row["test_error"] <= 1
        if method == "chance":
            assert row["test_error"] == pytest.approx({"cifar5": 0.8, "fashion_mnist": 0.9}[target])
        if method in grid.SGD_METHODS:  # matched steps: each budget's draw is whole batches
            assert row["steps"] == grid.STEPS[k] * (4 if method.endswith("4x steps") else 1)
            key = (target, grid.CHOSEN_BY[method], k)
            tried = [s for s in stored["selection"]
                     if (s["target"], s["method"], s["labels_per_class"]) == key]  # fmt: skip
            assert sorted(s["lr"] for s in tried) == sorted(grid.LRS)
            assert row["lr"] == grid.best_lr(tried)


@pytest.mark.slow
def test_the_stored_grids_linear_fits_give_their_recorded_errors_again():
    grid = script()  # its own validation split: the draws come from the pool it leaves
    # Oracle: the rows' errors, re-computed here from the source's weights and the data: the
    # near target's pixel and probe fits at 10 labels per class, each draw, with the recorded
    # penalty. Kernels differ across CPUs: the count may differ by 3 images of 5,000.
    stored = json.loads(STORED.read_text())
    source = rt.results.load(grid.SOURCE).model()
    train, test = grid.targets(["cifar5"])["cifar5"]
    _, pool = grid.split_validation(train)
    stats = {"mean": rt.data.CIFAR10_MEAN, "std": rt.data.CIFAR10_STD}
    test_features = rt.extract_features(source, test, **stats)
    for seed in grid.SEEDS:
        draw = rt.data.sample_per_class(pool[1], 10, seed, 5)
        images, labels = pool[0][draw], pool[1][draw]
        inputs = {"pixels": (images.flatten(1).float() / 255, test.images.flatten(1).float() / 255),
                  "linear probe": (rt.extract_features(source, (images, labels), **stats),
                                   test_features)}  # fmt: skip
        for method, (x, test_x) in inputs.items():
            (row,) = [r for r in stored["rows"] if (r["target"], r["method"], r["labels_per_class"],
                      r["seed"]) == ("cifar5", method, 10, seed)]  # fmt: skip
            head = rt.fit_linear_probe(x, labels, 5, weight_decay=row["weight_decay"])
            with torch.no_grad():
                wrong = int((head(test_x).argmax(1) != test.labels).sum())
            assert abs(wrong - round(row["test_error"] * len(test))) <= 3, (method, seed, wrong)
