"""Throughput benchmark: the naive tutorial loop, a bare loop, and fit with each fast-path option, side by side.

Each row trains the same preset's model at the same batch size on the same images and reports images per
second and its ratio to the naive row. Rows are measured in alternating rounds (the machine is shared and
noisy) and the median round is reported. On CUDA, timing uses CUDA events after warm-up, and FLOPs per
image (torch.utils.flop_counter) give the achieved fraction of the device's peak.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import transforms

from .config import Config, get_preset, with_overrides
from .losses import elbo
from .model import VAE
from .train import bf16_supported, fit, resolve_device

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}  # dense


def images_for(config: Config, n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 images of the preset's shape: real digits for grey presets, generated shapes for RGB."""
    from .data import load_dataset

    c, size, _ = config.input_shape
    if c == 1:
        x = load_dataset("digits", "train", image_size=size).images
        return x.repeat((n + len(x) - 1) // len(x), 1, 1, 1)[:n].contiguous()
    return load_dataset("shapes", "train", n=n, image_size=size, seed=seed, background="textured").images


class PILDataset(torch.utils.data.Dataset):
    """What a tutorial's torchvision dataset does per sample: uint8 array -> PIL image -> transforms."""

    def __init__(self, images_u8: torch.Tensor) -> None:
        self.arrays = images_u8.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
        self.tf = transforms.Compose([transforms.ToTensor()])

    def __len__(self) -> int:
        return len(self.arrays)

    def __getitem__(self, i: int):
        a = self.arrays[i]
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        return self.tf(img), 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, run: Callable[[], int]) -> float:
    """images per second of run() (which returns the images it processed), CUDA events on GPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        n = run()
        end.record()
        torch.cuda.synchronize(device)
        return n / (start.elapsed_time(end) / 1000)
    t0 = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t0)


def naive_loop(config: Config, x_u8: torch.Tensor, steps: int, device: torch.device) -> float:
    """DataLoader with per-sample PIL transforms, model on the device, `.item()` every step."""
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(PILDataset(x_u8), batch_size=config.train.batch_size, shuffle=True,
                                         drop_last=True)
    model = VAE(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    log: list[float] = []

    def step(x: torch.Tensor) -> None:
        x = x.to(device)
        logits, mu, logvar = model(x)
        loss = elbo(x, logits, mu, logvar, beta=config.train.schedule.beta).total
        opt.zero_grad()
        loss.backward()
        opt.step()
        log.append(loss.item())  # the per-step host read a tutorial does

    batches = _cycle(loader)
    for _ in range(2):
        step(next(batches)[0])

    def run() -> int:
        for _ in range(steps):
            step(next(batches)[0])
        return steps * config.train.batch_size

    return _timed(device, run)


def bare_loop(config: Config, x_u8: torch.Tensor, steps: int, device: torch.device) -> float:
    """Eager fp32 NCHW forward/backward/Adam over a float tensor already on the device; no logging."""
    torch.manual_seed(0)
    model, bs = VAE(config).to(device), config.train.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x_all = (x_u8.float() / 255).to(device)

    def step(i: int) -> None:
        x = x_all[(i * bs) % (len(x_all) - bs + 1):][:bs]
        logits, mu, logvar = model(x)
        loss = elbo(x, logits, mu, logvar, beta=config.train.schedule.beta).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(2):
        step(i)
    _sync(device)

    def run() -> int:
        for i in range(steps):
            step(i)
        return steps * bs

    return _timed(device, run)


def fit_loop(config: Config, x_u8: torch.Tensor, steps: int, device: torch.device) -> float:
    """vaelib.train.fit with the config's options; its own per-epoch images/s, warm-up epoch dropped."""
    bs = config.train.batch_size
    per_epoch = max(1, min(steps, len(x_u8) // bs))
    x = x_u8[:per_epoch * bs]
    epochs = 1 + max(1, round(steps / per_epoch))
    c = with_overrides(config, **{"train.epochs": epochs, "train.sync_every": 10_000})
    _, h = fit(c, x, x[:bs], device=device, quiet=True)
    return statistics.median(e["images_per_sec"] for e in h["epochs"][1:])


def variants(config: Config, device: torch.device, compile_: bool = False) -> dict[str, Config]:
    """The fit rows: defaults, each fast-path option alone, and all together."""
    t = config.train
    rows = {"fit default": config,
            "fit channels_last": dataclasses.replace(config, train=dataclasses.replace(t, channels_last=True)),
            "fit channels_last off": dataclasses.replace(config, train=dataclasses.replace(t, channels_last=False)),
            "fit adam foreach": dataclasses.replace(config, train=dataclasses.replace(t, adam_impl="foreach")),
            "fit adam fused": dataclasses.replace(config, train=dataclasses.replace(t, adam_impl="fused"))}
    fast = {"channels_last": True, "adam_impl": "fused"}
    if bf16_supported(device):
        rows["fit bf16"] = dataclasses.replace(config, train=dataclasses.replace(t, precision="bf16"))
        fast["precision"] = "bf16"
    if compile_:
        rows["fit compile"] = dataclasses.replace(config, train=dataclasses.replace(t, compile=True))
        fast["compile"] = True
    rows["fit all fast options"] = dataclasses.replace(config, train=dataclasses.replace(t, **fast))
    # drop the row equal to the default (channels_last on or off, whichever is not the default)
    return {k: v for k, v in rows.items() if k == "fit default" or v != config}


def flops_per_image(config: Config, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model = VAE(config).to(device)
    x = torch.rand(8, *config.input_shape, device=device)
    with FlopCounterMode(display=False) as counter:
        logits, mu, logvar = model(x)
        elbo(x, logits, mu, logvar).total.backward()
    return counter.get_total_flops() / 8


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s where known (CUDA only)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def bench_preset(preset: str, batch_sizes: tuple[int, ...] = (128,), rounds: int = 3, steps: int = 8,
                 device: str | None = None, compile_: bool = False, log: Callable[[str], None] = print
                 ) -> list[dict[str, Any]]:
    """Measure every row for one preset at each batch size; returns one dict per (batch size, row)."""
    dev = resolve_device(device)
    base = get_preset(preset)
    flops = flops_per_image(base, dev)
    peak = peak_flops(dev)
    results = []
    for bs in batch_sizes:
        config = with_overrides(base, **{"train.batch_size": bs})
        x = images_for(config, bs * steps)
        rows: dict[str, Callable[[], float]] = {
            "naive": lambda c=config, x=x: naive_loop(c, x, steps, dev),
            "bare": lambda c=config, x=x: bare_loop(c, x, steps, dev)}
        for name, c in variants(config, dev, compile_).items():
            rows[name] = lambda c=c, x=x: fit_loop(c, x, steps, dev)
        measured: dict[str, list[float]] = {k: [] for k in rows}
        for r in range(rounds):
            for name, run in rows.items():
                measured[name].append(run())
            log(f"  {preset} batch {bs} round {r + 1}/{rounds} done")
        naive = statistics.median(measured["naive"])
        for name, values in measured.items():
            ips = statistics.median(values)
            results.append({"preset": preset, "batch_size": bs, "row": name, "images_per_sec": ips,
                            "x_naive": ips / naive, "x_bare": ips / statistics.median(measured["bare"]),
                            "flops_per_image": flops,
                            "peak_fraction": ips * flops / peak if peak else None, "rounds": values})
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'preset':<14}{'batch':>6}  {'row':<24}{'images/s':>10}{'x naive':>9}{'x bare':>8}{'%peak':>7}"]
    for r in results:
        peak = f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] else "-"
        lines.append(f"{r['preset']:<14}{r['batch_size']:>6}  {r['row']:<24}{r['images_per_sec']:>10.0f}"
                     f"{r['x_naive']:>9.2f}{r['x_bare']:>8.2f}{peak:>7}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str | Path) -> None:
    import matplotlib.pyplot as plt

    keys = sorted({(r["preset"], r["batch_size"]) for r in results})
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.6 * len(keys)), squeeze=False)
    for ax, (preset, bs) in zip(axes[:, 0], keys):
        rows = [r for r in results if r["preset"] == preset and r["batch_size"] == bs]
        ax.barh([r["row"] for r in rows], [r["x_naive"] for r in rows], color="tab:blue")
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set_title(f"{preset}, batch {bs}: training throughput relative to the naive loop")
        ax.set_xlabel("x naive (images/s ratio)")
        ax.invert_yaxis()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def host_info() -> dict[str, Any]:
    import platform

    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line)
        info["cpu_bf16"] = "avx512_bf16" in text or "amx_bf16" in text
    except (OSError, StopIteration):
        pass
    return info


def _cycle(loader):
    while True:
        yield from loader



def best_batch_size(preset: str, candidates: tuple[int, ...] = (64, 128, 256, 512), steps: int = 4,
                    device: str | None = None) -> tuple[int, dict[int, float]]:
    """The batch size at which fit with all fast options is quickest (one short measurement each)."""
    dev = resolve_device(device)
    fast = variants(get_preset(preset), dev)["fit all fast options"]
    speed = {}
    for bs in candidates:
        c = with_overrides(fast, **{"train.batch_size": bs})
        speed[bs] = fit_loop(c, images_for(c, bs * steps), steps, dev)
    return max(speed, key=speed.get), speed
