"""Re-check every cached run under the convergence rule of experiments.evidence against the rule it replaced, and count
the runs that changed class: python tools/recheck_convergence.py [runs_dir].

The replaced rule (vaelib 0.x up to December 2026) is kept here, verbatim in what it decides: the share of the last
20% of epochs in the improvement from the first epoch; a flat run scored 0 and counted as converged; no check
against the model that ignores its input. Only this script uses it. A history saved before fit recorded the
ignore-the-input terms (history.options["ignore_input"]) cannot be judged derailed; retrain or rebuild first.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from vaelib.experiments.evidence import MIN_EPOCHS, convergence, objective_curve
from vaelib.training.checkpoint import checkpoint_config, read_checkpoint
from vaelib.training.history import History
from vaelib.training.jsonfiles import read_history


def replaced_rule(history: History, tol: float = 0.05, window: float = 0.2, min_window: int = 1) -> bool:
    """The rule before December 2026 (see the module docstring)."""
    curve = objective_curve(history)
    n = len(curve)
    if n < MIN_EPOCHS or not np.isfinite(curve).all():
        return False
    w = min(n - 1, max(1, min_window, round(window * n)))
    before, best_after, best = curve[:n - w].min(), curve[n - w:].min(), curve.min()
    whole = float(curve[0] - best)
    share = max(0.0, float(before - best_after)) / whole if whole > 0 else 0.0
    drifting = curve[-1] - best > tol * max(whole, abs(best))
    return bool(share < tol and not drifting)


def main(root: str = "runs") -> None:
    moves: Counter[tuple[str, str]] = Counter()
    changed_runs: list[str] = []
    for folder in sorted(Path(root).glob("*-*")):
        saved = folder / "history.json"
        if not saved.is_file():
            continue
        history = read_history(saved)
        ckpt = folder / "checkpoint.pt"
        config = checkpoint_config(read_checkpoint(ckpt), ckpt) if ckpt.is_file() else None
        if (folder / "failed.json").is_file() or config is None:
            moves[("failed", "failed")] += 1
            continue
        s = config.train.schedule
        cycle = math.ceil(config.train.epochs / s.cycles) if s.kind == "cyclic" else 1
        old = "converged" if replaced_rule(history, min_window=cycle) else "not converged"
        new = convergence(history, min_window=cycle)["state"]
        moves[(old, new)] += 1
        if (old == "converged") != (new == "converged"):
            t = config.train
            changed_runs.append(f"{folder.name}: {old} -> {new} (lr {t.lr:g}, clip {t.grad_clip}, {s.kind} beta "
                                f"{s.beta:g}, free bits {t.free_bits:g})")
    total = sum(moves.values())
    changed = sum(n for (old, new), n in moves.items() if (old == "converged") != (new == "converged"))
    print("\n".join(changed_runs))
    for (old, new), n in sorted(moves.items()):
        print(f"{old:>14} -> {new:<16} {n:4d}")
    print(f"{total} runs, {changed} changed class (converged <-> not converged)")


if __name__ == "__main__":
    main(*sys.argv[1:])
