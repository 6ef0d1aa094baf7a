"""The VQ-VAE family (kind = "vq", vaelib/families/vqvae.py): nearest-code quantisation, the straight-through
gradient, its three terms recorded by fit, saved and loaded, sampled from the uniform code prior."""

import pytest
import torch

from vaelib import families
from vaelib.checkpoint import load_checkpoint
from vaelib.config import ModelConfig, with_overrides
from vaelib.families.vqvae import VQVAE, codebook_usage
from vaelib.runcache import config_hash
from vaelib.train import fit


@pytest.fixture
def vq_config(tiny_config):
    return with_overrides(tiny_config, **{"model.kind": "vq", "model.codebook_size": 16, "model.latent_dim": 3})


def test_quantize_picks_the_nearest_code_and_the_gradient_passes_straight_through(vq_config):
    torch.manual_seed(0)
    model = VQVAE(vq_config)
    with torch.no_grad():
        model.codebook.weight.copy_(torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 3))  # code k = (k, k, k)
    z_e = torch.tensor([2.2, 1.9, 2.1]).view(1, 3, 1, 1).repeat(1, 1, 2, 2)
    z_e[0, :, 1, 1] = torch.tensor([9.6, 9.4, 9.7])
    idx, e = model.quantize(z_e)
    assert idx.tolist() == [[[2, 2], [2, 10]]] and torch.equal(e[0, :, 1, 1], torch.full((3,), 10.0))
    x = torch.rand(4, *vq_config.input_shape)
    model.loss(x, model(x), beta=1.0).terms["recon"].backward()  # the reconstruction term alone
    assert model.convs[0][0].weight.grad.abs().sum() > 0  # reached the encoder through the quantisation
    assert model.codebook.weight.grad is None or model.codebook.weight.grad.abs().sum() == 0  # the codes: only
    # through the codebook term


def test_a_vq_vae_trains_records_its_three_terms_and_is_saved_and_loaded(vq_config, tiny_data, tmp_path):
    model, history = fit(vq_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    assert isinstance(model, VQVAE) and history.terms == ("recon", "codebook", "commitment") and history.rate is None
    for s in history.steps:  # what is optimised is the sum of the three terms (the commitment term weighted)
        assert s["total"] == pytest.approx(s["recon"] + s["codebook"] + s["commitment"], rel=1e-5)
    assert history.epochs[-1]["train_recon"] < history.epochs[0]["train_recon"]
    loaded, state = load_checkpoint(tmp_path / "checkpoint.pt")
    x = tiny_data[1].float() / 255
    assert isinstance(loaded, VQVAE) and torch.equal(loaded.reconstruct(x), model.reconstruct(x))
    usage = codebook_usage(model, tiny_data[1])
    assert 0 < usage["used_share"] <= 1 and 1 <= usage["perplexity"] <= 16 + 1e-9
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, *vq_config.input_shape) and 0 <= samples.min() and samples.max() <= 1


def test_codebook_usage_counts_codes_and_the_refusals_name_what_is_allowed(vq_config):
    class Fixed(VQVAE):
        def encode(self, x):  # image i uses code i % 2 at every position
            return (torch.arange(len(x)) % 2).view(-1, 1, 1).expand(-1, *self.code_shape)

    model = Fixed(vq_config)
    usage = codebook_usage(model, torch.zeros(10, *vq_config.input_shape))
    assert usage["used_share"] == 2 / 16 and usage["perplexity"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"codes of shape \(2, 3\) are invalid"):
        model.decode(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="model.codebook_size=1 is invalid: allowed an integer >= 2"):
        ModelConfig(kind="vq", codebook_size=1)
    with pytest.raises(ValueError, match=r"model.commitment=-1.0 is invalid: allowed a number >= 0"):
        ModelConfig(kind="vq", commitment=-1.0)
    with pytest.raises(ValueError, match="train.free_bits=0.5 is invalid for model.kind='vq'"):
        families.build_model(with_overrides(vq_config, **{"train.free_bits": 0.5}))
    vae = with_overrides(vq_config, **{"model.kind": "vae", "model.codebook_size": 512})
    assert config_hash(vq_config) != config_hash(vae)
    assert config_hash(vae) == config_hash(with_overrides(vae, **{"model.commitment": 0.25}))  # defaults: no key
