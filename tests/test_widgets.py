"""The latent explorer, driven from Python: sliders, interpolation, sampling, traversal, the map, saving PNGs,
attribute and class directions."""

import io

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from vaelib.config import Config, DataConfig, ModelConfig, TrainConfig
from vaelib.data.datasets import ImageSplit, load_dataset
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import run_dir
from vaelib.lessons import latent_explorer
from vaelib.lessons.latent_explorer import class_directions, load_trained
from vaelib.models.vae import VAE
from vaelib.training.trainer import CHECKPOINT
from vaelib.widgets import LatentExplorer, attribute_directions, to_png


@pytest.fixture
def model(tiny_config) -> VAE:
    torch.manual_seed(0)
    return VAE(tiny_config).eval()


@pytest.fixture
def split(tiny_data) -> ImageSplit:
    """16 images (1x16x16) with classes 0, 1, 2 by position of their bar."""
    images = torch.cat(tiny_data)[:16]
    return ImageSplit(images, torch.arange(16) % 3, None, class_names=("a", "b", "c"), name="tiny", split="test")


@pytest.fixture
def explorer(model, split) -> LatentExplorer:
    return LatentExplorer(model, split, n_sliders=3, samples=4)


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_sliders_cover_the_top_dims_by_kl(explorer):
    kl = explorer.kl
    assert len(explorer.sliders) == 3 and len(set(explorer.dims)) == 3
    assert min(kl[d] for d in explorer.dims) >= max(kl[d] for d in range(len(kl)) if d not in explorer.dims)
    assert [s.value for s in explorer.sliders] == [explorer.mu[0, d].item() for d in explorer.dims]
    assert torch.equal(explorer.code(), explorer.mu[0])  # the start image's code, unselected dims held


def test_moving_a_slider_redraws_the_decoded_image(explorer):
    before = explorer.decoded.value
    explorer.sliders[1].value += 1.0
    assert explorer.decoded.value != before
    assert explorer.code()[explorer.dims[1]].item() == pytest.approx(explorer.mu[0, explorer.dims[1]].item() + 1.0)
    assert explorer.traverse_dim.value == explorer.dims[1]  # the moved dimension becomes the selected one
    explorer.reset.click()
    assert explorer.decoded.value == before


def test_the_decoded_image_is_the_png_of_the_decoded_code(explorer, model):
    with torch.no_grad():
        expected = to_png(model.decode(explorer.mu[0][None]), explorer.px)
    assert explorer.decoded.value == expected
    img = PILImage.open(io.BytesIO(explorer.decoded.value))
    assert img.size == (256, 256)  # 16x16 upscaled by 16, nearest: the projector size
    strip = PILImage.open(io.BytesIO(explorer.path_strip.value))
    # 11 images of 128 px in two rows (6 and 5, so the strip fits a projector), one white pixel (x8) between
    assert strip.size == (6 * 17 * 8 - 8, 2 * 17 * 8 - 8)


def test_a_new_start_image_moves_the_sliders(explorer):
    explorer.index.value = 5
    assert [s.value for s in explorer.sliders] == [explorer.mu[5, d].item() for d in explorer.dims]
    assert torch.equal(explorer.code(), explorer.mu[5])
    assert "<b>c</b>" in explorer.info.value  # image 5 is of class 2, "c"


def test_reseed_draws_new_samples(explorer):
    before = explorer.sample_image.value
    explorer.reseed.click()
    assert explorer.seed == 1 and explorer.sample_image.value != before


def test_temperature_zero_samples_are_the_decoded_origin(explorer, model):
    explorer.temperature.value = 0.0
    with torch.no_grad():
        origin = model.decode(torch.zeros(1, model.latent_dim))
    assert torch.allclose(explorer.samples(), origin.expand(4, -1, -1, -1), atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "spherical"])
def test_interpolation_ends_at_the_two_images(explorer, model, kind):
    explorer.path_kind.value = kind
    explorer.index_a.value, explorer.index_b.value = 2, 7  # images A and B, as the boxes set them
    # The promise is exact: the ends of the path are A's and B's codes, decoded the way the Sliders tab decodes
    # one code. So compare with the explorer's own decode of each mu (a copy of it, as a user would pass it).
    a, b = (explorer.decode(explorer.mu[i][None].clone()) for i in (2, 7))
    explorer.t.value = 0.0
    assert torch.equal(explorer.interpolated(0.0), a) and explorer.interp_image.value == to_png(a, explorer.px)
    explorer.t.value = 1.0
    assert torch.equal(explorer.interpolated(1.0), b) and explorer.interp_image.value == to_png(b, explorer.px)
    # A plain model.decode runs on torch's thread count, which may split the sums differently (and so round
    # differently on some CPUs): the same image up to fp32 rounding of sums over a few thousand terms.
    with torch.no_grad():
        plain = model.decode(explorer.mu[2][None])
    torch.testing.assert_close(a, plain, rtol=1e-5, atol=1e-5)
    explorer.index.value = 7  # the Sliders tab shows the same picture for image B
    assert explorer.decoded.value == explorer.interp_image.value


