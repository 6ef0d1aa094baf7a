"""Throughput benchmark: the naive tutorial loop, a bare loop, and fit with each fast-path option, side by side.

Each row trains the same preset's model at the same batch size on the same images and reports images per
second and its ratio to the naive row. Rows are measured in alternating rounds (the machine is shared and
noisy) and the median round is reported. On CUDA, timing uses CUDA events after warm-up, and FLOPs per
image (torch.utils.flop_counter) give the achieved fraction of the device's peak.

Tuning the process's memory allocator on the CPU (allocator.py) would also speed up any loop run after
it in the same process. So the rows run in two long-lived worker processes that take turns: one
left with the system's allocator (the naive and bare loops, as a user would run them, and fit with the
tuning switched off), one tuned on the CPU (fit, and the bare loop again to show what the tuning alone
gives). Each worker reports whether its allocator was tuned, and the results carry that report.

The workers are started with "spawn", so a script that calls bench_preset or best_batch_size must do so
under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import statistics
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vaelib.config import Config, get_preset, with_overrides
from vaelib.io.files import atomic_write_bytes
from vaelib.losses import elbo
from vaelib.models.vae import VAE
from vaelib.perf.loops import bare_loop, fit_loop, images_for, naive_loop
from vaelib.runtime import adam_impl, bf16_supported, cpu_bf16_flags, resolve_device
from vaelib.training.allocator import allocator_tuned, tune_cpu_allocator

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0}  # dense


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
    # drop single-option rows that are the default already (e.g. fused Adam, which 'auto' means)
    same = _effective(config)
    return {k: v for k, v in rows.items() if k in ("fit default", "fit all fast options") or _effective(v) != same}


def _effective(config: Config) -> Config:
    """The config with adam_impl='auto' resolved, so rows that train alike compare equal."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, adam_impl=adam_impl(config)))


