import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from vaelib.config import Config, DataConfig, ModelConfig, TrainConfig
from vaelib.evaluation import metrics
from vaelib.models.base import posterior_stats
from vaelib.models.vae import VAE
from vaelib.training.trainer import evaluate
from vaelib.training.validation import kl_per_dimension


def small_config(recon: str = "mse", latent_dim: int = 3) -> Config:
    return Config(name="t", data=DataConfig(dataset="digits", image_size=16, channels=1),
                  model=ModelConfig(hidden_dims=(4, 8), latent_dim=latent_dim), train=TrainConfig(recon=recon))


def small_vae(recon: str = "mse", latent_dim: int = 3, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(small_config(recon, latent_dim)).eval()


def random_images(n: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 16, 16), generator=g, dtype=torch.uint8)


class Stub(nn.Module):
    """encode: mu = scale * the first pixels, logvar = `logvar`; reconstruct: a constant image."""

    def __init__(self, scale: list[float], logvar: float = 0.0, fill: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale))
        self.logvar, self.fill = logvar, fill

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu = x.flatten(1)[:, :len(self.scale)] * self.scale  # (B, D)
        return mu, torch.full_like(mu, self.logvar)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.fill)


def test_posterior_stats_batches_and_accepts_uint8_or_float():
    model, images = small_vae(), random_images(10)
    mu, logvar = posterior_stats(model, images, batch_size=3)
    ref_mu, ref_logvar = model.encode(images.float() / 255)
    assert mu.shape == logvar.shape == (10, 3)
    assert torch.allclose(mu, ref_mu, atol=1e-5) and torch.allclose(logvar, ref_logvar, atol=1e-5)
    mu_f, _ = posterior_stats(model, images.float() / 255)
    assert torch.allclose(mu, mu_f, atol=1e-5)


def test_test_elbo_uses_beta_one_and_restores_train_mode():
    config = small_config()
    model = small_vae().train()
    out = metrics.test_elbo(model, random_images(20), config, batch_size=7)
    assert out["total"] == pytest.approx(out["recon"] + out["kl"], rel=1e-5)
    assert model.training


def test_active_units_counts_dims_whose_posterior_mean_varies():
    model = small_vae(latent_dim=4)
    with torch.no_grad():
        model.encoder.fc_mu.weight.mul_(50)  # make the active units clearly vary across images
        model.encoder.fc_mu.weight[[1, 3]] = 0  # units 1 and 3: mu is the bias, the same for every image
    images = random_images(64)
    var = metrics.posterior_mean_variance(model, images)
    assert var[1] == pytest.approx(0, abs=1e-12) and var[3] == pytest.approx(0, abs=1e-12)
    assert metrics.active_units(model, images) == 2


def test_active_units_threshold_is_on_the_variance_of_mu():
    stub = Stub([1.0, 0.0, 0.05])  # Var of a uniform pixel is ~1/12: unit 2 has ~2e-4, below 0.01
    images = torch.rand(2000, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert metrics.active_units(stub, images) == 1
    assert metrics.active_units(stub, images, threshold=1e-5) == 2


def test_kl_per_dimension_is_zero_for_a_standard_normal_posterior():
    model = small_vae()
    with torch.no_grad():
        for layer in (model.encoder.fc_mu, model.encoder.fc_logvar):
            layer.weight.zero_()
            layer.bias.zero_()
    kl = kl_per_dimension(model, random_images(8))
    assert kl.shape == (3,)
    assert np.array_equal(kl, np.zeros(3))


def test_kl_per_dimension_known_value():
    stub = Stub([0.0, 0.0], logvar=1.0)  # mu = 0, sigma^2 = e: KL = 0.5 * (e - 1 - 1) per dim
    kl = kl_per_dimension(stub, torch.zeros(5, 1, 2, 2))
    assert np.allclose(kl, 0.5 * (math.e - 2))


def test_psnr_from_mse_known_values():
    assert metrics.psnr_from_mse(0.0) == math.inf
    assert metrics.psnr_from_mse(0.01) == pytest.approx(20.0)
    assert metrics.psnr_from_mse(1.0) == pytest.approx(0.0)
    assert metrics.psnr_from_mse(0.01, peak=255.0) == pytest.approx(20 + 20 * math.log10(255))
    assert torch.allclose(metrics.psnr_from_mse(torch.tensor([1e-4, 0.0])), torch.tensor([40.0, math.inf]))
    with pytest.raises(ValueError, match="mse=-1"):
        metrics.psnr_from_mse(-1.0)


def test_reconstruction_errors_and_psnr_are_per_image():
    images = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])  # (2, 1, 4, 4)
    stub = Stub([1.0], fill=0.1)  # squared error per pixel: 0.01 on image 0, 0.81 on image 1
    assert metrics.reconstruction_mse(stub, images) == pytest.approx(16 * (0.01 + 0.81) / 2)
    expected = (20.0 + 10 * math.log10(1 / 0.81)) / 2  # mean of per-image PSNRs, not PSNR of the mean MSE
    assert metrics.psnr(stub, images) == pytest.approx(expected, rel=1e-5)
    assert metrics.psnr(Stub([1.0], fill=0.0), torch.zeros(3, 1, 4, 4)) == math.inf


