"""Every figure the book draws, in one style: titled, labelled with units, colour-blind safe.

Each function takes plain tensors, lists and dicts (or ``History`` objects), draws inside
:func:`style`, and returns a :class:`~matplotlib.figure.Figure` built without pyplot, so that a
notebook shows it once and nothing piles up in pyplot's open figures; ``ax=`` draws into a
figure of your own. Error rates are fractions in [0, 1], as ``History`` stores them, drawn in
percent. Arguments are checked only where a mistake would draw a wrong figure without a word
(a percentage for a fraction, a value <= 0 on a log axis, a name that is not drawn).
"""

from ._style import PALETTE, SMALL_SIZE, STYLE, TEXT_SIZE, style
from .architecture import bars, cost_bars, residual_block_diagram, shape_trace
from .images import augmentation, confusion_matrix, feature_maps, image_grid
from .training import (
    error_vs_depth,
    error_vs_labels,
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
    "error_vs_labels",
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
