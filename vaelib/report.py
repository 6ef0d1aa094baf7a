"""Batch reports: run the numbered notebooks for one dataset with papermill, render them to HTML."""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .budgets import BUDGETS, notebook_config
from .claims import adjust_records
from .files import copy_file, save_json, shareable_mode, write_text
from .jsonfiles import MalformedFile, check_report_metrics, is_report_metrics, load_json, read_report_metrics
from .lock import file_lock
from .notebook_params import RESERVED, check_extras, check_parameters  # noqa: F401 (RESERVED: re-exported)
from .paths import check_files, check_folder
from .provenance import CHECKOUT, PACKAGE, REPO, versions
from .runtime import HEADLESS_ENV, resolve_device

# A source checkout runs its own notebooks/ and keeps reports/, runs/ and data/ beside them. An installed vaelib
# (a wheel) carries the numbered notebooks as package data and works in the current folder instead.
NOTEBOOKS = REPO / "notebooks" if CHECKOUT else PACKAGE / "notebooks"


def workspace() -> Path:
    """Where reports/, runs/ and data/ live by default: the checkout, or (installed) the current folder."""
    return REPO if CHECKOUT else Path.cwd()


def copy_notebooks(dest: str | Path, force: bool = False) -> list[Path]:
    """Copy the numbered notebooks into `dest` (for JupyterLab: their runs/ and data/ go to dest/..); refuses to
    overwrite a notebook that is there unless force=True, before copying anything."""
    dest = check_folder(dest, "notebooks folder")  # a file, or under a file: refused
    sources = numbered_notebooks()
    if not sources:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {NOTEBOOKS}")
    check_files(dest, [p.name for p in sources], "notebook")  # a notebook's name taken by a folder: refused
    there = [dest / p.name for p in sources if (dest / p.name).exists()]
    if there and not force:
        raise FileExistsError(f"{there[0]} exists ({len(there)} of the notebooks are there): "
                              "allowed a folder without them, or --force to replace them")
    dest.mkdir(parents=True, exist_ok=True)
    return [copy_file(p, dest / p.name) for p in sources]


class NotebookFailed(RuntimeError):
    """A notebook of the batch raised; the partly executed notebook is kept for inspection."""


def numbered_notebooks(folder: str | Path = NOTEBOOKS) -> list[Path]:
    """notebooks/NN_*.ipynb in order."""
    return sorted(p for p in Path(folder).glob("[0-9][0-9]_*.ipynb"))


def run_notebook(notebook: Path, output: Path, params: dict[str, Any], timeout: int, quiet: bool,
                 cwd: Path | None = None) -> float:
    """Execute one notebook with papermill (kernel python3, cwd: `cwd`, else the notebook's folder); returns
    seconds."""
    import papermill  # heavy: only executing a notebook needs papermill (and Jupyter)
    from papermill.exceptions import PapermillExecutionError  # heavy: as above

    output.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    before = os.environ.get(HEADLESS_ENV)
    os.environ[HEADLESS_ENV] = "1"  # the kernel inherits it: no progress bars frozen into the report
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=params, kernel_name="python3",
                                   cwd=str(cwd or notebook.parent), progress_bar=not quiet,
                                   execution_timeout=timeout)
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


def render_html(executed: Path, html_path: Path, title: str) -> None:
    """nbconvert to a standalone HTML page: inputs hidden, images embedded."""
    import nbformat  # heavy: only the HTML rendering needs nbformat and nbconvert
    from nbconvert import HTMLExporter  # heavy: as above

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(str(executed), as_version=4),
                                          resources={"metadata": {"name": title}})
    write_text(html_path, body)


def report_dir(out_root: str | Path, dataset: str, budget: str) -> Path:
    """reports/<dataset>-<budget>: a report's folder names what it was made from."""
    return Path(out_root) / f"{dataset}-{budget}"


