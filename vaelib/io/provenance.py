"""Provenance: the versions and the git commit that a result was made with, saved beside it."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

VERSION = "0.1.0"  # vaelib's version (vaelib.__version__; pyproject.toml reads it from here)



def versions() -> dict[str, str]:
    """Versions of everything that shapes a result."""
    import torchvision  # heavy: read only for its version; the embedded datasets never load it

    return {"vaelib": VERSION, "torch": str(torch.__version__), "torchvision": torchvision.__version__,
            "python": platform.python_version(), "git_commit": git_commit()}


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
