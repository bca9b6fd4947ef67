"""Every registered segmentation model: shapes at odd sizes, backward, determinism, checkpoints, weights."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from segstyle.models import build_model, get_model_meta, list_models
from segstyle.core.errors import SegstyleError

SEG_MODELS = list_models(task="segmentation")


def test_registry_has_the_three_seeds():
    assert {"fcn_resnet18", "unet_mobilenetv2", "deeplabv3_mobilenet_v3_large"} <= set(SEG_MODELS)


@pytest.mark.parametrize("name", SEG_MODELS)
@pytest.mark.parametrize("size", [(33, 47), (64, 64), (71, 50)])
def test_forward_shape_any_size(name, size):
    torch.manual_seed(0)
    net = build_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 3, *size))
    assert set(out) == {"out"}
    assert out["out"].shape == (2, 5, *size)
    assert torch.isfinite(out["out"]).all()


@pytest.mark.parametrize("name", SEG_MODELS)
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    net = build_model(name, num_classes=4, aux_loss=True).train()
    out = net(torch.rand(2, 3, 45, 61))
    target = torch.randint(0, 4, (2, 45, 61))
    target[:, :5] = 255
    loss = sum(torch.nn.functional.cross_entropy(v, target, ignore_index=255) for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    if "aux" in out:  # only models with an auxiliary head return it
        assert out["aux"].shape == out["out"].shape


def test_deeplab_aux_head_is_optional():
    with torch.no_grad():
        assert set(build_model("deeplabv3_mobilenet_v3_large", num_classes=3, aux_loss=True).eval()(
            torch.rand(1, 3, 40, 40))) == {"out", "aux"}
        assert set(build_model("deeplabv3_mobilenet_v3_large", num_classes=3).eval()(
            torch.rand(1, 3, 40, 40))) == {"out"}


@pytest.mark.parametrize("name", SEG_MODELS)
def test_eval_is_deterministic_and_normalises_inside(name):
    torch.manual_seed(0)
    net = build_model(name, num_classes=3).eval()
    x = torch.rand(1, 3, 37, 41)
    with torch.no_grad():
        a, b = net(x)["out"], net(x)["out"]
    assert torch.equal(a, b)
    meta = get_model_meta(name)
    assert meta.task == "segmentation" and meta.input_range.startswith("0..1")
    assert torch.allclose(net.normalize.mean.flatten(), torch.tensor(meta.mean))
    assert torch.allclose(net.normalize.std.flatten(), torch.tensor(meta.std))


@pytest.mark.parametrize("name", SEG_MODELS)
def test_checkpoint_round_trip(name, tmp_path):
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    torch.manual_seed(0)
    net = build_model(name, num_classes=3).eval()
    # Move BatchNorm statistics off their defaults so a load that skipped buffers would show.
    with torch.no_grad():
        net.train()(torch.rand(2, 3, 48, 48))
    net.eval()
    kwargs = {"num_classes": 3, "aux_loss": False}
    save_checkpoint(tmp_path / "c.pt", {"model": name, "model_kwargs": kwargs, "state_dict": net.state_dict(),
                                        "params": {}, "data_version": "x"})
    ckpt = load_checkpoint(tmp_path / "c.pt", task="segmentation", model=name)
    net2 = model_from_checkpoint(ckpt)
    x = torch.rand(1, 3, 50, 34)
    with torch.no_grad():
        assert torch.equal(net(x)["out"], net2(x)["out"])


def test_fcn_upsampler_starts_bilinear():
    """d2l: the x32 transposed convolution is initialised to bilinear interpolation."""
    net = build_model("fcn_resnet18", num_classes=2).eval()
    x = torch.rand(1, 2, 4, 4)
    up = net.upsample(x)
    ref = torch.nn.functional.interpolate(x, scale_factor=32, mode="bilinear", align_corners=False)
    inner = (slice(None), slice(None), slice(32, 96), slice(32, 96))  # away from the zero-padded border
    assert torch.allclose(up[inner], ref[inner], atol=1e-5)


def test_unet_taps_match_the_tutorial_layers():
    """block_1/3/6/13_expand_relu and block_16_project: strides 2..32, channels 96/144/192/576/320."""
    from segstyle.models.unet import LAST, TAPS

    net = build_model("unet_mobilenetv2", num_classes=3)
    assert [net.encoder[i].conv[0].out_channels for i in TAPS] == [96, 144, 192, 576]
    assert net.encoder[LAST].out_channels == 320


def test_registry_has_the_source_materials_other_networks():
    assert {"segnet", "pspnet", "deeplabv3plus", "unet_binary"} <= set(SEG_MODELS)
    assert get_model_meta("unet_binary").default_kwargs["num_classes"] == 1  # the binary task's one logit


WITH_WEIGHTS = [n for n in SEG_MODELS if get_model_meta(n).weights is not None]
PRETRAINED_KWARGS = {"segnet": {"width": 1.0}}  # its default is a quarter-width VGG16-BN, which has no weights


def test_segnet_pretrained_needs_the_full_width():
    with pytest.raises(SegstyleError) as e:
        build_model("segnet", pretrained=True)
    assert "\n" not in str(e.value) and "width 1.0" in str(e.value) and "--no-pretrained" in str(e.value)


@pytest.mark.parametrize("name", sorted(set(SEG_MODELS) - set(WITH_WEIGHTS)))
def test_no_weights_means_pretrained_is_one_line(name):
    """A network torchvision has no weights for (the original U-Net) refuses ``pretrained=True``
    instead of training from random weights the user asked not to have."""
    with pytest.raises(SegstyleError) as e:
        build_model(name, pretrained=True)
    assert "\n" not in str(e.value) and "no pretrained weights" in str(e.value) and "--no-pretrained" in str(e.value)


@pytest.mark.parametrize("name", WITH_WEIGHTS)
def test_weights_names_are_real_torchvision_enums(name):
    from torchvision.models import get_weight

    w = get_weight(get_model_meta(name).weights)
    assert w.url.startswith("https://download.pytorch.org/")
    assert w.meta["categories"]


@pytest.mark.parametrize("name", WITH_WEIGHTS)
@pytest.mark.parametrize("num_classes", [21, 3])
def test_pretrained_offline_fails_in_one_line(name, num_classes, monkeypatch, tmp_path):
    import torchvision.models._api as tv_api

    def offline(url, *a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)
    with pytest.raises(SegstyleError) as e:
        build_model(name, num_classes=num_classes, pretrained=True, **PRETRAINED_KWARGS.get(name, {}))
    msg = str(e.value)
    assert "\n" not in msg and "--no-pretrained" in msg and "URLError" in msg
    assert "hub/checkpoints" in msg


def test_pretrained_loads_through_the_weights_api(monkeypatch):
    """With the download answered locally, the ImageNet body really ends up in the model."""
    import torchvision.models._api as tv_api
    from torchvision.models import resnet18

    ref = resnet18(weights=None)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda url, *a, **k: ref.state_dict())
    net = build_model("fcn_resnet18", num_classes=3, pretrained=True)
    assert torch.equal(net.body[0].weight, ref.conv1.weight)


@pytest.mark.parametrize("name, first_conv", [
    ("segnet", lambda n: n.encoder[0][0].weight), ("pspnet", lambda n: n.body[0].weight),
    ("deeplabv3plus", lambda n: n.encoder.conv1.weight)])
def test_new_encoders_load_their_imagenet_weights(name, first_conv, monkeypatch):
    """segnet's VGG16-BN, pspnet's and deeplabv3plus's ResNet-18 (smp's encoder keys are torchvision's)."""
    import torchvision.models as tvm
    import torchvision.models._api as tv_api

    ref = (tvm.vgg16_bn if name == "segnet" else tvm.resnet18)(weights=None)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", lambda url, *a, **k: ref.state_dict())
    net = build_model(name, num_classes=3, pretrained=True, **PRETRAINED_KWARGS.get(name, {}))
    assert torch.equal(first_conv(net), ref.features[0].weight if name == "segnet" else ref.conv1.weight)


def test_unknown_model_is_one_line(cli, capsys):
    code = cli(["train", "--dataset", "voc", "--model", "no_such_net", "--out", "/nonexistent/x"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.count("\n") == 0 and "unknown model 'no_such_net'" in err


def test_deeplab_from_scratch_tracks_batchnorm_statistics():
    """torchvision's MobileNetV3 BN momentum 0.01 leaves short from-scratch runs with init statistics."""
    net = build_model("deeplabv3_mobilenet_v3_large", num_classes=3)
    moms = {m.momentum for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert moms == {0.1}
