"""The pages of the reports: each dataset's index page (its claims table, headline numbers and per-notebook times),
the index of every report, and README's table of timings, all written from the reports' metrics.json."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from vaelib.experiments.claims import ELSEWHERE, TABLE_HEADS, Claim, claim_rows
from vaelib.io.files import write_text
from vaelib.training.jsonfiles import MalformedFile, check_report_metrics, is_report_metrics, load_json


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
    """The claims table as HTML (experiments.claims.claim_rows, the rows the notebooks show as Markdown), or a
    line saying there is none. Reads the claims' records (Claim.as_dict), their verdicts given by the report."""
    if not claims:
        return "<p>No claim was tested in this report.</p>"
    records = [Claim.from_dict(c) for c in claims]
    records = [c for c in records if c.verdict != ELSEWHERE] + [c for c in records if c.verdict == ELSEWHERE]
    head = "".join(f"<th>{h}</th>" for h in TABLE_HEADS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell).replace(chr(10), '<br>')}</td>" for cell in row[:-1])
                   + f"<td><b>{html.escape(row[-1])}</b></td></tr>" for row in claim_rows(records))
    tested = sum(c.p is not None for c in records)
    away = sum(c.verdict == ELSEWHERE for c in records)
    elsewhere = (f" {away} run on their own stand-in, in another report, and are listed last ({ELSEWHERE})."
                 if away else "")
    return (f"<p>{len(claims)} claims; the verdicts come from Holm's correction across the {tested} that were tested, "
            f"one family for the whole report (family-wise error 5%).{elsewhere}</p>"
            f"<table border='1' style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>")


def _images(n: Any) -> str:
    """A count of training images as the index shows it: '1.2M', '86k', '0', or '-' where not recorded."""
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


# The figure each notebook's row of the index shows: the one that carries its idea (a notebook not listed, or
# whose figure is missing, shows its first figure by name; one without figures, none).
KEY_FIGURES = {"00_vae_from_scratch": "elbo_gap.png", "01_datasets": "samples.png",
               "02_architecture": "reparameterisation_graph.png", "03_stability_ablations": "rate_distortion.png",
               "04_failure_gallery": "blur_reconstructions.png", "05_latent_explorer": "explorer_first_state.png",
               "06_beyond_the_gaussian_vae": "samples.png", "studies/stability": "rate_distortion.png",
               "studies/failure_modes": "blur_spectrum.png", "studies/future_work": "reconstructions.png",
               "studies/batchnorm": "batchnorm_loss.png"}


def key_figure(folder: str | Path, notebook: str) -> str | None:
    """The path, relative to a report's folder, of the figure its index shows for `notebook` (KEY_FIGURES), or
    None where the notebook wrote no figure."""
    figures = Path(folder) / "figures" / notebook
    name = KEY_FIGURES.get(notebook)
    if name is None or not (figures / name).is_file():
        name = next((p.name for p in sorted(figures.glob("*.png"))), None)
    return None if name is None else f"figures/{notebook}/{name}"


def _thumbnail(folder: str | Path | None, notebook: str) -> str:
    src = key_figure(folder, notebook) if folder is not None else None
    if src is None:
        return "<td></td>"
    return (f"<td><a href='{html.escape(src)}'><img src='{html.escape(src)}' alt='{html.escape(notebook)}: "
            f"{html.escape(Path(src).stem.replace('_', ' '))}' style='height:4em'></a></td>")


def dataset_page(summary: dict[str, Any], folder: str | Path | None = None) -> str:
    """A report's index page; with its folder, each notebook's row shows its key figure (key_figure)."""
    rows = "".join(f"<tr><td><a href='{e['html']}'>{e['notebook']}</a></td>{_thumbnail(folder, e['notebook'])}"
                   f"<td>{e['seconds']}</td><td>{_images(e.get('images'))}</td>"
                   f"<td><code>{html.escape(str(e.get('commit', '-'))[:12])}</code></td></tr>"
                   for e in summary["notebooks"])
    rows += (f"<tr><td><b>all notebooks</b></td><td></td><td><b>{summary.get('seconds', '-')}</b></td>"
             f"<td><b>{_images(summary.get('images'))}</b></td><td></td></tr>")
    params = "".join(f"<li>{html.escape(k)} = {html.escape(str(v))}</li>" for k, v in summary["parameters"].items()
                     if k not in ("runs_dir", "data_root"))
    heads = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline(summary).items())
    v = summary["versions"]
    return (f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR}"
            f"<title>vaelib report: {summary['dataset']}</title>"
            f"<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:.2em 1em}}</style>"
            f"</head><body><h1>vaelib report: {summary['dataset']} ({summary['budget']} budget)</h1>"
            f"<h2>Notebooks</h2><p>Compute per notebook: seconds, and the images it trained (optimiser steps x "
            f"batch size; a run the cache already held costs none), on "
            f"{html.escape(str(v.get('cpu', 'a CPU this report did not record')))}.</p>"
            f"<table><tr><th>notebook</th><th>figure</th><th>seconds</th><th>images trained</th><th>commit</th></tr>"
            f"{rows}</table>"
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


GENERATOR = "<meta name='generator' content='vaelib'>"  # in every page vaelib writes: what it may replace
_OLD_INDEX = "<!doctype html><html><head><meta charset='utf-8'><title>vaelib reports</title>"  # before GENERATOR


def check_index(out_root: str | Path) -> None:
    """Refuse, before any work, a reports folder whose index.html vaelib did not write (the user's own page)."""
    index = Path(out_root) / "index.html"
    if not index.exists():
        return
    try:
        head = index.read_text(encoding="utf-8", errors="replace")[:400] if index.is_file() else ""
    except OSError:
        head = ""
    if GENERATOR not in head and not head.startswith(_OLD_INDEX):
        raise ValueError(f"{index} exists and was not written by vaelib: allowed a reports folder whose index.html "
                         "is vaelib's or absent (move it away, or pass another --out)")


def write_index(out_root: Path) -> Path:
    """reports/index.html: every dataset's report with its parameters and headline metrics (check_index first:
    a page vaelib did not write is never replaced)."""
    check_index(out_root)
    sections = []
    for folder, s in report_summaries(out_root):
        heads = "".join(f"<li>{html.escape(k)}: {_fmt(v)}</li>" for k, v in headline(s, 2).items())
        verdicts = [c["verdict"] for c in s.get("claims", [])]
        tally = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts)) or "no claims tested"
        sections.append(f"<h2><a href='{folder.name}/index.html'>{s['dataset']}</a></h2>"
                        f"<p>budget {s['budget']}, seed {s['seed']}, git {s['versions']['git_commit']}, "
                        f"{s.get('seconds', '-')} s; claims: {tally}</p><ul>{heads}</ul>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR}<title>vaelib reports</title>"
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
        per = {_column(e["notebook"]): e["seconds"] for e in s["notebooks"]}
        rows.append((folder.name, s["seconds"], per, s["versions"]["git_commit"]))
        names = sorted(set(names) | set(per))
        for e in s["notebooks"]:  # notebook 05 times the explorer's controls
            for control, t in e.get("metrics", {}).get("latency_ms", {}).items():
                latency.append((folder.name, control, t["median"], t["p95"]))
    if not rows:
        raise ValueError(f"{out_root} holds no report (*/metrics.json): run `make examples` first")
    head = ["report", "total", *names, "git"]
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


def _column(notebook: str) -> str:
    """A notebook's column of the timing table: 'notebook 03' for a lesson (03_stability_ablations), the study's
    own name for a study (studies/stability)."""
    return f"notebook {notebook[:2]}" if notebook[:2].isdigit() else notebook


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
