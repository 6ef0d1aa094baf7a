"""How long each lesson takes at its defaults with nothing cached: the lessons must run live in class.

    .venv/bin/python benchmarks/lesson_times.py [--only 03 04] [--budget-s 180] [--slower 1.9]

Every numbered lesson (notebooks/NN_*.ipynb) is executed with papermill at its default parameters, one after the
other, into a temporary folder, each with its own empty runs/ cache (so every model it uses is trained), as a
lecturer's first run in class would. Prints the seconds of each lesson, the CPU kind (AVX-512 or AVX2 only) and,
on the faster kind, the seconds scaled to the slower kind by `--slower` (the training-speed ratio measured
between the two kinds; README: about 1.9x). The budget (`--budget-s`, 180 s) is stated for the slower kind; the
exit status is 1 when a lesson exceeds it (scaled when measured on the faster kind). Nothing else should run on
the machine meanwhile: two cores are all there is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from vaelib.reporting.report import numbered_notebooks, run_notebook


def cpu_kind() -> str:
    """'avx512' when the CPU reports avx512f (the faster kind), else 'avx2' (the slower kind)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return "avx512" if " avx512f" in flags else "avx2"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", default=None, help="lesson numbers to time (default: all)")
    p.add_argument("--budget-s", type=float, default=180.0, help="seconds per lesson on the slower CPU kind")
    p.add_argument("--slower", type=float, default=1.9, help="slower kind's time over the faster kind's")
    args = p.parse_args(argv)
    lessons = [nb for nb in numbered_notebooks() if args.only is None or nb.name[:2] in args.only]
    if not lessons:
        p.error(f"--only {args.only} names no lesson: allowed {', '.join(nb.name[:2] for nb in numbered_notebooks())}")
    kind = cpu_kind()
    scale = args.slower if kind == "avx512" else 1.0
    print(f"CPU kind: {kind}; budget {args.budget_s:g} s per lesson on the slower kind"
          + (f" (times x {scale:g} to compare)" if scale != 1 else ""))
    over = []
    with tempfile.TemporaryDirectory(prefix="lesson-times-") as tmp:
        root = Path(tmp)
        for nb in lessons:
            params = {"runs_dir": str(root / "runs" / nb.stem), "out_dir": str(root / "out" / nb.stem),
                      "data_root": str(root / "data")}
            t0 = time.perf_counter()
            run_notebook(nb, root / "executed" / nb.name, params, timeout=3600, quiet=True)
            seconds = time.perf_counter() - t0
            scaled = seconds * scale
            verdict = "within" if scaled <= args.budget_s else "OVER"
            over += [nb.stem] if scaled > args.budget_s else []
            print(f"{nb.stem:28s} {seconds:7.1f} s" + (f"  ~{scaled:6.1f} s on the slower kind" if scale != 1 else "")
                  + f"  {verdict} budget", flush=True)
    if over:
        print(f"over budget: {', '.join(over)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
