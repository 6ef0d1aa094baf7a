import dataclasses
import json
import re
import typing

import pytest
import torch

from vaelib.config import (
    PRESETS,
    BetaSchedule,
    Config,
    DataConfig,
    ModelConfig,
    TrainConfig,
    get_preset,
    with_overrides,
)


def test_presets_match_the_reports():
    fm, cf, ce, cs = (PRESETS[k] for k in ("fashion_mnist", "cifar10", "celeba", "celeba_small"))
    assert fm.input_shape == (1, 32, 32) and fm.model.hidden_dims == (32, 64) and fm.model.latent_dim == 32
    assert fm.train.schedule == BetaSchedule("constant", beta=0.8)
    assert cf.input_shape == (3, 32, 32) and cf.model.hidden_dims == (64, 128, 256, 512)
    assert cf.model.latent_dim == 256
    assert (cf.train.schedule.kind, cf.train.schedule.warmup_epochs, cf.train.schedule.beta) == ("warmup", 15, 0.1)
    assert ce.input_shape == (3, 64, 64) and ce.model.latent_dim == 256
    assert (ce.train.schedule.kind, ce.train.schedule.warmup_epochs, ce.train.schedule.beta) == ("warmup", 2, 0.9)
    assert cs.model.hidden_dims == (32, 64, 128, 256) and cs.model.latent_dim == 128
    assert cs.model.batch_norm and cs.train.grad_clip == 1.0
    assert all(c.train.recon == "mse" for c in PRESETS.values())
    # the sources' lr; the embedded shapes stand-in, no source's, trains at 2e-3 (see its comment in config.py)
    assert all(c.train.lr == (2e-3 if k == "shapes" else 1e-3) for k, c in PRESETS.items())
    assert set(PRESETS) == {"fashion_mnist", "cifar10", "celeba", "celeba_small", "celeba128", "mnist", "digits",
                            "shapes"}
    mn = PRESETS["mnist"]  # the fashion_mnist preset on real MNIST digits
    assert (mn.model, mn.train) == (fm.model, fm.train) and mn.input_shape == fm.input_shape


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_round_trip_through_json(name):
    c = PRESETS[name]
    assert Config.from_json(c.to_json()) == c
    assert Config.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_overrides_with_replace_and_dotted_paths():
    c = get_preset("digits")
    c2 = dataclasses.replace(c, train=dataclasses.replace(c.train, epochs=3))
    assert c2.train.epochs == 3 and c.train.epochs == 100
    c3 = with_overrides(c, **{"train.epochs": 3, "train.schedule.beta": 2.0, "model.latent_dim": 8})
    assert (c3.train.epochs, c3.train.schedule.beta, c3.model.latent_dim) == (3, 2.0, 8)
    with pytest.raises(ValueError, match="unknown config field 'train.epoch'"):
        with_overrides(c, **{"train.epoch": 3})