def flops_per_image(config: Config, device: torch.device) -> float:
    """Forward + backward FLOPs of one training image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode  # heavy: only the FLOP count needs torch's counter

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


@dataclasses.dataclass(frozen=True)
class Row:
    """One benchmark row: which loop, with which config, in which worker process."""

    name: str
    loop: str  # "naive" | "bare" | "fit"
    config: Config
    tuned: bool  # run in the worker that tunes its allocator (on the CPU)


LOOPS: dict[str, Callable[..., float]] = {"naive": naive_loop, "bare": bare_loop, "fit": fit_loop}
ROW_TIMEOUT_S = 3600  # a row that takes longer than this is taken as hung


def _serve(conn, tuned: bool) -> None:
    """Worker process: answer (loop, config, steps, device) requests with (status, images/s, tuned) until None."""
    if not tuned:
        os.environ["VAELIB_MALLOC_TUNING"] = "0"  # fit must leave this process's allocator alone
    images: dict[tuple, torch.Tensor] = {}
    while (msg := conn.recv()) is not None:
        loop, config_json, steps, device = msg
        try:
            if tuned and torch.device(device).type == "cpu":
                tune_cpu_allocator()  # as fit does, on the CPU only
            config = Config.from_json(config_json)
            key = (config.input_shape, config.train.batch_size * steps)
            if key not in images:
                images[key] = images_for(config, key[1])
            ips = LOOPS[loop](config, images[key], steps, torch.device(device))
            conn.send(("ok", ips, allocator_tuned()))
        except Exception as err:  # reported to the parent, which raises it with the row's name
            conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}", allocator_tuned()))


class Workers:
    """Two worker processes, one with the system allocator and one tuned; `run(row, ...)` picks one."""

    def __enter__(self) -> Workers:
        ctx = multiprocessing.get_context("spawn")
        self.procs, self.conns = {}, {}
        try:
            for tuned in (False, True):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, tuned), daemon=True)
                proc.start()
                child.close()  # the worker holds its end; a dead worker then reads as EOF here
                self.procs[tuned], self.conns[tuned] = proc, parent
        except BaseException:
            self.__exit__()
            raise
        return self

    def run(self, row: Row, steps: int, device: torch.device) -> tuple[float, bool]:
        """(images per second, whether the worker's allocator was tuned) for one measurement of `row`."""
        conn, proc = self.conns[row.tuned], self.procs[row.tuned]
        try:
            conn.send((row.loop, row.config.to_json(), steps, str(device)))
            if not conn.poll(ROW_TIMEOUT_S):
                raise RuntimeError(f"benchmark row {row.name!r} gave no answer in {ROW_TIMEOUT_S} s")
            status, value, tuned = conn.recv()
        except (EOFError, OSError) as err:
            proc.join(timeout=5)
            raise RuntimeError(f"benchmark row {row.name!r}: its worker process died (exit code {proc.exitcode}; "
                               "out of memory?)") from err
        if status != "ok":
            raise RuntimeError(f"benchmark row {row.name!r} failed in its worker: {value}")
        return value, tuned

    def __exit__(self, *exc) -> None:
        for tuned, conn in self.conns.items():
            try:
                conn.send(None)
            except OSError:
                pass
            self.procs[tuned].join(timeout=30)
            if self.procs[tuned].is_alive():
                self.procs[tuned].kill()
                self.procs[tuned].join(timeout=5)
            conn.close()


def rows_for(config: Config, device: torch.device, compile_: bool = False) -> list[Row]:
    """naive and bare (system allocator), bare tuned, fit untuned, then every fit variant (tuned)."""
    rows = [Row("naive", "naive", config, False), Row("bare", "bare", config, False)]
    if device.type == "cpu":
        rows += [Row("bare, allocator tuned", "bare", config, True),
                 Row("fit, allocator untuned", "fit", config, False)]
    same = _effective(config)
    for name, c in variants(config, device, compile_).items():
        if name == "fit all fast options" and _effective(c) == same:
            name += " (= default)"  # the same run as "fit default" again: a measure of the noise
        rows.append(Row(name, "fit", c, True))
    return rows


def measure(workers: Workers, rows: list[Row], rounds: int, steps: int, device: torch.device,
            after_round: Callable[[int, dict[str, list[float]]], None] = lambda r, measured: None
            ) -> tuple[dict[str, list[float]], dict[str, bool]]:
    """Alternating rounds over the rows: ({row name: images/s per round}, {row name: allocator tuned})."""
    measured: dict[str, list[float]] = {row.name: [] for row in rows}
    tuned: dict[str, bool] = {}
    for r in range(rounds):
        for row in rows:
            ips, tuned[row.name] = workers.run(row, steps, device)
            measured[row.name].append(ips)
        after_round(r, measured)
    return measured, tuned


def bench_preset(preset: str, batch_sizes: tuple[int, ...] = (128,), rounds: int = 5, steps: int = 8,
                 device: str | None = None, compile_: bool = False, log: Callable[[str], None] = print,
                 workers: Workers | None = None) -> list[dict[str, Any]]:
    """Measure every row for one preset at each batch size; returns one dict per (batch size, row)."""
    if workers is None:
        with Workers() as w:
            return bench_preset(preset, batch_sizes, rounds, steps, device, compile_, log, w)
    dev = resolve_device(device)
    base = get_preset(preset)
    flops = flops_per_image(base, dev)
    peak = peak_flops(dev)
    results = []
    for bs in batch_sizes:
        rows = rows_for(with_overrides(base, **{"train.batch_size": bs}), dev, compile_)
        measured, tuned = measure(workers, rows, rounds, steps, dev,
                                  lambda r, _, bs=bs: log(f"  {preset} batch {bs} round {r + 1}/{rounds} done"))
        naive, bare = statistics.median(measured["naive"]), statistics.median(measured["bare"])
        for row in rows:
            ips = statistics.median(measured[row.name])
            results.append({"preset": preset, "batch_size": bs, "row": row.name, "images_per_sec": ips,
                            "x_naive": ips / naive, "x_bare": ips / bare, "flops_per_image": flops,
                            "allocator_tuned": tuned[row.name],  # as the worker reported it
                            "peak_fraction": ips * flops / peak if peak else None,
                            "rounds": measured[row.name]})
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'preset':<14}{'batch':>6}  {'row':<34}{'images/s':>10}{'x naive':>9}{'x bare':>8}{'%peak':>7}"]
    for r in results:
        peak = f"{100 * r['peak_fraction']:.1f}" if r["peak_fraction"] else "-"
        lines.append(f"{r['preset']:<14}{r['batch_size']:>6}  {r['row']:<34}{r['images_per_sec']:>10.0f}"
                     f"{r['x_naive']:>9.2f}{r['x_bare']:>8.2f}{peak:>7}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], path: str | Path) -> None:
    import matplotlib.pyplot as plt  # heavy: the benchmark's only plot; measuring needs no matplotlib

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
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)


def host_info() -> dict[str, Any]:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line)
    except (OSError, StopIteration):
        pass
    info["cpu_bf16"] = cpu_bf16_flags()  # what the CPU's flags say
    info["cpu_bf16_assumed"] = bf16_supported(torch.device("cpu"))  # what the CPU rows assumed (VAELIB_CPU_BF16)
    return info


def best_batch_size(preset: str, candidates: tuple[int, ...] = (64, 128, 256, 512), steps: int = 4,
                    device: str | None = None, workers: Workers | None = None) -> tuple[int, dict[int, float]]:
    """The batch size at which fit with all fast options is quickest (one short measurement each)."""
    if workers is None:
        with Workers() as w:
            return best_batch_size(preset, candidates, steps, device, w)
    dev = resolve_device(device)
    fast = variants(get_preset(preset), dev)["fit all fast options"]
    rows = {bs: Row("search", "fit", with_overrides(fast, **{"train.batch_size": bs}), True) for bs in candidates}
    speed = {bs: workers.run(row, steps, dev)[0] for bs, row in rows.items()}
    return max(speed, key=speed.get), speed
