"""Companion package of the course "ResNet, built and tested".

The models (`resnet`, `cifar_resnet`, …), their parts (`BasicBlock`, `make_stage`, …), their
measures (`count_parameters`, `count_macs`, …), pretrained weights, data (`rt.data`), training
(`fit`, `TrainConfig`, `rt.scale()`), the reference runs (`rt.results`), plots (`rt.plot`) and
exercise checks (`rt.exercises`), importable as `import resnet_tutorial as rt`.

`rt.plot` and `rt.exercises` are imported on first use, so that `import resnet_tutorial` does
not import matplotlib.
"""

import importlib

from . import blocks, checkpoint, config, data, measure, results, train, transfer
from .blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ZeroPadShortcut,
    conv1x1,
    conv3x3,
    make_shortcut,
)
from .checkpoint import seed_everything
from .config import TrainConfig, default_device, recipe, scale
from .measure import (
    count_macs,
    count_parameters,
    gradient_norms,
    response_stds,
    summary,
    trace_shapes,
)
from .models import (
    CIFAR_DEPTHS,
    DEPTHS,
    ResNet,
    cifar_plain,
    cifar_resnet,
    make_stage,
    plain,
    resnet,  # the builder: after this import `rt.resnet` is it, not the module
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    wide_resnet50_2,
)
from .results import glue
from .train import History, NonFiniteLossError, evaluate, fit, predict
from .transfer import (
    extract_features,
    fit_linear_probe,
    freeze,
    load_pretrained_cifar,
    load_pretrained_imagenet,
    model_parts,
    parameter_groups,
    reestimate_bn,
    replace_head,
    unfreeze,
)

__version__ = "0.1.0"

_LAZY = ("plot", "exercises")


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)  # now also an attribute of rt
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
