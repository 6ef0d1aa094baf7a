import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vaelib.evaluation import metrics
from vaelib.lessons import failure_gallery as D  # short: used on almost every line
from vaelib.models.vae import VAE
from vaelib.training.history import History


def _checkerboard(n: int = 8) -> torch.Tensor:
    i = torch.arange(n)
    return ((i.view(-1, 1) + i.view(1, -1)) % 2).float().view(1, 1, n, n)  # (1, 1, n, n) of 0 and 1


def _noise(n: int = 4, size: int = 32) -> torch.Tensor:
    return torch.rand((n, 3, size, size), generator=torch.Generator().manual_seed(0))


def _blur(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def test_laplacian_variance_of_known_images():
    assert D.laplacian_variance(torch.full((2, 3, 8, 8), 0.7)).tolist() == [0.0, 0.0]
    assert D.laplacian_variance(_checkerboard()).item() == pytest.approx(16.0)  # +-4 at every interior pixel
    x = _noise()
    assert (D.laplacian_variance(_blur(x)) < 0.2 * D.laplacian_variance(x)).all()


def test_uint8_and_float_agree():
    x = (_noise() * 255).round().to(torch.uint8)
    assert torch.allclose(D.laplacian_variance(x), D.laplacian_variance(x.float() / 255))


def test_high_frequency_share():
    assert D.high_frequency_share(_checkerboard()).item() == pytest.approx(1.0)  # all power at (0.5, 0.5)
    assert D.high_frequency_share(torch.full((1, 1, 8, 8), 0.3)).item() == 0.0  # flat: no power at all
    x = _noise()
    sharp, blurred = D.high_frequency_share(x), D.high_frequency_share(_blur(x))
    assert (sharp > 0.5).all() and (blurred < 0.5 * sharp).all()
    with pytest.raises(ValueError, match="cutoff"):
        D.high_frequency_share(x, cutoff=0.0)


def test_radial_profile_peaks_at_a_sinusoid_frequency():
    size, k = 32, 4  # 4 cycles across the image: 0.125 cycles per pixel
    xs = torch.arange(size).float()
    wave = 0.5 + 0.5 * torch.sin(2 * math.pi * k * xs / size).view(1, -1).expand(size, -1)
    f, p = D.radial_profile(wave.view(1, 1, size, size))
    assert f[np.argmax(p)] == pytest.approx(k / size)
    assert f.min() > 0 and f.max() <= 0.5


def test_error_maps_and_regions():
    x = torch.rand(2, 3, 8, 8)
    assert D.squared_error(x, x).abs().max().item() == 0.0
    err = torch.zeros(1, 8, 8)
    err[0, :, :2] = 3.0  # all error in the two left columns
    border = D.border_mask(8, 1)
    assert border.sum().item() == 28 and not border[1:-1, 1:-1].any()
    r = D.region_errors(err, border)
    assert r["inside"] == pytest.approx(3.0 * 10 / 28)  # column 0 and the two corners of column 1
    assert r["outside"] == pytest.approx(3.0 * 6 / 36) and r["share_inside"] == pytest.approx(10 / 16)
    e = D.explained(torch.where(border, 1.0, 2.0).expand(1, 8, 8), torch.full((1, 8, 8), 2.0), border)
    assert e["inside"] == pytest.approx(0.5) and e["outside"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="width"):
        D.border_mask(8, 4)
    with pytest.raises(ValueError, match="mask"):
        D.region_errors(err, torch.ones(8, 8, dtype=torch.bool))


def test_object_mask_covers_the_shape_only():
    small = torch.tensor([[1, 0, 0, 3, 3, 0]])  # a circle, smallest scale, centre-ish
    large = torch.tensor([[1, 0, 5, 3, 3, 0]])
    m_small, m_large = D.object_mask(small, 32), D.object_mask(large, 32)
    assert m_small.shape == (1, 32, 32) and 0 < m_small.sum() < m_large.sum() < 32 * 32
    assert not m_small[0, 0, 0]  # the corner is background


def test_distance_to_mean_on_hand_made_data():
    mean = torch.zeros(1, 2, 2)
    x = torch.ones(3, 1, 2, 2)
    recon = 0.25 * x  # a quarter of the way from the mean to the input
    d = D.distance_to_mean(x, recon, mean)
    assert d["recon_to_mean"] == pytest.approx(4 * 0.0625) and d["recon_to_input"] == pytest.approx(4 * 0.5625)
    assert d["input_to_mean"] == pytest.approx(4.0) and d["pull"] == pytest.approx(1 - 0.0625)
    assert d["closer_to_mean"] == 1.0
    assert D.distance_to_mean(x, x, mean)["pull"] == pytest.approx(0.0)


def test_collapse_summary_of_a_collapsed_encoder(tiny_config, tiny_data):
    model = VAE(tiny_config)
    for layer in (model.encoder.fc_mu, model.encoder.fc_logvar):  # q(z|x) = N(0, I) for every x
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    s = D.collapse_summary(model, tiny_data[0])
    assert s["kl_total"] == 0.0 and s["dims_above"] == 0 and s["active_units"] == 0 and s["latent_dim"] == 4
    recon = metrics.reconstructions(model, tiny_data[0])
    assert recon.shape == (64, 1, 16, 16) and torch.allclose(recon, recon[:1].expand_as(recon))  # one image


def test_collapse_measure_explained_is_zero_for_a_decoder_that_ignores_its_code(tiny_config, tiny_data):
    model = VAE(tiny_config)
    for layer in (model.encoder.fc_mu, model.encoder.fc_logvar):  # q(z|x) = N(0, I): every code decodes alike
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    x = tiny_data[0]
    run = _run("collapsed", History(), model, config=tiny_config)
    one_image = metrics.reconstructions(model, x[:1])[0]
    assert D.collapse_measure(x, one_image)(run)["explained"] == pytest.approx(0.0, abs=1e-6)  # the baseline itself
    mean = x.float().mean(0) / (255 if x.dtype == torch.uint8 else 1)
    row = D.collapse_measure(x, mean)(run)
    assert row["active_units"] == 0 and row["explained"] < 0  # one image, not the mean: worse than the mean
    assert "explained" not in D.collapse_measure(x)(run)  # without the data mean it is not measured


def test_plots_build():
    x = _noise()
    figs = [D.spectrum_plot({"a": D.radial_profile(x)}, cutoff=0.25),
            D.error_maps_plot({"a": torch.rand(8, 8), "b": torch.rand(8, 8)}, "maps"),
            D.kl_bars({"a": np.array([1.0, 0.0]), "b": np.array([0.5, 0.02])})]
    assert all(f.axes for f in figs)


class Identity(torch.nn.Module):
    """A 'model' whose reconstructions are its inputs: every measure knows its answer for it."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the module a device

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _run(label, history, model=None, failed=False, seed=0, config=None):
    from vaelib.config import with_overrides
    from vaelib.experiments.runs import Run

    return Run(label, with_overrides(config, **{"train.seed": seed}), model, history, None,
               error="non-finite" if failed else "")


def test_seed_measures_mark_convergence_and_leave_failed_runs_without_values(tiny_config):
    settled = History(epochs=[{"val_recon": v, "val_kl": 1.0, "beta": 1.0} for v in (30, 20, 15, 14.9, 14.9, 14.9)])
    falling = History(epochs=[{"val_recon": 30.0 - 3 * k, "val_kl": 1.0, "beta": 1.0} for k in range(6)])
    flat = History(epochs=[{"val_recon": 10.0, "val_kl": 1.0, "beta": 1.0}] * 6)
    runs = {"a": [_run("a", settled, seed=0, config=tiny_config), _run("a", falling, seed=1, config=tiny_config),
                  _run("a", flat, seed=2, config=tiny_config)],
            "b": [_run("b", settled, failed=True, seed=0, config=tiny_config)]}
    rows = D.seed_measures(runs, lambda run: {"x": float(run.config.train.seed)})
    ends = [r.pop("objective_end") for r in rows["a"]]  # where each ended, for evidence.plateaus
    assert ends == pytest.approx([15.9, 16.0, 11.0])
    assert rows["a"] == [{"seed": 0, "converged": True, "state": "converged", "failure": "", "x": 0.0},
                         {"seed": 1, "converged": False, "state": "still improving", "failure": "", "x": 1.0},
                         {"seed": 2, "converged": False, "state": "frozen", "failure": "", "x": 2.0}]
    # no "x": its estimate counts it as failed, and names how
    failed = rows["b"][0]
    assert math.isnan(failed.pop("objective_end"))  # never measured
    assert rows["b"] == [{"seed": 0, "converged": False, "state": "failed", "failure": "non-finite loss"}]


def test_measures_give_their_known_values_for_perfect_reconstructions(tiny_config):
    x = torch.randint(0, 256, (6, 3, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    run = _run("id", History(), Identity(), config=tiny_config)
    blur = D.blur_measure(x, cutoff=0.1)(run)
    assert blur["hf_kept"] == pytest.approx(1.0) and blur["sharpness"] == pytest.approx(1.0)
    obj = torch.zeros(6, 16, 16, dtype=torch.bool)
    obj[:, 4:12, 4:12] = True
    bg = D.background_measure(x, obj, D.border_mask(16, 2), x.float().mean(0) / 255)(run)
    assert bg["explained_object"] == pytest.approx(1.0) and bg["explained_background"] == pytest.approx(1.0)
    pull = D.mean_pull_measure(x, x.float().mean(0) / 255)(run)
    assert pull["pull"] == pytest.approx(0.0, abs=1e-6) and pull["closer_to_mean"] == 0.0


def test_early_objective_reads_the_curve_at_an_epoch(tiny_config):
    h = History(epochs=[{"val_recon": 30.0 - 3 * k, "val_kl": 1.0, "beta": 0.5} for k in range(6)])
    run = _run("r", h, config=tiny_config)
    assert D.early_objective(run, 2) == {"val_objective_epoch_2": 27.5, "val_objective_final": 15.5}
    with pytest.raises(ValueError, match=r"epoch=7 is invalid: allowed 1..6"):
        D.early_objective(run, 7)


def test_mean_image_nll_is_the_loss_of_a_model_that_ignores_its_input():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=gen)
    mean = x.mean(0)
    assert D.mean_image_nll(x, mean, "mse") == pytest.approx(float((x - mean).pow(2).sum((1, 2, 3)).mean()), rel=1e-5)
    bce = -(x * mean.log() + (1 - x) * (1 - mean).log()).sum((1, 2, 3)).mean()
    assert D.mean_image_nll(x, mean, "bernoulli") == pytest.approx(float(bce), rel=1e-4)
    u8 = (x * 255).round().to(torch.uint8)
    assert D.mean_image_nll(u8, mean, "mse") == pytest.approx(D.mean_image_nll(u8.float() / 255, mean, "mse"))


def test_a_run_is_derailed_when_it_failed_or_ends_no_better_than_ignoring_its_input():
    rows = {"clip 1": [{"test_total": 30.0, "nonfinite_steps": 0}, {"test_total": 31.0, "nonfinite_steps": 0}],
            "no clip": [{"test_total": 98.0, "nonfinite_steps": 0}, {"test_total": 52.0, "nonfinite_steps": 0},
                        {"nonfinite_steps": 1}]}  # a failed run has no test numbers
    marked = D.mark_derailed(rows, baseline=52.0)
    assert [r["derailed"] for r in marked["clip 1"]] == [0.0, 0.0]
    assert [r["derailed"] for r in marked["no clip"]] == [1.0, 1.0, 1.0]  # above, equal to, and failed
    assert marked["clip 1"][0]["test_total"] == 30.0 and "derailed" not in rows["clip 1"][0]  # a copy, all kept
    assert [r["derailed"] for r in D.mark_derailed(rows, baseline=20.0)["clip 1"]] == [1.0, 1.0]


def test_objective_at_prices_a_run_on_a_static_beta_objective():
    rows = [{"test_recon": 10.0, "kl_total": 2.0}, {"seed": 1}]  # the second run failed: no measurements
    got = D.objective_at(rows, 16.0)
    assert got[0] == 42.0 and math.isnan(got[1])


def test_scan_betas_climb_to_the_collapse_beta_and_refuse_a_bad_ladder():
    assert D.scan_betas(8, 2, 16) == [8, 10, 12, 14, 16]
    assert D.scan_betas(8, 3, 16) == [8, 11, 14, 16]
    assert D.scan_betas(16, 2, 16) == [16]
    with pytest.raises(ValueError, match=r"scan_from=20 is invalid: allowed 0 < scan_from <= collapse_beta \(16\)"):
        D.scan_betas(20, 2, 16)
    with pytest.raises(ValueError, match=r"scan_step=0 is invalid"):
        D.scan_betas(8, 0, 16)
    assert len(D.scan_betas(1, 0.8, 16)) == 20  # 1, 1.8, ..., 16: the most rungs allowed
    with pytest.raises(ValueError, match=r"scan_step=0.01 is invalid: .* in at most 20 runs"):
        D.scan_betas(8, 0.01, 16)


def _scan_row(explained, recon, kl):
    return {"explained": explained, "test_recon": recon, "kl_total": kl}


def _scanner(table):
    """row_at for early_collapse_scan from {beta: {label: row}}, recording the runs it trains."""
    asked = []

    def row_at(beta, label):
        asked.append((beta, label))
        return table[beta][label]
    return row_at, asked


def _pair(static, cyclic, linear=None):
    return {"static": static, "cyclic": cyclic, "linear": linear}


def _scan(betas, row_at, ignore, annealed=("cyclic",)):
    return D.early_collapse_scan(betas, row_at, ignore, annealed=annealed)


def test_early_collapse_scan_stops_at_the_first_static_collapse_and_tests_there_if_a_run_beats_ignoring():
    ignore = 76.0
    table = {8: _pair(_scan_row(0.15, 70.0, 0.8), _scan_row(0.2, 66.0, 1.0)),  # not collapsed: cyclic not trained
             10: _pair(_scan_row(0.01, 76.5, 0.05), _scan_row(0.2, 66.0, 0.8)),  # static collapsed; cyclic 74 < 75.24
             12: _pair(_scan_row(0.0, 77.0, 0.0), _scan_row(0.0, 77.0, 0.0))}
    row_at, asked = _scanner(table)
    rows, beta, why = _scan([8, 10, 12], row_at, ignore)
    assert (beta, why) == (10, "") and asked == [(8, "static"), (10, "static"), (10, "cyclic")]  # 12: never
    assert [(r["beta"], r["run"], r["collapsed"], r["beats ignoring"]) for r in rows] == [
        (8, "static", False, False), (10, "static", True, False), (10, "cyclic", False, True)]
    assert rows[2]["objective"] == pytest.approx(66.0 + 10 * 0.8)


def test_early_collapse_scan_is_untestable_where_no_run_beats_ignoring_by_the_margin_or_nothing_collapses():
    ignore = 76.0  # the margin: 1% of it, so 75.3 does not count as beating it
    table = {8: _pair(_scan_row(0.15, 70.0, 0.8), _scan_row(0.2, 66.0, 1.0)),
             10: _pair(_scan_row(0.01, 76.5, 0.05), _scan_row(0.1, 71.3, 0.4))}
    row_at, asked = _scanner(table)
    rows, beta, why = _scan([8, 10, 16], row_at, ignore)
    assert beta is None and asked == [(8, "static"), (10, "static"), (10, "cyclic")]
    assert "collapses is 10," in why and "nothing here shows that the collapse is not the optimum" in why
    assert "(76.0 nats per image; the static run 77.0, the cyclic run 75.3)" in why and "first beta" not in why
    row_at, asked = _scanner({b: _pair(_scan_row(0.06, 70.0, 0.5), _scan_row(0.2, 66.0, 1.0)) for b in (8, 10, 12)})
    rows, beta, why = _scan([8, 10, 12], row_at, ignore)
    assert beta is None and [b for b, _ in asked] == [8, 10, 12] and why.startswith("no static run of the scan (8,")
    row_at, _ = _scanner({8: _pair(_scan_row(0.0, 77.0, 0.0), _scan_row(0.0, 77.0, 0.0))})
    assert "the scan's first beta" in _scan([8], row_at, ignore)[2]


def test_early_collapse_scan_stops_at_a_failed_static_run_and_names_a_failed_cyclic_one():
    ignore = 76.0
    row_at, asked = _scanner({8: _pair(_scan_row(0.15, 70.0, 0.8), None), 10: _pair({}, None)})
    rows, beta, why = _scan([8, 10, 12], row_at, ignore)
    assert beta is None and asked == [(8, "static"), (10, "static")] and rows[-1]["failed"]
    assert why.startswith("the static run of the scan (8, 10, 12; seed of its own) at beta 10 failed")
    row_at, _ = _scanner({8: _pair(_scan_row(0.01, 76.5, 0.05), {})})
    rows, beta, why = _scan([8], row_at, ignore)
    assert beta is None and rows[-1]["failed"] and not rows[-1]["beats ignoring"]
    assert "the static run 76.9, the cyclic run failed" in why


def test_early_collapse_scan_trains_every_annealed_run_where_it_stops_and_any_may_make_the_test_point():
    ignore = 76.0
    table = {8: _pair(_scan_row(0.15, 70.0, 0.8), None, None),
             10: _pair(_scan_row(0.01, 76.5, 0.05), _scan_row(0.0, 77.0, 0.0), _scan_row(0.2, 66.0, 0.8))}  # linear: 74
    row_at, asked = _scanner(table)
    rows, beta, why = _scan([8, 10, 12], row_at, ignore, annealed=("linear", "cyclic"))
    assert (beta, why) == (10, "") and asked == [(8, "static"), (10, "static"), (10, "linear"), (10, "cyclic")]
    assert [(r["run"], r["beats ignoring"]) for r in rows[1:]] == [("static", False), ("linear", True),
                                                                   ("cyclic", False)]
    table[10] = _pair(_scan_row(0.01, 76.5, 0.05), _scan_row(0.0, 77.0, 0.0), {})  # the linear run failed
    rows, beta, why = _scan([10], _scanner(table)[0], ignore, annealed=("linear", "cyclic"))
    assert beta is None and "the static run 77.0, the linear run failed, the cyclic run 77.0)" in why


@pytest.mark.parametrize("annealed", [(), ("static",), ("linear", "linear"), "linear"])
def test_early_collapse_scan_refuses_annealed_labels_it_cannot_tell_apart(annealed):
    with pytest.raises(ValueError, match=r"annealed=.* is invalid: allowed distinct labels other than 'static'"):
        D.early_collapse_scan([8], _scanner({})[0], 76.0, annealed=annealed)


def test_no_collapse_shown_unless_the_static_run_collapses_on_more_than_half_the_study_seeds():
    rows = [{"seed": 0, "explained": 0.01}, {"seed": 1, "explained": 0.02}, {"seed": 2, "explained": 0.3}]
    assert D.no_collapse_shown(rows, 8) == ""  # 2 of 3 collapsed: there is a collapse to prevent
    why = D.no_collapse_shown(rows[:1] + [{"seed": 1, "explained": 0.1}, {"seed": 2}], 8)  # 1 of 3; seed 2 failed
    assert why.startswith("the static run collapsed at beta 8 on the scan's seed, but only on seeds [0] of the "
                          "study's seeds [0, 1, 2] (explained 0.010, 0.100, nan; collapsed below 0.05), and failed "
                          "on [2]: no collapse is shown"), why
    assert "but on none of the study's seeds [0, 1]" in D.no_collapse_shown(
        [{"seed": 0, "explained": 0.2}, {"seed": 1, "explained": 0.1}], 7)
    assert D.no_collapse_shown(rows[:2] + [{"seed": 2, "explained": 0.3}, {"seed": 3, "explained": 0.4}], 8)  # 2 of 4


def test_collapsed_reads_explained_and_a_failed_run_has_not_collapsed():
    assert D.collapsed({"explained": 0.049}) and not D.collapsed({"explained": 0.05})
    assert not D.collapsed({}) and D.collapsed({"explained": 0.2}, below=0.3)


def test_a_collapsed_static_run_that_still_beats_ignoring_makes_the_test_point():
    row_at, _ = _scanner({8: _pair(_scan_row(0.04, 70.0, 0.1), _scan_row(0.0, 77.0, 0.0))})  # 70.8 < 75.24
    assert _scan([8], row_at, 76.0)[1:] == (8, "")
