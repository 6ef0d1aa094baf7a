import dataclasses

import pytest

from vaelib.config import with_overrides
from vaelib.experiments import cached_fit, config_hash, notebook_config, run_dir


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
    with pytest.raises(ValueError, match="dataset='mnist' is invalid: allowed fashion_mnist"):
        notebook_config("mnist")
    with pytest.raises(ValueError, match="budget='large' is invalid: allowed tiny, small, full"):
        notebook_config("digits", "large")


def test_cache_key_ignores_where_the_data_lives():
    c = notebook_config("digits", "tiny")
    moved = dataclasses.replace(c, data=dataclasses.replace(c.data, root="/elsewhere", download=True))
    assert config_hash(moved) == config_hash(c)
    assert config_hash(with_overrides(c, **{"train.seed": 1})) != config_hash(c)
    assert run_dir(c, "runs").name == f"digits-{config_hash(c)}"


def test_cached_fit_loads_instead_of_retraining(tiny_config, tiny_data, tmp_path):
    model, h1, out = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    mtime = (out / "checkpoint.pt").stat().st_mtime_ns
    _, h2, _ = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    assert h2 == h1 and (out / "checkpoint.pt").stat().st_mtime_ns == mtime  # loaded, not rewritten
    _, h3, _ = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True, retrain=True)
    assert (out / "checkpoint.pt").stat().st_mtime_ns != mtime and h3["steps"] == h1["steps"]
