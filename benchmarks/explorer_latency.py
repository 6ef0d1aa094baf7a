"""Latent explorer responsiveness: milliseconds from a change to new decoded image bytes, per preset shape.

    .venv/bin/python benchmarks/explorer_latency.py [--repeats 200] [--threads 1] [--image-px 256]
                                                    [--presets digits celeba ...]

For every preset it builds a `LatentExplorer` over an untrained VAE of the preset's shape (timing does not
depend on the weights) and random test images, at the projector sizes (`--image-px` 256 for one image,
`--strip-px` 128 for each image of a strip or grid), then makes `repeats` changes of each control, as the
browser does, and times the whole callback: a latent slider (update the code, decode one image under
inference_mode, upscale and PNG-encode it, assign the bytes to the ipywidgets.Image), one frame of the
interpolation's Play button, and a map coordinate (which also redraws the map with its ring). The first
`--warmup` changes are not counted. `--threads` is the explorer's decode thread cap (its default, 1; 0 =
torch's own setting, which on a core shared with a browser or another process can be several times slower).
Every control of the 64x64 presets (celeba, celeba_small) must stay under `--budget-ms` (50 ms) at the 95th
percentile; the exit status is 1 when one does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np
import torch

from vaelib.config import PRESETS, get_preset
from vaelib.data.datasets import ImageSplit
from vaelib.models.vae import VAE
from vaelib.widgets import LatentExplorer


def explorer(preset: str, threads: int | None = 1, n_images: int = 64, **sizes: int) -> LatentExplorer:
    """An explorer over an untrained model of the preset and random uint8 images of its input shape, 10 classes."""
    config = get_preset(preset)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n_images, *config.input_shape), dtype=torch.uint8)  # (N, C, H, W)
    split = ImageSplit(images, torch.arange(n_images) % 10, None, class_names=tuple("0123456789"), name="random",
                       split="test")  # classes: the map colours its points
    return LatentExplorer(VAE(config), split, threads=threads, **sizes)


def measure(preset: str, repeats: int, warmup: int, threads: int | None, **sizes: int) -> dict[str, dict[str, float]]:
    """Per control, the percentiles of its change-to-new-image milliseconds."""
    ex = explorer(preset, threads, **sizes)
    ex.latencies(warmup)
    rows = {}
    for control, ms in ex.latencies(repeats).items():
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        rows[control] = {"p50": p50, "p90": p90, "p95": p95, "p99": p99, "max": ms.max()}
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--repeats", type=int, default=200, help="timed slider changes per preset")
    p.add_argument("--warmup", type=int, default=20, help="untimed slider changes first")
    p.add_argument("--threads", type=int, default=1, help="decode threads of the explorer; 0 = torch's setting")
    p.add_argument("--budget-ms", type=float, default=50.0, help="95th percentile limit for 64x64 presets")
    p.add_argument("--image-px", type=int, default=256, help="pixels of one decoded image")
    p.add_argument("--strip-px", type=int, default=128, help="pixels of each image of a strip or grid")
    args = p.parse_args(argv)
    threads = args.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, decode on {threads} thread(s), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; images {args.image_px} px, strips {args.strip_px} px; "
          f"{args.repeats} changes per control after {args.warmup} warm-up; milliseconds from control.value = v "
          "to new PNG bytes in the Image widget")
    print(f"{'preset':<14}{'input':>8}  {'control':<16}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'max':>8}")
    slow = []
    for preset in args.presets:
        rows = measure(preset, args.repeats, args.warmup, args.threads or None, image_px=args.image_px,
                       strip_px=args.strip_px)
        shape = "x".join(map(str, get_preset(preset).input_shape))
        for control, r in rows.items():
            print(f"{preset:<14}{shape:>8}  {control:<16}"
                  + "".join(f"{r[k]:8.2f}" for k in ("p50", "p90", "p95", "p99", "max")))
            if get_preset(preset).data.image_size >= 64 and r["p95"] > args.budget_ms:
                slow.append(f"{preset} {control}")
    if slow:
        print(f"too slow: {', '.join(slow)} over {args.budget_ms:g} ms at the 95th percentile")
        return 1
    print(f"ok: every control of every 64x64 preset under {args.budget_ms:g} ms at the 95th percentile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
