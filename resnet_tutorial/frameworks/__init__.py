"""The book's ResNet in Keras 3 and in PyTorch Lightning, ported exactly (appendix).

Keras, Lightning and torchmetrics are optional (`pip install "resnet_tutorial[frameworks]"`):
each is imported inside the functions that need it, so neither `import resnet_tutorial` nor
`import resnet_tutorial.frameworks` does.
"""

from .keras_models import (
    TORCH_EPSILON,
    TORCH_MOMENTUM,
    KerasOptions,
    import_keras,
    keras_basic_block,
    keras_bn,
    keras_bottleneck,
    keras_cifar_resnet,
    keras_conv,
    keras_name,
    keras_resnet,
    keras_shortcut,
)
from .keras_models import keras_network as keras_network  # the appendix shows its source
from .keras_porting import (
    keras_applications_name,
    keras_image_format,
    keras_logits,
    keras_parameters,
    port_weights,
)
from .keras_porting import port_layer as port_layer  # the appendix shows its source
from .lightning_module import (
    LIGHTNING_PRECISION,
    EpochBatches,
    fit_step_losses,
    lightning_fit,
    lit_resnet_class,
    quiet_lightning,
)

__all__ = [
    "TORCH_EPSILON",
    "TORCH_MOMENTUM",
    "KerasOptions",
    "import_keras",
    "keras_basic_block",
    "keras_bn",
    "keras_bottleneck",
    "keras_cifar_resnet",
    "keras_conv",
    "keras_name",
    "keras_resnet",
    "keras_shortcut",
    "keras_applications_name",
    "keras_image_format",
    "keras_logits",
    "keras_parameters",
    "port_weights",
    "LIGHTNING_PRECISION",
    "EpochBatches",
    "fit_step_losses",
    "lightning_fit",
    "lit_resnet_class",
    "quiet_lightning",
]
