"""The latent explorer, driven from Python: sliders, interpolation, sampling, traversal, attribute directions."""

import io

import pytest
import torch
from PIL import Image as PILImage
from torch import nn

from vaelib.config import Config, DataConfig, ModelConfig, TrainConfig
from vaelib.data import ImageSplit, load_dataset
from vaelib.experiments import notebook_config, run_dir
from vaelib.lessons.latent_explorer import explorer_for, load_trained
from vaelib.model import VAE
from vaelib.train import CHECKPOINT
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
    assert img.size == (160, 160)  # 16x16 upscaled by 10, nearest


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
    explorer.set_pair(2, 7)
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


def test_class_pickers_choose_the_first_image_of_a_class(explorer):
    explorer.class_b.value = 2
    assert explorer.index_b.value == 2


def test_traversal_sweeps_the_selected_dimension(explorer):
    explorer.ui.selected_index = 3  # the Traverse tab draws when shown
    assert explorer.traverse_image.value
    explorer.traverse_span.value = 2.0
    images = explorer.traversal()
    assert images.shape == (9, 1, 16, 16)


def test_describe_and_static_views(explorer):
    text = explorer.describe()
    assert "3 latent sliders (top 3 of 4 dims by KL)" in text and "class A, class B" in text
    assert explorer._repr_mimebundle_()["text/plain"].startswith("LatentExplorer")
    fig = explorer.snapshot()
    assert len(fig.axes) == 5
    assert (explorer.slider_latency(5) > 0).all()


def test_bad_values_are_refused_in_one_line(model, split, explorer, tmp_path):
    with pytest.raises(ValueError, match="dataset='svhn' is invalid"):
        explorer_for("svhn", runs_dir=tmp_path)
    with pytest.raises(ValueError, match=r"image index 16 is invalid: allowed 0..15") as err:
        LatentExplorer(model, split, start_index=16)
    one_line(err)
    with pytest.raises(ValueError, match="image index -1 is invalid"):
        explorer.set_image(-1)
    with pytest.raises(ValueError, match="image index 99 is invalid"):
        explorer.set_pair(0, 99)
    with pytest.raises(ValueError, match="n_sliders=0 is invalid"):
        LatentExplorer(model, split, n_sliders=0)
    with pytest.raises(ValueError, match=r"split images of shape \(16, 1, 8, 8\) are invalid"):
        LatentExplorer(model, ImageSplit(split.images[:, :, :8, :8], None, None))
    config = notebook_config("digits", "tiny")
    with pytest.raises(FileNotFoundError) as err:
        load_trained(config, tmp_path, train_if_missing=False)
    assert str(run_dir(config, tmp_path) / CHECKPOINT) in one_line(err)


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
