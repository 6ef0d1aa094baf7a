import pytest
import torch

from vaelib.config import PRESETS, Config, DataConfig, ModelConfig
from vaelib.models.vae import VAE
from vaelib.training.validation import kl_per_dimension


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_shapes_per_preset(name):
    c = PRESETS[name]
    model = VAE(c).eval()
    x = torch.rand(2, *c.input_shape)
    logits, mu, logvar = model(x)
    assert logits.shape == x.shape
    assert mu.shape == logvar.shape == (2, c.model.latent_dim)
    r = model.reconstruct(x)
    assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
    assert model.sample(3).shape == (3, *c.input_shape)


def test_parameter_counts():
    counts = {k: VAE(c).parameter_count() for k, c in PRESETS.items()}
    # Encoder convs + two linear heads + decoder linear + mirrored transposed convs, kernel 3.
    assert counts["fashion_mnist"] == 434_945
    assert counts["celeba_small"] == 2_355_203  # the CelebA report states ~1.18M for its design
    assert counts["cifar10"] < counts["celeba"]


@pytest.mark.parametrize("size", [28, 30, 36])
def test_output_size_safety_step(size):
    # 28 -> 14 -> 7 -> 4 and back up to 32: the interpolation makes the output 28 again.
    c = Config(data=DataConfig(image_size=size), model=ModelConfig(hidden_dims=(4, 8, 8), latent_dim=2))
    model = VAE(c)
    assert model.decode(torch.zeros(1, 2)).shape == (1, 1, size, size)
    names = [n for n, _ in model.layer_shapes()]
    assert names[0] == "input" and names[-1] == "output"


def test_layer_shapes_halve_then_double():
    model = VAE(PRESETS["digits"])
    shapes = dict(model.layer_shapes())
    assert shapes["encoder.0"] == (1, 32, 16, 16)
    assert shapes["encoder.1"] == (1, 64, 8, 8)
    assert shapes["encoder.fc_mu"] == (1, 32)
    assert shapes["decoder.0"] == (1, 32, 16, 16)
    assert shapes["output"] == (1, 1, 32, 32)


def test_reparameterize_is_mu_plus_sigma_eps():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    mu, logvar = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 2.0]])
    z = VAE.reparameterize(mu, logvar, g1)
    eps = torch.randn(1, 2, generator=g2)
    assert torch.allclose(z, mu + torch.exp(0.5 * logvar) * eps)


def test_wrong_input_shape_is_refused():
    model = VAE(PRESETS["digits"])
    with pytest.raises(ValueError, match=r"input of shape \(2, 3, 32, 32\) is invalid: allowed \(B, 1, 32, 32\)"):
        model.encode(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="n=0 is invalid"):
        model.sample(0)


def test_model_families_are_built_from_the_config_and_a_family_without_a_gaussian_posterior_is_refused(monkeypatch):
    from vaelib import config as config_module
    from vaelib.config import ModelConfig, get_preset, with_overrides
    from vaelib.data.datasets import ImageSplit
    from vaelib.evaluation import metrics
    from vaelib.experiments.cache import config_hash
    from vaelib.models import registry as families
    from vaelib.models import vae as model
    from vaelib.widgets.explorer import LatentExplorer

    assert tuple(families.MODELS) == config_module.MODEL_KINDS == ("vae", "ae", "vq")
    c = with_overrides(get_preset("digits"), **{"model.latent_dim": 4})
    assert type(families.build_model(c)) is model.VAE and c.model.kind == "vae"
    with pytest.raises(ValueError, match=r"model.kind='flow' is invalid: allowed one of vae, ae, vq"):
        ModelConfig(kind="flow")
    d = c.to_dict()
    del d["model"]["kind"]  # a config (or checkpoint) written before families existed
    assert type(c).from_dict(d) == c and config_hash(type(c).from_dict(d)) == config_hash(c)

    class Codes(torch.nn.Module):  # a family with discrete codes: no (mu, logvar)
        def __init__(self, config):
            super().__init__()
            self.config, self.w = config, torch.nn.Parameter(torch.zeros(1))

    monkeypatch.setattr(config_module, "MODEL_KINDS", ("vae", "ae", "vq", "codes"))
    monkeypatch.setitem(families.MODELS, "codes", Codes)
    toy = families.build_model(with_overrides(c, **{"model.kind": "codes"}))
    assert isinstance(toy, Codes)
    images = torch.zeros(4, *c.input_shape, dtype=torch.uint8)
    for call, what in ((lambda: kl_per_dimension(toy, images), "posterior statistics"),
                       (lambda: metrics.iw_nll(toy, images, k=2), "the importance-weighted bound"),
                       (lambda: LatentExplorer(toy, ImageSplit(images, None, None)), "the latent explorer")):
        with pytest.raises(ValueError, match=rf"^{what}.* needs a Gaussian posterior \(encode\(x\) -> mu, logvar\): "
                                             r"model family 'codes' has none; allowed a model of family 'vae'$"):
            call()


