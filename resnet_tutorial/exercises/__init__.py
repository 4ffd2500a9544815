"""Checks for the exercises: the learner's code next to the package's own, with hints.

One module per chapter (`ch01` … `ch06`), and `appendix_frameworks` for the appendix on Keras
and Lightning (Keras imported inside its check); `rt.exercises.check_…` reaches every check.
Each `check_*` runs the learner's implementation beside the package's reference (an oracle) on
random inputs, after copying the same weights across, and inspects its structure, so that each
common mistake gets its own hint rather than a bare "outputs differ". A pass prints one line
starting with "✓" that says what was verified; a failure raises `AssertionError` that says what
is wrong and ends with "Hint: …". Every check runs in well under a second on a CPU, and leaves
the global random state and the learner's model as they were.
"""

from .appendix_frameworks import check_keras_basic_block
from .ch01 import check_basic_block, check_plain_vs_residual, check_residual
from .ch02 import check_shortcut, check_shortcut_parameters
from .ch03 import check_bottleneck, check_bottleneck_macs
from .ch04 import check_cifar_resnet, check_resnet, check_stage
from .ch05 import check_eval_mode, check_lr_schedule, check_weight_decay_groups
from .ch06 import check_frozen, check_new_head, check_optimizer_params

__all__ = [
    "check_residual",
    "check_basic_block",
    "check_plain_vs_residual",
    "check_shortcut_parameters",
    "check_shortcut",
    "check_bottleneck",
    "check_bottleneck_macs",
    "check_resnet",
    "check_cifar_resnet",
    "check_stage",
    "check_lr_schedule",
    "check_weight_decay_groups",
    "check_eval_mode",
    "check_frozen",
    "check_new_head",
    "check_optimizer_params",
    "check_keras_basic_block",
]
