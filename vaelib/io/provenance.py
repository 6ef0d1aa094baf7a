"""Provenance: the versions and the git commit that a result was made with, saved beside it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

VERSION = "0.1.0"  # vaelib's version (vaelib.__version__; pyproject.toml reads it from here)



def versions() -> dict[str, str]:
    """Versions of everything that shapes a result."""
    import torchvision  # heavy: read only for its version; the embedded datasets never load it

    return {"vaelib": VERSION, "torch": str(torch.__version__), "torchvision": torchvision.__version__,
            "python": platform.python_version(), "git_commit": git_commit(), "cpu": cpu_kind()}


def cpu_kind(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU a result was timed on, in one line: its model, its core count and whether it has AVX-512 (training
    on the AVX2-only kind is about 1.9x slower, so a time means little without it), e.g. 'Intel(R) Xeon(R) ...,
    2 cores, AVX-512 with avx512_bf16'. Off Linux, platform's processor name and the core count."""
    cores = f"{os.cpu_count() or '?'} cores"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return f"{platform.processor() or platform.machine() or 'unknown'}, {cores}"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.machine() or "unknown")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    vector = ("AVX-512" + (" with avx512_bf16" if "avx512_bf16" in flags else "") if "avx512f" in flags else
              "AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    return f"{model}, {cores}, {vector}"


PACKAGE = Path(__file__).resolve().parents[1]  # vaelib/
REPO = PACKAGE.parent
# A source checkout (pyproject.toml and notebooks/ beside the package), or an installed vaelib (a wheel).
CHECKOUT = (REPO / "pyproject.toml").is_file() and (REPO / "notebooks").is_dir()


def git_commit() -> str:
    """The commit of the vaelib checkout, '+dirty' when its sources have changes, or 'unknown' (also for an
    installed vaelib, whose site-packages may lie inside some unrelated repository).

    Generated output under reports/ does not count: a report build rewrites it while it runs.
    """
    if not CHECKOUT:
        return "unknown"
    here = PACKAGE
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)reports"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
