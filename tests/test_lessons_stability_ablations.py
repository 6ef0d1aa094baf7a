import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelib.config import BetaSchedule, with_overrides
from vaelib.experiments import cache as runcache
from vaelib.experiments import measures as runstats
from vaelib.experiments import runs as runsets
from vaelib.lessons import failure_gallery, stability_ablations, traces
from vaelib.schedules import beta_at, layout_epochs
from vaelib.training.history import History
from vaelib.training.steps import steps_per_epoch
from vaelib.training.trainer import NonFiniteLossError


def _run(totals, grads=None, label="r"):
    grads = grads or [1.0] * len(totals)
    steps = [{"step": i, "total": t, "grad_norm": g, "beta": 1.0} for i, (t, g) in enumerate(zip(totals, grads))]
    return runsets.Run(label, None, None, History(steps=steps), None)


def test_with_epochs_keeps_the_warmup_share(tiny_config):
    c = with_overrides(tiny_config, **{"train.epochs": 20, "train.schedule": {"kind": "warmup", "beta": 0.1,
                                                                           "warmup_epochs": 6.0}})
    short = runsets.with_epochs(c, 10)
    assert short.train.epochs == 10 and short.train.schedule.warmup_epochs == 3.0
    assert runsets.with_epochs(c, 0) is c


def test_steps_per_epoch_drops_the_partial_batch(tiny_config):
    assert steps_per_epoch(tiny_config, 64) == 4  # batch 16
    assert steps_per_epoch(tiny_config, 70) == 4
    with pytest.raises(ValueError, match="batch_size=16 is invalid for 10 training images"):  # as fit refuses it
        steps_per_epoch(tiny_config, 10)


def test_recipes_and_their_beta_values(tiny_config):
    base = with_overrides(tiny_config, **{"train.epochs": 10})  # 64 images, batch 16: 40 steps
    anneal = stability_ablations.annealing_configs(base, beta=1.0, n_train=64)
    rows = {r["run"]: r for r in stability_ablations.settings(anneal, 64)}
    assert rows["static"]["beta@0"] == 1.0 and rows["static"]["beta@20"] == 1.0
    assert rows["linear"]["beta@0"] == 0.0 and rows["linear"]["beta@10"] == 0.5 and rows["linear"]["beta@20"] == 1.0
    assert rows["cyclic"]["beta@0"] == 0.0 and rows["cyclic"]["beta@10"] == 0.0  # 4 cycles of 10 steps
    warm = {r["run"]: r for r in stability_ablations.settings(stability_ablations.warmup_configs(base), 64)}
    assert warm["CIFAR-10 warmup"]["beta@10"] == 0.0 and warm["CIFAR-10 warmup"]["beta@20"] == 0.1  # 3 epochs at 0
    assert warm["CelebA warmup"]["beta@0"] == 0.0 and warm["CelebA warmup"]["beta@10"] == 0.9  # 1 epoch at 0
    clips = stability_ablations.clipping_configs(base, lr=0.02)
    assert list(clips) == ["no clip", "clip 1", "clip 0.5", "clip 0.1"]
    assert [c.train.grad_clip for c in clips.values()] == [None, 1.0, 0.5, 0.1]
    assert all(c.train.lr == 0.02 for c in clips.values())
    # the first step at the final beta: 1 epoch (4 steps) at 0 for the CelebA recipe, 3 for CIFAR-10, 0 if static
    warm_cfg = stability_ablations.warmup_configs(base)
    assert [stability_ablations.switch_step(warm_cfg[k], 64) for k in warm_cfg] == [0, 12, 0, 4]
    sweep = stability_ablations.beta_sweep_configs(base, (0.5, 2))
    assert [c.train.schedule for c in sweep.values()] == [BetaSchedule(beta=0.5), BetaSchedule(beta=2)]