def test_image_b_starts_on_another_class_than_image_a(explorer):
    labels = explorer.split.labels
    b = explorer.index_b.value
    assert labels[b] != labels[0] and (labels[1:b] == labels[0]).all()  # the first image of another class


def test_class_pickers_choose_the_first_image_of_a_class(explorer):
    explorer.class_b.value = 2
    assert explorer.index_b.value == 2


def test_traversal_sweeps_the_selected_dimension(explorer):
    explorer.ui.selected_index = 3  # the Traverse tab draws when shown
    assert explorer.traverse_image.value
    explorer.traverse_span.value = 2.0
    images = explorer.traversal()
    assert images.shape == (9, 1, 16, 16)


def test_latent_sliders_move_by_a_usable_keyboard_step(explorer):
    # An arrow key moves a browser slider by one step, PageUp by five: 0.05 crosses [-3, 3] in 120 presses.
    assert {s.step for s in explorer.sliders} == {0.05}
    s, d = explorer.sliders[0], explorer.dims[0]
    before = explorer.decoded.value
    s.value = snapped(s) + s.step  # one arrow key press in the browser, from where it shows the image's mu
    assert explorer.code()[d].item() == pytest.approx(snapped(s))
    assert explorer.decoded.value != before


def snapped(s) -> float:
    """Where the browser's slider shows s.value: on its step grid counted from s.min (noUiSlider)."""
    return s.min + round((s.value - s.min) / s.step) * s.step


def browser_echo(sliders) -> None:
    """What the browser sends back after the kernel sets a slider: the value snapped to the slider's step."""
    for s in sliders:
        s.value = snapped(s)


def test_reset_and_a_new_image_keep_the_traverse_dimension_that_was_moved(explorer):
    # The bug seen in class: after "reset sliders" and a new image the Traverse tab swept another dimension.
    # The browser snaps each value the kernel sets and sends it back; that echo looked like a person's move.
    browser_echo(explorer.sliders)
    s = explorer.sliders[1]
    s.value = s.value + 10 * s.step  # a person: ten arrow key presses
    assert explorer.traverse_dim.value == explorer.dims[1]
    explorer.reset.click()
    browser_echo(explorer.sliders)
    explorer.index.value = 5
    browser_echo(explorer.sliders)
    assert explorer.traverse_dim.value == explorer.dims[1]
    assert torch.equal(explorer.code(), explorer.mu[5])  # the echo did not round the code either
    explorer.ui.selected_index = 3
    with torch.no_grad():
        z = explorer.mu[5].repeat(9, 1)
        z[:, explorer.dims[1]] = torch.linspace(-3, 3, 9)
        assert explorer.traverse_image.value == to_png(explorer.decode(z), explorer.strip_px, nrow=5)  # 5 + 4


def test_play_walks_the_interpolation(explorer):
    explorer.index_a.value, explorer.index_b.value = 2, 7
    first = explorer.interp_image.value
    explorer.interp_play.value = 5  # the browser's Play button ticks 0, 1, ... 10
    assert explorer.t.value == pytest.approx(0.5)
    assert explorer.interp_image.value != first
    assert explorer.interp_image.value == to_png(explorer.decode(explorer.path[5][None]), explorer.px)
    explorer.t.value = 1.0  # dragging t moves the Play button along
    assert explorer.interp_play.value == 10


def test_play_sweeps_the_traversal(explorer):
    explorer.ui.selected_index = 3
    d, frames = explorer.traverse_dim.value, []
    for k in range(explorer.traverse_steps):
        explorer.traverse_play.value = k
        z = explorer.code()[None].clone()
        z[0, d] = torch.linspace(-3, 3, 9)[k]
        assert explorer.traverse_frame.value == to_png(explorer.decode(z), explorer.px)
        frames.append(explorer.traverse_frame.value)
    assert explorer.traverse_value.value == f"z{d} = +3.00"
    assert len(set(frames)) > 1  # the image changes as the value sweeps


