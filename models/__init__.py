"""Model registry: ``list_models()``, ``build_model(name, **kw)``, ``get_model_meta(name)``.

Importing this package registers every architecture (one small file each).
"""

from models.registry import ModelMeta, build_model, get_model_meta, list_models, register_model

# Architecture modules register themselves on import; keep this list in sync with the files.
from models import fcn, unet, deeplabv3, transformer_net  # noqa: E402,F401  (registration)

__all__ = ["ModelMeta", "build_model", "get_model_meta", "list_models", "register_model"]
