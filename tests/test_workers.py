"""runsets.train_in_workers / run_seeds(workers=...): a grid trained in parallel processes on the CPU."""

import json

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.experiments import cache as runcache
from vaelib.experiments import runs as runsets
from vaelib.training.trainer import fit


def _grid(tiny_config):
    return {"beta 1": tiny_config, "beta 4": with_overrides(tiny_config, **{"train.schedule.beta": 4.0})}


def test_a_grid_in_two_processes_is_cached_and_loads_as_in_one(tiny_config, tiny_data, tmp_path):
    train, val = tiny_data
    configs = _grid(tiny_config)
    grid = [runsets.with_seed(c, s) for c in configs.values() for s in (0, 1)]
    assert not any(runcache.trained(c, tmp_path) for c in grid)
    done = runsets.train_in_workers(grid + grid[:1], train, val, workers=2, root=tmp_path, device="cpu")
    assert len(done) == 4  # each config once, though listed twice
    assert all(runcache.trained(c, tmp_path) for c in grid)
    assert runsets.train_in_workers(grid, train, val, workers=2, root=tmp_path, device="cpu") == []  # cached

    # a worker's run is the run this process makes with the same thread count (1 of the 2 threads each)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // 2))
    try:
        _, here = fit(grid[1], train, val, device="cpu", quiet=True)
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((runcache.run_dir(grid[1], tmp_path) / "history.json").read_text())
    def numbers(epochs):  # what the run computed, not how long it took
        return [{k: v for k, v in e.items() if k not in ("seconds", "images_per_sec")} for e in epochs]

    assert numbers(saved["epochs"]) == numbers(json.loads(json.dumps(here.epochs)))
    assert saved["steps"] == json.loads(json.dumps(here.steps))
    assert saved["options"]["threads"] == max(1, threads // 2)

    runs = runsets.run_seeds(configs, [0, 1], train, val, root=tmp_path, device="cpu", workers=2)
    assert list(runs) == list(configs) and all(len(rs) == 2 and not rs[0].failed for rs in runs.values())
    assert [r.config.train.seed for r in runs["beta 4"]] == [0, 1]
    assert runs["beta 1"][1].history.epochs == saved["epochs"]  # loaded from the cache (timings too): not retrained


def test_a_run_that_goes_nonfinite_in_a_worker_is_recorded_as_failed(tiny_config, tiny_data, tmp_path):
    # fit refuses NaN images before training: an absurd learning rate breaks the weights in step 0's update instead,
    # so that step 1's loss is NaN
    grid = {label: with_overrides(c, **{"train.lr": 1e30}) for label, c in _grid(tiny_config).items()}
    runs = runsets.run_seeds(grid, [0], *tiny_data, root=tmp_path, device="cpu", workers=2)
    assert all(rs[0].failed and rs[0].failed_step == 1 for rs in runs.values())
    assert all((rs[0].path / runcache.FAILED).exists() for rs in runs.values())


def test_workers_must_be_a_positive_integer_and_one_trains_nothing(tiny_config, tiny_data, tmp_path):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"workers={bad!r} is invalid: allowed an integer >= 1"):
            runsets.train_in_workers([tiny_config], *tiny_data, workers=bad, root=tmp_path)
    assert runsets.train_in_workers([tiny_config], *tiny_data, workers=1, root=tmp_path) == []
    assert not runcache.trained(tiny_config, tmp_path)
