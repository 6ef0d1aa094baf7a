"""Notebook 00_vae_from_scratch: its exercise checks (right with the reference solution, wrong with broken ones,
'not done yet' with the stub) and the notebook itself at budget tiny, on a grey and an RGB dataset."""

import json
import math

import papermill
import pytest
import torch

from vaelib.lessons import vae_from_scratch as lesson
from vaelib.report import NOTEBOOKS, check_parameters

NOTEBOOK = NOTEBOOKS / "00_vae_from_scratch.ipynb"

WRONG = [  # (exercise, a plausible mistake)
    ("reparameterize", lambda mu, logvar, eps: mu + logvar.exp() * eps),  # variance instead of std
    ("reparameterize", lambda mu, logvar, eps: mu + eps),  # forgets sigma
    ("reparameterize", lambda mu, logvar, eps: (mu + torch.exp(0.5 * logvar) * eps).detach()),  # no gradient
    ("kl_per_dim", lambda mu, logvar: 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)),  # summed: (B,)
    ("kl_per_dim", lambda mu, logvar: 0.5 * (mu.pow(2) + logvar.exp() - 1 + logvar)),  # sign of log sigma^2
    ("kl_per_dim", lambda mu, logvar: 0.5 * (mu.pow(2) + torch.exp(2 * logvar) - 1 - 2 * logvar)),  # as log sigma
    ("linear_beta", lambda step, n, b0, b: b0 + (b - b0) * step / n),  # never stops at beta
    ("linear_beta", lambda step, n, b0, b: b * min(step / n, 1.0)),  # ignores beta_start
    ("linear_beta", lambda step, n, b0, b: b0 + (b - b0) * min((step + 1) / n, 1.0)),  # off by one step
]


def _stub(*args):
    raise NotImplementedError("exercise")


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_reference_solution_is_right(name):
    check, solution = lesson.EXERCISES[name]
    assert check(solution).startswith("right"), check(solution)


@pytest.mark.parametrize("name, wrong", WRONG)
def test_wrong_solution_is_wrong(name, wrong):
    check, _ = lesson.EXERCISES[name]
    assert check(wrong).startswith("wrong"), check(wrong)


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_stub_is_not_done_yet(name):
    check, _ = lesson.EXERCISES[name]
    assert check(_stub).startswith("not done yet")


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_other_errors_and_non_tensors_are_wrong(name):
    check, _ = lesson.EXERCISES[name]

    def raises(*args):
        raise ValueError("oops")

    assert check(raises).startswith("wrong") and "ValueError" in check(raises)
    assert check(lambda *args: None).startswith("wrong")


def test_implementation_differences_are_measured(tiny_config, tiny_data):
    x = tiny_data[0][:8].float() / 255  # (8, 1, 16, 16)
    diff = lesson.implementation_differences(tiny_config, x)
    assert set(diff) == {"channels_last_features", "fused_adam_weights"}
    assert all(math.isfinite(v) and 0 <= v < 1e-3 for v in diff.values())  # rounding, not different maths


def test_parameters_cell_declares_what_the_report_passes():
    check_parameters(NOTEBOOK, {"dataset": "shapes", "budget": "tiny", "seed": 1, "device": "cpu", "image_size": 64,
                                "data_root": "d", "runs_dir": "r", "out_dir": "o", "retrain": False,
                                "hand_steps": 3})


@pytest.mark.parametrize("dataset, channels", [("mnist", 1), ("shapes", 3)])
def test_notebook_at_budget_tiny(tmp_path, dataset, channels):
    out = tmp_path / "out"
    params = {"dataset": dataset, "budget": "tiny", "seed": 0, "device": "cpu", "data_root": str(tmp_path / "data"),
              "runs_dir": str(tmp_path / "runs"), "out_dir": str(out)}
    papermill.execute_notebook(str(NOTEBOOK), str(tmp_path / "executed.ipynb"), parameters=params,
                               kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["data"]["dataset"] == dataset and metrics["config"]["data"]["channels"] == channels
    assert metrics["hand_equals_fit"] is True and metrics["compared_steps"] == metrics["hand_steps"] == 8
    assert metrics["max_abs_loss_difference"] == 0
    assert metrics["formulas_match"] is True and len(metrics["formula_checks"]) >= 8
    assert all(v is True for v in metrics["formula_checks"].values()), metrics["formula_checks"]
    assert all(v.startswith("not done yet") for v in metrics["exercises"].values())  # the committed stubs
    assert math.isfinite(metrics["bits_per_dim"]) and metrics["test_neg_elbo_nats"] > metrics["test_elbo"]["total"]
    assert {"data.png", "hand_loop_curves.png", "hand_loop_reconstructions.png"} <= {p.name for p in out.iterdir()}