@pytest.mark.parametrize("recon", ["mse", "bernoulli"])
def test_iw_nll_with_one_sample_is_the_elbo(recon):
    model, images = small_vae(recon), random_images(1024)
    with torch.no_grad():  # a wide, shifted posterior, so a wrong log p(z) or log q(z|x) term would show
        model.encoder.fc_logvar.bias.fill_(1.0)
        model.encoder.fc_mu.bias.fill_(0.5)
    out = metrics.iw_nll(model, images, k=1, seed=0)
    assert out["likelihood"] == recon and out["k"] == 1
    neg_elbo = evaluate(model, images, small_config(recon), beta=1.0)["total"]
    if recon == "mse":  # losses.py drops the Gaussian's constant 0.5 * log(pi) per pixel
        neg_elbo += 0.5 * 256 * math.log(math.pi)
    assert out["nll_nats"] == pytest.approx(neg_elbo, abs=0.3)  # MC std of the difference is ~0.1
    assert out["bits_per_dim"] == pytest.approx(out["nll_nats"] / (256 * math.log(2)))


@pytest.mark.parametrize("recon", ["mse", "bernoulli"])
def test_iw_nll_bound_tightens_with_more_samples(recon):
    model, images = small_vae(recon), random_images(64)
    with torch.no_grad():
        model.encoder.fc_logvar.bias.fill_(1.0)  # a wide posterior: a loose ELBO for the IW bound to tighten
    one = metrics.iw_nll(model, images, k=1)["nll_nats"]
    many = metrics.iw_nll(model, images, k=64, decode_batch=500)["nll_nats"]  # several sample chunks
    assert many < one - 0.5


def test_iw_nll_refuses_unknown_likelihood():
    with pytest.raises(ValueError, match="likelihood='gauss'"):
        metrics.iw_nll(small_vae(), random_images(2), likelihood="gauss")


def integer_factors(n: int = 2000, n_factors: int = 2, values: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, values, (n, n_factors))


def test_mig_is_one_when_each_factor_has_its_own_latent():
    factors = integer_factors()
    out = metrics.mutual_information_gap(factors.astype(float), factors)
    assert out["mig"] > 0.95
    assert out["mi"].shape == (2, 2) and len(out["per_factor"]) == 2


def test_mig_is_near_zero_for_independent_latents():
    latents = np.random.default_rng(1).normal(size=(2000, 3))
    assert metrics.mutual_information_gap(latents, integer_factors())["mig"] < 0.05


def test_mig_is_intermediate_when_a_latent_mixes_two_factors():
    f = integer_factors()
    latents = np.stack([f[:, 0] + f[:, 1], f[:, 1]], axis=1).astype(float)  # z0 mixes both, z1 = f1
    out = metrics.mutual_information_gap(latents, f)
    assert 0.3 < out["mig"] < 0.7
    assert out["per_factor"][0] < out["per_factor"][1]


def test_mig_refuses_a_single_latent_and_missing_factors():
    with pytest.raises(ValueError, match="D >= 2"):
        metrics.mutual_information_gap(np.zeros((10, 1)), np.zeros((10, 1), dtype=int))
    split = SimpleNamespace(images=random_images(4), factors=None)
    with pytest.raises(ValueError, match="only the shapes dataset has them"):
        metrics.mig_score(small_vae(), split)


def test_mig_score_uses_posterior_means():
    f = integer_factors(500)
    images = torch.zeros(500, 1, 2, 2)
    images.view(500, -1)[:, :2] = torch.from_numpy(f).float() / 4  # pixels 0 and 1 hold the factors
    split = SimpleNamespace(images=images, factors=torch.from_numpy(f))
    assert metrics.mig_score(Stub([1.0, 1.0]), split)["mig"] > 0.9


def test_pca_baseline_against_a_direct_computation():
    from sklearn.decomposition import PCA

    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (200, 1, 6, 6), generator=g, dtype=torch.uint8)
    test = torch.randint(0, 256, (50, 1, 6, 6), generator=g, dtype=torch.uint8)
    x, y = (t.double().flatten(1).numpy() / 255 for t in (train, test))
    for k in (1, 5, 20):
        pca = PCA(k, svd_solver="full").fit(x)  # LAPACK SVD, as pca_baseline
        direct = ((pca.inverse_transform(pca.transform(y)) - y) ** 2).sum(1).mean()
        assert metrics.pca_baseline(train, test, k) == pytest.approx(direct, rel=1e-9)
    mean_only = ((y - x.mean(0)) ** 2).sum(1).mean()
    assert metrics.pca_baseline(train, test, 0) == pytest.approx(mean_only)
    assert metrics.pca_baseline(train, train, 36) == pytest.approx(0, abs=1e-12)  # every direction kept
    with pytest.raises(ValueError, match="k=37 is invalid: allowed an integer in 0..36"):
        metrics.pca_baseline(train, test, 37)


def test_sharpness_ratio_is_one_for_a_perfect_copy_and_below_for_a_blur():
    class Copy(nn.Module):
        def __init__(self, blur=False):
            super().__init__()
            self.w, self.blur = nn.Parameter(torch.zeros(1)), blur

        def reconstruct(self, x):
            return nn.functional.avg_pool2d(x, 3, 1, 1) if self.blur else x

    images = (torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    assert metrics.sharpness_ratio(Copy(), images) == pytest.approx(1.0)
    assert metrics.sharpness_ratio(Copy(blur=True), images) < 0.2
