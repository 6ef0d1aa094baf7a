"""The future-work study's measures (vaelib/lessons/beyond.py, notebooks/studies/future_work.ipynb): the code swap
that tells a decoder which uses its code from one that ignores it (posterior collapse), the arms each trained model
stands for, and the per-seed rows every claim of the study is judged on."""

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.data.datasets import data_mean_baseline, load_from_config
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.runs import run_seeds
from vaelib.lessons import beyond
from vaelib.models import classifier
from vaelib.models.vae import VAE


@pytest.mark.parametrize("n", [2, 3, 10, 101])
def test_the_derangement_is_a_seeded_permutation_that_moves_every_image(n):
    d = beyond.derangement(n, seed=4)
    assert sorted(d.tolist()) == list(range(n)) and (d != torch.arange(n)).all()
    assert torch.equal(d, beyond.derangement(n, seed=4))


@pytest.mark.parametrize("n", [1, 0, True, 2.0])
def test_a_derangement_needs_two_images(n):
    with pytest.raises(ValueError, match=r"n=.* is invalid: allowed an integer >= 2"):
        beyond.derangement(n, seed=0)


def test_a_decoder_that_ignores_its_code_gives_the_same_error_from_any_code_and_one_that_uses_it_does_not():
    config = notebook_config("mnist", "tiny")
    images = load_from_config(config.data, "test").images[:40]
    torch.manual_seed(0)
    model = VAE(config).eval()
    own, other = beyond.swapped_errors(model, images, seed=1)
    assert own.shape == other.shape == (40,) and not torch.allclose(own, other)  # random weights: the code matters
    first = next(m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight.zero_()  # the decoder's input layer ignores z: a collapsed model
    own, other = beyond.swapped_errors(model, images, seed=1)
    assert torch.allclose(own, other)


def test_each_arm_names_the_model_it_reads():
    assert beyond.model_of("VQ-VAE, another image's code") == "VQ-VAE"
    assert beyond.model_of("Gaussian VAE + latent flow") == "Gaussian VAE"
    assert beyond.model_of("perceptual VAE") == "perceptual VAE"
    with pytest.raises(ValueError, match="arm='VQ' is invalid: allowed one of Gaussian VAE, VQ-VAE"):
        beyond.model_of("VQ")


def test_the_study_rows_cover_every_arm_and_the_trained_vq_vae_uses_its_code(tmp_path):
    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.epochs": 6, "data.max_train": 1024,
                                                                 "train.lr": 3e-3})
    train, val, test = (load_from_config(config.data, s) for s in ("train", "val", "test"))
    configs = {k: c for k, c in beyond.model_configs(config).items() if k != "perceptual VAE"}
    runs = run_seeds(configs, [0], train, val, root=tmp_path, device="cpu")
    kw = {"train": train, "test": test, "baseline": data_mean_baseline(train, test), "sample_n": 50, "tol": 0.05,
          "flow_epochs": 2}
    rows = beyond.study_rows(runs, judge=classifier.load_classifier("mnist"), **kw)
    assert set(rows) == {"Gaussian VAE", "VQ-VAE", *(f"{m}, {k}" for m in configs for k in (beyond.OWN, beyond.OTHER)),
                         *beyond.PRIOR_ARMS["Gaussian VAE"]}
    assert all(r["seed"] == 0 and "converged" in r for rs in rows.values() for r in rs)
    vq_own, vq_other = (rows[f"VQ-VAE, {k}"][0]["error_share"] for k in (beyond.OWN, beyond.OTHER))
    assert vq_own < 1 < vq_other  # beats the data-mean image from its own code, not from another image's
    assert 0 < rows["VQ-VAE"][0]["codes_used"] <= 1 and rows["VQ-VAE"][0]["perplexity"] >= 1
    assert {"fd", "log_fd", "precision", "recall"} <= set(rows["Gaussian VAE + latent flow"][0])
    assert set(beyond.study_rows(runs, judge=None, **kw)) == set(rows) - set(beyond.PRIOR_ARMS["Gaussian VAE"])
