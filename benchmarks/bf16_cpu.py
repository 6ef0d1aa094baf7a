"""bf16 autocast vs fp32 on this CPU, side by side: does bf16 pay off here?

    .venv/bin/python benchmarks/bf16_cpu.py [--preset fashion_mnist] [--rounds 3]

fit refuses precision='bf16' on CPUs without avx512_bf16/AMX (vaelib.runtime.bf16_supported); this script
measures a bare training step both ways anyway, so the reason is a number, not an assumption.
"""

from __future__ import annotations

import argparse
import time

import torch

from vaelib.config import get_preset
from vaelib.losses import elbo
from vaelib.models.vae import VAE
from vaelib.runtime import bf16_supported


def images_per_sec(preset: str, bf16: bool, steps: int = 20) -> float:
    config = get_preset(preset)
    torch.manual_seed(0)
    model = VAE(config)
    opt = torch.optim.Adam(model.parameters())
    x = torch.rand(config.train.batch_size, *config.input_shape)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, mu, logvar = model(x)
        loss = elbo(x, logits, mu, logvar).total  # fp32 accumulation
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * config.train.batch_size / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fashion_mnist")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    print(f"CPU has fast bf16 (avx512_bf16 or AMX): {bf16_supported(torch.device('cpu'))}")
    for r in range(args.rounds):
        fp32, bf16 = images_per_sec(args.preset, False), images_per_sec(args.preset, True)
        print(f"round {r + 1}: fp32 {fp32:.0f} images/s, bf16 {bf16:.0f} images/s, bf16/fp32 = {bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
