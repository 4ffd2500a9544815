"""Checks for the exercises: the learner's code next to the package's own, with hints.

One module per chapter, and `appendix_frameworks` (Keras imported inside its check). Each check
inspects the learner's structure and compares outputs with rt's under the same weights, so that
each common mistake gets its own hint; see `_common` for the report. Every check runs in well
under a second on a CPU and leaves the random state and the learner's model as they were.
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
