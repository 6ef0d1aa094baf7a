"""Latent explorer responsiveness: milliseconds from a slider change to new decoded image bytes, per preset shape.

    .venv/bin/python benchmarks/explorer_latency.py [--repeats 200] [--threads 1] [--presets digits celeba ...]

For every preset it builds a `LatentExplorer` over an untrained VAE of the preset's shape (timing does not
depend on the weights) and random test images, then sets a latent slider's value `repeats` times, as the
browser does, and times the whole callback: update the code, decode one image under inference_mode,
upscale and PNG-encode it, assign the bytes to the ipywidgets.Image. The first `--warmup` changes are not
counted. `--threads` is the explorer's decode thread cap (its default, 1; 0 = torch's own setting, which
on a core shared with a browser or another process can be several times slower). The 64x64 presets
(celeba, celeba_small) must stay under `--budget-ms` (50 ms) at the 95th percentile; the exit status is 1
when one does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np
import torch

from vaelib.config import PRESETS, get_preset
from vaelib.data import ImageSplit
from vaelib.model import VAE
from vaelib.widgets import LatentExplorer


def explorer(preset: str, threads: int | None = 1, n_images: int = 64) -> LatentExplorer:
    """An explorer over an untrained model of the preset and random uint8 images of its input shape."""
    config = get_preset(preset)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n_images, *config.input_shape), dtype=torch.uint8)  # (N, C, H, W)
    split = ImageSplit(images, None, None, name="random", split="test")
    return LatentExplorer(VAE(config), split, threads=threads)


def measure(preset: str, repeats: int, warmup: int, threads: int | None) -> dict[str, float]:
    ex = explorer(preset, threads)
    ex.slider_latency(warmup)
    ms = ex.slider_latency(repeats)
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {"p50": p50, "p90": p90, "p95": p95, "p99": p99, "max": ms.max(), "size": ex.model.config.data.image_size}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--repeats", type=int, default=200, help="timed slider changes per preset")
    p.add_argument("--warmup", type=int, default=20, help="untimed slider changes first")
    p.add_argument("--threads", type=int, default=1, help="decode threads of the explorer; 0 = torch's setting")
    p.add_argument("--budget-ms", type=float, default=50.0, help="95th percentile limit for 64x64 presets")
    args = p.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, decode on {threads} thread(s), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; {args.repeats} slider changes per preset after "
          f"{args.warmup} warm-up; milliseconds from slider.value = v to new PNG bytes in the Image widget")
    print(f"{'preset':<14}{'input':>8}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    slow = []
    for preset in args.presets:
        r = measure(preset, args.repeats, args.warmup, args.threads or None)
        shape = "x".join(map(str, get_preset(preset).input_shape))
        print(f"{preset:<14}{shape:>8}" + "".join(f"{r[k]:8.2f}" for k in ("p50", "p90", "p95", "p99", "max")))
        if r["size"] >= 64 and r["p95"] > args.budget_ms:
            slow.append(preset)
    if slow:
        print(f"too slow: {', '.join(slow)} over {args.budget_ms:g} ms at the 95th percentile")
        return 1
    print(f"ok: every 64x64 preset under {args.budget_ms:g} ms at the 95th percentile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
