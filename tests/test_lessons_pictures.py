"""lessons/pictures.py: the pictures of notebook 02, each checked against the numbers it is drawn from."""

import pytest
import torch

from vaelib import VAE


def test_the_architecture_diagram_is_drawn_from_the_model():
    import matplotlib.patches

    from vaelib.config import get_preset, with_overrides
    from vaelib.lessons.architecture import layer_rows
    from vaelib.lessons.pictures import architecture_diagram

    for latent, dims in ((32, (32, 64)), (8, (16, 32, 64))):
        config = with_overrides(get_preset("digits"), **{"model.latent_dim": latent, "model.hidden_dims": dims})
        model = VAE(config)
        fig = architecture_diagram(model)
        ax = fig.axes[0]
        boxes = [p for p in ax.patches if isinstance(p, matplotlib.patches.Rectangle)]
        rows = layer_rows(model)
        assert len(boxes) == len(rows) + 1  # every layer, the bottleneck as two heads (mu, log sigma^2)
        texts = " ".join(t.get_text() for t in ax.texts)
        for row in rows:  # every layer's own output shape is written on it
            if not row["layer"].startswith("encoder.fc_mu"):
                assert row["output shape"].removeprefix("1x") in texts
        assert f"mu ({latent})" in texts and f"{sum(p.numel() for p in model.parameters()):,} parameters" in (
            ax.get_title())


def test_posterior_ellipses_draw_each_posteriors_standard_deviations_and_refuse_other_latent_sizes():
    import matplotlib.patches

    from vaelib.config import get_preset, with_overrides
    from vaelib.evaluation.plots import example_indices
    from vaelib.lessons.pictures import posterior_ellipses
    from vaelib.models.base import posterior_stats

    config = with_overrides(get_preset("digits"), **{"model.latent_dim": 2})
    torch.manual_seed(0)
    model = VAE(config)
    images, labels = torch.rand(30, *config.input_shape), torch.arange(30) % 3
    fig = posterior_ellipses(model, images, labels, n=12)
    ellipses = [p for p in fig.axes[0].patches if type(p) is matplotlib.patches.Ellipse]  # not the prior circles
    assert len(ellipses) == 12
    mu, logvar = posterior_stats(model, images[example_indices(labels, 12, 0)])
    assert ellipses[0].width == pytest.approx(2 * float(torch.exp(0.5 * logvar[0, 0])), rel=1e-5)
    assert ellipses[0].center == pytest.approx(tuple(mu[0].tolist()), rel=1e-5)
    with pytest.raises(ValueError, match="latent_dim=32 is invalid for posterior_ellipses: allowed 2"):
        posterior_ellipses(VAE(with_overrides(config, **{"model.latent_dim": 32})), images)



def test_prior_coverage_counts_the_prior_draws_inside_some_posterior():
    from vaelib.config import get_preset, with_overrides
    from vaelib.lessons.pictures import prior_coverage

    config = with_overrides(get_preset("digits"), **{"model.latent_dim": 2})

    class Fixed(VAE):  # posteriors with known means and spreads
        def __init__(self, mu, sd):
            super().__init__(config)
            self.mu, self.sd = mu, sd

        def encode(self, x):
            return self.mu[: len(x)], torch.log(self.sd[: len(x)] ** 2)

    wide = Fixed(torch.zeros(1, 2), torch.full((1, 2), 100.0))  # one posterior that holds the whole prior
    assert prior_coverage(wide, torch.zeros(1, *config.input_shape)) == 1.0
    far = Fixed(torch.full((1, 2), 50.0), torch.full((1, 2), 0.1))  # far from the prior's mass
    assert prior_coverage(far, torch.zeros(1, *config.input_shape)) == 0.0
    unit = Fixed(torch.zeros(1, 2), torch.ones(1, 2))  # N(0, I) itself: P(chi^2_2 <= 1) = 1 - exp(-1/2)
    assert prior_coverage(unit, torch.zeros(1, *config.input_shape), draws=20000) == pytest.approx(0.3935, abs=0.01)
    with pytest.raises(ValueError, match="draws=0 is invalid"):
        prior_coverage(unit, torch.zeros(1, *config.input_shape), draws=0)


def test_the_sampling_contrast_shows_reconstructions_and_prior_samples_of_each_model():
    from vaelib.config import get_preset, with_overrides
    from vaelib.lessons.pictures import sampling_contrast
    from vaelib.models.registry import build_model

    config = with_overrides(get_preset("digits"), **{"model.latent_dim": 4})
    models = {"autoencoder": build_model(with_overrides(config, **{"model.kind": "ae"})), "VAE": VAE(config)}
    fig = sampling_contrast(models, torch.rand(20, *config.input_shape), n=6)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == ["test images", "autoencoder: reconstructions", "autoencoder: samples from N(0, I)",
                      "VAE: reconstructions", "VAE: samples from N(0, I)"]
    side = config.input_shape[-1]
    assert all(ax.images[0].get_array().shape[1] == 6 * side + 5 for ax in fig.axes)  # 6 images, 1 px apart
