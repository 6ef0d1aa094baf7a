"""A built wheel works on its own: installed into a fresh virtual environment, outside the checkout, `vaelib report`
runs every notebook it ships, with parameters that are not their defaults (shapes at 16x16, seed 1, tiny budget:
they reach every notebook, and each writes its artifacts), and `vaelib notebooks DIR` copies them.

The fresh environment gets this environment's third-party packages through a .pth file (installing torch again
would take minutes and gigabytes), but not its editable vaelib: a .pth file's own .pth files are not processed.
Their data files (nbconvert's HTML templates) lie in this environment's share/jupyter: JUPYTER_PATH names it
after the new environment's own share/jupyter, which holds the `python3` kernel the notebooks run on (the new
environment's python, so the notebooks import the wheel's vaelib too: their metrics say git_commit "unknown",
which only an installed vaelib reports).
"""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from vaelib.reporting.report import notebook_name, numbered_notebooks, report_notebooks

ROOT = Path(__file__).resolve().parents[1]


ENV = dict(os.environ)


def _run(args, cwd, timeout=600):
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    ENV.pop("JUPYTER_PATH", None)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", tmp / "dist",
          ROOT], cwd=tmp)
    wheel = next((tmp / "dist").glob("vaelib-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp)
    python = venv / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).strip())
    (site / "vaelib_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=tmp)
    _run([python, "-m", "ipykernel", "install", "--prefix", venv, "--name", "python3"], cwd=tmp)
    ENV["JUPYTER_PATH"] = os.pathsep.join(str(p / "share" / "jupyter") for p in (venv, Path(sys.prefix)))
    kernel = json.loads((venv / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert Path(kernel["argv"][0]).parent == venv / "bin"
    work = tmp / "work"
    work.mkdir()
    return venv, work


def test_the_wheel_is_what_runs(installed):
    venv, work = installed
    code = "import vaelib, vaelib.reporting.report as r; print(vaelib.__file__, r.CHECKOUT)"
    where = _run([venv / "bin" / "python", "-c", code], cwd=work).split()
    assert Path(where[0]).is_relative_to(venv) and where[1] == "False"


def test_vaelib_notebooks_copies_the_shipped_notebooks(installed):
    venv, work = installed
    out = _run([venv / "bin" / "vaelib", "notebooks", "class"], cwd=work)
    names = sorted(p.relative_to(work / "class").as_posix() for p in (work / "class").rglob("*.ipynb"))
    shipped = [*(ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"), *(ROOT / "notebooks").glob("studies/*.ipynb")]
    assert names == sorted(p.relative_to(ROOT / "notebooks").as_posix() for p in shipped) and len(names) >= 8
    assert f"copied {len(names)} notebooks into class" in out
    again = subprocess.run([venv / "bin" / "vaelib", "notebooks", "class"], cwd=work, capture_output=True, text=True,
                           env=ENV)
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr
    assert again.stderr.count("\n") == 1  # one line, no traceback


@pytest.fixture(scope="module")
def wheel_report(installed):
    """`vaelib report` from the wheel, with non-default parameters (shapes at 16x16, half its preset's size, seed 1,
    tiny budget): the one report build of the test suite. The tests below read it both as the wheel's report and as
    every notebook's run with parameters that are not its defaults (those are covered by nbval)."""
    venv, work = installed
    package = next((venv / "lib").glob("python3*/site-packages/vaelib"))
    before = sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts)
    out = _run([venv / "bin" / "vaelib", "report", "--dataset", "shapes", "--budget", "tiny", "--seed", "1",
                "-p", "image_size", "16", "--quiet"], cwd=work, timeout=900)
    after = sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts)
    report = work / "reports" / "shapes-tiny"
    return report, json.loads((report / "metrics.json").read_text()), out, before, after


def test_vaelib_report_runs_from_the_wheel(installed, wheel_report):
    venv, work = installed
    report, summary, out, before, after = wheel_report
    assert not [p for p in before if p.name == "conftest.py"]  # no test code in the wheel
    assert after == before  # nothing written there
    assert f"report written to {report}/index.html" in out
    lessons = [p.stem for p in numbered_notebooks()]  # the wheel's lessons are the checkout's, in order
    assert [e["notebook"] for e in summary["notebooks"]] == [*lessons, "studies/batchnorm", "studies/failure_modes",
                                                                  "studies/future_work", "studies/stability"]
    assert lessons[:7] == ["00_vae_from_scratch", "01_datasets", "02_architecture", "03_stability_ablations",
                           "04_failure_gallery", "05_latent_explorer", "06_beyond_the_gaussian_vae"]
    assert summary["dataset"] == "shapes" and (work / "runs").is_dir()  # runs/ beside the reports, in the cwd
    kernels = {e["notebook"]: e["metrics"]["versions"]["git_commit"] for e in summary["notebooks"]}
    assert set(kernels.values()) == {"unknown"}, kernels  # every notebook's kernel imported the wheel's vaelib


@pytest.mark.parametrize("notebook", [notebook_name(p) for p in report_notebooks()])
def test_notebook_runs_with_shapes_16_tiny(wheel_report, notebook):
    out, summary = wheel_report[:2]
    entry = next(e for e in summary["notebooks"] if e["notebook"] == notebook)
    figures = out / "figures" / notebook
    assert (out / f"{notebook}.html").stat().st_size > 10_000
    assert list(figures.glob("*.png")), f"{notebook} wrote no figures"
    metrics = entry["metrics"]
    assert metrics, f"{notebook} wrote no metrics.json"
    data = metrics["config"]["data"]  # the parameters reached the config the notebook trained and measured
    assert (data["dataset"], data["image_size"], data["max_train"]) == ("shapes", 16, 256)  # tiny: 256 images
    assert metrics["config"]["train"]["seed"] == 1
    executed = nbformat.read(str(out / "notebooks" / f"{notebook}.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'dataset = "shapes"' in injected[0].source and "image_size = 16" in injected[0].source


def test_the_annealing_claims_are_tested_only_where_a_scan_found_an_early_collapse(wheel_report):
    """The failure-modes study's scan (failure_gallery.early_collapse_scan) stops at its first static collapse, and
    both annealing claims (the linear ramp, the cycles) are tested at that beta only when a run there beat the model
    that ignores its input."""
    entry = next(e for e in wheel_report[1]["notebooks"] if e["notebook"] == "studies/failure_modes")
    section = entry["metrics"]["sections"]["collapse"]
    scan, at = section["scan"], section["test_beta"]
    betas = sorted({r["beta"] for r in scan})
    assert scan and betas[0] == 6 and [r["beta"] for r in scan if r["run"] == "static"] == betas
    assert all(b - a == 1 for a, b in zip(betas, betas[1:]))  # scan_step 1: no beta of the ladder skipped
    static_collapsed = [r["beta"] for r in scan if r["run"] == "static" and r["collapsed"]]
    assert static_collapsed in ([], [betas[-1]])  # no beta trained past the first collapse
    assert section["schedules"] == ["linear", "cyclic"]
    for kind in section["schedules"]:  # annealed only where it stops
        assert [r["beta"] for r in scan if r["run"] == kind] == static_collapsed
    beaten = any(r["beats ignoring"] for r in scan if r["beta"] == betas[-1])
    for kind, start in (("linear", "KL annealing from 0 (a linear ramp) prevents"), ("cyclic", "cyclic KL annealing")):
        claim = next(c for c in entry["metrics"]["claims"] if c["claim"].startswith(start))
        if at is None:
            assert claim["decision"] == "untestable here" and "scan" in claim["reason"] and claim["n"] == [0, 0]
            assert not (static_collapsed and beaten)
        elif "no collapse is shown" in claim["reason"]:  # the study's seeds do not collapse there: not trained
            assert claim["decision"] == "untestable here" and f"{kind} to beta {at:g}" not in section["rows"]
        else:
            assert static_collapsed == [at] and beaten and claim["n"][0] >= 2
            assert [v["setting"] for v in claim["values"]] == [f"{kind} to beta {at:g}", f"beta {at:g}"]


def _result_sentences(path):
    """Per code cell (by position, papermill's injected cell left out), the lines of its outputs (streams and
    Markdown displays) that state a verdict: a claim's finding is one line, its verdict, claim and numbers
    together."""
    import re

    from vaelib.experiments.claims import VERDICTS

    pattern = re.compile(r"\b(" + "|".join(re.escape(v) for v in VERDICTS) + r")\b")
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    out = {}
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        texts = [o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
        texts += [o.get("data", {}).get(k, "") for o in cell.get("outputs", []) for k in ("text/markdown",)]
        out[i] = {line.strip() for t in texts for line in t.splitlines() if pattern.search(line)}
    return out


SENTENCES = [p for p in report_notebooks() if p.stem[:2] in ("02", "05") or p.parent.name == "studies"]  # verdicts


@pytest.mark.parametrize("notebook", [notebook_name(p) for p in SENTENCES])
def test_no_result_sentence_is_the_same_on_two_datasets_unless_its_numbers_are(wheel_report, notebook):
    """A sentence that states a verdict is written from the run's numbers: the same sentence on mnist (the committed
    notebooks, executed with their defaults) and on shapes must carry numbers (and then they are the same numbers);
    a fixed sentence would state one result for both."""
    import re

    mnist = _result_sentences(ROOT / "notebooks" / f"{notebook}.ipynb")
    shapes = _result_sentences(wheel_report[0] / "notebooks" / f"{notebook}.ipynb")
    assert mnist.keys() == shapes.keys(), "the two runs executed different cells"
    fixed = [s for i in mnist for s in mnist[i] & shapes[i] if not re.search(r"\d", s)]
    assert not fixed, f"{notebook}: verdict sentences identical on mnist and shapes, with no number: {fixed}"
    if notebook.startswith("studies/"):  # the studies judge claims: they do state verdicts on both
        assert any(mnist.values()) and any(shapes.values())
