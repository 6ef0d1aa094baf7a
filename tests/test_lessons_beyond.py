"""Lesson 06's models and measures (vaelib/lessons/beyond.py): the three trained models each learn from their input
on a short budget, the samplers put each decoder behind the prior they name, and the measures say where a model
has no density."""

import torch

from vaelib.config import with_overrides
from vaelib.data.datasets import data_mean_baseline, load_from_config
from vaelib.evaluation import metrics
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import cached_fit
from vaelib.lessons import beyond
from vaelib.models import classifier
from vaelib.models.latent_priors import fit_code_prior, fit_latent_flow


def test_the_models_are_the_three_families_and_the_perceptual_one_only_with_a_feature_network():
    assert list(beyond.model_configs(notebook_config("mnist", "tiny"))) == ["Gaussian VAE", "VQ-VAE",
                                                                            "perceptual VAE"]
    digits = beyond.model_configs(notebook_config("digits", "tiny"))
    assert list(digits) == ["Gaussian VAE", "VQ-VAE"]  # no shipped feature network: the perceptual term needs LPIPS
    assert digits["VQ-VAE"].model.kind == "vq" and digits["VQ-VAE"].model.codebook_size == 64
    # the VQ-VAE's decoder output starts at the data's mean colour; the Gaussian VAE keeps the preset's start
    assert digits["VQ-VAE"].model.output_bias == "data_mean" and digits["Gaussian VAE"].model.output_bias == "zero"


def test_each_model_beats_the_data_mean_and_the_samplers_and_measures_cover_every_row(tmp_path):
    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.epochs": 8, "data.max_train": 1024,
                                                                 "train.lr": 3e-3})
    train, val, test = (load_from_config(config.data, s) for s in ("train", "val", "test"))
    models = {name: cached_fit(c, train, val, root=tmp_path, device="cpu", quiet=True)[0]
              for name, c in beyond.model_configs(config).items()}
    baseline = data_mean_baseline(train, test)
    for name, m in models.items():  # each learned from its input: below the model that outputs the mean image
        assert metrics.reconstruction_mse(m, test.images) < baseline, name
    prior, _ = fit_code_prior(models["VQ-VAE"], train.images, epochs=1, seed=0)
    flow, _ = fit_latent_flow(models["Gaussian VAE"], train.images, epochs=1, seed=0)
    drawn = beyond.samplers(models, prior, flow)
    assert list(drawn) == ["Gaussian VAE", "VQ-VAE (uniform codes)", "VQ-VAE + PixelCNN prior", "perceptual VAE",
                           "Gaussian VAE + latent flow"]
    images = beyond.sample_images(drawn, n=3, seed=0)
    assert all(v.shape == (3, *config.input_shape) and 0 <= v.min() and v.max() <= 1 for v in images.values())
    assert torch.equal(images["Gaussian VAE"], beyond.sample_images(drawn, n=3, seed=0)["Gaussian VAE"])
    assert not torch.equal(images["VQ-VAE (uniform codes)"], images["VQ-VAE + PixelCNN prior"])  # another prior
    rows = beyond.measure_rows(models, drawn, test, classifier.load_classifier("mnist"), sample_n=64, seed=0)
    by = {r["model"]: r for r in rows}
    assert by["VQ-VAE + PixelCNN prior"]["recon error"] == by["VQ-VAE (uniform codes)"]["recon error"]  # one decoder
    assert by["Gaussian VAE"]["bits/dim (256 levels)"] > 8  # a density on 256 levels: 8 bits plus its [0, 1] part
    for name in ("perceptual VAE", "VQ-VAE (uniform codes)", "Gaussian VAE + latent flow"):
        assert by[name]["bits/dim (256 levels)"] == "-", name  # a distance, a discrete code, or not computed
    assert "codes used" in by["VQ-VAE (uniform codes)"] and "codes used" not in by["Gaussian VAE"]
    assert all(r["sample FD"] > 0 for r in rows)
    shares = beyond.beats_data_mean(rows, baseline)
    assert all(0 < s < 1 for s in shares.values())
