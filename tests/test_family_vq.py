"""The VQ-VAE family (kind = "vq", vaelib/models/vqvae.py): nearest-code quantisation, the straight-through
gradient, its three terms recorded by fit, saved and loaded, sampled from the uniform code prior."""

import pytest
import torch

from vaelib.config import ModelConfig, with_overrides
from vaelib.experiments.cache import config_hash
from vaelib.models import registry as families
from vaelib.models.vqvae import VQVAE, codebook_usage
from vaelib.training.checkpoint import load_checkpoint
from vaelib.training.trainer import fit


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
    assert config_hash(vae) == config_hash(with_overrides(vae, **{"model.commitment": 0.25}))  # same config, same key


def test_the_ema_update_moves_each_code_to_the_running_mean_of_its_vectors(vq_config):
    model = VQVAE(with_overrides(vq_config, **{"model.codebook_decay": 0.5, "model.dead_code_threshold": 0.0}))
    with torch.no_grad():
        model.codebook.weight.copy_(torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 3))
    z_e = torch.tensor([[1.0, 1, 1], [1.2, 1.2, 1.2], [5.0, 5, 5]]).T.reshape(1, 3, 1, 3)  # 3 vectors
    idx, _ = model.quantize(z_e)
    assert idx.flatten().tolist() == [1, 1, 5]
    model._ema_update(z_e, idx)
    assert model.ema_count[1] == pytest.approx(1.0) and model.ema_count[5] == pytest.approx(0.5)  # 0.5 * counts
    assert torch.allclose(model.codebook.weight[1], torch.full((3,), 1.1))  # the mean of its two vectors
    assert torch.allclose(model.codebook.weight[5], torch.full((3,), 5.0))
    assert torch.equal(model.codebook.weight[7], torch.full((3,), 7.0))  # never assigned: left as it was
    model._ema_update(torch.full((1, 3, 1, 1), 2.1), torch.tensor([[[1]]]))  # a second step, one vector at 2.1
    # counts 0.5 * 1 + 0.5 * 1 = 1, sums 0.5 * 1.1 + 0.5 * 2.1 = 1.6: the code is at their ratio
    assert model.ema_count[1] == pytest.approx(1.0)
    assert torch.allclose(model.codebook.weight[1], torch.full((3,), 1.6))
    assert model.codebook.weight.grad is None and not model.codebook.weight.requires_grad


def test_a_dead_code_restarts_at_the_worst_quantised_vector_and_a_used_one_never(vq_config):
    model = VQVAE(with_overrides(vq_config, **{"model.codebook_decay": 0.9, "model.dead_code_threshold": 1.0}))
    with torch.no_grad():
        model.codebook.weight.copy_(torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 3))
    z_e = torch.tensor([[0.1, 0, 0], [3.4, 3.4, 3.4], [2.0, 2, 2]]).T.reshape(1, 3, 1, 3)
    idx, _ = model.quantize(z_e)  # codes 0, 3, 2: the vector at 3.4 is the worst quantised, then 0.1's
    model._ema_update(z_e, idx)
    # 13 codes are unused and at count 0 < 1: each restarts at one of the 3 vectors, worst first, until they run out
    restarted = model.codebook.weight[[1, 4, 5]]
    assert torch.allclose(restarted[0], torch.full((3,), 3.4))
    assert torch.allclose(restarted[1], torch.tensor([0.1, 0.0, 0.0]))
    assert torch.allclose(restarted[2], torch.full((3,), 2.0))
    assert int(model.restarts) == 3 and model.ema_count[1] == 1.0
    for k, v in ((0, [0.1, 0.0, 0.0]), (3, [3.4] * 3), (2, [2.0] * 3)):  # the used codes follow their vector
        assert torch.allclose(model.codebook.weight[k], torch.tensor(v)), k
    assert torch.equal(model.codebook.weight[6], torch.full((3,), 6.0))  # dead too, but no vector was left for it


def test_perplexity_of_a_uniform_code_usage_is_the_codebook_size(vq_config):
    class Uniform(VQVAE):
        def encode(self, x):  # every code equally often
            n = len(x) * self.code_shape[0] * self.code_shape[1]
            return (torch.arange(n) % self.codebook_size).view(len(x), *self.code_shape)

    model = Uniform(vq_config)
    usage = codebook_usage(model, torch.zeros(64, *vq_config.input_shape))
    assert usage["used_share"] == 1.0 and usage["perplexity"] == pytest.approx(16.0)


def test_fit_records_the_codebook_usage_each_epoch_and_the_ema_codes_move(vq_config, tiny_data, tmp_path):
    from vaelib.training.history import History

    torch.manual_seed(0)
    before = VQVAE(vq_config).codebook.weight.clone()
    model, history = fit(vq_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    assert history.stats == ("codebook_used_share", "codebook_perplexity")
    for row in history.epochs:
        assert 0 < row["val_codebook_used_share"] <= 1 and 1 <= row["val_codebook_perplexity"] <= 16 + 1e-9
    assert history.column("val_codebook_perplexity") == [r["val_codebook_perplexity"] for r in history.epochs]
    assert History.from_dict(history.to_dict()) == history
    assert not torch.equal(model.codebook.weight, before)  # moved by the EMA, without a gradient
    again, h2 = fit(vq_config, *tiny_data, device="cpu", quiet=True)  # the same seed: the same run
    assert [s["total"] for s in h2.steps] == [s["total"] for s in history.steps]
    assert torch.equal(again.codebook.weight, model.codebook.weight)


def test_a_vaes_key_ignores_the_codebook_fields(tiny_config):
    for field, value in (("model.codebook_size", 64), ("model.commitment", 0.5), ("model.codebook_decay", 0.0),
                         ("model.dead_code_threshold", 0.0)):
        assert config_hash(with_overrides(tiny_config, **{field: value})) == config_hash(tiny_config), field
    vq = with_overrides(tiny_config, **{"model.kind": "vq"})
    assert config_hash(with_overrides(vq, **{"model.codebook_decay": 0.0})) != config_hash(vq)
    with pytest.raises(ValueError, match=r"model.codebook_decay=1.0 is invalid: allowed a number in \[0, 1\)"):
        ModelConfig(kind="vq", codebook_decay=1.0)
