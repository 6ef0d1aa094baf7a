"""Priors learned after the model (vaelib/models/latent_priors.py): the PixelCNN over a VQ-VAE's codes and the flow
over a VAE's posterior means. Each lowers its own loss on fixed data, samples the right shapes, and refuses a model it
cannot serve."""

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.models.latent_priors import (
    CodePrior,
    LatentFlow,
    MaskedConv2d,
    encode_codes,
    fit_code_prior,
    fit_latent_flow,
)
from vaelib.models.vae import VAE
from vaelib.models.vqvae import VQVAE


def test_a_masked_convolution_sees_only_the_positions_before_it():
    torch.manual_seed(0)
    for mask, sees_centre in (("A", False), ("B", True)):
        conv = MaskedConv2d(mask, 1, 1, 5)
        x = torch.zeros(1, 1, 6, 6, requires_grad=True)
        conv(x)[0, 0, 3, 2].backward()
        seen = x.grad[0, 0] != 0
        assert not seen[4:].any() and not seen[3, 3:].any()  # nothing below, nothing after in its row
        assert bool(seen[3, 2]) is sees_centre and seen[2, 2] and seen[3, 1]  # above and before: seen
    with pytest.raises(ValueError, match="mask='C' is invalid: allowed 'A' or 'B'"):
        MaskedConv2d("C", 1, 1, 3)


def test_the_code_prior_learns_a_structured_code_distribution_and_samples_it():
    # grids whose every row repeats its first code, which is 0 or 1: far from uniform over 8 codes
    g = torch.Generator().manual_seed(0)
    first = torch.randint(0, 2, (256, 3, 1), generator=g)
    codes = first.expand(-1, -1, 3).contiguous()
    torch.manual_seed(0)
    prior = CodePrior(8, (3, 3), channels=16, layers=3)
    uniform = 9 * torch.log(torch.tensor(8.0))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    start = prior.nll(codes).mean().item()
    for _ in range(150):
        loss = prior.nll(codes).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = prior.nll(codes).mean().item()
    # the data has 3 bits of entropy per grid (three fair rows): 3 * log 2 = 2.08 nats, against 18.7 uniform
    assert start > 0.9 * uniform and end < 4.0
    samples = prior.sample(64, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (64, 3, 3) and samples.dtype == torch.long and 0 <= samples.min() and samples.max() < 8
    rows_repeat = (samples == samples[:, :, :1]).all(2).float().mean()
    assert rows_repeat > 0.8  # the samples keep the structure the uniform prior never would (1/64 per row)
    with pytest.raises(ValueError, match="n=0 is invalid"):
        prior.sample(0)


def test_fit_code_prior_trains_on_a_vq_vaes_codes_deterministically(tiny_config, tiny_data):
    vq = VQVAE(with_overrides(tiny_config, **{"model.kind": "vq", "model.codebook_size": 16, "model.latent_dim": 3}))
    prior, curve = fit_code_prior(vq, tiny_data[0], epochs=4, batch_size=16, seed=0, channels=16, layers=2)
    again, curve2 = fit_code_prior(vq, tiny_data[0], epochs=4, batch_size=16, seed=0, channels=16, layers=2)
    assert curve == curve2 and len(curve) == 4 and curve[-1] < curve[0]
    codes = encode_codes(vq, tiny_data[0])
    assert codes.shape == (64, *vq.code_shape) and prior.code_shape == vq.code_shape
    assert prior.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, *vq.code_shape)
    with pytest.raises(ValueError, match="model family 'VAE' is invalid for a code prior: allowed a VQ-VAE"):
        fit_code_prior(VAE(tiny_config), tiny_data[0])
    with pytest.raises(ValueError, match="epochs=0 is invalid: allowed an integer >= 1"):
        fit_code_prior(vq, tiny_data[0], epochs=0)


def test_the_latent_flow_carries_the_prior_to_a_shifted_bimodal_code_distribution():
    g = torch.Generator().manual_seed(0)
    modes = torch.tensor([[4.0, -2.0], [-4.0, -2.0]])
    codes = modes[torch.randint(0, 2, (2000,), generator=g)] + 0.3 * torch.randn(2000, 2, generator=g)
    torch.manual_seed(0)
    flow = LatentFlow(codes.mean(0), codes.std(0), width=64, depth=2)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    noise = torch.Generator().manual_seed(1)
    first = flow.loss(codes, noise).item()
    for _ in range(400):
        idx = torch.randint(0, 2000, (256,), generator=g)
        loss = flow.loss(codes[idx], noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert flow.loss(codes, noise).item() < first
    z = flow.sample(1000, generator=torch.Generator().manual_seed(2), steps=50)
    assert z.shape == (1000, 2)
    near = torch.cdist(z, modes).min(1).values
    assert (near < 1.5).float().mean() > 0.8  # most samples near a mode; a Gaussian of the same moments puts
    gauss = codes.mean(0) + codes.std(0) * torch.randn(1000, 2, generator=torch.Generator().manual_seed(3))
    assert (torch.cdist(gauss, modes).min(1).values < 1.5).float().mean() < 0.6  # ... many between them


def test_fit_latent_flow_trains_on_a_vaes_posterior_means_and_refuses_a_vq_vae(tiny_config, tiny_data):
    vae = VAE(tiny_config)
    flow, curve = fit_latent_flow(vae, tiny_data[0], epochs=5, batch_size=16, seed=0, width=32, depth=2)
    _, curve2 = fit_latent_flow(vae, tiny_data[0], epochs=5, batch_size=16, seed=0, width=32, depth=2)
    assert curve == curve2 and len(curve) == 5
    z = flow.sample(7, generator=torch.Generator().manual_seed(0), steps=5)
    assert z.shape == (7, tiny_config.model.latent_dim) and vae.decode(z).shape == (7, *tiny_config.input_shape)
    vq = VQVAE(with_overrides(tiny_config, **{"model.kind": "vq"}))
    with pytest.raises(ValueError, match="model family 'VQVAE' is invalid for a latent flow: allowed a Gaussian"):
        fit_latent_flow(vq, tiny_data[0])
    with pytest.raises(ValueError, match="steps=0 is invalid"):
        flow.sample(2, steps=0)
