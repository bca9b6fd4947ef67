"""DCGAN: the paper's architecture in the registry, deployment metadata, training with samples and resume."""

from __future__ import annotations

import json

import pytest
import torch

from metrics_helpers import assert_figures_only
from segstyle.models import build_model, get_model_meta, list_models
from segstyle.models.dcgan import Discriminator, Generator


def test_registry_metadata_says_how_each_network_deploys():
    g, d = get_model_meta("dcgan_generator"), get_model_meta("dcgan_discriminator")
    assert g.input_kind == "noise" and g.noise_dim == 100 and g.deployable and g.export_size == (64, 64)
    assert set(g.engine_profile) == {"min", "opt", "max"}
    assert not d.deployable and d.input_kind == "image"
    assert "dcgan_discriminator" not in list_models(deployable=True)
    assert "dcgan_generator" in list_models(deployable=True)
    assert "dcgan_generator" not in list_models(input_kind="image")
    assert set(list_models(task="generation")) == {"dcgan_generator", "dcgan_discriminator"}
    # every image model keeps the old defaults
    for name in list_models(input_kind="image", deployable=True):
        assert get_model_meta(name).noise_dim is None


def test_paper_architecture():
    torch.manual_seed(0)
    g, d = Generator(nz=100, ngf=64), Discriminator(ndf=64)
    convs_g = [m for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    convs_d = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs_g] == [(1, 1)] + [(2, 2)] * 4
    assert [c.stride for c in convs_d] == [(2, 2)] * 4 + [(1, 1)]
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d, torch.nn.Linear)) for m in [*g.modules(), *d.modules()])
    assert isinstance(g.net[-1], torch.nn.Tanh) and isinstance(g.net[-2], torch.nn.ConvTranspose2d)  # no BN at output
    assert isinstance(d.net[1], torch.nn.LeakyReLU) and d.net[1].negative_slope == 0.2           # no BN at input
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules()) == 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules()) == 3
    w = torch.cat([c.weight.flatten() for c in convs_g])
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.001  # N(0, 0.02) init
    z = torch.randn(3, 100)
    y = g(z)
    assert y.shape == (3, 3, 64, 64) and y.abs().max() <= 1
    assert torch.equal(g.eval()(z), g(z[:, :, None, None]))  # (N, nz) and (N, nz, 1, 1) both accepted
    assert d(y).shape == (3,)
    with pytest.raises(ValueError):
        d(torch.rand(1, 3, 32, 32))


def test_no_pretrained_weights_is_one_line_error():
    from segstyle.core.errors import SegstyleError

    for name in ("dcgan_generator", "dcgan_discriminator"):
        with pytest.raises(SegstyleError, match="train-gan"):
            build_model(name, pretrained=True)


@pytest.fixture(scope="module")
def tiny_params(tmp_path_factory):
    from seg_helpers import tiny_data

    from segstyle.pipelines.config import load_params

    root = tiny_data(tmp_path_factory, n_train=16, n_val=4)
    p = load_params()
    return p.model_copy(update={"data": p.data.model_copy(update={"root": str(root)})})


def settings(**kw):
    from segstyle.pipelines.train_gan import GanSettings

    base = dict(epochs=2, batch_size=4, max_images=16, image_size=64, nz=16, ngf=8, ndf=8, lr=2e-4, beta1=0.5,
                eval_samples=0)
    return GanSettings(**{**base, **kw})


