import math

import pytest
import torch

from vaelib.losses import elbo, kl_per_dim, reconstruction


def test_kl_of_standard_normal_is_zero():
    mu, logvar = torch.zeros(5, 7), torch.zeros(5, 7)
    assert torch.equal(kl_per_dim(mu, logvar), torch.zeros(5, 7))


def test_kl_against_a_hand_computed_case():
    # KL(N(1, e^1) || N(0, 1)) = 0.5 * (sigma^2 + mu^2 - 1 - log sigma^2) = 0.5 * (e + 1 - 1 - 1)
    kl = kl_per_dim(torch.tensor([[1.0]]), torch.tensor([[1.0]]))
    assert kl.item() == pytest.approx(0.5 * (math.e - 1), rel=1e-6)


def test_kl_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([0.7, -1.2, 0.1]), torch.tensor([-0.5, 0.3, -1.5])
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(400_000, 3, generator=g)
    log_q = torch.distributions.Normal(mu, std).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    mc = (log_q - log_p).mean(0)
    analytic = kl_per_dim(mu[None], logvar[None])[0]
    assert torch.allclose(mc, analytic, atol=0.01), (mc, analytic)


def test_reconstruction_sums_pixels_and_terms_average_images():
    x = torch.zeros(2, 1, 2, 2)
    logits = torch.zeros(2, 1, 2, 2)  # sigmoid(0) = 0.5 everywhere
    assert torch.allclose(reconstruction(logits, x, "mse"), torch.full((2,), 4 * 0.25))
    assert torch.allclose(reconstruction(logits, x, "bernoulli"), torch.full((2,), 4 * math.log(2)))
    mu, logvar = torch.ones(2, 3), torch.zeros(2, 3)  # KL 0.5 per dim
    t = elbo(x, logits, mu, logvar, beta=2.0, kind="mse")
    assert t.recon.item() == pytest.approx(1.0)
    assert t.kl.item() == pytest.approx(1.5)
    assert t.total.item() == pytest.approx(1.0 + 2.0 * 1.5)
    assert t.kl_per_dim.shape == (3,)


def test_free_bits_floor_only_the_optimised_total():
    x, logits = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    mu = torch.tensor([[0.0, 2.0]])  # KL 0 and 2 nats
    t = elbo(x, logits, mu, torch.zeros(1, 2), beta=1.0, free_bits=0.5)
    assert t.kl.item() == pytest.approx(2.0)
    assert t.total.item() == pytest.approx(t.recon.item() + 0.5 + 2.0)


def test_bad_recon_kind():
    with pytest.raises(ValueError, match="recon kind 'l1' is invalid"):
        reconstruction(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "l1")


def test_the_likelihood_registry_is_the_one_the_config_and_the_bound_use(monkeypatch):
    import dataclasses

    from vaelib import config, losses
    from vaelib.config import TrainConfig
    from vaelib.evaluation import metrics

    assert config.RECON_LOSSES == tuple(losses.LIKELIHOODS) == ("mse", "bernoulli", "perceptual")
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    logits = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    mse, bern = losses.likelihood("mse"), losses.likelihood("bernoulli")
    gauss = torch.distributions.Normal(torch.sigmoid(logits), math.sqrt(0.5)).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(mse.log_prob(logits, x), gauss, atol=1e-5)  # a normalised Gaussian, variance 1/2
    assert torch.allclose(mse.nll(logits, x), -gauss - 16 * 0.5 * math.log(math.pi), atol=1e-5)
    binary = (x > 0.5).float()
    bern_lp = torch.distributions.Bernoulli(logits=logits).log_prob(binary).flatten(1).sum(1)
    assert torch.allclose(bern.log_prob(logits, binary), bern_lp, atol=1e-5)
    with pytest.raises(ValueError, match="recon kind 'l1' is invalid: allowed mse, bernoulli, perceptual"):
        losses.likelihood("l1")
    with pytest.raises(ValueError, match="train.recon='l1' is invalid"):
        TrainConfig(recon="l1")
    # a loss that is no normalised density (the perceptual term, or any other) is refused by the importance-
    # weighted bound
    assert not losses.LIKELIHOODS["perceptual"].normalised
    fake = dataclasses.replace(mse, name="perceptual", log_prob=None, note="a feature-space distance")
    monkeypatch.setitem(losses.LIKELIHOODS, "perceptual", fake)

    class Model(torch.nn.Module):
        config, gaussian_posterior = None, True

    with pytest.raises(ValueError, match=r"likelihood='perceptual' is not a normalised density \(a feature-space "
                                         r"distance\): no importance-weighted bound"):
        metrics.iw_nll(Model(), x, likelihood="perceptual")


def test_a_target_rate_charges_the_distance_of_the_kl_from_it():
    """train.target_rate (Burgess et al., 2018): the optimised total charges beta * |KL - target|; kl stays the KL."""
    x, logits = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    mu = torch.tensor([[0.0, 2.0]])  # KL 0 and 2 nats: 2 in all
    for target, charged in ((5.0, 3.0), (0.5, 1.5), (2.0, 0.0)):
        t = elbo(x, logits, mu, torch.zeros(1, 2), beta=10.0, target_rate=target)
        assert t.kl.item() == pytest.approx(2.0) and t.kl_used.item() == pytest.approx(charged)
        assert t.total.item() == pytest.approx(t.recon.item() + 10.0 * charged)
    mu.requires_grad_(True)
    elbo(x, logits, mu, torch.zeros(1, 2), beta=1.0, target_rate=5.0).total.backward()
    assert mu.grad[0, 1].item() < 0  # below the target: the gradient raises the KL (descent moves mu up)
