import dataclasses

import pytest
import torch

from vaelib.config import Config, with_overrides
from vaelib.data.datasets import data_mean_baseline, load_from_config
from vaelib.evaluation.metrics import reconstruction_mse
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import cached_fit, config_hash
from vaelib.lessons import latent_explorer as L
from vaelib.training.checkpoint import read_checkpoint


@pytest.mark.parametrize("dataset", ["mnist", "shapes"])
def test_shipped_models_are_finished_runs_of_the_notebook_config_without_optimizer_state(dataset):
    config = notebook_config(dataset, "small")
    path = L.shipped_checkpoint(config)
    assert path is not None and path.name == f"{config.name}-{config_hash(config)}.pt"
    state = read_checkpoint(path)  # weights_only: nothing in the file can run
    assert "optimizer" not in state and state["epoch"] == config.train.epochs
    saved = Config.from_dict(state["config"])
    assert config_hash(dataclasses.replace(saved, data=config.data)) == config_hash(config)
    assert path.stat().st_size < 2.5e6  # a few MB in all


def test_a_fresh_clone_opens_the_shipped_mnist_model_and_it_is_trained(tmp_path):
    config = notebook_config("mnist", "small", data_root=str(tmp_path))
    model, folder = L.load_trained(config, tmp_path / "runs", train_if_missing=False)
    assert folder == L.PRETRAINED
    train, test = (load_from_config(config.data, s) for s in ("train", "test"))
    ratio = reconstruction_mse(model, test.images) / data_mean_baseline(train, test)
    assert ratio < 0.3, ratio  # the committed report's model: about 0.24 of the data-mean baseline


def test_the_run_cache_comes_before_the_shipped_model_and_ship_copies_only_finished_runs(tiny_config, tiny_data,
                                                                                         tmp_path, monkeypatch):
    config = with_overrides(tiny_config, **{"train.epochs": 1})
    model, _, out = cached_fit(config, *tiny_data, root=tmp_path / "runs", device="cpu", quiet=True)
    shipped = L.ship(config, tmp_path / "runs", tmp_path / "pretrained")
    state = read_checkpoint(shipped)
    assert set(state) == {"model", "config", "history", "epoch", "seed", "versions"}
    assert all(torch.equal(state["model"][k], v) for k, v in model.state_dict().items())
    monkeypatch.setattr(L, "PRETRAINED", tmp_path / "pretrained")
    assert L.load_trained(config, tmp_path / "empty", train_if_missing=False)[1] == tmp_path / "pretrained"
    assert L.load_trained(config, tmp_path / "runs", train_if_missing=False)[1] == out  # the run cache first
    longer = with_overrides(config, **{"train.epochs": 3})
    (tmp_path / "runs" / f"{longer.name}-{config_hash(longer)}").mkdir()
    (out / "checkpoint.pt").rename(tmp_path / "runs" / f"{longer.name}-{config_hash(longer)}" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"is unfinished \(epoch 1 of 3\)"):
        L.ship(longer, tmp_path / "runs", tmp_path / "pretrained")


def test_fit_or_shipped_loads_the_shipped_model_and_its_history_where_the_cache_has_none(tiny_config, tiny_data,
                                                                                        tmp_path, monkeypatch):
    config = with_overrides(tiny_config, **{"train.epochs": 1})
    model, history, out = cached_fit(config, *tiny_data, root=tmp_path / "runs", device="cpu", quiet=True)
    monkeypatch.setattr(L, "PRETRAINED", tmp_path / "pretrained")
    assert L.fit_or_shipped(config, *tiny_data, root=tmp_path / "runs", device="cpu")[2] == out  # the cache first
    shipped = L.ship(config, tmp_path / "runs", tmp_path / "pretrained")
    loaded, loaded_history, source = L.fit_or_shipped(config, *tiny_data, root=tmp_path / "empty", device="cpu")
    assert source == shipped and not (tmp_path / "empty").exists()  # nothing trained, nothing written
    assert loaded_history.to_dict() == history.to_dict()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    _, _, retrained = L.fit_or_shipped(config, *tiny_data, root=tmp_path / "again", device="cpu", retrain=True,
                                       quiet=True)
    assert retrained == tmp_path / "again" / out.name  # retrain=True trains into the cache


def test_train_and_ship_trains_where_the_cache_lacks_the_run_and_never_loads_the_shipped_copy(tiny_config, tmp_path,
                                                                                            monkeypatch):
    config = with_overrides(tiny_config, **{"train.epochs": 1})
    monkeypatch.setattr(L, "load_checkpoint", lambda *a, **k: pytest.fail("loaded a shipped model"))
    shipped = L.train_and_ship(config, tmp_path / "runs", tmp_path / "pretrained")
    assert shipped == tmp_path / "pretrained" / f"{config.name}-{config_hash(config)}.pt"
    assert (tmp_path / "runs" / shipped.stem / "checkpoint.pt").is_file() and read_checkpoint(shipped)["epoch"] == 1
