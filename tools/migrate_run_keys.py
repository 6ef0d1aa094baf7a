"""Rename the runs cached under run key version 1 to their current folders, once, so that they are loaded and not
trained again: `python tools/migrate_run_keys.py [runs]`.

Version 1 of the run key (before `experiments.cache.KEY_VERSION`) hashed the comparable config without a key
version and left out the fields added later while they were at their defaults. A run's checkpoint holds its
config, so each folder named `<preset>-<version-1 hash>` of that config is renamed to `run_dir(config)`. A folder
whose current name is taken already, or that holds no checkpoint (a run that failed in its first epoch: its config
is unknown), is left and listed; the cache trains such a config again when it is asked for. The library itself no
longer knows version 1.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from vaelib.config import Config, comparable
from vaelib.experiments.cache import run_dir
from vaelib.training.checkpoint import checkpoint_config, read_checkpoint

# Fields added after the first runs were cached: version 1 left them out of the hash while at their defaults.
V1_LEFT_OUT = {("train", "stop_tol"): 0.0, ("train", "min_epochs"): 0, ("model", "kind"): "vae",
               ("model", "codebook_size"): 512, ("model", "commitment"): 0.25}
# Fields version 1 did not have at all: dropped from its hash. Only res_blocks = 0 behaves as version 1 did.
V1_ABSENT = (("model", "codebook_decay"), ("model", "dead_code_threshold"), ("model", "res_blocks"),
             ("model", "logvar_max"), ("model", "output_bias"), ("train", "target_rate"))  # logvar_max,
#   target_rate: only None behaves as version 1 did; output_bias: only "zero"


def v1_hash(config: Config) -> str | None:
    """The run key of `config` under key version 1; None where no run of version 1 can be this config, and for
    every VQ-VAE (version 1's had neither EMA nor restarts, and its checkpoints do not say so: retrained)."""
    if (config.model.kind == "vq" or config.model.res_blocks != 0 or config.model.logvar_max is not None
            or config.model.output_bias != "zero" or config.train.target_rate is not None):
        return None
    d = comparable(config).to_dict()
    for part, name in V1_ABSENT:
        del d[part][name]
    for (part, name), default in V1_LEFT_OUT.items():
        if d[part].get(name) == default:
            del d[part][name]
    return hashlib.sha256(json.dumps(d, indent=2, sort_keys=True).encode()).hexdigest()[:10]


def migrate(root: str | Path = "runs") -> tuple[list[tuple[Path, Path]], list[tuple[Path, str]]]:
    """(renamed: (old, new) folders, left: (folder, why)) for the run folders directly under `root`."""
    renamed, left = [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        ckpt = folder / "checkpoint.pt"
        if not ckpt.is_file():
            left.append((folder, "no checkpoint: its config is unknown"))
            continue
        config = checkpoint_config(read_checkpoint(ckpt), ckpt)
        new = run_dir(config, root)
        if folder == new:
            continue  # already under the current key
        if folder.name != f"{config.name}-{v1_hash(config)}":
            left.append((folder, "named by neither key version of its checkpoint's config"))
        elif new.exists():
            left.append((folder, f"{new.name} exists already"))
        else:
            folder.rename(new)  # atomic, within one file system
            renamed.append((folder, new))
    return renamed, left


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "runs")
    if not root.is_dir():
        print(f"runs folder {str(root)!r} does not exist: allowed an existing folder", file=sys.stderr)
        return 2
    renamed, left = migrate(root)
    for old, new in renamed:
        print(f"renamed {old.name} -> {new.name}")
    for folder, why in left:
        print(f"left {folder.name}: {why}")
    print(f"{len(renamed)} runs renamed, {len(left)} left, in {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