def build_report(dataset: str = "mnist", budget: str = "small", *, seed: int = 0, device: str = "auto",
                 out_root: str | Path | None = None, runs_dir: str | Path | None = None,
                 data_root: str | Path | None = None, extra: dict[str, Any] | None = None,
                 notebooks: list[Path] | None = None, timeout: int = 3600, quiet: bool = False,
                 force: bool = False) -> Path:
    """Execute every numbered notebook into reports/<dataset>-<budget>/ and update reports/index.html.

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
    notebooks = notebooks or numbered_notebooks()
    if not notebooks:
        raise FileNotFoundError(f"no numbered notebooks (NN_*.ipynb) in {NOTEBOOKS}")
    shares = check_extras(extra, notebooks)  # names, types and ranges of the -p values
    config = notebook_config(dataset, budget, seed, image_size=extra.get("image_size") or None)  # and their sizes
    if budget not in BUDGETS:
        raise ValueError(f"budget={budget!r} is invalid: allowed {', '.join(BUDGETS)}")
    resolve_device(device)
    final = report_dir(out_root, dataset, budget)
    common = {"dataset": dataset, "budget": budget, "seed": seed, "device": device,
              "runs_dir": _from_notebooks(runs_dir), "data_root": _from_notebooks(data_root)}
    for nb in notebooks:  # refuse every bad name and value before any work is done
        check_parameters(nb, {**common, "out_dir": ""})
    base = {**common, **extra}  # what the report records, and compares before replacing one
    with file_lock(final.parent / f".{final.name}.lock", f"report folder {str(final)!r}"):
        _check_replaceable(final, base, force)
        out = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
        out.chmod(shareable_mode(directory=True))  # mkdtemp makes it 0700; the report is meant to be shared
        entries = [_run_one(nb, out, {**common, **shares[nb]}, dataset, budget, timeout, quiet) for nb in notebooks]
        claims = adjust_records([c for e in entries for c in e["metrics"].get("claims", [])])  # Holm: the family
        summary = {"dataset": dataset, "budget": budget, "seed": seed, "parameters": base,
                   "config": config.to_dict(), "versions": versions(), "notebooks": entries, "claims": claims,
                   "seconds": round(sum(e["seconds"] for e in entries), 1)}
        save_json(out / "metrics.json", summary)
        write_text(out / "index.html", _dataset_page(summary))
        _replace(final, out)
        write_index(Path(out_root))
    return final


def _run_one(nb: Path, out: Path, params: dict[str, Any], dataset: str, budget: str, timeout: int,
             quiet: bool) -> dict[str, Any]:
    """Execute one notebook into the report being built and render it; its entry of the report's metrics.json."""
    fig_dir = (out / "figures" / nb.stem).resolve()
    executed = out / "notebooks" / nb.name
    seconds = run_notebook(nb, executed, {**params, "out_dir": _from_notebooks(fig_dir)}, timeout, quiet,
                           cwd=None if CHECKOUT else out)  # never inside an installed package
    render_html(executed, out / f"{nb.stem}.html", f"{nb.stem} ({dataset}, {budget})")
    metrics_file = fig_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    return {"notebook": nb.stem, "seconds": round(seconds, 1), "html": f"{nb.stem}.html", "metrics": metrics}


def _check_replaceable(final: Path, params: dict[str, Any], force: bool) -> None:
    """Refuse to replace a report made with other parameters (unless force), before any work is done."""
    saved = final / "metrics.json"
    if force or not final.exists():
        return
    try:
        old = read_report_metrics(saved)["parameters"]
    except (ValueError, KeyError) as err:  # FileNotFoundError, MalformedFile, or a report without its parameters
        why = f" ({' '.join(str(err).split())})" if not isinstance(err, KeyError) else ""
        raise ValueError(f"{final} exists but holds no readable report (metrics.json with parameters){why}: "
                         "move it away, or pass --force to replace it") from None
    changed = sorted(k for k in set(old) | set(params) if old.get(k) != params.get(k))
    if changed:
        k = changed[0]
        raise ValueError(f"{final} holds a report made with {k}={old.get(k)!r}, not {params.get(k)!r}: "
                         "pass --force to replace it, or --out for another folder")