def test_save_png_writes_the_shown_picture(explorer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # in Jupyter, the notebook's folder
    explorer.save_button.click()
    path = tmp_path / "explorer-sliders-1.png"
    assert path.read_bytes() == explorer.decoded.value and str(path) in explorer.save_label.value
    with torch.no_grad():
        x = explorer.decode(explorer.code()[None])[0, 0]  # (16, 16) in [0, 1]
    expected = np.kron((x * 255).round().to(torch.uint8).numpy(), np.ones((16, 16), np.uint8))  # nearest, x16
    assert np.array_equal(np.asarray(PILImage.open(path)), expected)
    explorer.save_button.click()
    explorer.ui.selected_index = 4
    explorer.save_button.click()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explorer-map-1.png", "explorer-sliders-1.png",
                                                          "explorer-sliders-2.png"]
    assert (tmp_path / "explorer-map-1.png").read_bytes() == explorer.map_decoded.value


def test_map_pick_decodes_the_picked_code(explorer):
    (dx, dy), first = explorer.map_dims, explorer.map_decoded.value
    assert [dx, dy] == explorer.dims[:2]  # the two highest-KL dimensions
    explorer.map_index.value = 5
    assert torch.equal(explorer.map_code(), explorer.mu[5])
    assert explorer.map_decoded.value == to_png(explorer.decode(explorer.mu[5][None]), explorer.px) != first
    browser_echo([explorer.map_x, explorer.map_y])  # the browser's snapped coordinates change nothing
    assert torch.equal(explorer.map_code(), explorer.mu[5])
    ring = explorer.map_image.value
    explorer.map_x.value = explorer.map_lo[0] + 0.25 * (explorer.map_hi[0] - explorer.map_lo[0])
    z = explorer.mu[5].clone()
    z[dx] = explorer.map_x.value
    assert torch.equal(explorer.map_code(), z)
    assert explorer.map_decoded.value == to_png(explorer.decode(z[None]), explorer.px)
    assert explorer.map_image.value != ring  # the marker moved
    assert "nearest test image" in explorer.map_info.value


def test_map_points_have_their_class_colour_and_lie_over_their_grid_cell(explorer):
    explorer.map_index.value = 15  # the ring is drawn around the last point, which is drawn last
    img = PILImage.open(io.BytesIO(explorer.map_image.value)).convert("RGB")
    assert img.size == PILImage.open(io.BytesIO(explorer.map_grid.value)).size
    u, v = explorer.to_pixel(*explorer.mu[15, explorer.map_dims].tolist())
    colour = "#" + "".join(f"{c:02x}" for c in img.getpixel((int(u), int(v))))
    assert colour == ["#1f77b4", "#ff7f0e", "#2ca02c"][15 % 3]  # class 0 (a), 1 (b), 2 (c) in tab10 colours
    codes = explorer.grid_codes()  # (8 * 8, D), row by row from the top
    (x0, y0), (x1, y1) = explorer.map_lo, explorer.map_hi
    assert codes.shape == (64, 4)
    top_left = codes[0, explorer.map_dims].tolist()
    assert top_left == pytest.approx([x0 + (x1 - x0) / 16, y1 - (y1 - y0) / 16])
    assert explorer.to_pixel(*top_left) == pytest.approx((img.width / 16, img.height / 16))  # cell (0, 0) centre


def test_describe_and_static_views(explorer):
    text = explorer.describe()
    assert "3 latent sliders (top 3 of 4 dims by KL)" in text and "class A, class B" in text
    assert "Map: test codes on" in text and "save PNG" in text
    assert explorer._repr_mimebundle_()["text/plain"].startswith("LatentExplorer")
    assert all(explorer.check().values())
    fig = explorer.snapshot()
    assert len(fig.axes) == 7
    scatter, grid = fig.axes[-2:]
    (x0, y0), (x1, y1) = explorer.map_lo, explorer.map_hi
    for ax in (scatter, grid):  # the map's pictures keep latent-coordinate ticks over the codes' extent
        assert ax.axison and ax.get_xlim() == pytest.approx((x0, x1)) and ax.get_ylim() == pytest.approx((y0, y1))
        assert ax.get_xlabel() == f"z{explorer.map_dims[0]}" and ax.get_ylabel() == f"z{explorer.map_dims[1]}"
    assert [t.get_text() for t in scatter.get_legend().get_texts()] == list(explorer.split.class_names)
    assert not fig.axes[0].axison
    assert (explorer.slider_latency(5) > 0).all()


