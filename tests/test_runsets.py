import dataclasses
import math

import pytest

from vaelib.config import with_overrides
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import cached_fit, config_hash, run_dir
from vaelib.training.history import History


def test_notebook_config_budgets():
    tiny, small, full = (notebook_config("cifar10", b) for b in ("tiny", "small", "full"))
    assert (tiny.train.epochs, tiny.data.max_train) == (2, 256)
    assert (small.train.epochs, small.data.max_train) == (5, 5000)
    assert (full.train.epochs, full.data.max_train) == (50, None)
    # the warmup keeps its share of the run: 15 of 50 epochs -> 1.5 of 5
    assert small.train.schedule.warmup_epochs == 1.5 and full.train.schedule.warmup_epochs == 15
    assert notebook_config("celeba").name == "celeba_small"
    assert notebook_config("shapes", "tiny", image_size=64).data.image_size == 64


def test_notebook_config_refuses_bad_values():
    with pytest.raises(ValueError, match="dataset='svhn' is invalid: allowed fashion_mnist"):
        notebook_config("svhn")
    with pytest.raises(ValueError, match="budget='large' is invalid: allowed tiny, small, full"):
        notebook_config("digits", "large")


def test_cache_key_ignores_where_the_data_lives():
    c = notebook_config("digits", "tiny")
    moved = dataclasses.replace(c, data=dataclasses.replace(c.data, root="/elsewhere", download=True))
    assert config_hash(moved) == config_hash(c)
    assert config_hash(with_overrides(c, **{"train.seed": 1})) != config_hash(c)
    assert run_dir(c, "runs").name == f"digits-{config_hash(c)}"


def test_cache_key_ignores_sync_every_but_not_options_that_change_rounding():
    c = notebook_config("digits", "tiny")
    assert config_hash(with_overrides(c, **{"train.sync_every": 1})) == config_hash(c)  # same history (test_train)
    for field, value in (("train.channels_last", not c.train.channels_last), ("train.adam_impl", "fused")):
        assert config_hash(with_overrides(c, **{field: value})) != config_hash(c), field


def test_cache_key_ignores_the_shapes_size_except_on_shapes():
    for dataset, same in (("mnist", True), ("shapes", False)):
        c = notebook_config(dataset, "tiny")
        bigger = with_overrides(c, **{"data.shapes_train": c.data.shapes_train * 2})
        assert (config_hash(bigger) == config_hash(c)) is same, dataset


def test_cache_key_is_the_same_for_4_and_4_0():
    c = notebook_config("digits", "tiny")
    assert config_hash(with_overrides(c, **{"train.schedule.beta": 4})) == \
        config_hash(with_overrides(c, **{"train.schedule.beta": 4.0}))


def test_cached_fit_loads_instead_of_retraining(tiny_config, tiny_data, tmp_path):
    model, h1, out = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    _, h2, _ = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    assert h2 == h1 and (out / "checkpoint.pt").stat().st_mtime_ns == mtime  # loaded, not rewritten
    _, h3, _ = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True, retrain=True)
    assert (out / "checkpoint.pt").stat().st_mtime_ns != mtime and h3.steps == h1.steps


def test_the_key_is_versioned(monkeypatch):
    from vaelib.experiments import cache as runcache

    c = notebook_config("mnist", "small", 0)
    before = config_hash(c)
    monkeypatch.setattr(runcache, "KEY_VERSION", runcache.KEY_VERSION + 1)
    assert config_hash(c) != before  # a new key definition gives every run a new folder


def test_run_seeds_trains_each_setting_per_seed_and_summarizes_convergence(tiny_config, tiny_data, tmp_path):
    from vaelib.experiments.evidence import convergence
    from vaelib.experiments.measures import summarize
    from vaelib.experiments.runs import run_seeds, seeds_from

    assert seeds_from(3, 2) == [3, 4]
    with pytest.raises(ValueError, match="seeds=0 is invalid"):
        seeds_from(0, 0)
    configs = {"beta 1": with_overrides(tiny_config, **{"train.epochs": 5})}
    runs = run_seeds(configs, [0, 1], *tiny_data, root=tmp_path, device="cpu")
    assert [r.config.train.seed for r in runs["beta 1"]] == [0, 1]
    assert runs["beta 1"][0].path != runs["beta 1"][1].path  # one cache entry per seed
    assert runs["beta 1"][0].history.steps != runs["beta 1"][1].history.steps
    test = type("Split", (), {"images": tiny_data[1]})()
    rows = [summarize(r, test, last=10) for r in runs["beta 1"]]
    assert [r["seed"] for r in rows] == [0, 1]
    for run, row in zip(runs["beta 1"], rows):  # the row carries the rule's answer on the run's own history
        rule = convergence(run.history)
        assert row["converged"] is rule["converged"] and row["last_20pct_share"] == rule["share"]
        assert 0 <= row["last_20pct_share"] <= 1
    assert all(r["early_volatility"] > 0 and r["last_20pct_improvement"] == r["last_20pct_improvement"] for r in rows)


