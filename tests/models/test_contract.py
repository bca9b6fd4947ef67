"""The contract every registered network keeps, checked over the whole registry (one harness, as
segmentation_models_pytorch's ``tests/models/base`` does): a new entry is tested by registering it.

Per network, from its registry metadata alone: it builds offline; it takes its declared input kind
(0..1 RGB images or N(0, 1) noise); its output has its task's shape (segmentation ``{"out": (N, C,
H, W)}`` at the input's size, style the input's shape, the generator 64x64 images, the
discriminator one logit per image); eval mode is deterministic and batch-independent (a network
whose eval output depends on the other images in the batch, e.g. BatchNorm left in train mode,
fails); and a checkpoint round trip through :mod:`segstyle.models.checkpoint` reproduces it exactly.
"""

from __future__ import annotations

import pytest
import torch

from segstyle.models import build_model, get_model_meta, list_models
from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

ALL = list_models()


def _input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    meta = get_model_meta(name)
    g = torch.Generator().manual_seed(seed)
    if meta.input_kind == "noise":
        return torch.randn(batch, meta.noise_dim, generator=g)
    side = 64  # the DCGAN discriminator's fixed size; a multiple of every size_divisor here
    assert side % max(1, meta.size_divisor) == 0
    return torch.rand(batch, 3, side, side - 8 * (name != "dcgan_discriminator"), generator=g)


def _out(y) -> torch.Tensor:
    return y["out"] if isinstance(y, dict) else y


@pytest.fixture(scope="module", params=ALL)
def net(request):
    torch.manual_seed(0)
    return request.param, build_model(request.param, pretrained=False).eval()


def test_the_registry_covers_every_task():
    assert {get_model_meta(n).task for n in ALL} == {"segmentation", "style", "generation"}
    assert len(ALL) >= 7


@pytest.mark.parametrize("name", ALL)
def test_metadata_is_complete(name):
    meta = get_model_meta(name)
    assert meta.name == name and meta.description
    assert len(meta.mean) == 3 and len(meta.std) == 3 and all(s > 0 for s in meta.std)
    assert meta.input_kind in ("image", "noise")
    if meta.input_kind == "noise":
        assert meta.noise_dim and meta.noise_dim > 0
        if meta.deployable:  # its engine profile cannot come from params (an image profile)
            assert meta.engine_profile and set(meta.engine_profile) == {"min", "opt", "max"}


def test_output_has_the_tasks_shape(net):
    name, model = net
    meta = get_model_meta(name)
    x = _input(name, 2)
    with torch.no_grad():
        y = model(x)
    out = _out(y)
    assert torch.isfinite(out).all()
    if meta.task == "segmentation":
        assert isinstance(y, dict) and out.shape[:1] == (2,) and out.shape[-2:] == x.shape[-2:]
        # one channel: the binary task's foreground logit (unet_binary); else one logit per class
        assert out.shape[1] == model_kwargs(name).get("num_classes", out.shape[1]) >= 1
    elif meta.task == "style":
        assert out.shape == x.shape
    elif meta.input_kind == "noise":  # the DCGAN generator: tanh images
        assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    else:  # the discriminator: one real/fake logit per image
        assert out.reshape(2, -1).shape[1] == 1


def model_kwargs(name: str) -> dict:
    return dict(get_model_meta(name).default_kwargs)


def test_eval_is_deterministic_and_batch_independent(net):
    name, model = net
    x = _input(name, 3, seed=1)
    with torch.no_grad():
        a, b = _out(model(x)), _out(model(x))
        single = torch.cat([_out(model(x[i:i + 1])) for i in range(3)])
    assert torch.equal(a, b)
    torch.testing.assert_close(single, a, atol=1e-4, rtol=1e-4)


def test_checkpoint_round_trip_reproduces_the_network(net, tmp_path):
    name, model = net
    ck = {"model": name, "model_kwargs": model_kwargs(name), "state_dict": model.state_dict(), "params": {},
          "data_version": "test"}
    path = save_checkpoint(tmp_path / f"{name}.pt", ck)
    again = model_from_checkpoint(load_checkpoint(path, model=name))
    x = _input(name, 1, seed=2)
    with torch.no_grad():
        assert torch.equal(_out(again(x)), _out(model(x)))
    assert not again.training
