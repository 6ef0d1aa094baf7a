"""The three training loops the benchmark compares, each returning images per second.

- naive_loop: a tutorial loop, a DataLoader with per-sample PIL conversion and `.item()` every step;
- bare_loop: eager fp32 NCHW forward/backward/Adam over a float tensor already on the device, no logging;
- fit_loop: vaelib.training.trainer.fit with a config's options (its own per-epoch images/s, warm-up epoch dropped).
All train the preset's model at the config's batch size on the same images (images_for). On CUDA, time is
taken with CUDA events after warm-up steps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from PIL import Image
from torchvision import transforms

from vaelib.config import Config, with_overrides
from vaelib.data.datasets import load_dataset
from vaelib.losses import elbo
from vaelib.models.vae import VAE
from vaelib.runtime import to_float
from vaelib.training.trainer import fit


def images_for(config: Config, n: int, seed: int = 0) -> torch.Tensor:
    """n uint8 images of the preset's shape: real digits for grey presets, generated shapes for RGB."""
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
    x_all = to_float(x_u8, device)

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
    """vaelib.training.trainer.fit with the config's options; its own per-epoch images/s, warm-up epoch dropped."""
    bs = config.train.batch_size
    per_epoch = max(1, min(steps, len(x_u8) // bs))
    x = x_u8[:per_epoch * bs]
    epochs = 1 + max(1, round(steps / per_epoch))
    c = with_overrides(config, **{"train.epochs": epochs, "train.sync_every": 10_000})
    _, h = fit(c, x, x[:bs], device=device, quiet=True)
    return statistics.median(e["images_per_sec"] for e in h.epochs[1:])


def _cycle(loader):
    while True:
        yield from loader