def test_bad_values_are_refused_in_one_line(model, split, explorer, tmp_path):
    with pytest.raises(ValueError, match=r"image index 16 is invalid: allowed 0..15") as err:
        LatentExplorer(model, split, start_index=16)
    one_line(err)
    with pytest.raises(ValueError, match="image index -1 is invalid"):
        explorer.set_image(-1)
    with pytest.raises(ValueError, match="n_sliders=0 is invalid"):
        LatentExplorer(model, split, n_sliders=0)
    with pytest.raises(ValueError, match="strip_px=4 is invalid: allowed an integer >= 8"):
        LatentExplorer(model, split, strip_px=4)
    with pytest.raises(FileNotFoundError, match="missing' is invalid: allowed an existing folder"):
        explorer.save_png(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"split images of shape \(16, 1, 8, 8\) are invalid"):
        LatentExplorer(model, ImageSplit(split.images[:, :, :8, :8], None, None))
    config = notebook_config("digits", "tiny")
    with pytest.raises(FileNotFoundError) as err:
        load_trained(config, tmp_path, train_if_missing=False)
    assert str(run_dir(config, tmp_path) / CHECKPOINT) in one_line(err)


@pytest.mark.parametrize("kwargs, message", [
    ({"span": "3"}, r"^span='3' is invalid: allowed a finite number > 0$"),
    ({"span": None}, r"^span=None is invalid: allowed a finite number > 0$"),
    ({"span": float("inf")}, r"^span=inf is invalid: allowed a finite number > 0$"),
    ({"span": float("nan")}, r"^span=nan is invalid"),
    ({"span": 0}, r"^span=0 is invalid"),
    ({"seed": -1}, r"^seed=-1 is invalid: allowed an integer >= 0 and < 2\*\*32 \(4294967296\)$"),
    ({"seed": 1.5}, r"^seed=1.5 is invalid: allowed an integer >= 0"),
    ({"split": "images"}, r"^split=<tensor uint8 \(16, 1, 16, 16\)> is invalid: allowed an ImageSplit \(what "
                          r"load_dataset returns; ImageSplit\(images, None, None\) wraps uint8 images"),
])
def test_each_bad_argument_is_named_in_one_line(model, split, kwargs, message):
    if kwargs.get("split") == "images":  # the split's tensor in place of the split
        kwargs = {"split": split.images}
    with pytest.raises(ValueError, match=message) as err:
        LatentExplorer(model, **{"split": split, **kwargs})
    one_line(err)


def test_a_numpy_seed_is_a_seed(model, split):
    explorer = LatentExplorer(model, split, n_sliders=3, samples=4, seed=np.int64(2))
    assert type(explorer.views["sample"].seed) is int and explorer.seed_label.value == "seed 2"


def test_load_trained_trains_once_then_loads(tmp_path):
    config = Config(name="tiny", data=DataConfig(dataset="digits", image_size=16, channels=1, max_train=64),
                    model=ModelConfig(hidden_dims=(8,), latent_dim=2), train=TrainConfig(epochs=1, batch_size=32))
    model, out = load_trained(config, tmp_path)
    assert out == run_dir(config, tmp_path) and (out / CHECKPOINT).is_file()
    again, _ = load_trained(config, tmp_path, train_if_missing=False)
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values()))


def test_shapes_show_their_generating_factors():
    config = Config(name="s", data=DataConfig(dataset="shapes", image_size=16, channels=3),
                    model=ModelConfig(hidden_dims=(8,), latent_dim=3))
    split = load_dataset("shapes", "test", image_size=16, n=6)
    ex = LatentExplorer(VAE(config), split, n_sliders=2)
    assert "true generating factors" in ex.info.value
    assert all(name in ex.info.value for name in split.factor_names)
    assert not hasattr(ex, "class_a")
    view = ex.views["map"]  # no classes: the 2-D map colours each point by its shape, and its legend names them
    shapes = split.factors[:, 0].tolist()
    assert view._colours() == [["#1f77b4", "#ff7f0e", "#2ca02c"][k] for k in shapes] and len(set(shapes)) > 1
    assert all(name in view._legend() for name in ("square", "circle", "triangle"))


class MeanEncoder(nn.Module):
    """A stand-in VAE whose mu is (mean brightness, -mean brightness): directions with known values."""

    latent_dim = 2

    def encode(self, x):
        m = x.mean((1, 2, 3))
        return torch.stack([m, -m], 1), torch.zeros(len(x), 2)


