"""Every lesson and study with non-default parameters (shapes at 16x16, half its preset's size; tiny budget) through
the report command.

The defaults are covered by nbval (pytest --nbval-lax over notebooks/); this checks that parameters reach
the notebooks and that each one writes its artifacts.
"""

import json
from pathlib import Path

import nbformat
import pytest

from vaelib.reporting.report import build_report, notebook_name, numbered_notebooks, report_notebooks


@pytest.fixture(scope="module")
def shapes_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    out = build_report("shapes", "tiny", seed=1, extra={"image_size": 16}, out_root=root / "reports",
                       runs_dir=root / "runs", data_root=root / "data", quiet=True, timeout=900)
    return out, json.loads((out / "metrics.json").read_text())


def test_there_are_numbered_notebooks():
    assert len(numbered_notebooks()) >= 4


@pytest.mark.parametrize("notebook", [notebook_name(p) for p in report_notebooks()])
def test_notebook_runs_with_shapes_16_tiny(shapes_report, notebook):
    out, summary = shapes_report
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


def test_the_nbval_budget_plugin_is_loaded(request):
    assert request.config.pluginmanager.has_plugin("nbval_budget")  # pyproject's addopts: -p nbval_budget


def test_nbval_runs_each_notebook_at_the_tiny_budget():
    import nbval_budget as conftest  # the plugin pyproject's addopts loads (-p nbval_budget)

    for notebook in report_notebooks():
        nb = conftest.at_budget(nbformat.read(str(notebook), as_version=4), str(notebook), "tiny")
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        i = next(i for i, t in enumerate(tags) if "parameters" in t)
        assert "injected-parameters" in tags[i + 1] and nb.cells[i + 1].source.startswith('budget = "tiny"')
    with pytest.raises(ValueError, match="has no cell tagged 'parameters'"):
        conftest.at_budget(nbformat.v4.new_notebook(), "x.ipynb")




def _result_sentences(path):
    """Per code cell (by position), the lines of its outputs (streams and Markdown displays) that state a verdict: a
    claim's finding is one line, its verdict, claim and numbers together."""
    import re

    from vaelib.experiments.claims import VERDICTS

    pattern = re.compile(r"\b(" + "|".join(re.escape(v) for v in VERDICTS) + r")\b")
    nb = nbformat.read(str(path), as_version=4)
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]  # papermill's own
    out = {}
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        texts = [o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
        texts += [o.get("data", {}).get(k, "") for o in cell.get("outputs", []) for k in ("text/markdown",)]
        out[i] = {line.strip() for t in texts for line in t.splitlines() if pattern.search(line)}
    return out


REPO_NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SENTENCES = [p for p in report_notebooks() if p.stem[:2] in ("02", "05") or p.parent.name == "studies"]  # verdicts


@pytest.fixture(scope="module")
def mnist_notebooks():
    """The committed notebooks: executed on mnist with their defaults (small budget), as every notebook is
    committed, so a second report need not run them again at tiny."""
    return REPO_NOTEBOOKS


@pytest.mark.parametrize("notebook", [notebook_name(p) for p in SENTENCES])
def test_no_result_sentence_is_the_same_on_two_datasets_unless_its_numbers_are(shapes_report, mnist_notebooks,
                                                                             notebook):
    """A sentence that states a verdict is written from the run's numbers: the same sentence on mnist and on shapes
    must carry numbers (and then they are the same numbers); a fixed sentence would state one result for both."""
    import re

    mnist = _result_sentences(mnist_notebooks / f"{notebook}.ipynb")
    shapes = _result_sentences(shapes_report[0] / "notebooks" / f"{notebook}.ipynb")
    assert mnist.keys() == shapes.keys(), "the two runs executed different cells"
    fixed = [s for i in mnist for s in mnist[i] & shapes[i] if not re.search(r"\d", s)]
    assert not fixed, f"{notebook}: verdict sentences identical on mnist and shapes, with no number: {fixed}"
    if notebook.startswith("studies/"):  # the studies judge claims: they do state verdicts on both
        assert any(mnist.values()) and any(shapes.values())
