"""Every figure the book draws, in one style: titled, labelled with units, colour-blind safe.

Each function takes plain tensors, lists and dicts (training histories may be ``History``
objects or dicts with the same keys), draws inside :func:`style` so the caller's matplotlib
settings are left as they were, and returns the :class:`~matplotlib.figure.Figure`.
Figures are built without pyplot: a notebook shows each one once (as the cell's value), and
nothing piles up in pyplot's list of open figures. Functions that draw on one axis accept
``ax=`` to draw into a figure of your own.

Error rates and accuracies are fractions in [0, 1], as ``History`` stores them; they are
drawn in percent.

Arguments are checked only where a mistake would draw a wrong figure without a word: a
percentage where a fraction belongs, a value <= 0 on a log axis (matplotlib leaves it out), a
reference or spread under a name that is not drawn, labels or augmented images that do not
match the images one for one, a block kind that does not exist. Other mistakes are left to
the clear errors of torch, numpy and matplotlib.

`rt.plot.<name>` reaches every figure; one module per concern:

- `_style`: the palette and settings (`PALETTE`, `STYLE`, `style()`) and what the figures
  share: making a figure or taking the caller's axis, the log axis, the checks above;
- `training`: a run and its results (`training_curves`, `paper_curves`, `time_to_error`,
  `lr_schedule`, `error_vs_depth`, `accuracy_vs_labels`) and what flows through depth
  (`gradient_norms`, `layer_responses`);
- `images`: pictures (`image_grid`, `augmentation`, `feature_maps`) and a classifier's
  `confusion_matrix`;
- `architecture`: costs (`bars`, `cost_bars`), the shape through the network (`shape_trace`)
  and the building block as the paper draws it (`residual_block_diagram`).
"""

from ._style import PALETTE, SMALL_SIZE, STYLE, TEXT_SIZE, style
from .architecture import bars, cost_bars, residual_block_diagram, shape_trace
from .images import augmentation, confusion_matrix, feature_maps, image_grid
from .training import (
    accuracy_vs_labels,
    error_vs_depth,
    gradient_norms,
    layer_responses,
    lr_schedule,
    paper_curves,
    time_to_error,
    training_curves,
)

__all__ = [
    "PALETTE",
    "STYLE",
    "TEXT_SIZE",
    "SMALL_SIZE",
    "style",
    "training_curves",
    "paper_curves",
    "time_to_error",
    "lr_schedule",
    "error_vs_depth",
    "accuracy_vs_labels",
    "gradient_norms",
    "layer_responses",
    "image_grid",
    "augmentation",
    "feature_maps",
    "confusion_matrix",
    "bars",
    "cost_bars",
    "shape_trace",
    "residual_block_diagram",
]
