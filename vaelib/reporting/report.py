"""Batch reports: run the numbered notebooks for one dataset with papermill, render them to HTML."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from vaelib.config import Config
from vaelib.data.datasets import load_from_config
from vaelib.experiments.budgets import BUDGETS, notebook_config
from vaelib.experiments.claims import Claim, adjust
from vaelib.io.files import copy_file, save_json, shareable_mode, write_text
from vaelib.io.lock import file_lock
from vaelib.io.paths import check_files, check_folder
from vaelib.io.provenance import CHECKOUT, PACKAGE, REPO, git_commit, versions
from vaelib.reporting.editions import student_edition
from vaelib.reporting.mathml import OFFLINE_TEMPLATE, Formulas, notebook_to_mathml
from vaelib.reporting.pages import (
    check_index,
    dataset_page,
    report_summaries,
    write_index,
)
from vaelib.reporting.params import RESERVED, check_extras, check_parameters, declared
from vaelib.runtime import HEADLESS_ENV, resolve_device
from vaelib.training.jsonfiles import read_report_metrics
from vaelib.training.trainer import HISTORY

# A source checkout runs its own notebooks/ and keeps reports/, runs/ and data/ beside them. An installed vaelib
# (a wheel) carries the numbered notebooks as package data and works in the current folder instead.
NOTEBOOKS = REPO / "notebooks" if CHECKOUT else PACKAGE / "notebooks"


def workspace() -> Path:
    """Where reports/, runs/ and data/ live by default: the checkout, or (installed) the current folder."""
    return REPO if CHECKOUT else Path.cwd()


def copy_notebooks(dest: str | Path, force: bool = False, student: bool = False) -> list[Path]:
    """Copy the lessons into `dest` and the studies into `dest`/studies (for JupyterLab: their runs/ and data/ go to
    dest/..); refuses to overwrite a notebook that is there unless force=True, before copying anything.
    student=True writes the student edition of the lessons alone (editions.student_edition: no outputs, no
    instructor notes, no solutions)."""
    dest = check_folder(dest, "notebooks folder")  # a file, or under a file: refused
    sources = numbered_notebooks() if student else report_notebooks()
    if not sources:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {NOTEBOOKS}")
    names = [f"{notebook_name(p)}.ipynb" for p in sources]  # the studies go to dest/studies/
    check_files(dest, names, "notebook")  # a notebook's name taken by a folder: refused
    there = [dest / n for n in names if (dest / n).exists()]
    if there and not force:
        raise FileExistsError(f"{there[0]} exists ({len(there)} of the notebooks are there): "
                              "allowed a folder without them, or --force to replace them")
    if student:
        import nbformat  # heavy: only the student edition reads the notebooks

        editions = [student_edition(nbformat.read(str(p), as_version=4)) for p in sources]  # all checked first
        dest.mkdir(parents=True, exist_ok=True)
        return [write_text(dest / n, nbformat.writes(nb) + "\n") for nb, n in zip(editions, names)]
    (dest / "studies").mkdir(parents=True, exist_ok=True)
    return [copy_file(p, dest / n) for p, n in zip(sources, names)]


class NotebookFailed(RuntimeError):
    """A notebook of the batch raised; the partly executed notebook is kept for inspection."""


def numbered_notebooks(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """The lessons: notebooks/NN_*.ipynb in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def study_notebooks(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """The studies: notebooks/studies/*.ipynb by name."""
    return sorted(p for p in (Path(folder) / "studies").glob("*.ipynb"))


def report_notebooks(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """What a report runs, in order: the lessons, then the studies."""
    return numbered_notebooks(folder) + study_notebooks(folder)


def notebook_name(notebook: Path) -> str:
    """A notebook's name in a report: its stem for a lesson (03_stability_ablations), studies/<stem> for a study;
    its page, figures and executed copy are named after it."""
    notebook = Path(notebook)
    return f"studies/{notebook.stem}" if notebook.parent.name == "studies" else notebook.stem


KERNEL_DIED = "Kernel died before replying to kernel_info"  # jupyter_client: the kernel exited while starting
# (seen when two kernels start at once and one loses the ports it was given); no cell has run, so a second start is
# the same execution
KERNEL_STARTS = 2


def run_notebook(notebook: Path, output: Path, params: dict[str, Any], timeout: int, quiet: bool,
                 cwd: Path | None = None) -> float:
    """Execute one notebook with papermill (kernel python3, cwd: `cwd`, else the notebook's folder); returns
    seconds. A kernel that dies before it replies (KERNEL_DIED) is started once more."""
    import papermill  # heavy: only executing a notebook needs papermill (and Jupyter)
    from papermill.exceptions import PapermillExecutionError  # heavy: as above

    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    before = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"  # the kernel inherits it: no progress bars frozen into the report
    try:
        for attempt in range(KERNEL_STARTS):
            try:
                papermill.execute_notebook(str(notebook), str(output), parameters=params, kernel_name="python3",
                                           cwd=str(cwd or notebook.parent), progress_bar=not quiet,
                                           execution_timeout=timeout)
                break
            except RuntimeError as err:  # the kernel died before any cell ran: start it again, at most KERNEL_STARTS
                if KERNEL_DIED not in str(err) or attempt + 1 == KERNEL_STARTS:
                    raise
    except PapermillExecutionError as err:
        raise NotebookFailed(f"{notebook.name} failed in cell {err.exec_count} (index {err.cell_index}), no report "
                             f"was replaced: "
                             f"{err.ename}: {err.evalue}; partly executed notebook kept at {output}") from None
    finally:
        if before is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = before
    return time.perf_counter() - t0


def render_html(executed: Path, html_path: Path, title: str) -> Formulas:
    """nbconvert to a standalone HTML page that needs no network: inputs hidden, images embedded, the formulas as
    MathML (mathml.notebook_to_mathml) and no script from a CDN (mathml.OFFLINE_TEMPLATE). A formula that cannot be
    converted is shown as its LaTeX, in code; the result counts the formulas converted and those."""
    import nbformat  # heavy: only the HTML rendering needs nbformat and nbconvert
    from jinja2 import DictLoader  # heavy: as above (nbconvert's templates)
    from nbconvert import HTMLExporter  # heavy: as above

    notebook = nbformat.read(str(executed), as_version=4)
    formulas = notebook_to_mathml(notebook)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                            extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
                            template_file="offline.html.j2")
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": title}})
    write_text(html_path, body)
    return formulas


def report_dir(out_root: str | Path, dataset: str, budget: str) -> Path:
    """reports/<dataset>-<budget>: a report's folder names what it was made from."""
    return Path(out_root) / f"{dataset}-{budget}"


def build_report(dataset: str = "mnist", budget: str = "small", *, seed: int = 0, device: str = "auto",
                 out_root: str | Path | None = None, runs_dir: str | Path | None = None,
                 data_root: str | Path | None = None, extra: dict[str, Any] | None = None,
                 notebooks: list[Path] | None = None, timeout: int = 3600, quiet: bool = False,
                 force: bool = False, only: list[str] | None = None) -> Path:
    """Execute every lesson, then every study, into reports/<dataset>-<budget>/ and update reports/index.html.

    only: names of notebooks (as the report names them: 03_stability_ablations, studies/stability) to re-execute
    into the existing report made with the same parameters, keeping every other notebook's files as they are; the
    claims are judged again across all of the report's notebooks.

    Everything is checked before the first notebook starts: dataset, budget, device, and every extra parameter's
    name (declared by some notebook; each notebook gets only those it declares), type and range. The notebooks
    run into a temporary folder beside the report's; only a complete report replaces it, so a failed run changes
    nothing (its partial output stays in the temporary folder, named in the error). The whole build holds a lock
    (<out_root>/.<dataset>-<budget>.lock): a second build of the same folder is refused with the owner's pid. A
    folder holding a report made with other parameters is replaced only with force=True.
    out_root, runs_dir, data_root: default reports/, runs/ and data/ of workspace().
    """
    home = workspace()
    out_root = Path(out_root) if out_root is not None else home / "reports"
    runs_dir = Path(runs_dir) if runs_dir is not None else home / "runs"
    data_root = Path(data_root) if data_root is not None else home / "data"

    extra = dict(extra or {})
    clash = sorted(set(extra) & set(RESERVED))
    if clash:
        raise ValueError(f"parameter {clash[0]!r} cannot be set with -p: use {RESERVED[clash[0]]}")
    notebooks = notebooks or report_notebooks()
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {NOTEBOOKS}")
    shares = check_extras(extra, notebooks)  # names, types and ranges of the -p values
    # the config the notebooks will build, made here only to check the parameters against it before any work (the
    # report records the config the notebooks recorded: reported_config)
    config = notebook_config(dataset, budget, seed, image_size=extra.get("image_size") or None)
    check_data_values(extra, notebooks, config)  # a test image's index, a class name: against the data itself
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is invalid: allowed {', '.join(BUDGETS)}")
    resolve_device(device)
    final = report_dir(out_root, dataset, budget)
    common = {"dataset": dataset, "budget": budget, "seed": seed, "device": device,
              "runs_dir": runs_dir, "data_root": data_root}  # the two folders as each notebook sees them: _run_one
    for nb in notebooks:  # refuse every bad name and value before any work is done
        check_parameters(nb, {**common, "out_dir": ""})
    selected = _selected(notebooks, only)
    check_index(out_root)  # the index page the build will update is vaelib's (or absent), before any work
    report_summaries(out_root)  # and every other report it lists is readable: refused now, not after the build
    base = {**common, "runs_dir": _from_notebooks(runs_dir), "data_root": _from_notebooks(data_root),
            **extra}  # what the report records, and compares before replacing one
    with file_lock(final.parent / f".{final.name}.lock", f"report folder {str(final)!r}"):
        kept = _updatable(final, base) if only else {}
        if not only:
            _check_replaceable(final, base, force)
        out = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
        out.chmod(shareable_mode(directory=True))  # mkdtemp makes it 0700; the report is meant to be shared
        if only:
            shutil.copytree(final, out, dirs_exist_ok=True, symlinks=True)
        try:
            entries = [_run_one(nb, out, {**common, **shares[nb]}, dataset, budget, timeout, quiet)
                       if nb in selected else kept[notebook_name(nb)] for nb in notebooks]
        except KeyboardInterrupt:  # stopped on purpose: nothing half-built is left (a failed notebook's is kept)
            shutil.rmtree(out, ignore_errors=True)
            raise
        records = [Claim.from_dict(c) for e in entries for c in e["metrics"].get("claims", [])]
        claims = [c.as_dict() for c in adjust(records)]  # the verdicts, once: Holm across the report's one family
        config, differs = reported_config(entries, base["data_root"])
        summary = {"dataset": dataset, "budget": budget, "seed": seed, "parameters": base,
                   "config": config, **({"config_differs": differs} if differs else {}),
                   "versions": versions(), "notebooks": entries, "claims": claims,
                   "seconds": round(sum(e["seconds"] for e in entries), 1),
                   "images": sum(e.get("images", 0) for e in entries)}
        save_json(out / "metrics.json", summary)
        write_text(out / "index.html", dataset_page(summary, out))
        _replace(final, out)
        write_index(Path(out_root))
    return final


INDEX_MARK, CLASS_MARK = "(a test image index)", "(a class name)"  # in a parameter's comment: checked on the data


def reported_config(entries: list[dict[str, Any]], data_root: str) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The config the report's notebooks trained with, as they recorded it (what ran, not the report's own build,
    which only checks the parameters): the first recorded, with data.root as the report names it (each notebook
    names it from its own folder), and {notebook: the first field where its config differs from that one} for any
    that differ (none when every notebook built the same config from the report's parameters)."""
    recorded = [(e["notebook"], e.get("metrics", {}).get("config")) for e in entries]
    recorded = [(name, {**c, "data": {**c["data"], "root": data_root}}) for name, c in recorded
                if isinstance(c, dict) and isinstance(c.get("data"), dict)]
    if not recorded:
        return None, {}
    first = recorded[0][1]
    differs = {name: field for name, c in recorded[1:]
               if (field := _first_difference(_filled(first), _filled(c))) is not None}
    return first, differs


def _filled(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded config with every field, those it lacks at their defaults (a notebook executed before a field
    existed recorded none: it did not differ there); as recorded where it is not a config vaelib can read."""
    try:
        return Config.from_dict(recorded).to_dict()
    except (ValueError, TypeError):
        return recorded


def _first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The dotted name of the first field where nested dicts a and b differ (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            found = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k)
            if found is not None:
                return found
        return None
    return None if a == b else path


def check_data_values(extra: dict[str, Any], notebooks: list[Path], config: Any) -> None:
    """Refuse, before any notebook runs, a -p value that must name something in the data: a parameter whose
    comment says `(a test image index)` must be an index into the test split, one that says `(a class name)` one
    of the dataset's classes (a dataset without classes takes any). The test split is loaded only when such a
    value is given."""
    marked = {name: mark for nb in notebooks for name, d in declared(nb).items() if name in extra
              for mark in (INDEX_MARK, CLASS_MARK) if mark in str(d.get("help") or "")}
    if not marked:
        return
    test = load_from_config(config.data, "test")
    for name, mark in marked.items():
        value = extra[name]
        if mark == INDEX_MARK and not (isinstance(value, int) and 0 <= value < len(test)):
            raise ValueError(f"-p {name} {value!r} is invalid: allowed 0..{len(test) - 1} (the {len(test)} test images "
                             f"of {config.data.dataset})")
        if mark == CLASS_MARK and test.class_names and value not in test.class_names:
            raise ValueError(f"-p {name} {value!r} is invalid: allowed one of {', '.join(test.class_names)} (the "
                             f"classes of {config.data.dataset})")


def _run_one(nb: Path, out: Path, params: dict[str, Any], dataset: str, budget: str, timeout: int,
             quiet: bool) -> dict[str, Any]:
    """Execute one notebook into the report being built and render it; its entry of the report's metrics.json.
    Its folder parameters are given as the notebook sees them from where it runs (its own folder in a checkout)."""
    name = notebook_name(nb)
    fig_dir = (out / "figures" / name).resolve()
    executed = out / "notebooks" / f"{name}.ipynb"
    shutil.rmtree(fig_dir, ignore_errors=True)  # an update (--only): none of the notebook's old figures is kept
    cwd = nb.parent if CHECKOUT else executed.parent  # never inside an installed package
    paths = {k: _from_notebooks(params[k], nb.parent) for k in ("runs_dir", "data_root")}
    epochs_before = trained_epochs(Path(params["runs_dir"]))
    seconds = run_notebook(nb, executed, {**params, **paths, "out_dir": _from_notebooks(fig_dir, nb.parent)},
                           timeout, quiet, cwd=cwd)
    images = images_trained(Path(params["runs_dir"]), epochs_before)
    render_html(executed, out / f"{name}.html", f"{name} ({dataset}, {budget})")
    metrics_file = fig_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return {"notebook": name, "seconds": round(seconds, 1), "images": images, "html": f"{name}.html",
            "metrics": metrics, "commit": git_commit()}


def _epoch_records(runs_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """{run folder name: the epoch records of its history.json} for every run under runs_dir (unreadable: [])."""
    out: dict[str, list[dict[str, Any]]] = {}
    for history in sorted(runs_dir.glob(f"*/{HISTORY}")) if runs_dir.is_dir() else []:
        try:
            epochs = json.loads(history.read_text()).get("epochs", [])
        except (OSError, ValueError, AttributeError, RecursionError):
            epochs = []
        out[history.parent.name] = epochs if isinstance(epochs, list) else []
    return out


def trained_epochs(runs_dir: Path) -> dict[str, int]:
    """{run folder name: epochs its history.json holds} for every run under runs_dir (an unreadable one: 0)."""
    return {name: len(epochs) for name, epochs in _epoch_records(runs_dir).items()}


def images_trained(runs_dir: Path, before: dict[str, int]) -> int:
    """The training images (optimiser steps x batch size) of the epochs the run cache gained since `before`
    (trained_epochs): what one notebook trained, 0 where everything came from the cache. Read from each new epoch's
    record, images_per_sec x seconds, which fit writes as steps x batch / seconds."""
    return round(sum(float(e.get("images_per_sec", 0.0)) * float(e.get("seconds", 0.0))
                     for name, epochs in _epoch_records(runs_dir).items() for e in epochs[before.get(name, 0):]))


def _selected(notebooks: list[Path], only: list[str] | None) -> list[Path]:
    """The notebooks `only` names (all of them without it); an unknown name is refused, naming the allowed ones."""
    if not only:
        return list(notebooks)
    names = {notebook_name(nb): nb for nb in notebooks}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"--only {unknown[0]!r} is invalid: allowed {', '.join(names)}")
    return [names[n] for n in only]


def _updatable(final: Path, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries (by notebook name) of the report at `final`, which --only updates: refused unless it exists and
    was made with the same parameters, and holds every notebook's entry."""
    try:
        summary = read_report_metrics(final / "metrics.json")
        old = summary["parameters"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"--only updates an existing report, and {final} holds none ({' '.join(str(err).split())}): "
                         "build it whole first, without --only") from None
    k = _first_change(old, params)
    if k is not None:
        raise ValueError(f"--only: {final} was made with {k}={old.get(k)!r}, not {params.get(k)!r}: build it whole "
                         "(with --force to replace it)")
    return {e["notebook"]: e for e in summary["notebooks"]}


def _check_replaceable(final: Path, params: dict[str, Any], force: bool) -> None:
    """Refuse to replace a report made with other parameters (unless force), before any work is done."""
    saved = final / "metrics.json"
    if force or not final.exists():
        return
    try:
        old = read_report_metrics(saved)["parameters"]
    except (OSError, ValueError, KeyError) as err:  # no metrics.json, MalformedFile, or no parameters in it
        why = f" ({' '.join(str(err).split())})" if not isinstance(err, KeyError) else ""
        raise ValueError(f"{final} exists but holds no readable report (metrics.json with parameters){why}: "
                         "move it away, or pass --force to replace it") from None
    k = _first_change(old, params)
    if k is not None:
        raise ValueError(f"{final} holds a report made with {k}={old.get(k)!r}, not {params.get(k)!r}: "
                         "pass --force to replace it, or --out for another folder")


def _first_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first parameter (by name) a saved report was made with that differs from the build's, or None."""
    return min((k for k in set(old) | set(new) if old.get(k) != new.get(k)), default=None)


def _replace(final: Path, built: Path) -> None:
    """Swap the finished report into place: the old one is moved aside first, then deleted."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    built.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _from_notebooks(path: str | Path, folder: Path = NOTEBOOKS) -> str:
    """A path as a notebook run with cwd `folder` (notebooks/, or notebooks/studies/) sees it: relative inside a
    checkout, else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path, folder) if CHECKOUT and path.is_relative_to(REPO) else str(path)
