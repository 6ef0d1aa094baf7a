import json
import math

import numpy as np
import pytest
import torch

from vaelib import ablation, diagnostics
from vaelib.config import BetaSchedule, with_overrides
from vaelib.train import NonFiniteLossError


def _run(totals, grads=None, label="r"):
    grads = grads or [1.0] * len(totals)
    steps = [{"step": i, "total": t, "grad_norm": g, "beta": 1.0} for i, (t, g) in enumerate(zip(totals, grads))]
    return ablation.Run(label, None, None, {"steps": steps, "epochs": []}, None)


def test_with_epochs_keeps_the_warmup_share(tiny_config):
    c = with_overrides(tiny_config, **{"train.epochs": 20, "train.schedule": {"kind": "warmup", "beta": 0.1,
                                                                           "warmup_epochs": 6.0}})
    short = ablation.with_epochs(c, 10)
    assert short.train.epochs == 10 and short.train.schedule.warmup_epochs == 3.0
    assert ablation.with_epochs(c, 0) is c


def test_steps_per_epoch_drops_the_partial_batch(tiny_config):
    assert ablation.steps_per_epoch(tiny_config, 64) == 4  # batch 16
    assert ablation.steps_per_epoch(tiny_config, 70) == 4
    assert ablation.steps_per_epoch(tiny_config, 10) == 1  # batch shrinks to the set


def test_recipes_and_their_beta_values(tiny_config):
    base = with_overrides(tiny_config, **{"train.epochs": 10})  # 64 images, batch 16: 40 steps
    anneal = ablation.annealing_configs(base, beta=1.0, n_train=64)
    rows = {r["run"]: r for r in ablation.settings(anneal, 64)}
    assert rows["static"]["beta@0"] == 1.0 and rows["static"]["beta@20"] == 1.0
    assert rows["linear"]["beta@0"] == 0.0 and rows["linear"]["beta@10"] == 0.5 and rows["linear"]["beta@20"] == 1.0
    assert rows["cyclic"]["beta@0"] == 0.0 and rows["cyclic"]["beta@10"] == 0.0  # 4 cycles of 10 steps
    warm = {r["run"]: r for r in ablation.settings(ablation.warmup_configs(base), 64)}
    assert warm["CIFAR-10 warmup"]["beta@10"] == 0.0 and warm["CIFAR-10 warmup"]["beta@20"] == 0.1  # 3 epochs at 0
    assert warm["CelebA warmup"]["beta@0"] == 0.0 and warm["CelebA warmup"]["beta@10"] == 0.9  # 1 epoch at 0
    clips = ablation.clipping_configs(base, lr=0.02)
    assert list(clips) == ["no clip", "clip 1", "clip 0.5", "clip 0.1"]
    assert [c.train.grad_clip for c in clips.values()] == [None, 1.0, 0.5, 0.1]
    assert all(c.train.lr == 0.02 for c in clips.values())
    sweep = ablation.beta_sweep_configs(base, (0.5, 2))
    assert [c.train.schedule for c in sweep.values()] == [BetaSchedule(beta=0.5), BetaSchedule(beta=2)]


def test_loss_spread_is_the_std_of_the_last_steps():
    run = _run([100.0, 100.0, 1.0, 3.0, 1.0, 3.0])
    assert ablation.loss_spread(run, last=4) == pytest.approx(1.0)
    assert ablation.loss_spread(run, last=6) > 40
    assert math.isnan(ablation.loss_spread(_run([]), last=4))


def test_format_table_aligns_and_formats():
    text = ablation.format_table([{"run": "a", "x": 1.23456, "y": None}, {"run": "long name", "x": 2, "y": 3}],
                                 ["run", "x", "y"])
    lines = text.splitlines()
    assert lines[0].split() == ["run", "x", "y"]
    assert lines[1].split() == ["a", "1.235", "-"]
    assert len({line.index("x") for line in lines[:1]}) == 1 and lines[2].startswith("long name")


def test_check_parameters_and_verdict():
    ablation.check_parameters(at_least_zero={"ablation_epochs": 0}, above_zero={"clip_lr": 0.01})
    with pytest.raises(ValueError, match="ablation_epochs=-1"):
        ablation.check_parameters(at_least_zero={"ablation_epochs": -1})
    with pytest.raises(ValueError, match="clip_lr=0.0 is invalid: allowed a value > 0"):
        ablation.check_parameters(above_zero={"clip_lr": 0.0})
    with pytest.raises(ValueError, match="beta"):
        ablation.check_parameters(above_zero={"beta": "1"})
    assert ablation.verdict(True) == "agrees with the report"
    assert ablation.verdict(False) == "does not agree here"


def test_a_run_that_goes_nonfinite_is_recorded_with_its_step(tiny_config, tiny_data, tmp_path):
    train, val = tiny_data
    bad = torch.full(train.shape, float("nan"))  # every loss is NaN: fit stops at step 0
    run = ablation.run_one("nan", tiny_config, bad, val.float() / 255, root=tmp_path, device="cpu")
    assert run.failed and run.failed_step == 0 and run.model is None
    assert json.loads((run.path / ablation.FAILED).read_text())["step"] == 0
    row = ablation.summarize(run, type("S", (), {"images": val})(), last=10)
    assert row["failed_step"] == 0 and row["nonfinite_steps"] == 1 and row["active_units"] == 0


def test_a_failure_is_parsed_and_cached(tiny_config, tiny_data, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise NonFiniteLossError("non-finite loss or gradient at step 7 (epoch 1): {...}")

    monkeypatch.setattr(ablation, "cached_fit", boom)
    run = ablation.run_one("boom", tiny_config, *tiny_data, root=tmp_path, device="cpu")
    assert run.failed_step == 7 and "step 7" in run.error

    def never(*args, **kwargs):
        raise AssertionError("a recorded failure must not train again")

    monkeypatch.setattr(ablation, "cached_fit", never)
    again = ablation.run_one("boom", tiny_config, *tiny_data, root=tmp_path, device="cpu")
    assert again.failed_step == 7


def test_run_all_trains_caches_and_summarizes(tiny_config, tiny_data, tmp_path):
    train, val = tiny_data
    configs = ablation.beta_sweep_configs(tiny_config, (0.5, 4.0))
    runs = ablation.run_all(configs, train, val, root=tmp_path, device="cpu")
    assert [r.failed for r in runs.values()] == [False, False]
    assert len(ablation.trace(runs["beta 0.5"], "total")) == 8  # 2 epochs x 4 steps
    assert np.all(ablation.trace(runs["beta 4"], "beta") == 4.0)
    rows = [ablation.summarize(r, type("S", (), {"images": val})(), last=4) for r in runs.values()]
    assert all(math.isfinite(r["test_total"]) and r["nonfinite_steps"] == 0 for r in rows)
    assert rows[0]["test_total"] == pytest.approx(rows[0]["test_recon"] + rows[0]["test_kl"])  # beta = 1
    again = ablation.run_one("beta 0.5", configs["beta 0.5"], train, val, root=tmp_path, device="cpu")
    assert again.history["steps"] == runs["beta 0.5"].history["steps"]  # loaded, not retrained
    samples = ablation.sample_rows(runs, n=3)
    assert samples["beta 4"].shape == (3, 1, 16, 16)
    for fig in (ablation.trace_plot(runs, "grad_norm"), ablation.curves_with_beta(runs),
                diagnostics.image_rows(samples, "samples")):
        assert fig.axes