def test_bound_logvar_is_the_identity_below_its_knee_and_never_passes_its_bound():
    from vaelib.models.vae import bound_logvar

    v = torch.linspace(-30, 1e4, 20001)
    b = bound_logvar(v, 5.0)
    below = v <= 4.0
    assert torch.equal(b[below], v[below])  # bit for bit: a run that stays below the knee computes the same
    assert (b <= 5.0).all() and (b[~below] > 4.0).all() and bool((b.diff() >= 0).all())  # monotone, under the bound
    x = torch.tensor([3.999, 4.0, 4.001], requires_grad=True)
    bound_logvar(x, 5.0).sum().backward()
    assert torch.allclose(x.grad, torch.ones(3), atol=1e-5)  # slope 1 on both sides of the knee: no kink


def test_a_runaway_log_variance_at_beta_0_overflows_unbounded_and_not_bounded():
    """The shapes warmup's failure in small: a log-variance of 100 (exp overflows float32) makes the KL infinite, and
    beta = 0 times it NaN, so the step fails; bounded, the same encoder gives a finite loss at beta 0."""
    from vaelib.config import with_overrides
    from vaelib.losses import elbo

    c = PRESETS["mnist"]
    x = torch.rand(4, *c.input_shape)
    for limit, finite in ((None, False), (5.0, True)):
        model = VAE(with_overrides(c, **{"model.logvar_max": limit}))
        torch.nn.init.zeros_(model.encoder.fc_logvar.weight)
        torch.nn.init.constant_(model.encoder.fc_logvar.bias, 100.0)
        logits, mu, logvar = model(x)
        terms = elbo(x, logits, mu, logvar, beta=0.0)
        assert bool(torch.isfinite(terms.total)) is finite, (limit, terms.total)
        assert (logvar.max().item() <= 5.0) is finite


def test_logvar_max_is_refused_outside_its_range_and_keeps_the_run_keys_at_none():
    from vaelib.config import with_overrides
    from vaelib.experiments import cache

    with pytest.raises(ValueError, match=r"model\.logvar_max.*0\.5.*None or a number >= 1 and <= 80"):
        ModelConfig(logvar_max=0.5)
    c = PRESETS["shapes"]
    assert "logvar_max" not in cache._key(c)["model"]  # absent at None: every run cached before it keeps its key
    bounded = with_overrides(c, **{"model.logvar_max": 5.0})
    assert cache._key(bounded)["model"]["logvar_max"] == 5.0 and cache.config_hash(bounded) != cache.config_hash(c)
    ae = with_overrides(c, **{"model.kind": "ae"})
    assert cache.config_hash(with_overrides(ae, **{"model.logvar_max": 5.0})) == cache.config_hash(ae)  # no logvar


def test_output_bias_is_refused_outside_its_choices_and_keeps_the_run_keys_at_zero():
    from vaelib.config import with_overrides
    from vaelib.experiments import cache

    with pytest.raises(ValueError, match=r"model\.output_bias.*'mean'.*zero.*data_mean"):
        ModelConfig(output_bias="mean")
    c = PRESETS["shapes"]
    assert "output_bias" not in cache._key(c)["model"]  # absent at "zero": every run cached before it keeps its key
    started = with_overrides(c, **{"model.output_bias": "data_mean"})
    assert cache._key(started)["model"]["output_bias"] == "data_mean"
    assert cache.config_hash(started) != cache.config_hash(c)