@pytest.mark.parametrize("make, message", [
    (lambda: get_preset("svhn"), "unknown preset 'svhn': allowed fashion_mnist"),
    (lambda: DataConfig(dataset="svhn"), "data.dataset='svhn' is invalid: allowed one of fashion_mnist"),
    (lambda: ModelConfig(latent_dim=0), "model.latent_dim=0 is invalid: allowed an integer >= 1"),
    (lambda: ModelConfig(hidden_dims=()), r"model.hidden_dims=\(\) is invalid: allowed at least one layer"),
    (lambda: ModelConfig(hidden_dims=(32, -4)), r"model.hidden_dims=\(32, -4\) is invalid: allowed positive"),
    (lambda: ModelConfig(hidden_dims=(32, 0)), r"model.hidden_dims=\(32, 0\) is invalid"),
    (lambda: Config(model=ModelConfig(hidden_dims=(8,) * 6)),
     r"model.hidden_dims=\(8, 8, 8, 8, 8, 8\) is invalid: allowed at most 5 stride-2 layers for 32x32 images"),
    (lambda: BetaSchedule(beta=-0.1), "schedule.beta=-0.1 is invalid: allowed a value >= 0"),
    (lambda: TrainConfig(lr=0), "train.lr=0 is invalid: allowed a value > 0"),
    (lambda: TrainConfig(lr=-1e-3), "train.lr=-0.001 is invalid"),
    (lambda: TrainConfig(epochs=0), "train.epochs=0 is invalid: allowed an integer >= 1"),
    (lambda: TrainConfig(batch_size=0), "train.batch_size=0 is invalid: allowed an integer >= 1"),
    (lambda: TrainConfig(grad_clip=0.0), "train.grad_clip=0.0 is invalid: allowed None or a value > 0"),
    (lambda: TrainConfig(grad_clip=-1), "train.grad_clip=-1 is invalid"),
    (lambda: BetaSchedule(kind="sigmoid"), "schedule.kind='sigmoid' is invalid: allowed one of constant, warmup"),
    (lambda: BetaSchedule(kind="cyclic", ratio=1.5), r"schedule.ratio=1.5 is invalid: allowed a value in \(0, 1\]"),
    (lambda: BetaSchedule(kind="cyclic", cycles=0), "schedule.cycles=0 is invalid: allowed an integer >= 1"),
    (lambda: BetaSchedule(kind="warmup", warmup_epochs=-2), "schedule.warmup_epochs=-2 is invalid"),
    (lambda: BetaSchedule(kind="linear", anneal_steps=0), "schedule.anneal_steps=0 is invalid"),
    (lambda: TrainConfig(recon="l1"), "train.recon='l1' is invalid: allowed one of mse, bernoulli"),
    (lambda: Config.from_dict({"name": "x", "optimizer": "sgd"}), r"unknown config keys \['optimizer'\]"),
    (lambda: Config.from_dict({"train": {"epoch": 3}}), r"unknown train keys \['epoch'\]"),
    (lambda: TrainConfig(seed=1.0), r"train.seed=1.0 is invalid: allowed an integer$"),
    (lambda: TrainConfig(epochs="3"), r"train.epochs='3' is invalid: allowed an integer$"),
    (lambda: TrainConfig(lr="fast"), r"train.lr='fast' is invalid: allowed a number$"),
    (lambda: TrainConfig(grad_clip=True), r"train.grad_clip=True is invalid: allowed a number or None$"),
    (lambda: ModelConfig(batch_norm=1), r"model.batch_norm=1 is invalid: allowed true or false$"),
    (lambda: DataConfig(max_train=2.5), r"data.max_train=2.5 is invalid: allowed an integer or None$"),
    (lambda: BetaSchedule(kind=3), r"schedule.kind=3 is invalid: allowed a string$"),
    (lambda: ModelConfig(hidden_dims=5), r"model.hidden_dims=5 is invalid: allowed a list of integers$"),
    (lambda: ModelConfig(hidden_dims=(True, 64)), r"model.hidden_dims=\(True, 64\) is invalid: allowed a list of"),
    (lambda: TrainConfig(schedule="warmup"), r"train.schedule='warmup' is invalid: allowed a BetaSchedule or a dict"),
    (lambda: Config(data="x"), r"config.data='x' is invalid: allowed a DataConfig or a dict of its fields$"),
    (lambda: TrainConfig(lr=10**400), r"train.lr=1000.* is invalid: allowed a finite number$"),
    (lambda: with_overrides(get_preset("digits").to_dict(), **{"train.epochs": 3}),
     r"^config=<dict of 4 keys> is invalid: allowed a vaelib Config \(Config.from_dict\(d\) converts a dict"),
    (lambda: Config(data=torch.zeros(2, 3)),  # an object is shown by its type and size, in one line
     r"^config.data=<tensor float32 \(2, 3\)> is invalid: allowed a DataConfig or a dict of its fields$"),
])
def test_bad_values_are_refused_with_a_message(make, message):
    with pytest.raises(ValueError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def test_five_layers_fit_on_32_pixels():
    c = Config(model=ModelConfig(hidden_dims=(8,) * 5))
    assert len(c.model.hidden_dims) == 5


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["digits"].train.epochs = 2


def test_numbers_are_normalised_after_validation():
    import numpy as np

    t = TrainConfig(seed=np.int64(3), lr=1, grad_clip=2)
    assert (type(t.seed), type(t.lr), type(t.grad_clip)) == (int, float, float)
    assert ModelConfig(hidden_dims=[np.int64(32), 64]).hidden_dims == (32, 64)
    assert all(type(c) is int for c in ModelConfig(hidden_dims=[np.int64(32), 64]).hidden_dims)
    assert BetaSchedule(beta=4) == BetaSchedule(beta=4.0)


def test_every_config_field_has_a_type_the_checker_knows():
    """A new field of an unknown type would silently skip the type check: add it to check_types first."""
    from vaelib.config_checks import _field_kinds

    for cls in (DataConfig, ModelConfig, BetaSchedule, TrainConfig, Config):
        for name, (kind, _) in _field_kinds(cls).items():
            known = kind in (int, float, bool, str) or dataclasses.is_dataclass(kind) or (
                typing.get_origin(kind) is tuple and typing.get_args(kind) == (int, ...))
            assert known, f"{cls.__name__}.{name}: {kind}"


@pytest.mark.parametrize("overrides, message", [
    ({"train.schedule.cycles": 10**400}, r"^schedule.cycles=1000...000 \(401 digits\) is invalid: allowed an integer "
     r">= 1 and <= 1000000$"),
    ({"train.schedule.cycles": 10**30}, r"^schedule.cycles=1000...000 \(31 digits\) is invalid: allowed an integer "
     r">= 1 and <= 1000000$"),
    ({"model.hidden_dims": [10**12, 64]}, r"^model.hidden_dims=\(1000000000000, 64\) is invalid: allowed positive "
     r"integer channel counts <= 4096$"),
    ({"model.hidden_dims": [8] * 11}, r"^model.hidden_dims=\(8, 8, .*\) is invalid: allowed at least one layer and "
     r"at most 10$"),
    ({"model.latent_dim": 4097}, r"^model.latent_dim=4097 is invalid: allowed an integer >= 1 and <= 4096$"),
    ({"data.image_size": 2048}, r"^data.image_size=2048 is invalid: allowed an integer >= 8 and <= 1024$"),
    ({"train.batch_size": 2**16 + 1}, r"^train.batch_size=65537 is invalid: allowed an integer >= 1 and <= 65536$"),
    ({"train.schedule.anneal_steps": 10**10}, r"^schedule.anneal_steps=10000000000 is invalid: allowed an integer "
     r">= 1 and <= 1000000000$"),
    ({"data.max_train": -10**5000}, r"^data.max_train=-1000...000 \(5001 digits\) is invalid: allowed None or an "
     r"integer >= 1 and <= 1000000000$"),
])
def test_the_python_api_refuses_what_the_command_line_refuses(overrides, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(get_preset("digits"), **overrides)


def _integer_fields() -> list[str]:
    from vaelib.config_checks import _field_kinds

    parts = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "train.schedule": BetaSchedule}
    return [f"{part}.{name}" for part, cls in parts.items() for name, (kind, _) in _field_kinds(cls).items()
            if kind is int or typing.get_origin(kind) is tuple]


@pytest.mark.parametrize("field", _integer_fields())
def test_every_integer_field_has_an_upper_bound_in_its_message(field):
    value = [10**400] if field == "model.hidden_dims" else 10**400
    owner_name = re.escape(".".join(field.split(".")[-2:]))
    with pytest.raises(ValueError, match=rf"^{owner_name}=.*\(401 digits\).* is invalid: allowed .*(<=? ?\w|or \d)"):
        with_overrides(get_preset("digits"), **{field: value})


@pytest.mark.parametrize("name", ["../outside", "../../escape", "", "a/b", ".hidden", "x" * 65, "a..b"])
def test_a_config_name_is_a_folder_name_that_cannot_leave_the_runs_folder(name):
    with pytest.raises(ValueError, match=r"^config.name=.* is invalid: allowed a folder name of letters, digits"):
        with_overrides(get_preset("digits"), name=name)
    assert with_overrides(get_preset("digits"), name="my_run-2.b").name == "my_run-2.b"
