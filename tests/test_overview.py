import math

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from vaelib import PRESETS, VAE, with_overrides
from vaelib.data import FACTOR_SIZES, ImageSplit, data_mean_baseline
from vaelib.overview import (
    beta_plan,
    beta_rows,
    celeba_crop_demo,
    celeba_standin,
    depth_rows,
    elbo_examples,
    factor_rows,
    factor_sweep,
    format_table,
    halving_rows,
    layer_rows,
    load_or_standin,
    parameter_breakdown,
    pixel_stats,
    preset_rows,
    receptive_field,
    reparameterisation_demo,
    shared_settings,
    split_summary,
)
from vaelib.pipeline import notebook_config


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
    assert used.data.dataset == "digits" and used.model == config.model and used.input_shape == (1, 32, 32)
    assert used.name == "fashion_mnist_on_digits" and used.train == config.train
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


def test_preset_rows_and_parameter_counts():
    rows = {r["preset"]: r for r in preset_rows()}
    assert list(rows) == list(PRESETS)
    assert rows["celeba_small"]["parameters"] == "2,355,203" and rows["fashion_mnist"]["parameters"] == "434,945"
    assert rows["cifar10"]["beta plan"] == "warmup: 0 for 15 epochs, then 0.1"
    assert rows["celeba"]["input"] == "3x64x64" and rows["celeba_small"]["BN"] is True


def test_parameter_breakdown_sums_to_the_total():
    model = VAE(PRESETS["celeba_small"])
    rows = {r["part"]: int(r["parameters"].replace(",", "")) for r in parameter_breakdown(model)}
    assert rows["encoder heads (fc_mu + fc_logvar)"] == 2 * (4096 * 128 + 128)
    assert rows["total"] == model.parameter_count() == sum(v for k, v in rows.items() if k != "total")


def test_layer_and_depth_rows_follow_the_real_model():
    config = with_overrides(PRESETS["fashion_mnist"], **{"data.image_size": 28, "model.hidden_dims": [32, 64, 128]})
    rows = layer_rows(VAE(config))
    shapes = {r["layer"]: r["output shape"] for r in rows}
    assert shapes["encoder.2"] == "1x128x4x4" and shapes["decoder.2"] == "1x1x32x32" and shapes["output"] == "1x1x28x28"
    assert sum(int(r["parameters"].replace(",", "")) for r in rows) == VAE(config).parameter_count()
    depth = depth_rows({"cifar10": VAE(PRESETS["cifar10"])})[0]
    assert depth["after each stride-2 conv"].endswith("512x2x2") and depth["flat features"] == 2048
    assert [receptive_field(n) for n in (1, 2, 3, 4)] == [3, 7, 15, 31]


def test_reparameterisation_gradients_match_the_exact_ones():
    demo = reparameterisation_demo(mu=(0.0, 2.0), sigma=(1.0, 0.5), n=200_000)
    assert demo["z_requires_grad"] and demo["mu_grad_is_set"] and demo["logvar_grad_is_set"]
    assert demo["direct_sample_requires_grad"] is False
    for row in demo["rows"]:
        assert row["std of z"] == pytest.approx(row["sigma"], rel=0.02)
        assert row["dL/dmu"] == pytest.approx(row["2 mu"], abs=0.02)
        assert row["dL/dlogvar"] == pytest.approx(row["sigma^2"], rel=0.03)


def test_elbo_examples_match_the_hand_computation():
    rows = elbo_examples(pixels=16, latent=4)
    assert [(r["recon"], r["kl"]) for r in rows] == [("0.0000", "0.0000"), ("0.0000", "2.0000"),
                                                       ("0.0000", f"{2 * (0.25 - 1 - math.log(0.25)):.4f}"),
                                                       ("0.0800", "0.0000")]


def test_beta_plan_and_rows():
    rows = {r["preset"]: r for r in beta_rows(epochs=(0, 2, 15, 19))}
    assert rows["cifar10"]["epoch 0"] == "0" and rows["cifar10"]["epoch 15"] == "0.1"
    assert rows["celeba"]["epoch 2"] == "0.9" and rows["shapes"]["epoch 15"] == "-"
    assert beta_plan(PRESETS["celeba"].train.schedule) == "warmup: 0 for 2 epochs, then 0.9"


def test_format_table_aligns_columns():
    text = format_table([{"a": 1, "bb": 0.123456}, {"a": 22, "bb": "x"}])
    assert text.splitlines() == ["a   bb", "--  ------", "1   0.1235", "22  x"]
    assert format_table([]) == "(no rows)"


def test_figures_are_built():
    from vaelib import overview

    split = ImageSplit(factor_sweep(image_size=16)[3], None, torch.zeros(8, 6, dtype=torch.long))
    figs = [overview.labelled_grid(split, n=8, title="t"), overview.pixel_stats_figure({"s": split}),
            overview.celeba_crop_figure(celeba_crop_demo(celeba_standin())),
            overview.factor_sweep_figure(factor_sweep(image_size=16)), overview.presets_beta_figure(10),
            overview.pad_figure(torch.zeros(1, 28, 28, dtype=torch.uint8))]
    assert all(isinstance(f, Figure) for f in figs)
    plt.close("all")


def test_shared_settings_of_the_presets():
    assert shared_settings() == {"kernel": ["3"], "LeakyReLU slope": ["0.2"], "Adam lr": ["0.001"], "recon": ["mse"]}