def _replace(final: Path, built: Path) -> None:
    """Swap the finished report into place: the old one is moved aside first, then deleted."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    built.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _from_notebooks(path: str | Path) -> str:
    """A path as the notebooks (run with cwd notebooks/) see it: relative inside a checkout, else absolute."""
    path = Path(path).resolve()
    return os.path.relpath(path, NOTEBOOKS) if CHECKOUT and path.is_relative_to(REPO) else str(path)


def headline(summary: dict[str, Any], per_notebook: int = 3) -> dict[str, Any]:
    """The first few scalar numbers of each notebook's metrics.json (or its "headline" dict), for the index pages."""
    out: dict[str, Any] = {}
    for entry in summary["notebooks"]:
        items = entry.get("metrics", {}).get("headline") or entry.get("metrics", {})
        scalars = [(k, v) for k, v in items.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "seed"]
        out.update((f"{entry['notebook']}: {k}", v) for k, v in scalars[:per_notebook])
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def claims_html(claims: list[dict[str, Any]]) -> str:
    """The claims table (claim, source, stand-in, metric, numbers, test, estimate, p, Holm p, verdict) as HTML, or a
    line saying there is none. Reads the records of vaelib.claims (Claim.as_dict)."""
    if not claims:
        return "<p>No claim was tested in this report.</p>"

    def num(x: Any) -> str:
        return "-" if x is None else f"{x:.3g}"

    def numbers(c: dict[str, Any]) -> str:
        return "<br>".join(html.escape(f"{v['setting']}: mean {num(v['mean'])}, median {num(v['median'])}, "
                                       f"sd {num(v['sd'])} ({len(v['values'])} seeds, {len(v['failed'])} failed, "
                                       f"{v['converged']} converged)") for v in c["values"])

    def estimate(c: dict[str, Any]) -> str:
        ci = f" ({num(c['ci95'][0])}, {num(c['ci95'][1])})" if c.get("ci95") else ""
        return "-" if c["estimate"] is None else f"{c['estimate']:+.3g}{ci}"

    heads = ("claim", "source", "stand-in", "metric", "our numbers", "test", "estimate (95% CI)", "p", "Holm p",
             "verdict")
    head = "".join(f"<th>{h}</th>" for h in heads)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c[k]))}</td>" for k in ("claim", "source", "stand_in", "metric"))
        + f"<td>{numbers(c)}</td><td>{html.escape(str(c['test'] or '-'))}"
        + (f", margin ±{c['margin']:g}" if c.get("margin") else "")
        + f"</td><td>{estimate(c)}</td><td>{num(c['p'])}</td><td>{num(c['p_holm'])}</td>"
        + f"<td><b>{html.escape(c['verdict'])}</b></td></tr>" for c in claims)
    return (f"<p>{len(claims)} claims; Holm's correction across the {sum(c['p'] is not None for c in claims)} that "
            "were tested (family-wise error 5%), so a verdict here can be weaker than in its notebook.</p>"
            f"<table border='1' style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>")


def _dataset_page(summary: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td><a href='{e['html']}'>{e['notebook']}</a></td><td>{e['seconds']}</td></tr>"
                   for e in summary["notebooks"])
    rows += f"<tr><td><b>all notebooks</b></td><td><b>{summary.get('seconds', '-')}</b></td></tr>"
    params = "".join(f"<li>{html.escape(k)} = {html.escape(str(v))}</li>" for k, v in summary["parameters"].items()
                     if k not in ("runs_dir", "data_root"))
    heads = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline(summary).items())
    v = summary["versions"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>vaelib report: {summary['dataset']}</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:.2em 1em}}</style>"
            f"</head><body><h1>vaelib report: {summary['dataset']} ({summary['budget']} budget)</h1>"
            f"<h2>Notebooks</h2><table><tr><th>notebook</th><th>seconds</th></tr>{rows}</table>"
            f"<h2>Claims of the source reports, tested</h2>{claims_html(summary.get('claims', []))}"
            f"<p>Tests, verdicts and the convergence rule: docs/findings.md in the vaelib repository.</p>"
            f"<h2>Parameters</h2><ul>{params}</ul><h2>Headline metrics</h2><table>{heads}</table>"
            f"<p>vaelib {v['vaelib']}, torch {v['torch']}, git {v['git_commit']}. "
            f"All numbers: <a href='metrics.json'>metrics.json</a>.</p></body></html>")


