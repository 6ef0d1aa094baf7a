import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from vaelib.data.datasets import ImageSplit, data_mean_baseline
from vaelib.data.shapes import FACTOR_SIZES
from vaelib.experiments.budgets import notebook_config
from vaelib.lessons.datasets import (
    celeba_crop_demo,
    celeba_standin,
    factor_rows,
    factor_sweep,
    halving_rows,
    load_or_standin,
    pixel_stats,
    split_summary,
)


def _split(values: list[list[int]], labels: list[int] | None = None) -> ImageSplit:
    images = torch.tensor(values, dtype=torch.uint8).view(len(values), 1, 1, -1)  # (N, 1, 1, W)
    return ImageSplit(images, None if labels is None else torch.tensor(labels), None, class_names=("a", "b"))


def test_pixel_stats_match_hand_computed_values():
    mean, var = pixel_stats(_split([[0, 255], [255, 255], [0, 0], [255, 0]]))
    assert torch.allclose(mean, torch.tensor([[[0.5, 0.5]]], dtype=torch.float64))
    assert torch.allclose(var, torch.tensor([[[0.25, 0.25]]], dtype=torch.float64))
    mean, var = pixel_stats(_split([[51, 102], [153, 102]]))  # 0.2, 0.6 and 0.4, 0.4
    assert torch.allclose(mean, torch.tensor([[[0.4, 0.4]]], dtype=torch.float64))
    assert torch.allclose(var, torch.tensor([[[0.04, 0.0]]], dtype=torch.float64))


def test_data_mean_baseline_on_train_is_the_sum_of_pixel_variances():
    g = torch.Generator().manual_seed(0)
    train = ImageSplit(torch.randint(0, 256, (50, 3, 4, 4), generator=g, dtype=torch.uint8), None, None)
    assert data_mean_baseline(train, train) == pytest.approx(pixel_stats(train)[1].sum().item(), rel=1e-9)


def test_split_summary_row():
    train = _split([[0, 255], [255, 255]], labels=[0, 1])
    row = split_summary({"train": train, "val": train.subset(slice(0, 1)), "test": train}, "toy")
    assert (row["train"], row["val"], row["test"]) == (2, 1, 2)
    assert row["image (C x H x W)"] == "1x1x2" and row["dtype"] == "uint8"
    assert (row["min"], row["max"], row["targets"]) == (0, 255, "2 classes")
    assert row["mean"] == pytest.approx(0.75) and row["std"] == pytest.approx(math.sqrt(0.75 * 0.25))


def test_load_or_standin_falls_back_with_the_file_message(tmp_path):
    config = notebook_config("fashion_mnist", "tiny", data_root=str(tmp_path))
    used, splits, note = load_or_standin(config)
    assert used.data.dataset == "mnist" and used.model == config.model and used.input_shape == (1, 32, 32)
    assert used.name == "fashion_mnist_on_mnist" and used.train == config.train
    assert "FileNotFoundError: Fashion-MNIST not found" in note and str(tmp_path) in note
    assert tuple(splits["train"].images.shape[1:]) == (1, 32, 32) and len(splits["train"]) == 256
    same, _, note = load_or_standin(notebook_config("shapes", "tiny", image_size=64))
    assert same.data.dataset == "shapes" and note == "shapes: loaded (3x64x64)."


def test_halving_rows_agree_with_real_conv_layers():
    rows = halving_rows((28, 32), layers=3)
    assert rows[0]["encoder"] == "28 -> 14 -> 7 -> 4" and rows[0]["decoder"] == "4 -> 8 -> 16 -> 32"
    assert rows[0]["decoder output = input"] is False and rows[1]["decoder output = input"] is True
    x = torch.zeros(1, 1, 28, 28)
    for _ in range(3):
        x = nn.Conv2d(1, 1, 3, stride=2, padding=1)(x)
    for _ in range(3):
        x = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1)(x)
    assert x.shape[-1] == 32


def test_celeba_crop_demo_crops_the_centre_and_resizes_to_64():
    image = celeba_standin()
    assert image.shape == (3, 218, 178) and image.dtype == torch.uint8
    demo = celeba_crop_demo(image)
    top, left, h, w = demo["box"]
    assert (top, left, h, w) == (39, 19, 140, 140)
    assert torch.equal(demo["crop"], image[:, top:top + h, left:left + w])
    assert demo["resized"].shape == (3, 64, 64) and demo["resized"].dtype == torch.uint8


def test_factor_rows_and_sweep():
    assert [(r["factor"], r["values"]) for r in factor_rows()] == list(zip(
        ("shape", "colour", "scale", "x", "y", "rotation"), FACTOR_SIZES))
    rows = factor_sweep(image_size=16)
    assert [len(r) for r in rows] == list(FACTOR_SIZES)
    colours = rows[1].float().flatten(2).amax(2)  # (6, 3): brightest value per channel
    assert torch.equal(colours[0], torch.tensor([255.0, 0, 0])) and torch.equal(colours[4], torch.tensor([0, 0, 255.0]))
    assert torch.equal(rows[0][0], rows[1][0])  # the base image is the same in every row


def test_figures_are_built():
    from vaelib.lessons import architecture, datasets

    split = ImageSplit(factor_sweep(image_size=16)[3], None, torch.zeros(8, 6, dtype=torch.long))
    figs = [datasets.labelled_grid(split, n=8, title="t"), datasets.pixel_stats_figure({"s": split}),
            datasets.celeba_crop_figure(celeba_crop_demo(celeba_standin())),
            datasets.factor_sweep_figure(factor_sweep(image_size=16)), architecture.presets_beta_figure(10),
            datasets.pad_figure(torch.zeros(1, 28, 28, dtype=torch.uint8))]
    assert all(isinstance(f, Figure) for f in figs)
    plt.close("all")
