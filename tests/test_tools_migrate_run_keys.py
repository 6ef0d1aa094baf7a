"""tools/migrate_run_keys.py: runs cached under run key version 1 are renamed once to their current folders."""

import subprocess
import sys
from pathlib import Path

from vaelib.config import with_overrides
from vaelib.experiments.budgets import notebook_config
from vaelib.experiments.cache import cached_fit, config_hash, run_dir
from vaelib.io.files import save_json
from vaelib.training.trainer import fit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import migrate_run_keys as M  # noqa: E402


def test_key_version_1_is_reproduced():
    c = notebook_config("mnist", "small", 0)
    # the names the first shipped models had under key version 1 (vaelib/pretrained/ until the key changed)
    assert M.v1_hash(c) == "fcfabc2eae"
    shapes_then = {"train.batch_size": 32, "train.lr": 1e-3}  # the shapes preset as it was under key version 1
    assert M.v1_hash(with_overrides(notebook_config("shapes", "small", 0), **shapes_then)) == "710c0e40ec"
    assert config_hash(c) != M.v1_hash(c)
    assert M.v1_hash(with_overrides(c, **{"model.kind": "vq"})) is None  # retrained: see v1_hash
    assert M.v1_hash(with_overrides(c, **{"model.res_blocks": 1})) is None  # no such run then
    assert M.v1_hash(with_overrides(c, **{"model.output_bias": "data_mean"})) is None  # no such run then


def test_a_run_under_key_version_1_is_renamed_and_then_loaded_not_retrained(tiny_config, tiny_data, tmp_path):
    old = tmp_path / f"{tiny_config.name}-{M.v1_hash(tiny_config)}"
    _, h1 = fit(tiny_config, *tiny_data, device="cpu", out_dir=old, quiet=True)
    mtime = (old / "checkpoint.pt").stat().st_mtime_ns
    renamed, left = M.migrate(tmp_path)
    new = run_dir(tiny_config, tmp_path)
    assert renamed == [(old, new)] and left == [] and not old.exists()
    _, h2, out = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    assert out == new and h2 == h1 and (out / "checkpoint.pt").stat().st_mtime_ns == mtime  # loaded, not trained
    assert M.migrate(tmp_path) == ([], [])  # a second pass finds nothing to do


def test_what_cannot_be_renamed_is_left_and_listed(tiny_config, tiny_data, tmp_path):
    old = tmp_path / f"{tiny_config.name}-{M.v1_hash(tiny_config)}"
    fit(tiny_config, *tiny_data, device="cpu", out_dir=old, quiet=True)
    new = run_dir(tiny_config, tmp_path)
    new.mkdir()
    failed = tmp_path / "tiny-0123456789"
    failed.mkdir()
    save_json(failed / "failed.json", {"step": 7, "error": "non-finite loss at step 7"})
    renamed, left = M.migrate(tmp_path)
    assert renamed == [] and old.is_dir()
    assert set(left) == {(old, f"{new.name} exists already"), (failed, "no checkpoint: its config is unknown"),
                         (new, "no checkpoint: its config is unknown")}


def test_the_command_prints_what_it_did_and_refuses_a_missing_folder(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "migrate_run_keys.py"), str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"0 runs renamed, 0 left, in {tmp_path}"
    missing = subprocess.run([sys.executable, str(ROOT / "tools" / "migrate_run_keys.py"), str(tmp_path / "no")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
