"""The perceptual reconstruction term, `train.recon = "perceptual"`: the squared error over the pixels plus the
squared error over a frozen feature network's activations (deep feature consistency, Hou et al., 2017), so that a
reconstruction is charged for losing edges and strokes that a pixel sum barely sees.

The feature network, offline: the domain classifier shipped for an embedded dataset (vaelib/models/classifier.py, mnist
and shapes; its three convolution layers' activations). For CIFAR-10 and CelebA, LPIPS (Zhang et al., 2018)
through the `lpips` package, whose backbone torchvision downloads at first use: it needs internet and
`pip install lpips`, and the offline tests cover the domain-classifier path only.

It is a distance, not the log of a density (losses.LIKELIHOODS marks it so): a model trained with it reports its
terms in the units of that distance, and no bound on -log p(x) (no importance-weighted bound, no bits per dim).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from vaelib.config import Config
from vaelib.models.classifier import DATASETS, DomainClassifier, load_classifier


class FeatureDistance(nn.Module):
    """d(x_hat, x) (B,): the squared differences of a DomainClassifier's three convolution activations, summed
    over units, for images in [0, 1]. The classifier is frozen: gradients reach x_hat, never its weights."""

    def __init__(self, classifier: DomainClassifier) -> None:
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.taps = [i for i, layer in enumerate(classifier.trunk) if isinstance(layer, nn.LeakyReLU)][:3]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, out = self.classifier._fit(x), []
        for i, layer in enumerate(self.classifier.trunk):
            h = layer(h)
            if i in self.taps:
                out.append(h)
            if i == self.taps[-1]:
                break
        return out

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.to(x.device)  # it lives outside the model's modules: follow the images
        with torch.no_grad():
            target = self.features(x.float())
        return sum((a - b).pow(2).flatten(1).sum(1) for a, b in zip(self.features(x_hat.float()), target))


class LPIPSDistance(nn.Module):
    """d(x_hat, x) (B,): LPIPS (the `lpips` package, AlexNet backbone), times the pixels of an image so that it
    sums like the other terms. Needs `pip install lpips` and internet at first use (torchvision's weights)."""

    def __init__(self) -> None:
        super().__init__()
        try:
            import lpips  # optional, and it downloads its backbone: only imported when asked for
        except ImportError:
            raise ValueError("train.recon='perceptual' on this dataset needs LPIPS: allowed after `pip install lpips` "
                             f"(with internet), or a dataset with a shipped classifier ({', '.join(DATASETS)})"
                             ) from None
        self.net = lpips.LPIPS(net="alex", verbose=False).eval().requires_grad_(False)

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.to(x.device)
        return self.net(x_hat * 2 - 1, x * 2 - 1).flatten() * x[0, 0].numel()


@functools.lru_cache(maxsize=4)
def _domain_distance(dataset: str) -> FeatureDistance:
    with torch.device("cpu"):  # a real one, even when the model is built on the meta device (schema's checks)
        return FeatureDistance(load_classifier(dataset))


def perceptual_distance(config: Config) -> nn.Module | None:
    """The feature distance of `config`'s perceptual term, None unless train.recon is "perceptual": the shipped
    classifier of an embedded dataset, else LPIPS."""
    if config.train.recon != "perceptual":
        return None
    if config.data.dataset in DATASETS:
        return _domain_distance(config.data.dataset)
    return LPIPSDistance()
