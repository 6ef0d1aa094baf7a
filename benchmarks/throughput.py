"""fit vs a bare loop vs a naive tutorial loop, measured side by side in one run.

    .venv/bin/python benchmarks/throughput.py [--preset fashion_mnist] [--rounds 5] [--steps 16]

All three train the preset's model at its batch size on the same images (vaelib.perf.bench):
- naive: a DataLoader over a dataset doing per-sample PIL conversion + ToTensor, `.item()` every step;
- bare:  eager fp32 NCHW forward/backward/Adam over a float tensor already in memory, no logging;
- fit:   vaelib.training.trainer.fit with the preset's defaults (its per-epoch images/s, warm-up epoch dropped).
Rounds alternate the three so machine noise hits each alike; medians and ratios are printed. naive and bare
run in a worker process with the system allocator, fit in one whose allocator is tuned (vaelib/training/allocator.py).
`python -m vaelib bench` measures every fast-path option as well.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from vaelib.config import get_preset
from vaelib.perf.bench import Row, Workers, measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fashion_mnist")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=16, help="training steps per measurement")
    p.add_argument("--out", default=None, help="also write the result as JSON here")
    args = p.parse_args()
    config, device = get_preset(args.preset), torch.device("cpu")
    loops = {"naive": False, "bare": False, "fit": True}  # loop -> runs in the tuned worker

    def show(r: int, measured: dict[str, list[float]]) -> None:
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in measured.items()) + " images/s",
              flush=True)

    with Workers() as workers:
        rows, _ = measure(workers, [Row(k, k, config, tuned) for k, tuned in loops.items()], args.rounds,
                          args.steps, device, show)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n{'loop':<8}{'images/s':>10}{'x naive':>9}{'x bare':>8}")
    for k in loops:
        print(f"{k:<8}{med[k]:>10.0f}{med[k] / med['naive']:>9.2f}{med[k] / med['bare']:>8.2f}")
    print(f"fit / bare = {med['fit'] / med['bare']:.2f}   fit / naive = {med['fit'] / med['naive']:.2f}   "
          f"({args.preset}, batch {config.train.batch_size}, {torch.get_num_threads()} threads)")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"preset": args.preset, "images_per_sec": med, "rounds": rows}, f, indent=2)


if __name__ == "__main__":
    main()