def test_the_early_collapse_runs_each_get_the_static_runs_epochs_at_the_target_beta(tiny_config):
    """held_at_target: an annealed run trains on past its ramp (linear: the first half of the base's epochs; cyclic:
    its cycles laid over them, the last ramp ending 7/8 of the way) for as many epochs at beta as the static run has,
    its schedule where it was."""
    base = with_overrides(tiny_config, **{"train.epochs": 8})  # 64 images, batch 16: 4 steps per epoch
    runs = stability_ablations.early_collapse_configs(base, 8.0, 64)
    assert {k: (c.train.epochs, stability_ablations.ramp_epochs(c, 64)) for k, c in runs.items()} == {
        "static": (8, 0), "linear": (12, 4), "cyclic": (15, 7)}
    for label, c in runs.items():
        spe, ramp = 4, stability_ablations.ramp_epochs(c, 64)
        total = spe * layout_epochs(c.train)
        betas = [beta_at(c.train.schedule, step, spe, total) for step in range(spe * c.train.epochs)]
        assert all(b == 8.0 for b in betas[spe * ramp:]) and len(betas[spe * ramp:]) == spe * 8, label
        assert ramp == 0 or betas[spe * ramp - 1] < 8.0  # the ramp ends inside its last epoch, not before
    assert layout_epochs(runs["cyclic"].train) == 8  # the cycles keep their place: laid over the base's 8 epochs
    warm = with_overrides(base, **{"train.schedule": {"kind": "warmup", "beta": 0.9, "warmup_epochs": 2.5}})
    assert stability_ablations.ramp_epochs(warm, 64) == 3  # a warmup ending mid-epoch counts that epoch
    assert stability_ablations.held_at_target({"w": warm}, 5, 64)["w"].train.epochs == 8


def test_ramp_epochs_reads_the_schedules_own_end_even_past_the_run_and_within_rounding(tiny_config):
    base = with_overrides(tiny_config, **{"train.epochs": 4})  # 64 images, batch 16: 4 steps per epoch
    long = with_overrides(base, **{"train.schedule": {"kind": "linear", "beta": 1.0, "anneal_steps": 30}})
    assert stability_ablations.ramp_epochs(long, 64) == 8  # a ramp longer than the 4-epoch run: its own 8 epochs
    assert stability_ablations.held_at_target({"l": long}, 2, 64)["l"].train.epochs == 10
    odd = with_overrides(base, **{"train.schedule": {"kind": "cyclic", "beta": 0.9, "beta_start": 0.2, "cycles": 2}})
    assert stability_ablations.ramp_epochs(odd, 64) == 3  # 0.2 -> 0.9 lands within rounding of 0.9: reached
    flat = with_overrides(base, **{"train.schedule": {"kind": "linear", "beta": 0.5, "beta_start": 0.5}})
    assert stability_ablations.ramp_epochs(flat, 64) == 0  # a ramp from the target to itself is no ramp


def test_switch_step_finds_a_ramps_end_within_rounding(tiny_config):
    base = with_overrides(tiny_config, **{"train.epochs": 4})  # 64 images, batch 16: 16 steps
    ramp = with_overrides(base, **{"train.schedule": {"kind": "linear", "beta": 0.9, "beta_start": 0.2,
                                                      "anneal_steps": 10}})
    assert beta_at(ramp.train.schedule, 10, 4, 16) != 0.9  # 0.2 + 0.7 * 1.0 is not 0.9 in floating point
    assert stability_ablations.switch_step(ramp, 64) == 10
    warm = with_overrides(base, **{"train.schedule": {"kind": "warmup", "beta": 0.9, "warmup_epochs": 1}})
    assert stability_ablations.switch_step(warm, 64) == 4


def test_loss_spread_is_the_std_of_the_last_steps():
    run = _run([100.0, 100.0, 1.0, 3.0, 1.0, 3.0])
    assert runstats.loss_spread(run, last=4) == pytest.approx(1.0)
    assert runstats.loss_spread(run, last=6) > 40
    assert math.isnan(runstats.loss_spread(_run([]), last=4))


