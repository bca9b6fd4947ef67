"""Model registry: ``list_models()``, ``build_model(name, **kw)``, ``get_model_meta(name)``.

Importing this package registers every architecture (one small file each, listed below).
"""

from segstyle.models.registry import ModelMeta, build_model, get_model_meta, list_models, register_model

# Architecture modules register themselves on import: one line per file.
from segstyle.models import (  # noqa: E402,F401
    dcgan, deeplabv3, deeplabv3plus, fcn, fused_region_style, pspnet, segnet, transformer_net, unet, unet_binary,
)

__all__ = ["ModelMeta", "build_model", "get_model_meta", "list_models", "register_model"]
