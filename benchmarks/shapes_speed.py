"""How fast the embedded `shapes` dataset generates: 10,000 images at 64x64, plain and textured, side by side.

    .venv/bin/python benchmarks/shapes_speed.py [--n 10000] [--size 64] [--rounds 3]

Prints seconds per round for each background and their ratio (textured / plain). The promise is "seconds, not
minutes" on a 2-core CPU; absolute times drift on a shared machine, so compare the ratio between runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from vaelib.data.datasets import load_dataset


def seconds(n: int, size: int, background: str) -> float:
    start = time.perf_counter()
    load_dataset("shapes", "train", n=n, image_size=size, background=background)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    plain, textured = [], []
    for r in range(args.rounds):  # alternating, so drift hits both alike
        plain.append(seconds(args.n, args.size, "plain"))
        textured.append(seconds(args.n, args.size, "textured"))
        print(f"round {r + 1}: plain {plain[-1]:.2f} s, textured {textured[-1]:.2f} s")
    p, t = statistics.median(plain), statistics.median(textured)
    print(f"median: plain {p:.2f} s, textured {t:.2f} s, textured / plain = {t / p:.2f} "
          f"({args.n} images at {args.size}x{args.size})")


if __name__ == "__main__":
    main()
