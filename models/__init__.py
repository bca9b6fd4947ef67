"""Model registry: ``list_models()``, ``build_model(name, **kw)``, ``get_model_meta(name)``.

Importing this package registers every architecture (one small file each, listed below).
"""

from models.registry import ModelMeta, build_model, get_model_meta, list_models, register_model

# Architecture modules register themselves on import: one line per file.
import models.deeplabv3  # noqa: E402,F401
import models.fcn  # noqa: E402,F401
import models.unet  # noqa: E402,F401
from models import transformer_net  # noqa: E402,F401  (style)

__all__ = ["ModelMeta", "build_model", "get_model_meta", "list_models", "register_model"]
