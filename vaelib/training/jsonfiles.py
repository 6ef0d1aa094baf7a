"""One reader per JSON file vaelib writes and its commands read: history.json, a run's metrics.json, a report's
metrics.json and a failed run's failed.json. Each checks the keys its readers use, and their types, and refuses a
malformed file in one line naming the file and the key (MalformedFile), never a KeyError or TypeError
deep inside the command that read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vaelib.io.paths import check_readable_file
from vaelib.io.refusals import (
    MAX_DEPTH,
    MISSING,
    MalformedFile,
    check_depth,
    is_count,
    is_int,
    is_nonnegative,
    is_number,
    is_versions,
    need,
    refuse,
)
from vaelib.training import checkpoint
from vaelib.training.history import History

RUN_NUMBERS = ("recon_mse", "psnr_db", "data_mean_baseline_mse", "mse_over_baseline")  # a run's metrics


def load_json(path: str | Path) -> Any:
    """The parsed JSON of a file; a missing file is a FileNotFoundError, a folder or no regular file (/dev/null, a
    named pipe) a ValueError, an unreadable one or one nested more than MAX_DEPTH levels a MalformedFile."""
    path = check_readable_file(path, "JSON file", "a JSON file vaelib wrote (history.json, metrics.json, ...)")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:  # json.loads recurses once per level: ~990 levels
        raise MalformedFile(f"{path}: the top level... is nested more than {MAX_DEPTH} levels deep (too deep to "
                            f"parse): expected at most {MAX_DEPTH} levels (vaelib writes a few)") from None
    except (OSError, ValueError) as err:  # ValueError: bad JSON or bad UTF-8
        detail = " ".join(str(err).split()) or type(err).__name__
        raise MalformedFile(f"{path} is unreadable ({detail})") from None
    check_depth(d, path)  # json.dumps (a history written again) or a refusal's repr would recurse on it
    return d


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _top(d: Any, path: str | Path, what: str) -> dict:
    if not isinstance(d, dict):
        refuse(path, "the top level", d, f"a dict ({what})")
    return d


def read_history(path: str | Path) -> History:
    """history.json (what fit writes beside its checkpoint) as a History."""
    return History.from_dict(load_json(path), str(path))


def read_failed(path: str | Path) -> dict[str, Any]:
    """failed.json of a run that went non-finite: {"step": the step or None, "error": the message}."""
    d = _top(load_json(path), path, "a failed run's step and error")
    need(d, "step", lambda v: v is None or is_count(v), "the step that went non-finite (an integer >= 0) or "
         "null", path)
    need(d, "error", _is_str, "the error's message (a string)", path)
    return d


def check_run_metrics(d: Any, path: str | Path) -> dict[str, Any]:
    """A run's metrics.json (single_run.run_experiment, `python -m vaelib train`): its config, seed, versions,
    sizes, figures, seconds and standard metrics."""
    d = _top(d, path, "a run's metrics, config and provenance")
    checkpoint.checkpoint_config(d, path)
    need(d, "seed", is_count, "the run's seed (an integer >= 0)", path)
    need(d, "versions", is_versions, "a dict of version strings", path)
    need(d, "device", _is_str, "the device it ran on (a string)", path)
    need(d, "options", _is_dict, "a dict of the run's options", path)
    for key in ("train_images", "test_images"):
        need(d, key, is_count, "a number of images (an integer >= 0)", path)
    need(d, "figures", lambda v: isinstance(v, list) and all(map(_is_str, v)), "a list of file names", path)
    need(d, "seconds", is_nonnegative, "a number of seconds >= 0", path)
    m = need(d, "metrics", _is_dict, "a dict of the run's metrics", path)
    elbo = need(m, "test_elbo", _is_dict, "a dict of the test ELBO's terms (total, recon, kl)", path, "metrics.")
    for key in ("total", "recon", "kl"):
        need(elbo, key, is_number, "a number (nats per image)", path, "metrics.test_elbo.")
    for key in RUN_NUMBERS:
        need(m, key, is_number, "a number", path, "metrics.")
    iw = need(m, "iw_nll", _is_dict, "a dict (nll_nats, bits_per_dim, k, ...)", path, "metrics.")
    for key in ("nll_nats", "bits_per_dim"):
        need(iw, key, is_number, "a number", path, "metrics.iw_nll.")
    need(m, "active_units", is_count, "a number of latent dimensions (an integer >= 0)", path, "metrics.")
    need(m, "kl_per_dim", lambda v: isinstance(v, list) and all(map(is_number, v)),
         "a list of numbers (nats per latent dimension)", path, "metrics.")
    if "mig" in m:
        need(m, "mig", is_number, "a number (the mutual information gap)", path, "metrics.")
    return d


def read_run_metrics(path: str | Path) -> dict[str, Any]:
    """A run's metrics.json, checked (check_run_metrics)."""
    return check_run_metrics(load_json(path), path)


