"""The config a notebook trains for a dataset and a budget: tiny (seconds, for the tests), small (minutes on a
laptop CPU, the committed reports), full (the source reports' budgets)."""

from __future__ import annotations

from typing import Any

from vaelib.config import DATASETS, Config, get_preset, with_overrides

BUDGETS = ("tiny", "small", "full")
DATASET_PRESET = {"mnist": "mnist", "digits": "digits", "shapes": "shapes", "fashion_mnist": "fashion_mnist",
                  "cifar10": "cifar10", "celeba": "celeba_small"}
# Per budget: training images kept (None = all) and epochs (None = the preset's, the reports' budget).
_BUDGET = {"tiny": {"max_train": 256, "epochs": 2, "shapes_train": 512},
           "small": {"max_train": 5000, "epochs": 5, "shapes_train": 2000},
           "full": {"max_train": None, "epochs": None, "shapes_train": 10_000}}
# The embedded sets are small: more passes per run. Each small report must finish in 45 minutes on a 2-core CPU
# of the slower kind (README, Quick start); every study run trains on past these epochs until it has converged
# (up to 2x).
_SMALL_EPOCHS = {"mnist": 20, "digits": 20, "shapes": 16}


def notebook_config(dataset: str = "mnist", budget: str = "small", seed: int = 0, *,
                    image_size: int | None = None, data_root: str = "data", preset: str | None = None) -> Config:
    """The config a notebook trains for a dataset and budget: tiny (seconds), small (minutes on a CPU), full."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is invalid: allowed {', '.join(DATASETS)}")
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is invalid: allowed {', '.join(BUDGETS)}")
    config = get_preset(preset or DATASET_PRESET[dataset])
    b = _BUDGET[budget]
    epochs = b["epochs"] or config.train.epochs
    if budget == "small":
        epochs = _SMALL_EPOCHS.get(dataset, epochs)
    overrides: dict[str, Any] = {"train.epochs": epochs, "train.seed": seed, "data.root": data_root,
                                 "data.max_train": b["max_train"], "data.shapes_train": b["shapes_train"]}
    if image_size:
        overrides["data.image_size"] = image_size
    if config.train.schedule.kind == "warmup" and budget != "full":  # keep the warmup's share of the run
        share = config.train.schedule.warmup_epochs / config.train.epochs
        overrides["train.schedule.warmup_epochs"] = round(share * epochs, 2)
    return with_overrides(config, **overrides)
