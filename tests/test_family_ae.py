"""The plain autoencoder family (kind = "ae", vaelib/models/autoencoder.py): built, trained, recorded, saved and
refused where a Gaussian posterior is needed, through the same code as the VAE."""

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.evaluation import metrics
from vaelib.experiments import cache as runcache
from vaelib.experiments import evidence
from vaelib.models import registry as families
from vaelib.models.autoencoder import Autoencoder
from vaelib.training.checkpoint import load_checkpoint
from vaelib.training.history import History
from vaelib.training.trainer import fit
from vaelib.training.validation import evaluate, kl_per_dimension


@pytest.fixture
def ae_config(tiny_config):
    return with_overrides(tiny_config, **{"model.kind": "ae"})


def test_an_autoencoder_trains_and_its_history_records_its_own_terms(ae_config, tiny_data, tmp_path):
    model, history = fit(ae_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    assert isinstance(model, Autoencoder)
    assert history.terms == ("recon",) and history.rate is None
    assert list(history.steps[0]) == ["step", "epoch", "beta", "lr", "total", "recon", "grad_norm"]
    assert all(s["total"] == s["recon"] for s in history.steps)  # no KL: the objective is the reconstruction
    first, last = history.epochs[0], history.epochs[-1]
    assert "val_kl" not in last and last["val_total"] == last["val_recon"]
    assert last["train_recon"] < first["train_recon"]  # it learned
    assert history.column("recon", per="step") == [s["recon"] for s in history.steps]
    with pytest.raises(ValueError, match="history step field 'kl' is invalid: allowed step, epoch, beta, lr, "
                                         "total, recon, grad_norm"):
        history.column("kl", per="step")
    # the evidence rules read the family's terms: the objective is val_recon, the baseline the mean image's
    assert list(evidence.objective_curve(history)) == [e["val_recon"] for e in history.epochs]
    assert evidence.ignore_input_objective(history) == history.options["ignore_input"]["val_recon"]
    again = History.from_dict(history.to_dict())
    assert again.terms == ("recon",) and again.rate is None


def test_an_autoencoder_is_reproducible_saved_and_resumed(ae_config, tiny_data, tmp_path):
    _, h1 = fit(ae_config, *tiny_data, device="cpu", quiet=True)
    _, h2 = fit(ae_config, *tiny_data, device="cpu", quiet=True)
    assert h1.steps == h2.steps  # deterministic: no noise is drawn, the same seed gives the same run
    one = with_overrides(ae_config, **{"train.epochs": 1})
    fit(one, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    model, resumed = fit(ae_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)  # epoch 2 from 1
    assert resumed.steps == h1.steps
    loaded, state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert isinstance(loaded, Autoencoder) and state["config"]["model"]["kind"] == "ae"
    x = tiny_data[1].float() / 255
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


def test_an_autoencoder_samples_from_the_prior_it_never_matched_and_posterior_tools_refuse_it(ae_config,
                                                                                              tiny_data):
    model, _ = fit(ae_config, *tiny_data, device="cpu", quiet=True)
    g = torch.Generator().manual_seed(0)
    samples = model.sample(5, generator=g)
    assert samples.shape == (5, 1, 16, 16) and 0 <= samples.min() and samples.max() <= 1
    assert model.encode(tiny_data[1].float() / 255).shape == (16, 4)  # one code per image: no (mu, logvar)
    terms = evaluate(model, tiny_data[1], ae_config)
    assert set(terms) == {"total", "recon"} and terms["total"] == terms["recon"]
    for call in (lambda: kl_per_dimension(model, tiny_data[1]),
                 lambda: metrics.iw_nll(model, tiny_data[1], k=2)):
        with pytest.raises(ValueError, match="needs a Gaussian posterior .* model family 'ae' has none"):
            call()


def test_the_registry_refuses_what_an_autoencoder_cannot_mean(ae_config):
    with pytest.raises(ValueError, match=r"train.free_bits=0.5 is invalid for model.kind='ae': .* allowed 0"):
        families.build_model(with_overrides(ae_config, **{"train.free_bits": 0.5}))
    with pytest.raises(ValueError, match="model kind 'flow' is invalid: allowed vae, ae, vq"):
        families.family("flow")
    assert families.family("ae") is Autoencoder
    # its runs have a cache folder of their own; the VAE's keep theirs (kind left out of the key at 'vae')
    vae = with_overrides(ae_config, **{"model.kind": "vae"})
    assert runcache.config_hash(ae_config) != runcache.config_hash(vae)
    ae, v = families.build_model(ae_config), families.build_model(vae)
    logvar_head = v.encoder.fc_logvar.weight.numel() + v.encoder.fc_logvar.bias.numel()
    assert ae.parameter_count() == v.parameter_count() - logvar_head  # the same body, one code head


def test_the_vae_rows_the_history_documents_are_the_family_driven_fields():
    from vaelib.models.vae import VAE
    from vaelib.training.history import EPOCH_FIELDS, OPTIONAL_EPOCH_FIELDS, STEP_FIELDS, Epoch, Step, epoch_fields

    assert STEP_FIELDS == tuple(Step.__annotations__)  # Step and Epoch document a VAE's rows
    assert EPOCH_FIELDS + OPTIONAL_EPOCH_FIELDS == tuple(Epoch.__annotations__)
    assert epoch_fields(VAE.TERMS) == EPOCH_FIELDS and epoch_fields(Autoencoder.TERMS)[-2:] == ("val_total",
                                                                                                "val_recon")
