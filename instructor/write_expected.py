"""Writes vaelib/lessons/expected.json: the reference solutions (instructor/solutions.py) run on the seeded inputs
of the exercise checks (vaelib/lessons/exercises.py, vaelib/lessons/vae_from_scratch.py), kept as numbers only.

Run it from the repository root after changing a solution or a check's inputs:

    .venv/bin/python instructor/write_expected.py

tests/test_lessons_exercises.py fails while expected.json differs from what this would write.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from vaelib.lessons import exercises as E
from vaelib.lessons import vae_from_scratch as V

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "vaelib" / "lessons" / "expected.json"


def load_solutions() -> ModuleType:
    """instructor/solutions.py, loaded by its path (instructor/ is no package of vaelib)."""
    spec = importlib.util.spec_from_file_location("instructor_solutions", HERE / "solutions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _floor() -> float:
    """The free-bits floor of the train_step check: halfway between the smallest and the median latent dimension's
    batch-mean KL of the seeded model, so it binds on one dimension of three, some images' KL in that dimension lie
    on either side of it (flooring each image's KL instead is caught), and no dimension sits on it (where clamp's
    gradient would hang on rounding)."""
    config, x, _ = V.train_step_inputs()
    with torch.no_grad():
        mu, logvar = V.train_step_model(config).encode(x)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).mean(0).sort().values  # (3,): per dimension, ascending
    return float((kl[0] + kl[1]) / 2)


def expected() -> dict[str, Any]:
    """{exercise: its stored values}, in the order of the checks' inputs."""
    S = load_solutions()
    z_a, z_b = E.slerp_inputs()
    floor = _floor()
    losses, model = V.two_train_steps(S.solution_train_step, floor)
    return {
        "train_step": {"free_bits": floor, "losses": losses, "weights": V.weight_summary(model)},
        "iw_bound": [S.solution_iw_bound(log_w).tolist() for log_w in V.iw_bound_inputs().values()],
        "linear_beta": [S.solution_linear_beta(*case) for case in V.LINEAR_CASES],
        "data_mean_sse": S.solution_data_mean_sse(*E.data_mean_inputs()),
        "noise_sigma": S.solution_noise_sigma(*E.noise_inputs()),
        "gaussian_kl": [S.solution_gaussian_kl(*E.kl_inputs(), s).tolist() for s in E.KL_PRIOR_STDS],
        "reparameterise": S.solution_reparameterise(*E.reparameterise_inputs()).tolist(),
        "cyclic_beta": [S.solution_cyclic_beta(*case) for case in E.CYCLIC_CASES],
        "best_for": [S.solution_best_for(beta, rates, dists) for beta, rates, dists, _ in E.BEST_FOR_CASES],
        "pull": S.solution_pull(*E.pull_inputs()),
        "slerp": [S.solution_slerp(z_a, z_b, t).tolist() for t in E.SLERP_TS],
        "traverse": [S.solution_traverse(E.traverse_inputs(), *case).tolist() for case in E.TRAVERSE_CASES],
        "flow_pair": [[part.tolist() for part in S.solution_flow_pair(*E.flow_inputs(), t)] for t in E.FLOW_TS],
    }


def render(values: dict[str, Any]) -> str:
    """The file's text: JSON, one exercise per top-level key, a list of numbers on one line; floats as Python's repr
    (they read back exactly)."""
    text = json.dumps(values, indent=1)
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(map(str.strip, m[1].split(","))) + "]",
                  text) + "\n"


def main() -> None:
    TARGET.write_text(render(expected()))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
