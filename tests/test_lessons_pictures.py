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


def _drawn_texts(fig):
    """The figure's texts that are drawn (visible, not empty, tick labels only of shown axes and in view)."""
    fig.canvas.draw()
    texts = list(fig.texts) + [t for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:
        texts += list(ax.texts) + [ax.title]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        if ax.axison:
            (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
            texts += [t for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1]
            texts += [t for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1]
            texts += [ax.xaxis.label, ax.yaxis.label]
    return [t for t in texts if t.get_visible() and t.get_text().strip()]


def _assert_readable(fig):
    """Every drawn text is 10 pt or more, inside the figure, and overlaps no other text."""
    texts = _drawn_texts(fig)
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    boxes = []
    for t in texts:
        assert t.get_fontsize() >= 10, (t.get_text(), t.get_fontsize())
        box = t.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, t.get_text()
        boxes.append((t.get_text(), box.expanded(1, 1).padded(-1)))  # 1 px of slack on each side
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
    for ax in fig.axes:  # no curve runs through a legend
        if ax.get_legend() is not None:
            box = ax.get_legend().get_window_extent(renderer)
            for line in ax.lines:
                points = line.get_transform().transform(line.get_xydata())
                assert not box.count_contains(points), f"{line.get_label()!r} runs through the legend"


def _by_gid(ax):
    from matplotlib.text import Annotation

    patches = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    arrows = {a.get_gid(): a for a in ax.texts if isinstance(a, Annotation) and a.get_gid()}
    return patches, arrows


def _inside(point, patch, tol=1e-9):
    import matplotlib.patches

    x, y = point
    if isinstance(patch, matplotlib.patches.Circle):
        cx, cy = patch.center
        return (x - cx) ** 2 + (y - cy) ** 2 <= (patch.radius + tol) ** 2
    x0, y0, w, h = patch.get_x(), patch.get_y(), patch.get_width(), patch.get_height()
    return x0 - tol <= x <= x0 + w + tol and y0 - tol <= y <= y0 + h + tol


def test_the_architecture_diagram_has_an_arrow_into_each_head_an_eps_input_and_the_reshape_steps():
    import matplotlib.patches

    from vaelib.config import get_preset, with_overrides
    from vaelib.lessons.pictures import architecture_diagram

    for latent, dims in ((32, (32, 64)), (8, (16, 32, 64))):
        model = VAE(with_overrides(get_preset("digits"), **{"model.latent_dim": latent, "model.hidden_dims": dims}))
        fig = architecture_diagram(model)
        ax = fig.axes[0]
        patches, arrows = _by_gid(ax)
        for head in ("mu", "logvar"):  # each head gets its own arrow from the flatten step, and feeds z
            assert isinstance(patches[head], matplotlib.patches.Rectangle)
            into = arrows[f"arrow flatten->{head}"]
            assert _inside(into.xy, patches[head]) and _inside(into.xyann, patches["flatten"])
            assert not _inside(into.xy, patches["mu" if head == "logvar" else "logvar"])
            assert _inside(arrows[f"arrow {head}->z"].xyann, patches[head])
            assert _inside(arrows[f"arrow {head}->z"].xy, patches["z"])
        assert isinstance(patches["eps"], matplotlib.patches.Circle)  # the random input, drawn apart from z
        assert _inside(arrows["arrow eps->z"].xyann, patches["eps"]) and _inside(arrows["arrow eps->z"].xy,
                                                                                  patches["z"])
        assert _inside(arrows["arrow decoder.fc->reshape"].xy, patches["reshape"])
        assert _inside(arrows["arrow reshape->decoder.0"].xy, patches["decoder.0"])
        flat = model.encoder.fc_mu.in_features
        unflat = "x".join(map(str, model.decoder.feature_shape))
        texts = [t.get_text() for t in ax.texts]
        # the reshapes are steps of their own, with the shapes they take and give
        assert f"flatten\n{unflat} -> {flat}" in texts and f"reshape (view)\n{flat} -> {unflat}" in texts
        joined = " ".join(texts)
        assert f"mu ({latent})" in joined and f"log sigma^2 ({latent})" in joined
        assert r"$\epsilon \sim \mathcal{N}(0, I)$" in joined and r"$z = \mu + \sigma \odot \epsilon$" in joined
        _assert_readable(fig)


def test_the_reparameterisation_graph_sends_gradients_to_mu_and_sigma_and_not_to_eps():
    import matplotlib.patches

    from vaelib.lessons.pictures import reparameterisation_graph

    fig = reparameterisation_graph()
    sampled, reparameterised = fig.axes
    patches, arrows = _by_gid(sampled)
    assert isinstance(patches["z"], matplotlib.patches.Circle) and "eps" not in patches  # z is the random node
    assert {g for g in arrows if g.startswith("grad")} == {"grad loss->z"}  # and the gradient stops there
    patches, arrows = _by_gid(reparameterised)
    assert isinstance(patches["z"], matplotlib.patches.Rectangle)  # z = mu + sigma * eps: deterministic
    assert isinstance(patches["eps"], matplotlib.patches.Circle)  # the noise: random, an outside input
    assert _inside(arrows["forward eps->z"].xy, patches["z"])
    grads = {g: a for g, a in arrows.items() if g.startswith("grad")}
    for gid, target in (("grad loss->z", "z"), ("grad z->mu", "mu"), ("grad z->sigma", "sigma"),
                        ("grad sigma->logvar", "logvar"), ("grad mu->enc", "enc"), ("grad logvar->enc", "enc")):
        assert _inside(grads[gid].xy, patches[target])
        assert grads[gid].arrow_patch.get_linestyle() != "-"  # drawn dashed
    assert not any(_inside(a.xy, patches["eps"]) for a in grads.values())  # no gradient into eps
    texts = " ".join(t.get_text() for ax in fig.axes for t in ax.texts + [ax.title])
    for label in (r"$\mu$", r"$\log\sigma^2$", r"\exp", r"$\epsilon \sim \mathcal{N}(0, I)$",
                  r"$z \sim \mathcal{N}(\mu, \sigma^2)$", r"$z = \mu + \sigma \odot \epsilon$"):
        assert label in texts
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["deterministic node", "random node"]
    _assert_readable(fig)


def test_elbo_gap_numbers_add_up_to_log_px_and_match_numerical_integrals():
    import math

    import numpy as np

    from vaelib.lessons.pictures import elbo_gap_numbers, toy_posterior

    for x, s in ((1.5, 0.5), (-2.0, 1.3), (0.3, 0.1)):
        rows = elbo_gap_numbers(x, s)
        assert [r["q"] for r in rows] == ["exact posterior", "shifted mean", "too narrow", "too wide"]
        for r in rows:
            assert r["elbo"] + r["kl"] == pytest.approx(r["log_px"], abs=1e-9)
        assert rows[0]["kl"] == pytest.approx(0, abs=1e-12) and rows[0]["elbo"] == pytest.approx(rows[0]["log_px"])
        assert all(r["elbo"] < r["log_px"] and r["kl"] > 0 for r in rows[1:])
        # against the definitions, integrated on a grid: log p(x) = log int p(x|z) p(z) dz,
        # ELBO = int q log(p(x, z) / q) dz, KL = int q log(q / p(z|x)) dz
        z = np.linspace(-12, 12, 200001)

        def log_normal(v, m, sd):
            return -0.5 * ((v - m) / sd) ** 2 - math.log(sd * math.sqrt(2 * math.pi))

        log_joint = log_normal(x, z, s) + log_normal(z, 0, 1)
        post_m, post_sd = toy_posterior(x, s)
        assert rows[0]["log_px"] == pytest.approx(math.log(np.trapezoid(np.exp(log_joint), z)), abs=1e-6)
        for r in rows:
            log_q = log_normal(z, r["mean"], r["sd"])
            q = np.exp(log_q)
            assert r["elbo"] == pytest.approx(np.trapezoid(q * (log_joint - log_q), z), abs=1e-6)
            assert r["kl"] == pytest.approx(np.trapezoid(q * (log_q - log_normal(z, post_m, post_sd)), z), abs=1e-6)
    custom = elbo_gap_numbers(0.0, 1.0, [("prior", 0.0, 1.0)])  # x = 0, s = 1: posterior N(0, 1/2)
    assert custom[0]["kl"] == pytest.approx(0.5 * (2 - 1 - math.log(2)))
    with pytest.raises(ValueError, match="s=0 is invalid: allowed a finite number > 0"):
        elbo_gap_numbers(1.0, 0)
    with pytest.raises(ValueError, match="is invalid: allowed a finite mean and sd > 0"):
        elbo_gap_numbers(1.0, 0.5, [("bad", 0.0, -1.0)])


def test_elbo_gap_stacks_each_elbo_and_kl_up_to_the_line_log_px():
    import matplotlib.patches

    from vaelib.lessons.pictures import elbo_gap, elbo_gap_numbers

    fig = elbo_gap(1.5, 0.5)
    densities, bars = fig.axes
    rows = elbo_gap_numbers(1.5, 0.5)
    assert len(densities.lines) == 2 + len(rows)  # prior, exact posterior, every q
    rects = [p for p in bars.patches if isinstance(p, matplotlib.patches.Rectangle)]
    assert len(rects) == 2 * len(rows)
    floor = bars.get_ylim()[0]
    assert floor < min(r["elbo"] for r in rows)  # a common floor below the smallest (negative) ELBO
    for r, elbo_bar, kl_bar in zip(rows, rects[0::2], rects[1::2]):
        assert elbo_bar.get_y() == pytest.approx(floor) and elbo_bar.get_height() == pytest.approx(r["elbo"] - floor)
        assert kl_bar.get_y() == pytest.approx(r["elbo"])
        assert kl_bar.get_y() + kl_bar.get_height() == pytest.approx(r["log_px"], abs=1e-9)
    assert bars.lines[0].get_ydata()[0] == pytest.approx(rows[0]["log_px"])  # the line log p(x)
    assert f"every bar starts at {floor:g} nats" in bars.get_xlabel()
    legend = [t.get_text() for t in bars.get_legend().get_texts()]
    assert legend == ["ELBO(q)", "KL(q || p(z|x)), the gap", f"log p(x) = {rows[0]['log_px']:.3f}"]
    assert r"\mathrm{ELBO}(q)" in bars.get_title() and r"\mathrm{KL}(q(z|x)" in bars.get_title()
    _assert_readable(fig)
    for x, s in ((-2.0, 1.3), (0.3, 0.1)):  # the posterior left of 0, or very narrow: still readable
        _assert_readable(elbo_gap(x, s))


def test_the_teaching_figures_are_deterministic():
    import numpy as np

    from vaelib.config import get_preset
    from vaelib.lessons.pictures import architecture_diagram, elbo_gap, reparameterisation_graph

    model = VAE(get_preset("digits"))
    for draw in (lambda: architecture_diagram(model), reparameterisation_graph, elbo_gap):
        pixels = []
        for _ in range(2):
            fig = draw()
            fig.canvas.draw()
            pixels.append(np.asarray(fig.canvas.buffer_rgba()).copy())
        assert np.array_equal(*pixels)