def report_summaries(out_root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, its metrics.json) of every report under out_root, by name. A folder being built, or a failed build
    kept for inspection (a dot folder), and a metrics.json that is not a report's are skipped; an unreadable or
    malformed one is refused in one line that names it and the key (jsonfiles.check_report_metrics)."""
    found = []
    for path in sorted(Path(out_root).glob("*/metrics.json")):
        if path.parent.name.startswith(".") or not path.is_file():
            continue
        try:
            s = load_json(path)
            if is_report_metrics(s):
                found.append((path.parent, check_report_metrics(s, path)))
        except MalformedFile as err:
            raise MalformedFile(f"{err}: repair or remove it to rebuild the index") from None
    return found


def write_index(out_root: Path) -> Path:
    """reports/index.html: every dataset's report with its parameters and headline metrics."""
    sections = []
    for folder, s in report_summaries(out_root):
        heads = "".join(f"<li>{html.escape(k)}: {_fmt(v)}</li>" for k, v in headline(s, 2).items())
        verdicts = [c["verdict"] for c in s.get("claims", [])]
        tally = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts)) or "no claims tested"
        sections.append(f"<h2><a href='{folder.name}/index.html'>{s['dataset']}</a></h2>"
                        f"<p>budget {s['budget']}, seed {s['seed']}, git {s['versions']['git_commit']}, "
                        f"{s.get('seconds', '-')} s; claims: {tally}</p><ul>{heads}</ul>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>vaelib reports</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}</style></head><body>"
            "<h1>vaelib reports</h1>" + "".join(sections) + "</body></html>")
    index = out_root / "index.html"
    return write_text(index, page)


TIMINGS_START = "<!-- timings: written by `python -m vaelib timings --write README.md` from reports/*/metrics.json -->"
TIMINGS_END = "<!-- /timings -->"


def timings_markdown(out_root: str | Path, link_root: str = "reports") -> str:
    """The README's timing table: seconds per notebook of every report under out_root, read from its metrics.json
    (the one measurement every quoted report time comes from); links point to link_root/<report>/index.html."""
    rows, names, latency = [], [], []
    for folder, s in report_summaries(out_root):  # each checked: the keys read here are there, of their types
        per = {e["notebook"][:2]: e["seconds"] for e in s["notebooks"]}
        rows.append((folder.name, s["seconds"], per, s["versions"]["git_commit"]))
        names = sorted(set(names) | set(per))
        for e in s["notebooks"]:  # notebook 05 times the explorer's controls
            for control, t in e.get("metrics", {}).get("latency_ms", {}).items():
                latency.append((folder.name, control, t["median"], t["p95"]))
    if not rows:
        raise ValueError(f"{out_root} holds no report (*/metrics.json): run `make examples` first")
    head = ["report", "total", *(f"notebook {n}" for n in names), "git"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, total, per, commit in rows:
        cells = [f"[{name}]({link_root}/{name}/index.html)", f"{total:.0f} s",
                 *(f"{per[n]:.0f} s" if n in per else "-" for n in names), f"`{commit[:7]}`"]
        lines.append("| " + " | ".join(cells) + " |")
    if latency:
        lines += ["", "Explorer (notebook 05), from a control's change to the new image:", "",
                  "| report | control | median | p95 |", "|---|---|---|---|"]
        lines += [f"| {name} | {control} | {median:.1f} ms | {p95:.1f} ms |" for name, control, median, p95 in latency]
    return "\n".join([TIMINGS_START, *lines, TIMINGS_END])


def write_timings(readme: str | Path, out_root: str | Path) -> bool:
    """Replace the timings block of `readme` with timings_markdown(out_root); True if the file changed.

    A readme that is a folder or missing is refused in one line before any report is read."""
    path = Path(readme)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "missing"
        raise ValueError(f"timings file {str(path)!r} is {what}: allowed a file holding the lines {TIMINGS_START!r} "
                         f"and {TIMINGS_END!r} (README.md)")
    text = path.read_text(encoding="utf-8")
    start, end = text.find(TIMINGS_START), text.find(TIMINGS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} has no timings block: allowed a file holding the lines {TIMINGS_START!r} "
                         f"and {TIMINGS_END!r}")
    link_root = Path(os.path.relpath(Path(out_root).resolve(), path.resolve().parent)).as_posix()
    new = text[:start] + timings_markdown(out_root, link_root) + text[end + len(TIMINGS_END):]
    if new != text:
        write_text(path, new)
    return new != text
