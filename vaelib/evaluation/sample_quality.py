"""Sample quality in a domain classifier's features (vaelib.models.classifier): the Fréchet distance between samples and
test images (Heusel et al., 2017, through torchmetrics with the classifier as its feature extractor), precision and
recall (Kynkäänniemi et al., 2019), density and coverage (Naeem et al., 2020), and which classes the samples hit.

Real and generated images are float in [0, 1] or uint8, (N, C, H, W). Lower Fréchet distance is better; precision
(samples that look real), recall (real images the samples cover), density and coverage are higher-is-better.
For CIFAR-10 and CelebA, `frechet_distance(2048, real, fake)` uses torchmetrics' Inception features (it needs the
torch-fidelity package and downloads the weights at first use: only users with internet have them), and
`precision_recall` takes any feature vectors; the offline tests cover the classifier path only.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from vaelib.models.base import model_device
from vaelib.models.classifier import DomainClassifier
from vaelib.runtime import to_float


@torch.no_grad()
def frechet_distance(features: nn.Module | int, real: torch.Tensor, fake: torch.Tensor, batch: int = 500) -> float:
    """Fréchet distance between Gaussians fitted to the features of `real` and `fake` images; `features` is a
    module (the domain classifier) or an Inception feature size for torchmetrics (64, 192, 768 or 2048)."""
    fid = FrechetInceptionDistance(feature=features, normalize=True, reset_real_features=True)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, len(images), batch):
            fid.update(to_float(images[i:i + batch]), real=is_real)
    return float(fid.compute())


def _radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row of x to its k-th nearest other row, (N,)."""
    return torch.cdist(x, x).kthvalue(k + 1, dim=1).values  # the 1st nearest is the point itself


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall (Kynkäänniemi et al., 2019), density and coverage (Naeem et al., 2020) of `fake` feature
    vectors (M, D) against `real` ones (N, D): each point's neighbourhood is the ball out to its k-th neighbour."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"k={k} is invalid for {len(real)} real and {len(fake)} fake points: allowed k < both")
    r_real, r_fake = _radii(real, k), _radii(fake, k)
    d = torch.cdist(fake, real)  # (M, N)
    inside = d <= r_real[None, :]  # fake j inside real i's ball
    return {"precision": float(inside.any(1).double().mean()),
            "recall": float((d.T <= r_fake[None, :]).any(1).double().mean()),
            "density": float(inside.double().sum() / (k * len(fake))),
            "coverage": float((d.min(0).values <= r_real).double().mean())}


def class_coverage(classifier: DomainClassifier, fake: torch.Tensor, head: int | None = None) -> dict[str, float]:
    """Which classes of the classifier's target `head` (default: the one its dataset's coverage reads,
    classifier.COVERAGE_TARGET: the digit; shapes: the colour) the samples are predicted as: how many are hit by at
    least a quarter of their fair share, and how evenly (the entropy of the predicted classes over its maximum,
    1 = every class equally often)."""
    head = classifier.coverage if head is None else head
    k = classifier.classes[head]
    share = torch.bincount(classifier.predict(fake)[:, head], minlength=k).double() / len(fake)
    entropy = -(share[share > 0] * share[share > 0].log()).sum()
    return {"classes_hit": int((share >= 0.25 / k).sum()), "class_evenness": float(entropy / math.log(k))}


@torch.no_grad()
def sample_quality(model: nn.Module, classifier: DomainClassifier, test_images: torch.Tensor, n: int = 1000,
                   seed: int = 0, k: int = 5, head: int | None = None) -> dict[str, Any]:
    """n prior samples of a trained VAE (from `seed`) against the test images, in the classifier's features:
    fd (Fréchet distance), precision, recall, density, coverage, and classes_hit, class_evenness of target
    `head`."""
    device = model_device(model)
    fake = model.sample(n, generator=torch.Generator(device=device).manual_seed(seed)).float().cpu().clamp(0, 1)
    real = to_float(test_images)
    out = {"fd": frechet_distance(classifier, real, fake)}
    out |= precision_recall(classifier.features(real), classifier.features(fake), k)
    return out | class_coverage(classifier, fake, head)
