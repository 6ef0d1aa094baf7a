import math

import pytest

from vaelib import PRESETS, VAE, with_overrides
from vaelib.lessons.architecture import (
    beta_plan,
    beta_rows,
    depth_rows,
    elbo_examples,
    layer_rows,
    parameter_breakdown,
    preset_rows,
    receptive_field,
    reparameterisation_demo,
    shared_settings,
)


def test_preset_rows_and_parameter_counts():
    rows = {r["preset"]: r for r in preset_rows()}
    assert list(rows) == list(PRESETS)
    assert rows["celeba_small"]["parameters"] == "2,355,203" and rows["fashion_mnist"]["parameters"] == "434,945"
    assert rows["cifar10"]["beta plan"] == "warmup: 0 for 15 epochs, then 0.1"
    assert rows["celeba"]["input"] == "3x64x64" and rows["celeba_small"]["BN"] is True


def test_parameter_breakdown_sums_to_the_total():
    model = VAE(PRESETS["celeba_small"])
    rows = {r["part"]: int(r["parameters"].replace(",", "")) for r in parameter_breakdown(model)}
    assert rows["encoder heads (fc_mu + fc_logvar)"] == 2 * (4096 * 128 + 128)
    assert rows["total"] == model.parameter_count() == sum(v for k, v in rows.items() if k != "total")


def test_layer_and_depth_rows_follow_the_real_model():
    config = with_overrides(PRESETS["fashion_mnist"], **{"data.image_size": 28, "model.hidden_dims": [32, 64, 128]})
    rows = layer_rows(VAE(config))
    shapes = {r["layer"]: r["output shape"] for r in rows}
    assert shapes["encoder.2"] == "1x128x4x4" and shapes["decoder.2"] == "1x1x32x32" and shapes["output"] == "1x1x28x28"
    assert sum(int(r["parameters"].replace(",", "")) for r in rows) == VAE(config).parameter_count()
    depth = depth_rows({"cifar10": VAE(PRESETS["cifar10"])})[0]
    assert depth["after each stride-2 conv"].endswith("512x2x2") and depth["flat features"] == 2048
    assert [receptive_field(n) for n in (1, 2, 3, 4)] == [3, 7, 15, 31]


def test_reparameterisation_gradients_match_the_exact_ones():
    demo = reparameterisation_demo(mu=(0.0, 2.0), sigma=(1.0, 0.5), n=200_000)
    assert demo["z_requires_grad"] and demo["mu_grad_is_set"] and demo["logvar_grad_is_set"]
    assert demo["direct_sample_requires_grad"] is False
    for row in demo["rows"]:
        assert row["std of z"] == pytest.approx(row["sigma"], rel=0.02)
        assert row["dL/dmu"] == pytest.approx(row["2 mu"], abs=0.02)
        assert row["dL/dlogvar"] == pytest.approx(row["sigma^2"], rel=0.03)


def test_elbo_examples_match_the_hand_computation():
    rows = elbo_examples(pixels=16, latent=4)
    assert [(r["recon"], r["kl"]) for r in rows] == [("0.0000", "0.0000"), ("0.0000", "2.0000"),
                                                       ("0.0000", f"{2 * (0.25 - 1 - math.log(0.25)):.4f}"),
                                                       ("0.0800", "0.0000")]


def test_beta_plan_and_rows():
    rows = {r["preset"]: r for r in beta_rows(epochs=(0, 2, 15, 19, 20))}
    assert rows["cifar10"]["epoch 0"] == "0" and rows["cifar10"]["epoch 15"] == "0.1"
    assert rows["celeba"]["epoch 2"] == "0.9" and rows["shapes"]["epoch 19"] == "1"
    assert rows["shapes"]["epoch 20"] == "-"  # shapes trains 20 epochs: there is no epoch 20 (counted from 0)
    assert beta_plan(PRESETS["celeba"].train.schedule) == "warmup: 0 for 2 epochs, then 0.9"


def test_shared_settings_of_the_presets():
    assert shared_settings() == {"kernel": ["3"], "LeakyReLU slope": ["0.2"], "recon": ["mse"]}

