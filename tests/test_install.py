"""A built wheel works on its own: installed into a fresh virtual environment, outside the checkout, `vaelib report`
runs every notebook it ships and `vaelib notebooks DIR` copies them.

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

import pytest

from vaelib.reporting.report import numbered_notebooks

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


def test_vaelib_report_runs_from_the_wheel(installed):
    venv, work = installed
    package = next((venv / "lib").glob("python3*/site-packages/vaelib"))
    before = sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts)
    assert not [p for p in before if p.name == "conftest.py"]  # no test code in the wheel
    out = _run([venv / "bin" / "vaelib", "report", "--dataset", "digits", "--budget", "tiny", "--quiet"], cwd=work,
               timeout=900)
    assert sorted(p for p in package.rglob("*") if "__pycache__" not in p.parts) == before  # nothing written there
    report = work / "reports" / "digits-tiny"
    assert f"report written to {report}/index.html" in out
    summary = json.loads((report / "metrics.json").read_text())
    lessons = [p.stem for p in numbered_notebooks()]  # the wheel's lessons are the checkout's, in order
    assert [e["notebook"] for e in summary["notebooks"]] == [*lessons, "studies/failure_modes", "studies/future_work",
                                                                  "studies/stability"]
    assert lessons[:7] == ["00_vae_from_scratch", "01_datasets", "02_architecture", "03_stability_ablations",
                           "04_failure_gallery", "05_latent_explorer", "06_beyond_the_gaussian_vae"]
    assert summary["dataset"] == "digits" and (work / "runs").is_dir()  # runs/ beside the reports, in the cwd
    kernels = {e["notebook"]: e["metrics"]["versions"]["git_commit"] for e in summary["notebooks"]}
    assert set(kernels.values()) == {"unknown"}, kernels  # every notebook's kernel imported the wheel's vaelib
