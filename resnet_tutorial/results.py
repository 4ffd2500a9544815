"""The book's reference runs: real trainings too long for CI, stored in `book/results/`.

Each run is `<name>.json` (curves, final test error, config, provenance) and `<name>.pt` (the
final weights), written by `python -m resnet_tutorial ... --result book/results/<name>.json`
(`make results`). In a checkout of the repository they are read from `book/results/`; elsewhere
(Colab, a pip install) they are downloaded once from the repository into
`~/.cache/resnet_tutorial/results/`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_tutorial._util import atomic_save
from resnet_tutorial.models import cifar_plain, cifar_resnet
from resnet_tutorial.train import History, evaluate

RESULTS_URL = (
    "https://raw.githubusercontent.com/resnet-built-and-tested/resnet-built-and-tested/main/"
    "book/results/"
)
# book/results/ beside the package, in a checkout of the repository
CHECKOUT = Path(__file__).resolve().parent.parent / "book" / "results"
MODEL_NAME = re.compile(r"cifar_(resnet|plain|preact_resnet)(\d+)")  # the models a run can name
MAX_WEIGHTS_BYTES = 4_000_000  # the largest weight file the repository takes


def build_model(name: str, num_classes: int = 10, *, zero_init_residual: bool = False) -> nn.Module:
    """The model a run's name stands for: `cifar_resnetN` (option-A shortcuts), `cifar_plainN`
    (no shortcuts) or `cifar_preact_resnetN` (`cifar_resnetN` with pre-activation blocks,
    He et al. 2016b), N = 6n + 2."""
    match = MODEL_NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"unknown model {name!r}: use cifar_resnetN, cifar_plainN or cifar_preact_resnetN "
            "with N = 6n + 2 (20, 32, 44, 56, 110, ...)"
        )
    kind, depth = match.group(1), int(match.group(2))
    if kind == "plain":
        return cifar_plain(depth, num_classes, zero_init_residual=zero_init_residual)
    return cifar_resnet(depth, num_classes, preact=kind == "preact_resnet",
                        zero_init_residual=zero_init_residual)  # fmt: skip


@dataclass(frozen=True)
class Result:
    """One reference run: its name, the JSON's fields and its curves as a `History`."""

    name: str
    fields: dict[str, Any]
    history: History
    folder: str | os.PathLike | None = None

    @property
    def final_test_error(self) -> float:
        return self.fields["final_test_error"]

    @property
    def data_source(self) -> str:
        """Where the training images came from (older runs store a string, newer ones a dict
        with the source relative to the data root and a hash of the images)."""
        source = self.fields["data_source"]
        return source["source"] if isinstance(source, dict) else source

    @property
    def hours(self) -> float:
        return self.fields["total_seconds"] / 3600

    def provenance(self) -> str:
        """Where and how the run was made, for a figure's caption."""
        f = self.fields
        config = f["config"]
        commit = (f["git_commit"] or "unknown commit")[:7]
        count = f["threads"]
        threads = f" ({count} thread{'s' if count != 1 else ''})" if f["device"] == "cpu" else ""
        return (
            f"{f['device_name']}{threads}, {config['precision']} training, fp32 test, "
            f"{self.hours:.1f} h, torch {f['torch']}, commit {commit}"
        )

    def model(self) -> nn.Module:
        """The trained network: built from the JSON's model name, the weights loaded strictly."""
        model = build_model(self.fields["model"], len(self.fields.get("classes", range(10))))
        weights = _file(f"{self.name}.pt", self.folder)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return model.eval()


def names(folder: str | os.PathLike | None = None) -> list[str]:
    """The names of the reference runs in the checkout's `book/results/` (or `folder`)."""
    return sorted(
        p.stem for p in Path(folder or CHECKOUT).glob("*.json") if p.with_suffix(".pt").exists()
    )


def load(name: str, folder: str | os.PathLike | None = None) -> Result:
    """The run `name` (e.g. "fast_resnet20_seed0"): from `folder` if given (your own runs, written
    with `--result <folder>/<name>.json`), else from the checkout or the repository."""
    fields = json.loads(_file(f"{name}.json", folder).read_text())
    return Result(name, fields, History.from_dict(fields["history"]), folder)


def load_table(name: str, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """A reference result that is no training run, as its JSON: chapter 6's "transfer_grid"."""
    return json.loads(_file(f"{name}.json", folder).read_text())


def _file(file_name: str, folder: str | os.PathLike | None = None) -> Path:
    if folder is not None:
        return Path(folder) / file_name
    local = CHECKOUT / file_name
    if local.exists():
        return local
    cached = Path.home() / ".cache" / "resnet_tutorial" / "results" / file_name
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(cached.name + ".part")
        try:
            urllib.request.urlretrieve(RESULTS_URL + file_name, partial)
            os.replace(partial, cached)  # never a half-downloaded file under the final name
        except OSError as error:
            raise FileNotFoundError(
                f"no reference run file {file_name!r}: not in {CHECKOUT} and not downloadable "
                f"from {RESULTS_URL} ({error}); `make results` makes the runs"
            ) from error
    return cached


def store_half(name: str, test: Any, folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """Rewrite the weights of run `name` in float16, for a run whose fp32 weights are larger than
    `MAX_WEIGHTS_BYTES` (ResNet-110: 6.9 MB), and record what the stored weights score on `test`
    (the images the run tested on) as the JSON's `stored_weights`. The run's own errors
    (`final_test_error`, its curves) stay those of the fp32 weights it ended with."""
    json_path = Path(folder or CHECKOUT) / f"{name}.json"
    weights = json_path.with_suffix(".pt")
    fields = json.loads(json_path.read_text())
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if any(v.dtype == torch.float16 for v in state.values()):
        raise ValueError(f"{weights} is already float16")
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    model = build_model(fields["model"])
    model.load_state_dict(half)  # the float16 values, computed in float32
    norm = {"mean": fields["config"]["mean"], "std": fields["config"]["std"], "device": "cpu"}
    fields["stored_weights"] = {
        "dtype": "float16",
        "test_error": evaluate(model, test, **norm)[1],
        "test_error_flip": evaluate(model, test, flip=True, **norm)[1],
    }
    atomic_save(half, weights)
    json_path.write_text(json.dumps(fields, indent=1) + "\n")
    return fields["stored_weights"]


def glue(name: str, value: Any) -> None:
    """Hand `value` to the book's text as `{glue:text}`name``: myst-nb's `glue(name, value,
    display=False)` where myst-nb is installed (the book's build), nothing elsewhere (Colab), so
    that a chapter runs where myst-nb is not installed."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return
    myst_glue(name, value, display=False)
