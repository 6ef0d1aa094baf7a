import json
from pathlib import Path

import nbformat
import pytest

from vaelib.report import NotebookFailed, build_report, check_parameters, numbered_notebooks, write_index

PARAMS = ('dataset: str = "digits"  # dataset\nbudget: str = "small"  # budget\nseed: int = 0  # seed\n'
          'device: str = "auto"  # device\nruns_dir: str = "runs"  # cache\ndata_root: str = "data"  # data\n'
          'out_dir: str = "outputs"  # outputs\n')


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A test notebook"), params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, str(path))
    return path


GOOD = ("import json, pathlib\np = pathlib.Path(out_dir); p.mkdir(parents=True, exist_ok=True)\n"
        "(p / 'metrics.json').write_text(json.dumps({'answer': 42, 'dataset': dataset}))\nprint('seed', seed)")


def test_report_runs_renders_and_indexes(tmp_path):
    nb = _notebook(tmp_path / "01_good.ipynb", GOOD)
    out = build_report("shapes", "tiny", seed=3, notebooks=[nb], out_root=tmp_path / "reports",
                       runs_dir=tmp_path / "runs", quiet=True)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["seed"] == 3 and summary["notebooks"][0]["metrics"] == {"answer": 42, "dataset": "shapes"}
    assert set(summary["versions"]) >= {"torch", "git_commit"}
    page = (out / "01_good.html").read_text()
    assert "seed 3" in page and "pathlib" not in page  # outputs shown, inputs hidden
    executed = nbformat.read(str(out / "notebooks" / "01_good.ipynb"), as_version=4)
    assert any("dataset = \"shapes\"" in c.source for c in executed.cells)
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "shapes/index.html" in index and "answer: 42" in index


def test_failing_notebook_names_the_cell_and_keeps_the_partial_notebook(tmp_path):
    nb = _notebook(tmp_path / "01_bad.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(NotebookFailed, match=r"01_bad.ipynb failed in cell .*RuntimeError: boom; partly executed"):
        build_report("digits", "tiny", notebooks=[nb], out_root=tmp_path / "reports", quiet=True)
    assert (tmp_path / "reports" / "digits" / "notebooks" / "01_bad.ipynb").exists()


def test_unknown_parameters_are_refused_before_any_work(tmp_path):
    nb = _notebook(tmp_path / "01_good.ipynb", GOOD)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['epochz'\] for 01_good.ipynb: allowed"):
        build_report("digits", "tiny", notebooks=[nb], out_root=tmp_path / "reports", extra={"epochz": 3})
    assert not (tmp_path / "reports").exists()
    with pytest.raises(ValueError, match="budget='huge' is invalid"):
        build_report("digits", "huge", notebooks=[nb], out_root=tmp_path / "reports")
    with pytest.raises(ValueError, match="dataset='mnist' is invalid"):
        build_report("mnist", "tiny", notebooks=[nb], out_root=tmp_path / "reports")
    check_parameters(nb, {"dataset": "x", "out_dir": "y"})


def test_every_numbered_notebook_declares_the_common_parameters():
    notebooks = numbered_notebooks()
    assert [p.name[:3] for p in notebooks] == [f"{i:02d}_" for i in range(1, len(notebooks) + 1)]
    for nb in notebooks:
        check_parameters(nb, {k: None for k in ("dataset", "budget", "seed", "device", "out_dir", "runs_dir",
                                                "data_root", "image_size", "retrain")})


def test_empty_index(tmp_path):
    assert "vaelib reports" in write_index(tmp_path).read_text()
