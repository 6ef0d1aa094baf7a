"""Two rewrites of the decoder's stride-2 transposed convolutions, timed against nn.ConvTranspose2d.

    .venv/bin/python benchmarks/deconv_variants.py [--rounds 20]

- subpixel: the same linear map as one ordinary convolution into 4x the channels followed by
  pixel_shuffle(2) (the weight re-indexed, zeros where a phase has no tap); checked equal to 1e-12 first.
- native forward: the forward pass with oneDNN switched off (PyTorch's own col2im kernel), backward as usual.
The allocator is tuned as the run cache tunes it (vaelib/training/allocator.py). Each layer shape of the
presets' decoders is timed forward + backward at batch 128, both variants and the reference alternating,
median of the rounds, as a ratio to the reference (above 1: the variant is faster).
Neither is used by vaelib: on this project's CPU subpixel was no faster anywhere (0.53-1.03x) and the native forward
helped only the last layer with few output channels (see the README's Speed section).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaelib.training.allocator import tune_cpu_allocator


def subpixel_plan(k: int, s: int = 2) -> tuple[torch.Tensor, int, int, int]:
    """For each output phase and tap of the equivalent convolution, the transposed kernel's tap (k: none)."""
    p = (k - 1) // 2
    ds = {a: [d for d in range(-k, k + 1) if 0 <= s * d + a + p < k] for a in range(s)}
    dmax, dmin = max(max(v) for v in ds.values()), min(min(v) for v in ds.values())
    size = dmax - dmin + 1
    idx = torch.full((s, size), k, dtype=torch.long)
    for a in range(s):
        for u in range(size):
            t = s * (dmax - u) + a + p
            if 0 <= t < k:
                idx[a, u] = t
    return idx, dmax, -dmin, size


def subpixel(x: torch.Tensor, layer: nn.ConvTranspose2d, s: int = 2) -> torch.Tensor:
    k = layer.kernel_size[0]
    idx, left, right, size = subpixel_plan(k, s)
    ci, co = layer.weight.shape[:2]
    w = F.pad(layer.weight, (0, 1, 0, 1))[:, :, idx][:, :, :, :, idx]  # (ci, co, s, size, s, size)
    w = w.permute(1, 2, 4, 0, 3, 5).reshape(co * s * s, ci, size, size)
    y = F.conv2d(F.pad(x, (left, right, left, right)), w, layer.bias.repeat_interleave(s * s))
    return F.pixel_shuffle(y, s)


def native_forward(x: torch.Tensor, layer: nn.ConvTranspose2d) -> torch.Tensor:
    with torch.backends.mkldnn.flags(enabled=False):
        return layer(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    args = p.parse_args()
    tune_cpu_allocator()  # as in fit
    torch.manual_seed(0)
    for k in (3, 4, 5):
        layer = nn.ConvTranspose2d(8, 5, k, stride=2, padding=(k - 1) // 2, output_padding=k % 2).double()
        x = torch.randn(3, 8, 7, 7, dtype=torch.double)
        err = (layer(x) - subpixel(x, layer)).abs().max().item()
        assert err < 1e-12, f"subpixel differs from ConvTranspose2d by {err} at kernel {k}"
    print("subpixel equals ConvTranspose2d (kernels 3, 4, 5; max difference < 1e-12)")
    # (in, out, input side): fashion_mnist's two, cifar10's last two, celeba_small's last two
    shapes = [(64, 32, 8), (32, 1, 16), (128, 64, 8), (64, 3, 16), (64, 32, 16), (32, 3, 32)]
    print(f"{'layer':<22}{'layout':<8}{'reference ms':>13}{'subpixel x':>11}{'native fwd x':>13}")
    for ci, co, side in shapes:
        for layout in ("nchw", "nhwc"):
            fmt = torch.channels_last if layout == "nhwc" else torch.contiguous_format
            layer = nn.ConvTranspose2d(ci, co, 3, stride=2, padding=1, output_padding=1).to(memory_format=fmt)
            x = torch.randn(128, ci, side, side).contiguous(memory_format=fmt).requires_grad_()
            runs = {"reference": layer, "subpixel": lambda x, layer=layer: subpixel(x, layer),
                    "native": lambda x, layer=layer: native_forward(x, layer)}
            times: dict[str, list[float]] = {k: [] for k in runs}
            for r in range(args.rounds + 3):
                for name, run in runs.items():
                    t0 = time.perf_counter()
                    run(x).sum().backward()
                    if r >= 3:  # warm-up rounds dropped
                        times[name].append(time.perf_counter() - t0)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(f"{f'{ci}->{co} at {side}x{side}':<22}{layout:<8}{1e3 * med['reference']:>13.2f}"
                  f"{med['reference'] / med['subpixel']:>11.2f}{med['reference'] / med['native']:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
