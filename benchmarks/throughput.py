"""Training throughput, measured side by side in one run: fit vs a bare loop vs a naive tutorial loop.

    .venv/bin/python benchmarks/throughput.py [--preset fashion_mnist] [--rounds 3]

All three train the same model (the preset's shape) at the same batch size on the same images:
- fit:   vaelib.train.fit (uint8 data resident on the device, batches drawn by index, scalars read
         once per `sync_every` steps, per-step history, grad-norm tracking, checkpoint-free);
- bare:  a minimal eager fp32 forward/backward/Adam step over a float tensor already in memory;
- naive: the way a typical tutorial writes it: torchvision's FashionMNIST class reading IDX files
         through a DataLoader with per-sample PIL transforms, and `.item()` logging every step.
Rounds alternate the three so machine noise hits all of them alike; the median round is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torchvision import datasets, transforms

from vaelib.config import get_preset, with_overrides
from vaelib.losses import elbo
from vaelib.model import VAE
from vaelib.train import fit


def digits_28(n: int) -> torch.Tensor:
    """n real handwritten digits at 28x28 uint8 (repeated as needed), the Fashion-MNIST raw shape."""
    d = torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16  # (1797, 1, 8, 8)
    x = F.interpolate(d, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x * 255).round().to(torch.uint8)[:, 0]
    return x.repeat((n + len(x) - 1) // len(x), 1, 1)[:n]  # (n, 28, 28)


def write_idx(root: Path, images: torch.Tensor) -> None:
    """Write images as Fashion-MNIST IDX files, so the naive loop reads them with torchvision's own class."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n = len(images)
    for prefix in ("train", "t10k"):
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28)
                                                          + images.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + bytes(n))


def time_fit(config, x_u8: torch.Tensor, epochs: int) -> float:
    c = with_overrides(config, **{"train.epochs": epochs})
    _, h = fit(c, x_u8, x_u8[:256], device="cpu", quiet=True)
    return statistics.median(e["images_per_sec"] for e in h["epochs"][1:])  # epoch 0 is warm-up


def time_bare(config, x_u8: torch.Tensor, steps: int) -> float:
    torch.manual_seed(0)
    model, bs = VAE(config), config.train.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x_all = x_u8.float() / 255
    beta = config.train.schedule.beta

    def step(i: int) -> None:
        x = x_all[(i * bs) % (len(x_all) - bs):][:bs]
        logits, mu, logvar = model(x)
        loss = elbo(x, logits, mu, logvar, beta=beta).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(3):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(i)
    return steps * bs / (time.perf_counter() - t0)


def time_naive(config, root: Path, steps: int) -> float:
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.Pad(2), transforms.ToTensor()])
    loader = torch.utils.data.DataLoader(datasets.FashionMNIST(str(root), train=True, transform=tf),
                                         batch_size=config.train.batch_size, shuffle=True, drop_last=True)
    model = VAE(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    beta, seen, t0, log = config.train.schedule.beta, 0, None, []
    for i, (x, _) in enumerate(_cycle(loader)):
        if i == 3:
            t0, seen = time.perf_counter(), 0
        if i == steps + 3:
            break
        logits, mu, logvar = model(x)
        loss = elbo(x, logits, mu, logvar, beta=beta).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append(loss.item())  # the per-step host read a tutorial does
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def _cycle(loader):
    while True:
        yield from loader


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fashion_mnist")
    p.add_argument("--images", type=int, default=2048, help="training images (steps per epoch = images // batch)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=None, help="write the result JSON here")
    args = p.parse_args()
    config = get_preset(args.preset)
    if config.input_shape != (1, 32, 32):
        raise SystemExit(f"--preset {args.preset!r}: the naive loop reads Fashion-MNIST files; allowed 1x32x32 presets")
    x28 = digits_28(args.images)
    x_u8 = F.pad(x28, (2, 2, 2, 2))[:, None].contiguous()  # (N, 1, 32, 32), as the loader pads
    steps = 2 * (args.images // config.train.batch_size)
    rows: dict[str, list[float]] = {"fit": [], "bare": [], "naive": []}
    with tempfile.TemporaryDirectory() as tmp:
        write_idx(Path(tmp), x28)
        for r in range(args.rounds):
            rows["fit"].append(time_fit(config, x_u8, epochs=3))
            rows["bare"].append(time_bare(config, x_u8, steps))
            rows["naive"].append(time_naive(config, Path(tmp), steps))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rows.items()), flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    result = {"preset": args.preset, "batch_size": config.train.batch_size, "threads": torch.get_num_threads(),
              "images_per_sec": med, "fit_over_bare": med["fit"] / med["bare"],
              "fit_over_naive": med["fit"] / med["naive"], "rounds": rows}
    print(f"\n{'loop':<8}{'images/s':>10}{'x naive':>9}")
    for k in ("naive", "bare", "fit"):
        print(f"{k:<8}{med[k]:>10.0f}{med[k] / med['naive']:>9.2f}")
    print(f"fit / bare = {result['fit_over_bare']:.2f}   fit / naive = {result['fit_over_naive']:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