def is_report_metrics(d: Any) -> bool:
    """Whether a parsed metrics.json is a report's (a dict with its notebooks), not a notebook's own."""
    return isinstance(d, dict) and "notebooks" in d


def check_report_metrics(d: Any, path: str | Path) -> dict[str, Any]:
    """A report's metrics.json (report.build_report), as the index, the timings and the replace check read it:
    dataset, budget, seed, seconds, versions.git_commit and every notebook's name and seconds; the parameters,
    claims' verdicts, headline and explorer latencies where present."""
    d = _top(d, path, "a report's summary")
    for key in ("dataset", "budget"):
        need(d, key, _is_str, "a string", path)
    need(d, "seed", is_int, "an integer (the report's seed)", path)
    need(d, "seconds", is_nonnegative, "a number of seconds >= 0 (the whole report)", path)
    versions = need(d, "versions", _is_dict, "a dict of versions with git_commit", path)
    need(versions, "git_commit", _is_str, "a string (the commit the report was built from)", path, "versions.")
    if "parameters" in d:
        need(d, "parameters", _is_dict, "a dict of the notebooks' parameters", path)
    for i, claim in enumerate(need(d, "claims", lambda v: isinstance(v, list), "a list of claim records", path)
                              if "claims" in d else []):
        if not _is_dict(claim):
            refuse(path, f"claims[{i}]", claim, "a dict (a claim's record)")
        need(claim, "verdict", _is_str, "a string (the claim's verdict)", path, f"claims[{i}].")
    notebooks = need(d, "notebooks", lambda v: isinstance(v, list), "a list of the notebooks' entries", path)
    for i, entry in enumerate(notebooks):
        _check_entry(entry, path, f"notebooks[{i}]")
    return d


def _check_entry(entry: Any, path: str | Path, key: str) -> None:
    if not _is_dict(entry):
        refuse(path, key, entry, "a dict (notebook, seconds, html, metrics)")
    need(entry, "notebook", _is_str, "the notebook's name (a string)", path, key + ".")
    need(entry, "seconds", is_nonnegative, "a number of seconds >= 0", path, key + ".")
    if "html" in entry:
        need(entry, "html", _is_str, "the page's file name (a string)", path, key + ".")
    if "metrics" not in entry:
        return
    m = need(entry, "metrics", _is_dict, "a dict of the notebook's metrics", path, key + ".")
    if "headline" in m:
        need(m, "headline", lambda v: v is None or _is_dict(v), "a dict of headline numbers", path, key + ".metrics.")
    if "latency_ms" in m:
        latency = need(m, "latency_ms", _is_dict, "a dict {control: {median, p95}} of milliseconds", path,
                       key + ".metrics.")
        for control, t in latency.items():
            where = f"{key}.metrics.latency_ms.{control}"
            if not _is_dict(t):
                refuse(path, where, t, "a dict with median and p95 (milliseconds)")
            for stat in ("median", "p95"):
                need(t, stat, is_nonnegative, "a number of milliseconds >= 0", path, where + ".")


def read_report_metrics(path: str | Path) -> dict[str, Any]:
    """A report's metrics.json, checked (check_report_metrics); a notebook's own metrics.json is refused."""
    d = load_json(path)
    if not is_report_metrics(d):
        refuse(path, "notebooks", d.get("notebooks", MISSING) if isinstance(d, dict) else d,
               "a report's metrics.json (with its notebooks)")
    return check_report_metrics(d, path)


__all__ = ["MalformedFile", "check_report_metrics", "check_run_metrics", "is_report_metrics", "load_json",
           "read_failed", "read_history", "read_report_metrics", "read_run_metrics"]