def test_volatility_ignores_the_trend_and_can_start_at_the_final_beta():
    import math

    from vaelib.experiments.measures import volatility
    from vaelib.experiments.runs import Run

    steps = [{"total": 100 * 0.9 ** k, "kl": (1.0 if k % 2 else 2.0) if k >= 4 else 5.0, "beta": 0.0 if k < 4 else 0.9}
             for k in range(20)]
    run = Run("r", None, None, History(steps=steps), None)
    assert volatility(run, "total", 20) == pytest.approx(0, abs=1e-12)  # a steady geometric fall is no noise
    assert volatility(run, "kl", 4) == 0  # the warmup steps: constant
    # after the switch: 2, 1, 2, 1 -> log-changes -ln 2, +ln 2, -ln 2, whose (population) std is ln 2 * sqrt(8/9)
    assert volatility(run, "kl", 4, at_final_beta=True) == pytest.approx(math.log(2) * math.sqrt(8 / 9))
    assert math.isnan(volatility(Run("e", None, None, History(), None), "kl", 4))


@pytest.mark.parametrize("headless,disabled", [("1", True), ("0", None)])
def test_run_seeds_has_one_bar_over_all_runs_off_when_unattended(tiny_config, tiny_data, tmp_path, monkeypatch,
                                                                 headless, disabled):
    from vaelib.experiments import runs as runsets

    seen = {}

    class Bar:  # records what run_seeds asks of tqdm
        def __init__(self, **kwargs):
            seen.update(kwargs, updates=0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def set_postfix_str(self, text):
            seen["postfix"] = text

        def update(self, n):
            seen["updates"] += n

    monkeypatch.setenv("VAELIB_HEADLESS", headless)
    monkeypatch.setattr(runsets, "tqdm", Bar)
    configs = {"a": tiny_config, "b": with_overrides(tiny_config, **{"train.schedule.beta": 0.5})}
    runsets.run_seeds(configs, [0, 1], *tiny_data, root=tmp_path, device="cpu")
    assert seen["total"] == 4 and seen["updates"] == 4 and seen["disable"] is disabled
    assert seen["postfix"] == "b, seed 1"


def test_kl_spike_and_clipped_share_read_the_step_trace(tiny_config):
    from vaelib.experiments.measures import clipped_share, kl_spike
    from vaelib.experiments.runs import Run
    from vaelib.training.history import History

    kl = [10.0] * 30
    kl[20] = 40.0  # one spike, 4x the median of the 10 steps before it
    steps = [{"kl": v, "grad_norm": float(i % 4), "total": v, "recon": 0.0, "beta": 1.0, "lr": 1e-3, "step": i,
              "epoch": 0} for i, v in enumerate(kl)]
    run = Run("r", with_overrides(tiny_config, **{"train.grad_clip": 2.0}), None, History(steps=steps), None)
    assert kl_spike(run, 10, 15) == pytest.approx(4.0) and kl_spike(run, 21, 9) == pytest.approx(1.0)
    assert math.isnan(kl_spike(run, 25, 10))  # the window runs past the end of the run
    assert kl_spike(run, 0, 25) == pytest.approx(4.0)  # from step 1, the median of the steps there are
    assert clipped_share(run) == pytest.approx(7 / 30)  # norms 3 (> 2) on every 4th step from 3
    with pytest.raises(ValueError, match="start=-1"):
        kl_spike(run, -1, 10)


def test_a_run_that_must_train_several_epochs_has_an_identity(tiny_config, tiny_data, tmp_path):
    """until_converged sets train.min_epochs: the run folder's marker cannot come from a 1-epoch config (refused by
    its own checks), and such a run trains and loads like any other."""
    from vaelib.experiments.cache import run_identity
    from vaelib.lessons.stability_ablations import until_converged

    plain = with_overrides(tiny_config, **{"train.epochs": 3})
    assert run_identity(plain) == run_identity(with_overrides(plain, **{"train.epochs": 7}))  # a resume adds epochs
    assert run_identity(plain) != run_identity(with_overrides(plain, **{"train.lr": 0.002}))
    long = with_overrides(tiny_config, **{"train.epochs": 6, "train.min_epochs": 3, "train.stop_tol": 0.05})
    assert run_identity(long) != run_identity(plain)
    model, history, path = cached_fit(long, *tiny_data, root=tmp_path, quiet=True)
    again, history2, _ = cached_fit(long, *tiny_data, root=tmp_path, quiet=True)  # loaded, not refused
    assert history2.steps == history.steps and len(history.epochs) >= 3
    assert until_converged({"x": plain}, 0.05)["x"].train.min_epochs == 3


def test_convergence_is_judged_once_and_stored_with_the_run(tiny_config, tiny_data, tmp_path):
    """run_config stores evidence.judge_run in the run folder's marker; a loaded run reads it back, and the rows
    read it instead of judging again (a judgement planted in the marker is what they report)."""
    import json

    from vaelib.experiments.cache import MARKER, stored_convergence
    from vaelib.experiments.evidence import judge_run, stopped
    from vaelib.experiments.measures import run_convergence
    from vaelib.experiments.runs import run_one

    config = with_overrides(tiny_config, **{"train.epochs": 6, "train.stop_tol": 0.5})
    run = run_one("a", config, *tiny_data, root=tmp_path, device="cpu")
    stored = stored_convergence(run.path)
    assert stored is not None and stored["tol"] == 0.5 and stored["epochs"] == len(run.history.epochs)
    fresh = judge_run(run.history, config)
    assert {k: stored[k] for k in ("converged", "state", "tol")} == {k: fresh[k] for k in ("converged", "state", "tol")}
    if len(run.history.epochs) < 6:  # it stopped early: the stop rule and the record say the same
        assert stopped(run.history, config) and (stored["converged"] or stored["state"] == "derailed")
    assert run_convergence(run, 0.5) is run.convergence  # read, not judged again
    marker = json.loads((run.path / MARKER).read_text())
    marker["convergence"]["state"] = "planted"
    (run.path / MARKER).write_text(json.dumps(marker))
    again = run_one("a", config, *tiny_data, root=tmp_path, device="cpu")
    assert run_convergence(again, 0.5)["state"] == "planted"
    assert run_convergence(again, 0.2)["state"] != "planted"  # another tolerance is another question: judged
    assert run_convergence(again, 0.2)["tol"] == 0.2


def test_epochs_to_a_target_counts_epochs_and_censors_a_run_that_never_gets_there():
    import math
    from pathlib import Path

    from vaelib.experiments.measures import epochs_to
    from vaelib.experiments.runs import Run

    config = notebook_config("digits", "tiny")
    h = History()
    for e, v in enumerate((50.0, 30.0, 20.0, 18.0)):
        h.epochs.append({"epoch": e, "beta": 1.0, "val_recon": v, "val_kl": 0.0})
    run = Run("a", config, None, h, Path("."))
    assert [epochs_to(run, t) for t in (60.0, 30.0, 25.0, 18.0, 17.9)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert math.isnan(epochs_to(run, math.nan))
    assert math.isnan(epochs_to(Run("b", config, None, h, Path("."), failed_step=3, error="non-finite"), 30.0))


def test_separates_at_finds_the_first_step_where_two_arms_part(tiny_config):
    from vaelib.experiments.measures import separates_at
    from vaelib.experiments.runs import Run
    from vaelib.training.history import History

    def run(totals):
        steps = [{"total": v, "kl": 1.0, "recon": v, "beta": 1.0, "grad_norm": 1.0, "lr": 1e-3, "step": i, "epoch": 0}
                 for i, v in enumerate(totals)]
        return Run("r", tiny_config, None, History(steps=steps), None)

    same = [100.0, 90.0, 80.0, 70.0, 60.0]
    assert separates_at(run(same), run(same)) is None  # one run: never apart
    assert separates_at(run([100.0, 90.5, 80.0, 75.0, 60.0]), run(same)) == 3  # 0.6% at step 1, 7% at step 3
    assert separates_at(run([100.0, 90.5, 80.0]), run(same), rel=0.005) == 1  # the share is the caller's
    assert separates_at(run([100.0, float("nan")]), run(same)) == 1  # a non-finite step is apart
    with pytest.raises(ValueError, match="rel=0 is invalid"):
        separates_at(run(same), run(same), rel=0)