def test_train_writes_samples_curves_checkpoint_and_resumes(tiny_params, tmp_path):
    from segstyle.models.checkpoint import load_checkpoint, model_from_checkpoint
    from segstyle.pipelines.train_gan import train_gan

    out = tmp_path / "gan"
    s1 = train_gan(tiny_params, settings(epochs=1), dataset="pets", out=out, progress=False)
    assert s1["epochs"] == 1 and s1["images"] == 16
    ck1 = load_checkpoint(out / "checkpoint.pt", model="dcgan_generator")
    s2 = train_gan(tiny_params, settings(epochs=2), dataset="pets", out=out, resume=True, progress=False)
    ck2 = load_checkpoint(out / "checkpoint.pt")
    assert ck2["epoch"] == 2 and len(ck2["history"]) == 2 and ck2["history"][0] == ck1["history"][0]
    assert torch.equal(ck2["fixed_noise"], ck1["fixed_noise"])
    # resuming equals training straight through (same seed, same data order, same fixed noise)
    straight = tmp_path / "straight"
    train_gan(tiny_params, settings(epochs=2), dataset="pets", out=straight, progress=False)
    ck3 = load_checkpoint(straight / "checkpoint.pt")
    for k, v in ck3["state_dict"].items():
        assert torch.allclose(v.float(), ck2["state_dict"][k].float(), atol=1e-6), k
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_001.png", "epoch_002.png"]
    assert (out / "loss.png").is_file()
    assert (out / "metrics.csv").read_text().splitlines()[0] == "epoch,loss_d,loss_g,d_real,d_fake"
    record = json.loads((out / "record.json").read_text())
    assert record["epochs"] == 2 and record["dataset"] == "pets" and record["device"] == "cpu"
    assert assert_figures_only(out / "metrics.json") == {"loss_d": record["loss_d"], "loss_g": record["loss_g"],
                                                         "seconds": record["seconds_train"]}
    g = model_from_checkpoint(ck2)
    assert g(torch.randn(2, 16)).shape == (2, 3, 64, 64)
    assert s2["loss_d"] > 0


def test_kid_in_random_feature_space_separates_real_from_noise(tiny_params, tmp_path):
    """The evaluation must tell real crops from an untrained generator: KID(untrained) > 0 clearly,
    and the real data against itself (a 'generator' that returns real crops) is near zero."""
    from segstyle.pipelines.train_gan import Crops, evaluate_generator, image_files

    data = Crops(image_files(tiny_params, "pets", 16), 64)
    g = build_model("dcgan_generator", nz=16, ngf=8)

    class Replay(torch.nn.Module):
        """Returns real crops: the best possible generator for this data."""

        def __init__(self):
            super().__init__()
            self.net = g.net  # evaluate_generator reads the width from net[0]
            self.i = 0

        def forward(self, z):
            out = torch.stack([data[(self.i + k) % len(data)] for k in range(z.shape[0])])
            self.i += z.shape[0]
            return out

    ev = evaluate_generator(Replay(), data, 16, 16, 0, torch.device("cpu"))
    assert ev["kid_untrained_generator"] > 5 * max(ev["kid_random_features"], 1e-4)
    assert "not Inception" in ev["feature_space"]


def test_metrics_view_keeps_the_kid_figures_and_drops_the_labels(tmp_path):
    """With an evaluation, metrics.json holds both KIDs (named as random-feature KIDs) and no label string."""
    from segstyle.core.io import write_dvc_metrics
    from segstyle.pipelines.train_gan import metrics_view

    summary = {"epochs": 2, "images": 16, "dataset": "pets", "loss_d": 0.5, "loss_g": 2.0, "d_real": 0.9,
               "d_fake": 0.1, "seconds_train": 3.2, "device": "cpu", "seconds_eval": 1.0,
               "evaluation": {"kid_random_features": 0.05, "kid_random_features_std": 0.01,
                              "kid_untrained_generator": 0.11, "samples": 64,
                              "feature_space": "random multi-scale filter bank (seed 642015), not Inception"}}
    write_dvc_metrics(tmp_path / "metrics.json", metrics_view(summary))
    assert assert_figures_only(tmp_path / "metrics.json") == {
        "loss_d": 0.5, "loss_g": 2.0, "seconds": 3.2,
        "evaluation": {"kid_random_features": 0.05, "kid_untrained_generator": 0.11}}
