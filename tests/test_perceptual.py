"""The perceptual reconstruction term (vaelib/models/perceptual.py): pixel squared error plus the shipped domain
classifier's feature distance. Offline, so only the domain-classifier path is tested here; the LPIPS path needs
`pip install lpips` and a download, and only its refusal without the package is checked."""

import pytest
import torch
import torch.nn.functional as F

from vaelib.config import with_overrides
from vaelib.data.datasets import load_dataset
from vaelib.evaluation import metrics
from vaelib.experiments.budgets import notebook_config
from vaelib.losses import reconstruction
from vaelib.models.perceptual import FeatureDistance, perceptual_distance
from vaelib.models.registry import build_model
from vaelib.runtime import to_float
from vaelib.training.trainer import fit


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = torch.arange(-4, 5, dtype=torch.float32)
    k = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).view(1, 1, 1, -1)
    x = F.conv2d(F.pad(x, (4, 4, 0, 0), mode="replicate"), k)
    return F.conv2d(F.pad(x, (0, 0, 4, 4), mode="replicate"), k.transpose(2, 3))


@pytest.fixture(scope="module")
def mnist_images():
    return to_float(load_dataset("mnist", "test").images[:64])


def test_a_blurred_image_scores_worse_than_the_sharp_one_and_more_so_the_more_it_is_blurred(mnist_images):
    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.recon": "perceptual"})
    distance = perceptual_distance(config)
    assert isinstance(distance, FeatureDistance)
    x = mnist_images
    scores = [float(distance(_blur(x, s) if s else x, x).mean()) for s in (0, 0.7, 1.5)]
    assert scores[0] == 0 and 0 < scores[1] < scores[2]
    logits = torch.logit(_blur(x, 1.5).clamp(1e-4, 1 - 1e-4))
    term = reconstruction(logits, x, "perceptual", distance)
    pixel = reconstruction(logits, x, "mse")
    assert torch.all(term > pixel)  # the pixel term plus a positive feature distance
    assert perceptual_distance(notebook_config("mnist", "tiny")) is None  # only for recon = "perceptual"


def test_the_perceptual_term_has_no_bound_and_needs_its_distance(mnist_images):
    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.recon": "perceptual"})
    model = build_model(config)
    with pytest.raises(ValueError, match="likelihood='perceptual' is not a normalised density"):
        metrics.iw_nll(model, mnist_images[:4], k=2)
    with pytest.raises(ValueError, match="recon kind 'perceptual' needs the model's feature distance"):
        reconstruction(torch.zeros(1, 1, 32, 32), mnist_images[:1], "perceptual")


def test_a_vae_trains_on_the_perceptual_term_and_the_classifier_stays_frozen_and_outside(mnist_images, tmp_path):
    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.recon": "perceptual", "train.epochs": 1,
                                                                 "train.batch_size": 16})
    x = (mnist_images * 255).round().to(torch.uint8)
    model, history = fit(config, x[:48], x[48:], device="cpu", out_dir=tmp_path, quiet=True)
    assert all(torch.isfinite(torch.tensor(s["recon"])) for s in history.steps)
    # the baseline every run must beat is measured in the same term: the mean image's perceptual score
    mean = to_float(x[:48]).mean(0, keepdim=True).clamp(1e-6, 1 - 1e-6)
    want = reconstruction(torch.logit(mean).expand(16, -1, -1, -1), to_float(x[48:]), "perceptual",
                          model.perceptual).mean()
    assert history.options["ignore_input"]["val_recon"] == pytest.approx(float(want), rel=1e-4)
    net = model.perceptual.classifier
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert not any(k.startswith("perceptual") or "classifier" in k for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) == model.parameter_count()


def test_a_dataset_without_a_shipped_classifier_needs_lpips():
    config = with_overrides(notebook_config("digits", "tiny"), **{"train.recon": "perceptual"})
    with pytest.raises(ValueError, match=r"needs LPIPS: allowed after `pip install lpips`"):
        perceptual_distance(config)


def test_a_model_first_built_on_the_meta_device_leaves_a_real_distance_behind(mnist_images):
    from vaelib.models import perceptual

    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.recon": "perceptual"})
    perceptual._domain_distance.cache_clear()
    with torch.device("meta"):  # as the checkpoint checks build a model to compare shapes
        build_model(config)
    model = build_model(config)
    x = mnist_images[:2]
    assert torch.isfinite(model.perceptual(x, x)).all()


def test_the_standard_metrics_of_a_perceptual_run_report_no_bound(mnist_images):
    from vaelib.data.datasets import ImageSplit
    from vaelib.experiments.single_run import standard_metrics

    config = with_overrides(notebook_config("mnist", "tiny"), **{"train.recon": "perceptual"})
    x = (mnist_images[:16] * 255).round().to(torch.uint8)
    split = ImageSplit(x, None, None)
    out = standard_metrics(build_model(config).eval(), config, split, split, iw_samples=2)
    assert out["iw_nll"] is None and out["test_elbo"]["recon"] > 0