def test_check_parameters():
    stability_ablations.check_parameters(at_least_zero={"ablation_epochs": 0}, above_zero={"clip_lr": 0.01})
    with pytest.raises(ValueError, match="ablation_epochs=-1"):
        stability_ablations.check_parameters(at_least_zero={"ablation_epochs": -1})
    with pytest.raises(ValueError, match="clip_lr=0.0 is invalid: allowed a value > 0"):
        stability_ablations.check_parameters(above_zero={"clip_lr": 0.0})
    with pytest.raises(ValueError, match="beta"):
        stability_ablations.check_parameters(above_zero={"beta": "1"})


def test_a_run_that_goes_nonfinite_is_recorded_with_its_step(tiny_config, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr("vaelib.models.base.check_pixels", lambda images, subject: None)  # fit refuses NaN images
    train, val = tiny_data
    bad = torch.full(train.shape, float("nan"))  # every loss is NaN: fit stops at step 0
    run = runsets.run_one("nan", tiny_config, bad, val.float() / 255, root=tmp_path, device="cpu")
    assert run.failed and run.failed_step == 0 and run.model is None
    assert json.loads((run.path / runcache.FAILED).read_text())["step"] == 0
    row = runstats.summarize(run, type("S", (), {"images": val})(), last=10)
    assert row["failed_step"] == 0 and row["nonfinite_steps"] == 1 and not row["converged"]
    assert all(math.isnan(row[k]) for k in ("test_total", "test_recon", "test_kl", "active_units"))  # no model


def test_a_failure_is_parsed_and_cached(tiny_config, tiny_data, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise NonFiniteLossError("non-finite loss or gradient at step 7 (epoch 1): {...}")

    monkeypatch.setattr(runsets, "cached_fit", boom)
    run = runsets.run_one("boom", tiny_config, *tiny_data, root=tmp_path, device="cpu")
    assert run.failed_step == 7 and "step 7" in run.error

    def never(*args, **kwargs):
        raise AssertionError("a recorded failure must not train again")

    monkeypatch.setattr(runsets, "cached_fit", never)
    again = runsets.run_one("boom", tiny_config, *tiny_data, root=tmp_path, device="cpu")
    assert again.failed_step == 7


def test_run_all_trains_caches_and_summarizes(tiny_config, tiny_data, tmp_path):
    train, val = tiny_data
    configs = stability_ablations.beta_sweep_configs(tiny_config, (0.5, 4.0))
    runs = runsets.run_all(configs, train, val, root=tmp_path, device="cpu")
    assert [r.failed for r in runs.values()] == [False, False]
    assert len(runstats.trace(runs["beta 0.5"], "total")) == 8  # 2 epochs x 4 steps
    assert np.all(runstats.trace(runs["beta 4"], "beta") == 4.0)
    rows = [runstats.summarize(r, type("S", (), {"images": val})(), last=4) for r in runs.values()]
    assert all(math.isfinite(r["test_total"]) and r["nonfinite_steps"] == 0 for r in rows)
    assert rows[0]["test_total"] == pytest.approx(rows[0]["test_recon"] + rows[0]["test_kl"])  # beta = 1
    again = runsets.run_one("beta 0.5", configs["beta 0.5"], train, val, root=tmp_path, device="cpu")
    assert again.history.steps == runs["beta 0.5"].history.steps  # loaded, not retrained
    samples = traces.sample_rows(runs, n=3)
    assert samples["beta 4"].shape == (3, 1, 16, 16)
    for fig in (traces.trace_plot(runs, "grad_norm"), traces.curves_with_beta(runs),
                failure_gallery.image_rows(samples, "samples")):
        assert fig.axes


def test_until_converged_extends_every_run_and_keeps_the_schedules_in_place(tiny_config):
    base = runsets.with_epochs(tiny_config, 10)
    n_train = 64
    configs = {**stability_ablations.annealing_configs(base, beta=0.8, n_train=n_train),
               **stability_ablations.warmup_configs(base)}
    out = stability_ablations.until_converged(configs, tol=0.05, cap=2.0)
    assert list(out) == list(configs)
    for label, c in out.items():
        before = configs[label]
        assert (c.train.epochs, c.train.stop_tol, c.train.min_epochs) == (20, 0.05, 10)  # on, never stopping early
        assert c.train.schedule == before.train.schedule  # the ramp, the warmups and the cycles keep their place
    spe = 64 // tiny_config.train.batch_size
    cyc, nominal = out["cyclic"], configs["cyclic"]
    assert layout_epochs(cyc.train) == layout_epochs(nominal.train) == 10  # the cycles: over the nominal 10 epochs
    assert [beta_at(cyc.train.schedule, t, spe, spe * layout_epochs(cyc.train)) for t in range(10 * spe)] == [
        beta_at(nominal.train.schedule, t, spe, spe * 10) for t in range(10 * spe)]  # the same first 10 epochs
    assert {beta_at(cyc.train.schedule, t, spe, spe * 10) for t in range(10 * spe, 20 * spe)} == {0.8}  # then held
    rows = {r["run"]: r for r in stability_ablations.settings(out, n_train)}
    assert rows["static"]["stop"] == rows["cyclic"]["stop"] == "converged at 0.05, from epoch 10"
    assert stability_ablations.until_converged(configs, tol=0.0) == configs  # no tolerance: as they were
    short = stability_ablations.until_converged({"a": runsets.with_epochs(tiny_config, 2)}, 0.05, 2.0)
    assert short["a"].train.stop_tol == 0 and short["a"].train.epochs == 2  # 4 epochs could never be judged
    for bad in ({"tol": -0.1}, {"tol": 0.05, "cap": 0.5}):
        with pytest.raises(ValueError, match="are invalid"):
            stability_ablations.until_converged(configs, **{"cap": 2.0, **bad})


def test_stand_in_names_the_data_and_model_that_replace_the_sources():
    from vaelib.experiments.budgets import notebook_config

    mnist = notebook_config("mnist", "tiny")
    assert stability_ablations.stand_in(mnist, "fashion_mnist") == (
        "embedded mnist 1x32x32 (hidden [32, 64], latent 32) for Fashion-MNIST")
    textured = with_overrides(notebook_config("shapes", "tiny"), **{"data.background": "textured"})
    assert stability_ablations.stand_in(textured, "celeba").startswith("embedded shapes textured background, 3x32x32")
    assert stability_ablations.stand_in(notebook_config("fashion_mnist", "tiny"), "fashion_mnist").startswith(
        "Fashion-MNIST itself")
    with pytest.raises(ValueError, match="source_data='svhn' is invalid"):
        stability_ablations.stand_in(mnist, "svhn")
    # a claim whose own stand-in is the other embedded data names it, and `away` maps that text to where it runs
    assert stability_ablations.stand_in(mnist, "celeba") == "embedded shapes for CelebA, not this report's data"
    assert stability_ablations.away(mnist) == {"embedded shapes for CIFAR-10, not this report's data": "shapes",
                                               "embedded shapes for CelebA, not this report's data": "shapes"}
    shapes = notebook_config("shapes", "tiny")
    assert list(stability_ablations.away(shapes).values()) == ["mnist"]
    assert stability_ablations.stand_in(notebook_config("digits", "tiny"), "celeba").endswith("(a secondary stand-in)")
    assert stability_ablations.away(notebook_config("digits", "tiny")) == {}


def test_a_failure_says_when_the_run_had_frozen_before_it(tiny_config):
    """A run whose gradient was exactly 0 up to the step that failed (a saturated decoder under a beta = 0 warmup,
    as on shapes) says so, with the step it froze at and the KL there; a run still learning says nothing more."""
    def steps(grads):
        return [{"step": i, "epoch": 0, "beta": 0.0, "kl": 10.0 ** i, "grad_norm": g} for i, g in enumerate(grads)]

    def failed(grads):
        history = History(steps=steps(grads), epochs=[{"epoch": 0}])
        return runsets.Run("w", tiny_config, None, history, Path("."), failed_step=len(grads), error="x")

    text = runsets.failure(failed([5.0, 3.0, 0.0, 2.0, 0.0, 0.0]))
    assert text.endswith("gradient exactly 0 from step 4 to the last recorded step 5, KL 1e+05 nats there")
    assert "frozen" not in runsets.failure(failed([5.0, 0.0, 1.0]))
    assert "from step 0" in runsets.failure(failed([0.0, 0.0]))
