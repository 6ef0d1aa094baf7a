"""A small domain classifier per embedded dataset, whose penultimate features are the space in which sample quality
is measured (vaelib.evaluation.sample_quality): mnist predicts the digit, shapes each of its six generative factors.

Trained deterministically from the package's own data (`train_classifier`), shipped in vaelib/pretrained/ as
weights only (`make classifiers` retrains them), loaded without running any code from the file (`load_classifier`).
For CIFAR-10 and CelebA the Fréchet distance can use torchmetrics' Inception features instead (a download).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vaelib.data.datasets import ImageSplit, load_dataset
from vaelib.runtime import to_float

PRETRAINED = Path(__file__).resolve().parents[1] / "pretrained"
DATASETS = ("mnist", "shapes")
FEATURES = 128  # width of the feature layer
# The target whose classes the samples should cover (class_coverage): the digit; for shapes the colour, the factor
# the classifier reads almost without error (measured on the test split: shape 67%, scale 52%, rotation 23%, where
# rotations of a symmetric shape look alike, against 99.9-100% for colour and position).
COVERAGE_TARGET = {"mnist": "class", "shapes": "colour"}


def heads(split: ImageSplit) -> tuple[tuple[str, ...], tuple[int, ...], torch.Tensor]:
    """(target names, classes per target, targets (N, T)) a split's classifier learns: the digit for a labelled
    dataset, every factor for shapes."""
    if split.factors is not None:
        return split.factor_names, split.factor_sizes, split.factors.long()
    if split.labels is None or split.labels.ndim != 1:
        raise ValueError("split is invalid for a domain classifier: allowed a split with class labels or factors")
    return ("class",), (int(split.labels.max()) + 1,), split.labels.long()[:, None]


class DomainClassifier(nn.Module):
    """Three stride-2 convolutions and a 128-wide feature layer, then one linear head per target.

    forward(x) returns the features (N, 128) of float images in [0, 1] (N, C, H, W); `logits(x)` one (N, K) tensor
    per target. Images of another size (a 64x64 run of a 32x32 classifier) are resized to the classifier's own
    first (bilinear, antialiased), so its features describe what is visible at the size it was trained on."""

    num_features = FEATURES  # what torchmetrics' FrechetInceptionDistance reads instead of a dummy forward

    def __init__(self, channels: int, image_size: int, classes: tuple[int, ...], names: tuple[str, ...]) -> None:
        super().__init__()
        self.channels, self.image_size, self.classes, self.names = channels, image_size, tuple(classes), tuple(names)
        side = -(-image_size // 8)  # three halvings, rounding up
        self.trunk = nn.Sequential(
            nn.Conv2d(channels, 32, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(32, 64, 3, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 3, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * side * side, FEATURES),
            nn.LeakyReLU(0.2))
        self.heads = nn.ModuleList(nn.Linear(FEATURES, k) for k in classes)
        self.coverage = 0  # the head class coverage reads: load_classifier sets its dataset's (COVERAGE_TARGET)

    def _fit(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"images of shape {tuple(x.shape)} are invalid: allowed (N, {self.channels}, H, W)")
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(self._fit(x))

    def logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.trunk(self._fit(x))
        return [h(f) for h in self.heads]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Predicted index of every target, (N, T), for uint8 or float images."""
        self.eval()
        out = [torch.stack([g.argmax(1) for g in self.logits(to_float(images[i:i + batch]))], 1)
               for i in range(0, len(images), batch)]
        return torch.cat(out)

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Features (N, 128) of uint8 or float images."""
        self.eval()
        return torch.cat([self(to_float(images[i:i + batch])) for i in range(0, len(images), batch)])


def accuracy(model: DomainClassifier, split: ImageSplit) -> dict[str, float]:
    """Share of the split's images whose target the classifier predicts, per target."""
    names, _, targets = heads(split)
    hit = (model.predict(split.images) == targets).double().mean(0)
    return {n: float(a) for n, a in zip(names, hit)}


def train_classifier(train: ImageSplit, epochs: int = 20, batch_size: int = 64, lr: float = 2e-3, seed: int = 0,
                     quiet: bool = True) -> DomainClassifier:
    """The classifier of a split, trained from `seed` alone (same seed and data, same weights on a CPU), with a
    one-pixel random shift as augmentation so that it learns shapes, not positions."""
    names, classes, targets = heads(train)
    _, c, h, _ = train.images.shape
    torch.manual_seed(seed)
    model = DomainClassifier(c, h, classes, names)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * (len(train.images) // batch_size))
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(epochs), desc="classifier", disable=quiet):
        perm = torch.randperm(len(train.images), generator=gen)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
            x = torch.roll(to_float(train.images[idx]), (dy, dx), (2, 3))
            loss = sum(nn.functional.cross_entropy(g, targets[idx, t]) for t, g in enumerate(model.logits(x)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def classifier_path(dataset: str, root: str | Path = PRETRAINED) -> Path:
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is invalid for a shipped classifier: allowed {', '.join(DATASETS)}")
    return Path(root) / f"classifier-{dataset}.pt"


def save_classifier(model: DomainClassifier, dataset: str, root: str | Path = PRETRAINED) -> Path:
    """Weights and shape only (no code, no pickle of objects), written atomically."""
    path = classifier_path(dataset, root)
    tmp = path.with_suffix(".tmp")
    torch.save({"state": model.state_dict(), "channels": model.channels, "image_size": model.image_size,
                "classes": list(model.classes), "names": list(model.names)}, tmp)
    tmp.replace(path)
    return path


def coverage_head(model: DomainClassifier, dataset: str) -> int:
    """Index of the target class_coverage reads for `dataset` (COVERAGE_TARGET)."""
    return model.names.index(COVERAGE_TARGET[dataset])


def load_classifier(dataset: str, root: str | Path = PRETRAINED) -> DomainClassifier:
    """The shipped classifier of an embedded dataset (weights_only loading: nothing in the file runs)."""
    path = classifier_path(dataset, root)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `make classifiers` to train and ship it")
    d = torch.load(path, map_location="cpu", weights_only=True)
    model = DomainClassifier(d["channels"], d["image_size"], tuple(d["classes"]), tuple(d["names"]))
    model.load_state_dict(d["state"])
    model.coverage = coverage_head(model, dataset)  # the target class coverage reads (COVERAGE_TARGET)
    return model.eval()


def ship_classifier(dataset: str, root: str | Path = PRETRAINED, data_root: str = "data") -> tuple[Path, dict]:
    """Train the classifier of `dataset` on its train split (shapes: 10,000 images), ship it, and return its path
    and test accuracy per target."""
    options = {"n": 10_000} if dataset == "shapes" else {}
    train = load_dataset(dataset, "train", root=data_root, **options)
    test = load_dataset(dataset, "test", root=data_root, **({"n": 2_000} if dataset == "shapes" else {}))
    model = train_classifier(train, quiet=False)
    return save_classifier(model, dataset, root), accuracy(model, test)
