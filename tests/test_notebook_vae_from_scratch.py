"""Notebook 00_vae_from_scratch: its exercise checks (right with the reference solution, which lives outside the
package in instructor/solutions.py and is loaded here by its path, and with a correct step written otherwise; wrong
with broken ones, with the reason; 'not done yet' with the stub) and the notebook itself at budget tiny, on a grey
and an RGB dataset."""

import importlib.util
import json
import math
from pathlib import Path

import papermill
import pytest
import torch

from vaelib.lessons import vae_from_scratch as lesson
from vaelib.reporting.params import check_parameters
from vaelib.reporting.report import NOTEBOOKS

NOTEBOOK = NOTEBOOKS / "00_vae_from_scratch.ipynb"
ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("instructor_solutions", ROOT / "instructor" / "solutions.py")
SOLUTIONS = importlib.util.module_from_spec(_spec)  # instructor/: no package of vaelib, not in the wheel
_spec.loader.exec_module(SOLUTIONS)

STEP_HINT = "recon summed over pixels and averaged over the batch"
WEIGHTS_HINT = "are the old gradients zeroed before backward"
WRONG = [  # (exercise, a plausible mistake, what the check's line must say)
    ("train_step", lambda model, opt, x, beta, eps, clip, fb: _step(model, opt, x, beta, eps, clip, 0.0),
     STEP_HINT),  # no floor
    ("train_step", lambda model, opt, x, beta, eps, clip, fb: _step(model, opt, x, beta, eps, None, fb),
     WEIGHTS_HINT),  # no clip
    ("train_step", lambda model, opt, x, beta, eps, clip, fb: _step(model, opt, x, 1.0, eps, clip, fb),
     STEP_HINT),  # beta 1
    ("train_step", lambda model, opt, x, beta, eps, clip, fb: _per_image_floor(model, opt, x, beta, eps, clip, fb),
     STEP_HINT),
    ("train_step", lambda model, opt, x, beta, eps, clip, fb: _no_zero_grad(model, opt, x, beta, eps, clip, fb),
     WEIGHTS_HINT),
    ("iw_bound", lambda log_w: torch.log(torch.exp(log_w).mean(1)),  # underflows at -3000
     "on log weights near -3000 (an image of 3000 nats): returned [-inf"),
    ("iw_bound", lambda log_w: torch.logsumexp(log_w, 1), "is the 1/K missing?"),  # forgets the 1/K
    ("iw_bound", lambda log_w: log_w.mean(1),  # the mean of the logs: the ELBO, not the IW bound
     "is not above the mean of the log weights"),
    ("linear_beta", lambda step, n, b0, b: b0 + (b - b0) * step / n,  # never stops at beta
     "gives 2.5 at step 250 (anneal_steps 100, 0.0 -> 1.0); expected 1"),
    ("linear_beta", lambda step, n, b0, b: b * min(step / n, 1.0),  # ignores beta_start
     "gives 0.0 at step 0 (anneal_steps 100, 0.2 -> 0.8); expected 0.2"),
    ("linear_beta", lambda step, n, b0, b: b0 + (b - b0) * min((step + 1) / n, 1.0),  # off by one step
     "gives 0.01 at step 0 (anneal_steps 100, 0.0 -> 1.0); expected 0"),
]


def _step(model, opt, x, beta, eps, clip, free_bits, per_image=False, zero=True):
    mu, logvar = model.encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    recon = (torch.sigmoid(model.decoder.forward_logits(z)) - x).pow(2).flatten(1).sum(1).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())
    kl = torch.clamp(kl, min=free_bits).sum(1).mean() if per_image else torch.clamp(kl.mean(0), min=free_bits).sum()
    loss = recon + beta * kl
    if zero:
        opt.zero_grad()
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()


def _per_image_floor(*args):  # floors each image's KL, not each dimension's batch mean
    return _step(*args, per_image=True)


def _no_zero_grad(*args):  # the second step adds its gradient to the first's
    return _step(*args, zero=False)


def _stub(*args):
    raise NotImplementedError("exercise")


def _other_words(model, opt, x, beta, eps, clip, free_bits):  # right too: the same step, written otherwise
    logits, mu, logvar = model(x, eps=eps)
    recon = torch.nn.functional.mse_loss(torch.sigmoid(logits), x, reduction="sum") / x.shape[0]
    kl = torch.stack([torch.maximum(0.5 * (mu[:, j] ** 2 + logvar[:, j].exp() - logvar[:, j] - 1).mean(),
                                    torch.tensor(free_bits)) for j in range(mu.shape[1])])
    loss = recon + beta * kl.sum()
    opt.zero_grad(set_to_none=False)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=False)
    opt.step()
    return float(loss.detach())


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_reference_solution_is_right(name):
    check = lesson.EXERCISES[name]
    assert check(getattr(SOLUTIONS, f"solution_{name}")) == f"right: {name} matches the expected values"


def test_a_right_step_in_other_words_is_right():
    assert lesson.check_train_step(_other_words) == "right: train_step matches the expected values"


@pytest.mark.parametrize("name, wrong, why", WRONG)
def test_wrong_solution_is_wrong(name, wrong, why):
    got = lesson.EXERCISES[name](wrong)
    assert got.startswith(f"wrong: {name} ") and why in got, got


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_stub_is_not_done_yet(name):
    check = lesson.EXERCISES[name]
    assert check(_stub).startswith("not done yet")


@pytest.mark.parametrize("name", sorted(lesson.EXERCISES))
def test_other_errors_and_non_tensors_are_wrong(name):
    check = lesson.EXERCISES[name]

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