def labelled_split() -> ImageSplit:
    """Six constant images of brightness 0.2 .. 0.7 with two multi-label attributes."""
    levels = torch.tensor([0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    images = (levels.view(6, 1, 1, 1).expand(6, 1, 4, 4) * 255).round().to(torch.uint8)
    bright = (levels > 0.45).long()  # the last three
    first = torch.tensor([1, 0, 0, 0, 0, 0])
    return ImageSplit(images, torch.stack([bright, first], 1), None, class_names=("Bright", "First"))


def test_attribute_directions_are_mean_differences():
    split = labelled_split()
    dirs = attribute_directions(MeanEncoder(), split, ["Bright", "First"])
    x = split.images.float().mean((1, 2, 3)) / 255
    bright = x[3:].mean() - x[:3].mean()  # about 0.3
    first = x[0] - x[1:].mean()  # about -0.3
    assert torch.allclose(dirs["Bright"], torch.stack([bright, -bright]), atol=1e-6)
    assert torch.allclose(dirs["First"], torch.stack([first, -first]), atol=1e-6)


def test_attribute_directions_refuse_bad_names():
    split = labelled_split()
    with pytest.raises(ValueError, match="attribute 'Smiling' is unknown: allowed Bright, First"):
        attribute_directions(MeanEncoder(), split, ["Smiling"])
    with pytest.raises(ValueError, match="has no labels"):
        attribute_directions(MeanEncoder(), ImageSplit(split.images, None, None), ["Bright"])
    always = ImageSplit(split.images, torch.ones(6, 1, dtype=torch.long), None, class_names=("All",))
    with pytest.raises(ValueError, match="6 of 6 images have it"):
        attribute_directions(MeanEncoder(), always, ["All"])


def test_attribute_sliders_add_their_direction(model, split):
    labels = torch.stack([torch.arange(16) % 2, (torch.arange(16) < 4).long()], 1)  # (16, 2) multi-label
    multi = ImageSplit(split.images, labels, None, class_names=("Odd", "Early"))
    ex = LatentExplorer(model, multi, n_sliders=2)
    assert list(ex.attr_sliders) == ["Odd", "Early"]  # no CelebA names here: the first four attributes
    before = ex.decoded.value
    ex.attr_sliders["Odd"].value = 2.0
    assert torch.allclose(ex.code(), ex.mu[0] + 2.0 * ex.directions["Odd"])
    assert ex.decoded.value != before
    assert "attributes" in ex.info.value and not hasattr(ex, "class_a")


def test_class_directions_on_mnist_digits():
    test = load_dataset("mnist", "test")
    assert class_directions(test) == [str(d) for d in range(10)]
    dirs = attribute_directions(MeanEncoder(), test, ["7"])  # "more like a 7": mean mu of the 7s minus the rest
    x = test.images.float().mean((1, 2, 3)) / 255
    seven = x[test.labels == 7].mean() - x[test.labels != 7].mean()
    assert torch.allclose(dirs["7"], torch.stack([seven, -seven]), atol=1e-5)
    assert class_directions(labelled_split()) is None  # multi-label: the explorer's CelebA default applies

    torch.manual_seed(0)
    model = VAE(notebook_config("mnist", "small")).eval()  # untrained: the sliders are what is checked
    ex = LatentExplorer(model, test, n_sliders=2, attributes=class_directions(test))  # as notebook 05 builds it
    assert list(ex.attr_sliders) == [str(d) for d in range(10)]
    assert "10 class direction sliders (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)" in ex.describe()
    ex.attr_sliders["7"].value = 1.0
    assert torch.allclose(ex.code(), ex.mu[0] + ex.directions["7"])


def test_along_a_direction_and_its_figure(model, split):
    ex = LatentExplorer(model, split, n_sliders=2, attributes=class_directions(split))
    images = ex.along("b", [0.0, 2.0])  # (2, 1, 16, 16): the current code, then 2 x direction "b" added
    z = torch.stack([ex.code(), ex.code() + 2.0 * ex.directions["b"]])
    assert torch.allclose(images, ex.decode(z), atol=1e-6)
    with pytest.raises(ValueError, match="direction '7' is unknown: allowed a, b, c"):
        ex.along("7", [1.0])
    fig = latent_explorer.direction_figure(ex, "7")  # no class "7" here: the first class instead
    assert "direction 'a'" in fig.axes[0].get_title()
    assert latent_explorer.direction_figure(LatentExplorer(model, split, n_sliders=2)) is None
