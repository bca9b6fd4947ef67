"""Typed view of ``params.yaml`` (the only place hyper-parameters live).

``load_params()`` validates the whole file with pydantic before any stage runs: a wrong type, an
unknown key or an unknown profile is one :class:`~segstyle.core.errors.UsageError` line naming the key.
Profiled sections (``augment``, ``train``, ``style``) hold one block per profile; the returned
:class:`Params` exposes the block of the active profile, so stage code never sees profiles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segstyle.core.errors import UsageError, first_line

PROFILES = ("demo", "full")
DATASETS = ("voc", "pets")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitNames(Strict):
    train: str
    val: str


class DataConfig(Strict):
    root: str = "data"
    pets_mode: Literal["trimap", "binary"] = "trimap"
    voc_mode: Literal["classes", "person"] = "classes"
    splits: dict[Literal["voc", "pets"], SplitNames]


class AugmentConfig(Strict):
    base_size: int = Field(gt=0)
    crop_size: int = Field(gt=0)
    scale: tuple[float, float]
    hflip_prob: float = Field(ge=0, le=1)
    color_jitter: float = Field(ge=0)


class TrainConfig(Strict):
    models: dict[Literal["voc", "pets"], str]
    pretrained: bool
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    workers: int = Field(ge=0)
    optimizer: Literal["sgd", "adamw"]
    lr: float = Field(gt=0)
    momentum: float = Field(ge=0)
    weight_decay: float = Field(ge=0)
    aux_loss: bool
    aux_weight: float = Field(ge=0)
    grad_clip: float = Field(ge=0)
    amp: bool
    channels_last: bool
    # validate (and redraw val.png) every N epochs and after the last one; checkpoints stay per epoch.
    # Validation runs at natural size and can cost as much as the epoch's training on small splits.
    val_every: int = Field(default=1, gt=0)


class EvaluateConfig(Strict):
    overlays: int = Field(ge=0)


class StyleConfig(Strict):
    style_image: str
    vgg: Literal["vgg16", "vgg19"]
    pretrained: bool
    image_size: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    epochs: int = Field(gt=0)
    max_images: int = Field(ge=0)
    lr: float = Field(gt=0)
    content_weight: float = Field(ge=0)
    style_weight: float = Field(ge=0)
    tv_weight: float = Field(ge=0)
    colour_weight: float = Field(default=0.0, ge=0)  # sliced-Wasserstein colour term in the style loss; 0: off (the paper's loss)
    sample_every: int = Field(gt=0)
    amp: bool = True
    loss_net: Literal["vgg", "random"] | None = None  # absent: vgg when pretrained, else random filter banks
    network: dict[str, int | bool] = Field(default_factory=dict)  # TransformerNet kwargs; {}: the reference net
    warmup_steps: int = Field(default=0, ge=0)
    style_size: int | None = Field(default=None, gt=0)    # style image's short side; None: image_size (fast_neural_style --style-size)
    content_size: int | None = Field(default=None, gt=0)  # content short side before the image_size crop; None: image_size


class GanConfig(Strict):
    """DCGAN training (Radford et al. 2015: Adam 2e-4, beta1 0.5, 64x64)."""

    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    max_images: int = Field(ge=0)
    image_size: Literal[64] = 64
    nz: int = Field(gt=0)
    ngf: int = Field(gt=0)
    ndf: int = Field(gt=0)
    lr: float = Field(gt=0)
    beta1: float = Field(ge=0, lt=1)
    eval_samples: int = Field(ge=0)
    real_label: float = Field(default=1.0, gt=0.5, le=1)    # < 1: one-sided label smoothing (Salimans et al. 2016)
    instance_noise: float = Field(default=0.0, ge=0)        # D-input noise std at the start, annealed to 0


class GatysConfig(Strict):
    vgg: Literal["vgg16", "vgg19"]
    steps: int = Field(gt=0)
    lr: float = Field(gt=0)
    lr_step: int = Field(gt=0)
    lr_gamma: float = Field(gt=0)
    content_weight: float = Field(ge=0)
    style_weight: float = Field(ge=0)
    tv_weight: float = Field(ge=0)
    max_side: int = Field(gt=0)


class CalibrationConfig(Strict):
    """Which training images calibrate an INT8 graph, and how (onnxruntime.quantization methods)."""

    count: int = Field(gt=0)
    size: tuple[int, int]
    method: Literal["minmax", "entropy", "percentile"]
    percentile: float = Field(default=99.999, gt=0, le=100)


class Int8Config(Strict):
    """The INT8 recipe (``segstyle export int8``); the ops of ``fp16_keep_fp32`` stay float too."""

    calibration: CalibrationConfig
    keep_float: dict[str, list[str]] = {}      # network -> node selectors kept float (first:Conv, last:Conv, a name)
    not_deployable: dict[str, str] = {}        # network -> why its INT8 graphs fail (validated every run, not gated)


class ExportConfig(Strict):
    opset: int = Field(ge=17)
    size: tuple[int, int]
    parity_sizes: list[tuple[int, int]]
    fp16_keep_fp32: list[str]
    int8: Int8Config


class EngineProfiles(Strict):
    min: tuple[int, int, int]
    opt: tuple[int, int, int]
    max: tuple[int, int, int]

    @model_validator(mode="after")
    def _ordered(self) -> "EngineProfiles":
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError("engine profiles must satisfy min <= opt <= max in every dimension")
        return self


class EngineConfig(Strict):
    workspace_mb: int = Field(gt=0)
    profiles: EngineProfiles
    timing_cache: str


class PrecisionBounds(Strict):
    min_agreement: float = Field(ge=0, le=100)
    max_delta_miou: float = Field(ge=0)
    min_psnr: float = Field(ge=0)
    logit_tolerance: float = Field(gt=0)


class ValidateConfig(Strict):
    bounds: dict[Literal["fp32", "fp16", "int8"], PrecisionBounds]
    samples: int = Field(gt=0)

    @model_validator(mode="after")
    def _every_precision(self) -> "ValidateConfig":
        missing = [p for p in ("fp32", "fp16", "int8") if p not in self.bounds]
        if missing:
            raise ValueError(f"validate.bounds lacks precision(s): {', '.join(missing)}")
        return self


class EditConfig(Strict):
    """Region-aware stylisation (``segstyle stylize --seg-checkpoint``, the fused graph): which side of
    the segmentation is stylised and how soft its edge is."""

    region: Literal["foreground", "background"] = "foreground"
    feather: float = Field(default=7.0, ge=0)  # Gaussian sigma of the mask edge, pixels


class ParamsFile(Strict):
    """The file as written: profiled sections keyed by profile name."""

    profile: Literal["demo", "full"]
    seed: int
    data: DataConfig
    augment: dict[Literal["demo", "full"], AugmentConfig]
    train: dict[Literal["demo", "full"], TrainConfig]
    evaluate: EvaluateConfig
    style: dict[Literal["demo", "full"], StyleConfig]
    gan: dict[Literal["demo", "full"], GanConfig]
    gatys: GatysConfig
    edit: EditConfig = EditConfig()
    export: ExportConfig
    engine: EngineConfig
    validate_: ValidateConfig = Field(alias="validate")

    @model_validator(mode="after")
    def _every_profile_present(self) -> "ParamsFile":
        for section in ("augment", "train", "style", "gan"):
            missing = [p for p in PROFILES if p not in getattr(self, section)]
            if missing:
                raise ValueError(f"section '{section}' lacks profile(s): {', '.join(missing)}")
        return self


class Params(Strict):
    """Resolved parameters for one profile: what stage code reads."""

    profile: Literal["demo", "full"]
    seed: int
    data: DataConfig
    augment: AugmentConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    style: StyleConfig
    gan: GanConfig
    gatys: GatysConfig
    edit: EditConfig = EditConfig()
    export: ExportConfig
    engine: EngineConfig
    validate_: ValidateConfig = Field(alias="validate")

    def to_dict(self) -> dict:
        """Plain-JSON form stored in checkpoints and ONNX metadata."""
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """Short sha256 of the resolved parameters (traceability for exported artifacts)."""
        from segstyle.core.provenance import params_digest

        return params_digest(self.to_dict())


#: The repository's params.yaml as the package installs it (``params_default.yaml`` is a link to it, so
#: there is one file of parameters): the defaults of a command run where no params.yaml is, e.g. a
#: user who received a checkpoint, or installed the wheel.
BUILTIN_PARAMS = Path(__file__).with_name("params_default.yaml")


def resolve_params(path: str | Path | None = None, profile: str | None = None) -> Params:
    """``path`` when given (it must exist); else ``./params.yaml`` when present; else the built-in
    parameters at the ``demo`` profile (unless ``profile`` says otherwise). So the inference and
    engine commands run from any directory with only their checkpoint or graph, and a checkout's
    own params.yaml still wins wherever it is present."""
    if path is not None:
        return load_params(path, profile)
    if Path("params.yaml").is_file():
        return load_params("params.yaml", profile)
    return load_params(BUILTIN_PARAMS, profile or "demo")


def load_params(path: str | Path = "params.yaml", profile: str | None = None) -> Params:
    """Read and validate ``path``; ``profile`` overrides the file's ``profile`` key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: parameters file not found") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping at the top level")
    if profile is not None:
        if profile not in PROFILES:
            raise UsageError(f"unknown profile '{profile}'; choose one of: {', '.join(PROFILES)}")
        raw = {**raw, "profile": profile}
    try:
        pf = ParamsFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "<top>"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise UsageError(f"{path}: {loc}: {err['msg']}{more}") from None
    p = pf.profile
    return Params.model_validate(
        {
            "profile": p,
            "seed": pf.seed,
            "data": pf.data,
            "augment": pf.augment[p],
            "train": pf.train[p],
            "evaluate": pf.evaluate,
            "style": pf.style[p],
            "gan": pf.gan[p],
            "gatys": pf.gatys,
            "edit": pf.edit,
            "export": pf.export,
            "engine": pf.engine,
            "validate": pf.validate_,
        }
    )


# CLI flag -> dotted params path it overrides (the one place that says what a flag changes)
OVERRIDES = {
    "epochs": "train.epochs",
    "data_root": "data.root",
    "pretrained": "train.pretrained",
    "style_pretrained": "style.pretrained",
}


def apply_overrides(params, **flags: Any):
    """Return a new validated ``Params`` with CLI overrides applied once; ``None`` values are skipped.

    ``flags`` are keyword names of :data:`OVERRIDES` (``epochs=3``) or dotted params paths
    (``**{"train.models.voc": "fcn_resnet18"}``). Returns ``(params, applied)`` where ``applied``
    maps dotted path -> value, for the checkpoint.
    """
    data = params.to_dict()
    applied: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        path = OVERRIDES.get(key, key)
        node = data
        parts = path.split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise UsageError(f"override '{path}' names no parameter")
            node = node[p]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise UsageError(f"override '{path}' names no parameter")
        node[parts[-1]] = value
        applied[path] = value
    try:
        new = Params.model_validate(data)
    except Exception as e:  # pydantic ValidationError: one line
        raise UsageError(f"overrides {applied} make invalid parameters: {first_line(e)}") from None
    return new, applied