@pytest.mark.parametrize("kind", ["vae", "ae", "vq"])
def test_init_output_bias_starts_every_familys_output_at_the_datas_mean_colour(kind):
    from vaelib.config import with_overrides
    from vaelib.models.base import init_output_bias
    from vaelib.models.registry import build_model

    c = with_overrides(PRESETS["shapes"], **{"model.kind": kind, "model.hidden_dims": (8, 16)})
    images = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
    images[:, 0] = 51  # red 0.2 everywhere, green 0, blue 1.0 on half of the images
    images[:5, 2] = 255
    torch.manual_seed(0)
    model = build_model(c)
    mean = init_output_bias(model, images)
    assert torch.allclose(mean, torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64))
    bias = model.decoder.deconvs[-1].bias
    assert torch.allclose(torch.sigmoid(bias), torch.tensor([0.2, 1e-3, 0.5]), atol=1e-6)  # 0 clamped to 1e-3
    with pytest.raises(ValueError, match=r"images of shape \(10, 1, 32, 32\).*\(N, 3, H, W\)"):
        init_output_bias(model, images[:, :1])
    with pytest.raises(ValueError, match=r"output_bias='data_mean' is invalid for Linear.*allowed 'zero'"):
        init_output_bias(torch.nn.Linear(2, 2), images)


def test_fit_starts_the_decoder_at_the_data_mean_only_when_asked(tiny_config, tiny_data):
    from vaelib.config import with_overrides
    from vaelib.training.trainer import fit

    train, val = tiny_data
    never = lambda history: True  # noqa: E731 - stops before the first step: the model fit built, untrained
    asked = with_overrides(tiny_config, **{"model.output_bias": "data_mean"})
    started, _ = fit(asked, train, val, quiet=True, stop=never)
    plain, _ = fit(tiny_config, train, val, quiet=True, stop=never)
    want = torch.logit(train.double().mean() / 255).float()
    assert torch.allclose(started.decoder.deconvs[-1].bias, want.reshape(1), atol=1e-5)
    assert not torch.allclose(plain.decoder.deconvs[-1].bias, want.reshape(1), atol=1e-2)
    for (name, a), b in zip(started.state_dict().items(), plain.state_dict().values()):  # the one change
        assert torch.equal(a, b) == (name != "decoder.deconvs.1.bias"), name


def test_fit_reads_the_training_mean_once_for_the_start_and_the_baseline(tiny_config, tiny_data):
    from vaelib.config import with_overrides
    from vaelib.runtime import mean_image
    from vaelib.training.trainer import fit, ignore_input_terms

    train, val = tiny_data
    asked = with_overrides(tiny_config, **{"model.output_bias": "data_mean"})
    _, history = fit(asked, train, val, quiet=True, stop=lambda h: True)
    assert history.options["ignore_input"] == ignore_input_terms(train, val, asked)  # the baseline of its own mean
    given = ignore_input_terms(train, val, asked, mean=mean_image(train))
    assert given == ignore_input_terms(train, val, asked)
    other = ignore_input_terms(train, val, asked, mean=torch.zeros_like(mean_image(train)))  # an all-black image
    assert other["val_recon"] != given["val_recon"]  # the mean given is the one used


def test_a_resumed_data_mean_run_keeps_its_trained_bias_and_another_start_is_refused(tiny_config, tiny_data,
                                                                                       tmp_path):
    from vaelib.config import with_overrides
    from vaelib.training.trainer import fit

    train, val = tiny_data
    asked = with_overrides(tiny_config, **{"model.output_bias": "data_mean", "train.epochs": 1})
    first, _ = fit(asked, train, val, out_dir=tmp_path, quiet=True)
    trained = first.decoder.deconvs[-1].bias.detach().clone()
    assert not torch.allclose(trained, torch.logit(train.double().mean() / 255).float().reshape(1))  # it learned
    never = lambda history: True  # noqa: E731 - loads the checkpoint and trains no further
    again, _ = fit(with_overrides(asked, **{"train.epochs": 2}), train, val, out_dir=tmp_path, quiet=True,
                   stop=never)
    assert torch.equal(again.decoder.deconvs[-1].bias, trained)  # the checkpoint's, not the data mean's again
    with pytest.raises(ValueError, match="was made with a different config"):  # the start is part of the run
        fit(with_overrides(tiny_config, **{"train.epochs": 2}), train, val, out_dir=tmp_path, quiet=True)
