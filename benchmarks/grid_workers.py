"""A grid of small runs trained one after another vs in parallel processes, side by side: does
`runsets.train_in_workers` pay on this CPU?

    .venv/bin/python benchmarks/grid_workers.py [--dataset mnist] [--runs 4] [--epochs 3] [--workers 2] [--rounds 2]

Each round trains the same `runs` configs (seeds 0, 1, ...) at the `small` budget, cut to `epochs`, into a fresh
temporary cache twice: one after another in this process (all threads, as notebooks do by default), then with
`workers` processes (an equal share of the threads each). Rounds alternate the order, so a noisy neighbour hurts
both. It prints wall seconds and the ratio per round and their median. The numbers of a run trained with fewer
threads differ in the last digits (float sums in another order); the script reports the largest difference of
the final validation loss, so the price is a number too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from vaelib.data.datasets import load_from_config
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import cached_fit, run_dir
from vaelib.experiments.runs import train_in_workers, with_epochs, with_seed
from vaelib.training.trainer import HISTORY


def grid(dataset: str, runs: int, epochs: int) -> list:
    base = with_epochs(notebook_config(dataset, "small", 0), epochs)
    return [with_seed(base, s) for s in range(runs)]


def sequential(configs: list, train, val, root: str) -> float:
    t0 = time.perf_counter()
    for c in configs:
        cached_fit(c, train, val, root=root, device="cpu", quiet=True)
    return time.perf_counter() - t0


def parallel(configs: list, train, val, root: str, workers: int) -> float:
    t0 = time.perf_counter()
    train_in_workers(configs, train, val, workers=workers, root=root, device="cpu")
    return time.perf_counter() - t0


def final_val(configs: list, root: str) -> list[float]:
    import json

    return [json.loads((run_dir(c, root) / HISTORY).read_text())["epochs"][-1]["val_total"] for c in configs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    configs = grid(a.dataset, a.runs, a.epochs)
    train, val = (load_from_config(configs[0].data, s) for s in ("train", "val"))
    ratios = []
    for r in range(a.rounds):
        with tempfile.TemporaryDirectory() as seq_root, tempfile.TemporaryDirectory() as par_root:
            order = ("seq", "par") if r % 2 == 0 else ("par", "seq")
            t = {}
            for which in order:
                t[which] = (sequential(configs, train, val, seq_root) if which == "seq"
                            else parallel(configs, train, val, par_root, a.workers))
            diff = max(abs(x - y) for x, y in zip(final_val(configs, seq_root), final_val(configs, par_root)))
        ratios.append(t["seq"] / t["par"])
        print(f"round {r}: {a.runs} runs x {a.epochs} epochs of {a.dataset}: one after another {t['seq']:.1f} s, "
              f"{a.workers} processes {t['par']:.1f} s, speed-up {ratios[-1]:.2f}x; "
              f"largest final val_total difference {diff:.2g} nats")
    print(f"median speed-up over {a.rounds} rounds: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
