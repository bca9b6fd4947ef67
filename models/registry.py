"""One registry for every network segstyle trains, exports and deploys.

Modelled on torchvision's builders + ``WeightsEnum``: each architecture file registers a builder
with :func:`register_model` and a :class:`ModelMeta` describing what the rest of the pipeline must
know without building it (task, input normalisation, classes, export notes). Tests, the CLI, export
and validation all iterate :func:`list_models` instead of naming models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch.nn as nn

from segstyle.core.errors import SegstyleError

Task = Literal["segmentation", "style", "generation"]
InputKind = Literal["image", "noise"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """What the pipeline knows about a registered model.

    ``mean``/``std`` describe the input normalisation the model applies to 0..1 RGB input *inside*
    its forward (``input_range`` says what the exported graph expects), so ONNX/TensorRT consumers
    feed plain images. ``default_kwargs`` are merged under the caller's kwargs by :func:`build_model`.
    ``weights`` names the torchvision weights used when ``pretrained=True``.

    Deployment differs per network, so each declares it here rather than export code guessing
    from the name:

    - ``input_kind``: ``image`` (N, 3, H, W) 0..1 RGB, or ``noise`` (N, ``noise_dim``) from
      N(0, 1) (the DCGAN generator: its golden inputs are a fixed noise batch, not photos);
    - ``export_size``: the (H, W) an export traces with when the network has a fixed size
      (``None``: params ``export.size``, the graph keeps H/W dynamic);
    - ``engine_profile``: its own TensorRT optimisation profile as ``{"min", "opt", "max"}`` shape
      tuples (without the fixed dims: ``(batch,)`` for noise) or ``None`` for params
      ``engine.profiles``;
    - ``deployable``: ``False`` for networks that only exist to train another (the DCGAN
      discriminator): export-wide checks, benchmarks and the deployment matrix skip them
      (``list_models(deployable=True)``).
    """

    name: str
    task: Task
    builder: Callable[..., nn.Module]
    description: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_range: str = "0..1 float RGB, NCHW"
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    size_divisor: int = 1
    input_kind: InputKind = "image"
    noise_dim: int | None = None
    export_size: tuple[int, int] | None = None
    engine_profile: dict[str, tuple[int, ...]] | None = None
    deployable: bool = True


_REGISTRY: dict[str, ModelMeta] = {}


def register_model(name: str, *, task: Task, description: str, **meta: Any) -> Callable:
    """Decorator: register ``builder(**kwargs) -> nn.Module`` under ``name``."""

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = ModelMeta(name=name, task=task, builder=builder, description=description, **meta)
        return builder

    return wrap


def list_models(task: Task | None = None, *, deployable: bool | None = None,
                input_kind: InputKind | None = None) -> list[str]:
    """Registered model names, sorted; optionally only one task, only (non-)deployable ones, or
    only those taking one input kind (``input_kind="image"``: every network fed photos)."""
    return sorted(n for n, m in _REGISTRY.items()
                  if (task is None or m.task == task)
                  and (deployable is None or m.deployable == deployable)
                  and (input_kind is None or m.input_kind == input_kind))


def get_model_meta(name: str) -> ModelMeta:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SegstyleError(f"unknown model '{name}'; registered: {', '.join(list_models())}") from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``kwargs`` override its ``default_kwargs``.

    Builders take ``pretrained: bool``; when weights cannot be loaded (offline) they raise a
    one-line :class:`SegstyleError` rather than silently training from scratch.
    """
    meta = get_model_meta(name)
    return meta.builder(**{**meta.default_kwargs, **kwargs})
