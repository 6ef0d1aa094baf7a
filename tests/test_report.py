import json
from pathlib import Path

import nbformat
import pytest

from vaelib.io.files import shareable_mode
from vaelib.reporting.pages import write_index
from vaelib.reporting.params import check_parameters
from vaelib.reporting.report import (
    NotebookFailed,
    build_report,
    notebook_name,
    numbered_notebooks,
    report_notebooks,
    reported_config,
)

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
    assert "shapes-tiny/index.html" in index and "answer: 42" in index



FIGURES = GOOD + ("\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                  "from vaelib.evaluation.plots import save_figure\n"
                  "for name in ('b_second', 'a_first'):\n"
                  "    fig = plt.figure(); save_figure(fig, p / f'{name}.png')")


def test_the_index_shows_each_notebooks_key_figure_or_its_first_or_none(tmp_path):
    from vaelib.reporting import pages

    nbs = [_notebook(tmp_path / "01_figures.ipynb", FIGURES), _notebook(tmp_path / "02_good.ipynb", GOOD)]
    out = build_report("shapes", "tiny", seed=3, notebooks=nbs, out_root=tmp_path / "reports",
                       runs_dir=tmp_path / "runs", quiet=True)
    index = (out / "index.html").read_text()
    assert index.count("<img ") == 1 and "src='figures/01_figures/a_first.png'" in index  # first by name
    assert (out / "figures" / "01_figures" / "a_first.png").is_file()
    assert pages.key_figure(out, "02_good") is None
    pages.KEY_FIGURES["01_figures"] = "b_second.png"
    try:
        assert pages.key_figure(out, "01_figures") == "figures/01_figures/b_second.png"  # the declared one
    finally:
        del pages.KEY_FIGURES["01_figures"]


def test_every_key_figure_is_one_its_notebook_writes():
    import json as _json
    from pathlib import Path

    from vaelib.reporting import pages

    root = Path(__file__).resolve().parent.parent / "reports"
    for folder in sorted(p.parent for p in root.glob("*/metrics.json")):
        notebooks = [e["notebook"] for e in _json.loads((folder / "metrics.json").read_text())["notebooks"]]
        for nb in notebooks:
            # a notebook that drew figures draws its key figure (a study none of whose claims runs on this data,
            # future work on mnist, draws none: its index cell is empty)
            if nb in pages.KEY_FIGURES and any((folder / "figures" / nb).glob("*.png")):
                assert (folder / "figures" / nb / pages.KEY_FIGURES[nb]).is_file(), (folder.name, nb)

CLAIMS = ("import json, pathlib\n"
          "from vaelib.experiments.claims import ClaimSpec, judge\n"
          "from vaelib.experiments.evidence import Estimate\n"
          "p = pathlib.Path(out_dir); p.mkdir(parents=True, exist_ok=True)\n"
          "a = Estimate((1.0, 1.1, 0.9, 1.05), 4, (0, 1, 2, 3))\n"
          "b = Estimate((2.0, 2.2, 1.9, 2.1), 4, (0, 1, 2, 3))\n"
          "arms = ('clip 0.1', 'clip 0.5')\n"
          "c1 = judge(ClaimSpec('clip 0.1 is steadier', 'report A §4.1', 'mnist for Fashion-MNIST', 'noise', arms,\n"
          "                     'lower'), a, b)\n"
          "c2 = judge(ClaimSpec('clip 0.1 is noisier', 'report A §4.1', 'mnist for Fashion-MNIST', 'noise', arms,\n"
          "                     'higher'), Estimate((1.0, 1.3, 0.9, 1.2), 4, (0, 1, 2, 3)), a)\n"
          "(p / 'metrics.json').write_text(json.dumps({'claims': [c1.as_dict(), c2.as_dict()]}))")


def test_claims_of_every_notebook_reach_the_report_and_the_index(tmp_path):
    nbs = [_notebook(tmp_path / "01_good.ipynb", GOOD), _notebook(tmp_path / "02_claims.ipynb", CLAIMS)]
    out = build_report("shapes", "tiny", notebooks=nbs, out_root=tmp_path / "reports", runs_dir=tmp_path / "runs",
                       quiet=True)
    summary = json.loads((out / "metrics.json").read_text())
    assert [c["verdict"] for c in summary["claims"]] == ["supported", "inconclusive"]  # Holm, once, in the report
    recorded = summary["notebooks"][1]["metrics"]["claims"]  # what the notebook recorded: tests, no verdict yet
    assert [(c["decision"], c["verdict"]) for c in recorded] == [("supported", "pending"), ("supported", "pending")]
    assert summary["seconds"] == pytest.approx(sum(e["seconds"] for e in summary["notebooks"]), abs=0.11)
    page = (out / "index.html").read_text()
    assert "clip 0.1 is steadier" in page and "report A §4.1" in page and "<b>inconclusive</b>" in page
    assert page.index("clip 0.1: 1.01") < page.index("clip 0.5: 2.05")  # A before B, as measured
    assert "paired t" in page and "Holm" in page and "mnist for Fashion-MNIST" in page
    assert "all notebooks" in page
    assert "claims: 1 supported, 1 inconclusive" in (tmp_path / "reports" / "index.html").read_text()


def test_failing_notebook_names_the_cell_and_keeps_the_partial_notebook(tmp_path):
    nb = _notebook(tmp_path / "01_bad.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(NotebookFailed, match=r"01_bad.ipynb failed in cell .*no report was replaced: "
                                             r"RuntimeError: boom; partly executed notebook kept at .*building"):
        build_report("digits", "tiny", notebooks=[nb], out_root=tmp_path / "reports", quiet=True)
    assert not (tmp_path / "reports" / "digits-tiny").exists()
    kept = list((tmp_path / "reports").glob(".digits-tiny.building-*/notebooks/01_bad.ipynb"))
    assert len(kept) == 1


def test_a_report_never_clobbers_another(tmp_path):
    (tmp_path / "bad").mkdir()
    good, bad = _notebook(tmp_path / "01_good.ipynb", GOOD), _notebook(tmp_path / "bad" / "01_bad.ipynb", "1/0")
    kw = {"out_root": tmp_path / "reports", "runs_dir": tmp_path / "runs", "quiet": True}
    out = build_report("shapes", "tiny", seed=1, notebooks=[good], **kw)
    assert out == tmp_path / "reports" / "shapes-tiny" and (out / "index.html").exists()
    assert oct(out.stat().st_mode & 0o777) == oct(shareable_mode(directory=True))  # not mkdtemp's 0700
    before = (out / "metrics.json").read_text()
    with pytest.raises(NotebookFailed):  # a failed re-run replaces nothing
        build_report("shapes", "tiny", seed=1, notebooks=[bad], **kw)
    assert (out / "metrics.json").read_text() == before
    with pytest.raises(ValueError, match=r"shapes-tiny holds a report made with seed=1, not 2: pass --force"):
        build_report("shapes", "tiny", seed=2, notebooks=[good], **kw)
    assert (out / "metrics.json").read_text() == before
    again = build_report("shapes", "tiny", seed=2, notebooks=[good], force=True, **kw)
    assert json.loads((again / "metrics.json").read_text())["seed"] == 2
    assert build_report("shapes", "small", seed=2, notebooks=[good], **kw).name == "shapes-small"  # beside it
    for name, flag in (("dataset", "--dataset"), ("seed", "--seed"), ("out_dir", "--out")):
        with pytest.raises(ValueError, match=f"parameter '{name}' cannot be set with -p: use {flag}"):
            build_report("shapes", "tiny", notebooks=[good], extra={name: 1}, **kw)


def test_unknown_parameters_are_refused_before_any_work(tmp_path):
    nb = _notebook(tmp_path / "01_good.ipynb", GOOD)
    with pytest.raises(ValueError, match=r"parameter 'epochz' is declared by no notebook: allowed "):
        build_report("digits", "tiny", notebooks=[nb], out_root=tmp_path / "reports", extra={"epochz": 3})
    assert not (tmp_path / "reports").exists()
    with pytest.raises(ValueError, match="budget='huge' is invalid"):
        build_report("digits", "huge", notebooks=[nb], out_root=tmp_path / "reports")
    with pytest.raises(ValueError, match="dataset='svhn' is invalid"):
        build_report("svhn", "tiny", notebooks=[nb], out_root=tmp_path / "reports")
    check_parameters(nb, {"dataset": "x", "out_dir": "y"})


def test_every_notebook_declares_the_common_parameters():
    notebooks = numbered_notebooks()
    assert [p.name[:3] for p in notebooks] == [f"{i:02d}_" for i in range(len(notebooks))]  # 00, 01, ...: no gap
    assert [notebook_name(p) for p in report_notebooks()[len(notebooks):]] == ["studies/batchnorm",
                                                                               "studies/failure_modes",
                                                                               "studies/future_work",
                                                                               "studies/stability"]
    for nb in report_notebooks():
        check_parameters(nb, {k: None for k in ("dataset", "budget", "seed", "device", "out_dir", "runs_dir",
                                                "data_root", "image_size", "retrain")})


def test_empty_index(tmp_path):
    assert "vaelib reports" in write_index(tmp_path).read_text()


def test_readme_timings_are_the_committed_reports_own(tmp_path):
    from vaelib.reporting.pages import TIMINGS_END, TIMINGS_START, timings_markdown
    from vaelib.reporting.report import REPO

    readme = (REPO / "README.md").read_text()
    block = readme[readme.index(TIMINGS_START):readme.index(TIMINGS_END) + len(TIMINGS_END)]
    assert block == timings_markdown(REPO / "reports"), "run: python -m vaelib timings --write README.md"
    for path in sorted((REPO / "reports").glob("*/metrics.json")):  # every report's total appears once
        total = json.loads(path.read_text())["seconds"]
        assert f"| [{path.parent.name}](reports/{path.parent.name}/index.html) | {total:.0f} s |" in block


def test_timings_follow_the_metrics_and_refuse_a_file_without_a_block(tmp_path):
    from vaelib.reporting.pages import timings_markdown, write_timings

    report = tmp_path / "reports" / "toy-tiny"
    report.mkdir(parents=True)
    summary = {"dataset": "toy", "budget": "tiny", "seed": 0, "seconds": 12.4, "versions": {"git_commit": "abcdef0123"},
               "notebooks": [{"notebook": "00_a", "seconds": 5.2}, {"notebook": "01_b", "seconds": 7.2}]}
    (report / "metrics.json").write_text(json.dumps(summary))
    readme = tmp_path / "README.md"
    from vaelib.reporting.pages import TIMINGS_END, TIMINGS_START

    readme.write_text(f"intro\n{TIMINGS_START}\nold\n{TIMINGS_END}\nrest\n")
    assert write_timings(readme, tmp_path / "reports") and not write_timings(readme, tmp_path / "reports")
    text = readme.read_text()
    assert "| [toy-tiny](reports/toy-tiny/index.html) | 12 s | 5 s | 7 s | `abcdef0` |" in text
    assert text.startswith("intro\n") and text.endswith("\nrest\n") and "old" not in text
    summary["seconds"] = 99.6
    (report / "metrics.json").write_text(json.dumps(summary))
    assert "| 100 s |" in timings_markdown(tmp_path / "reports")
    plain = tmp_path / "plain.md"
    plain.write_text("no block\n")
    with pytest.raises(ValueError, match="plain.md has no timings block"):
        write_timings(plain, tmp_path / "reports")
    with pytest.raises(ValueError, match="holds no report"):
        timings_markdown(tmp_path / "empty")


def test_copy_notebooks_refuses_to_replace_before_copying_anything(tmp_path, capsys):
    from vaelib.__main__ import main
    from vaelib.reporting.report import copy_notebooks

    names = [f"{notebook_name(p)}.ipynb" for p in report_notebooks()]  # the studies in class/studies/
    assert [p.relative_to(tmp_path / "class").as_posix() for p in copy_notebooks(tmp_path / "class")] == names
    assert (tmp_path / "class" / "studies" / "stability.ipynb").exists()
    (tmp_path / "class" / names[0]).write_text("my edits")
    (tmp_path / "class" / names[1]).unlink()
    assert main(["notebooks", str(tmp_path / "class")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaelib: error: {tmp_path / 'class' / names[0]} exists") and "--force" in err
    assert (tmp_path / "class" / names[0]).read_text() == "my edits"  # kept
    assert not (tmp_path / "class" / names[1]).exists()  # and nothing else copied either
    assert main(["notebooks", str(tmp_path / "class"), "--force"]) == 0
    assert (tmp_path / "class" / names[0]).read_bytes() == numbered_notebooks()[0].read_bytes()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="file is a file: allowed a folder"):
        copy_notebooks(tmp_path / "file")
    with pytest.raises(ValueError, match=r"notebooks folder .*file/sub lies under .*file, a file"):
        copy_notebooks(tmp_path / "file" / "sub")
    (tmp_path / "taken" / names[0]).mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"notebook .*taken/{names[0]} is a folder"):
        copy_notebooks(tmp_path / "taken", force=True)
    assert list((tmp_path / "taken").iterdir()) == [tmp_path / "taken" / names[0]]  # nothing copied


def test_an_unreadable_or_foreign_metrics_json_is_named_by_the_index_and_the_timings(tmp_path):
    from vaelib.reporting.pages import timings_markdown

    bad = tmp_path / "mnist-small" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    for build in (write_index, timings_markdown):
        with pytest.raises(ValueError, match=f"{bad} is unreadable .*: repair or remove it"):
            build(tmp_path)
    bad.write_text(json.dumps({"dataset": "mnist", "budget": "small", "seed": 0, "versions": {"git_commit": "abc"},
                               "notebooks": [{"notebook": "00_a"}], "seconds": 1}))
    for build in (write_index, timings_markdown):  # the key named, and what it should hold
        with pytest.raises(ValueError, match=f"^{bad}: notebooks\\[0\\].seconds is missing: expected a number of "
                                             "seconds >= 0: repair or remove it"):
            build(tmp_path)


SLOW = ("import time, json, pathlib\np = pathlib.Path(out_dir); p.mkdir(parents=True, exist_ok=True)\n"
        "time.sleep(8)\n(p / 'metrics.json').write_text(json.dumps({'slept': 8}))")

BUILD = ("import sys\nfrom pathlib import Path\nfrom vaelib.reporting.report import build_report\n"
         "build_report('shapes', 'tiny', seed=int(sys.argv[2]), notebooks=[Path(sys.argv[1])],\n"
         "             out_root=Path(sys.argv[3]), runs_dir=Path(sys.argv[3]) / 'runs', quiet=True)\n")


def test_a_second_build_of_the_same_report_is_refused_with_the_owners_pid(tmp_path):
    import subprocess
    import sys
    import time

    from vaelib.io.lock import RunLocked

    slow = _notebook(tmp_path / "01_slow.ipynb", SLOW)
    good = _notebook(tmp_path / "01_good.ipynb", GOOD)
    reports = tmp_path / "reports"
    first = subprocess.Popen([sys.executable, "-c", BUILD, str(slow), "1", str(reports)])
    lock = reports / ".shapes-tiny.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert lock.exists(), "the first build never took the report's lock"
        with pytest.raises(RunLocked, match=rf"report folder '[^']*shapes-tiny' is in use by pid {first.pid} on "):
            build_report("shapes", "tiny", seed=0, notebooks=[good], out_root=reports, quiet=True)
    finally:
        assert first.wait(timeout=300) == 0
    summary = json.loads((reports / "shapes-tiny" / "metrics.json").read_text())
    assert summary["seed"] == 1 and summary["notebooks"][0]["metrics"] == {"slept": 8}  # the first build's, intact
    assert not lock.exists() and not list(reports.glob(".shapes-tiny.building-*"))


def test_each_notebook_gets_only_the_extras_it_declares(tmp_path):
    seeds = _notebook(tmp_path / "01_seeds.ipynb", GOOD.replace("print('seed', seed)", "print('seeds', seeds)"))
    nb = nbformat.read(str(seeds), as_version=4)
    nb.cells[1].source += "seeds: int = 3  # seeds per setting\n"
    nbformat.write(nb, str(seeds))
    plain = _notebook(tmp_path / "02_plain.ipynb", GOOD)
    out = build_report("shapes", "tiny", notebooks=[seeds, plain], out_root=tmp_path / "reports",
                       runs_dir=tmp_path / "runs", extra={"seeds": 2}, quiet=True)
    assert "seeds 2" in (out / "01_seeds.html").read_text()
    executed = nbformat.read(str(out / "notebooks" / "02_plain.ipynb"), as_version=4)
    assert not any("seeds" in c.source for c in executed.cells)
    assert json.loads((out / "metrics.json").read_text())["parameters"]["seeds"] == 2
    with pytest.raises(ValueError, match=r"-p seeds 2.5 is invalid \(01_seeds.ipynb declares seeds: int\): allowed "
                                         r"an integer > 0$"):
        build_report("shapes", "tiny", notebooks=[seeds, plain], out_root=tmp_path / "r2", extra={"seeds": 2.5})
    assert not (tmp_path / "r2").exists()  # refused before any folder was made


def test_the_notebooks_own_defaults_pass_the_up_front_checks():
    import ast

    from vaelib.reporting.params import at_least_zero, bounds, check_value, declared

    zero = set()
    for nb in report_notebooks():
        for name, d in declared(nb).items():
            check_value(name, ast.literal_eval(d["default"]), d["inferred_type_name"], nb.name, at_least_zero(d),
                        bounds(d))
            zero |= {name} if at_least_zero(d) else set()
    assert {"seed", "image_size", "free_bits", "low_beta", "start_index"} <= zero  # declared in the comments
    assert "seeds" not in zero and "betas" not in zero


def test_only_re_executes_one_notebook_and_keeps_the_others_byte_identical(tmp_path):
    first = _notebook(tmp_path / "01_good.ipynb", GOOD)
    (tmp_path / "studies").mkdir()
    study = _notebook(tmp_path / "studies" / "claims.ipynb", CLAIMS)
    kw = {"notebooks": [first, study], "out_root": tmp_path / "reports", "runs_dir": tmp_path / "runs",
          "quiet": True}
    with pytest.raises(ValueError, match="--only updates an existing report, and .* holds none"):
        build_report("shapes", "tiny", only=["01_good"], **kw)
    out = build_report("shapes", "tiny", **kw)
    assert [notebook_name(p) for p in kw["notebooks"]] == ["01_good", "studies/claims"]
    assert (out / "studies" / "claims.html").exists() and (out / "figures" / "studies" / "claims").is_dir()
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "claims" not in p.as_posix()
            and p.name not in ("metrics.json", "index.html")}
    before = json.loads((out / "metrics.json").read_text())
    _notebook(study, CLAIMS + "\nprint('edited')")  # the study changes; the lesson does not
    with pytest.raises(ValueError, match=r"--only 'nosuch' is invalid: allowed 01_good, studies/claims"):
        build_report("shapes", "tiny", only=["nosuch"], **kw)
    with pytest.raises(ValueError, match="--only: .* was made with seed=0, not 1"):
        build_report("shapes", "tiny", seed=1, only=["studies/claims"], **kw)
    out = build_report("shapes", "tiny", only=["studies/claims"], **kw)
    after = json.loads((out / "metrics.json").read_text())
    assert {p: p.read_bytes() for p in kept} == kept  # the lesson's page, notebook and figures: byte-identical
    assert after["notebooks"][0] == before["notebooks"][0]
    assert "edited" in (out / "studies" / "claims.html").read_text()
    assert [c["verdict"] for c in after["claims"]] == [c["verdict"] for c in before["claims"]]  # judged again, alike
    assert after["notebooks"][1]["commit"] and "<th>commit</th>" in (out / "index.html").read_text()


def test_a_report_never_replaces_pages_the_user_owns_and_says_so_before_running(tmp_path):
    nb = _notebook(tmp_path / "01_good.ipynb", GOOD)
    kw = {"notebooks": [nb], "runs_dir": tmp_path / "runs", "quiet": True}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<html>my course page</html>")
    with pytest.raises(ValueError, match=r"index.html exists and was not written by vaelib"):
        build_report("shapes", "tiny", out_root=mine, **kw)
    assert (mine / "index.html").read_text() == "<html>my course page</html>" and not (mine / "shapes-tiny").exists()
    folder = tmp_path / "reports" / "shapes-tiny"  # the user's own folder where the report would go
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"shapes-tiny exists but holds no readable report .*--force"):
        build_report("shapes", "tiny", out_root=tmp_path / "reports", **kw)
    assert (folder / "notes.txt").read_text() == "mine"
    out = build_report("shapes", "tiny", out_root=tmp_path / "other", **kw)
    assert "content='vaelib'" in (out / "index.html").read_text()
    assert "content='vaelib'" in (tmp_path / "other" / "index.html").read_text()
    build_report("shapes", "tiny", out_root=tmp_path / "other", force=True, **kw)  # vaelib's own index: replaced


def test_the_images_a_notebook_trained_are_the_epochs_the_cache_gained(tmp_path):
    import json

    from vaelib.reporting.report import images_trained, trained_epochs

    def write(name, epochs):
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "history.json").write_text(json.dumps({"epochs": [
            {"epoch": i, "images_per_sec": 4000 / s, "seconds": s} for i, s in enumerate(epochs)]}))

    write("a", [2.0, 4.0])
    before = trained_epochs(tmp_path)
    assert before == {"a": 2} and images_trained(tmp_path, before) == 0  # all from the cache
    write("a", [2.0, 4.0, 8.0])  # resumed for one more epoch
    write("b", [1.0])  # a new run
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "history.json").write_text("[" * 10)  # unreadable: skipped, not fatal
    assert images_trained(tmp_path, before) == 8000
    assert trained_epochs(tmp_path / "missing") == {} and images_trained(tmp_path / "missing", {}) == 0


def test_the_cpu_kind_says_whether_it_has_avx512(tmp_path):
    from vaelib.io.provenance import cpu_kind

    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: Some CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert cpu_kind(info).startswith("Some CPU, ") and cpu_kind(info).endswith("AVX-512 with avx512_bf16")
    info.write_text("model name\t: Older CPU\nflags\t\t: fpu avx2\n")
    assert cpu_kind(info).endswith("AVX2, no AVX-512")
    assert "cores" in cpu_kind(tmp_path / "missing")


def test_a_parameter_comment_declares_its_range_and_a_value_outside_is_refused():
    from vaelib.reporting.params import bounds, check_value

    d = {"help": "share of the image side counted as the border (at least 0.01) (at most 0.5)"}
    assert bounds(d) == (0.01, 0.5) and bounds({"help": "no range"}) == (None, None)
    assert bounds({"help": "seeds per arm (at most 1_000)"}) == (None, 1000.0)
    check_value("border_frac", 0.25, "float", "nb", False, bounds(d))
    with pytest.raises(ValueError, match=r"-p border_frac 2\.0 is invalid \(nb declares border_frac: float\): "
                                         r"allowed a value <= 0\.5"):
        check_value("border_frac", 2.0, "float", "nb", False, bounds(d))
    with pytest.raises(ValueError, match="allowed a value >= 0.01"):
        check_value("border_frac", 0.001, "float", "nb", False, bounds(d))
    with pytest.raises(ValueError, match="allowed a value <= 100"):
        check_value("betas", [0.1, 200.0], "list[float]", "nb", False, (None, 100.0))


def test_a_value_that_must_name_something_in_the_data_is_checked_on_the_data_before_any_work(tmp_path):
    for extra, why in (({"start_index": 99999}, r"-p start_index 99999 is invalid: allowed 0\.\.270 \(the 271 test "
                                                r"images of digits\)"),
                       ({"direction": "nosuch"}, r"-p direction 'nosuch' is invalid: allowed one of 0, 1, 2")):
        with pytest.raises(ValueError, match=why):
            build_report("digits", "tiny", out_root=tmp_path / "reports", runs_dir=tmp_path / "runs", extra=extra,
                         quiet=True)
    assert not (tmp_path / "reports").exists() and not (tmp_path / "runs").exists()  # nothing ran, nothing written


def test_the_report_records_the_config_its_notebooks_recorded_and_names_one_that_differs():
    config = {"name": "mnist", "data": {"dataset": "mnist", "root": "../data"}, "train": {"epochs": 20, "lr": 0.001}}
    study = {**config, "data": {**config["data"], "root": "../../data"}}  # a study names the folder from its own
    other = {**config, "train": {"epochs": 20, "lr": 0.002}}
    entries = [{"notebook": "00_a", "metrics": {"config": config}}, {"notebook": "01_none", "metrics": {}},
               {"notebook": "studies/s", "metrics": {"config": study}}]
    recorded, differs = reported_config(entries, "data")
    assert recorded == {**config, "data": {"dataset": "mnist", "root": "data"}} and differs == {}
    recorded, differs = reported_config([*entries, {"notebook": "02_b", "metrics": {"config": other}}], "data")
    assert recorded["train"]["lr"] == 0.001 and differs == {"02_b": "train.lr"}
    assert reported_config([{"notebook": "00_a", "metrics": {}}], "data") == (None, {})
    # a field a notebook did not record (executed before it existed) counts at its default, not as a difference
    later = {**config, "model": {"output_bias": "zero"}}
    assert reported_config([*entries, {"notebook": "06_c", "metrics": {"config": later}}], "data")[1] == {}
    started = {**config, "model": {"output_bias": "data_mean"}}
    assert reported_config([*entries, {"notebook": "06_c", "metrics": {"config": started}}], "data")[1] == {
        "06_c": "model.output_bias"}


def test_the_index_lists_the_claims_of_another_stand_in_last_and_says_so():
    from vaelib.experiments.claims import ClaimSpec, adjust, elsewhere, judge
    from vaelib.experiments.evidence import Estimate
    from vaelib.reporting.pages import claims_html

    spec = ClaimSpec("a is higher than b", "a source §1", "mnist", "m", ("a", "b"), "higher")
    moved = elsewhere(ClaimSpec("c is lower than d", "a source §2", "shapes for CelebA", "m", ("c", "d"), "lower"),
                      "shapes")
    tested = judge(spec, Estimate((3.0, 3.2, 2.9, 3.1), 4, seeds=(0, 1, 2, 3)),
                   Estimate((1.0, 1.1, 0.9, 1.0), 4, seeds=(0, 1, 2, 3)))
    page = claims_html([c.as_dict() for c in adjust([moved, tested])])
    assert page.index("a is higher than b") < page.index("c is lower than d")  # declared first, listed last
    assert "across the 1 that were tested" in page and "1 run on their own stand-in, in another report" in page
    assert "another report" not in claims_html([c.as_dict() for c in adjust([tested])])


def test_run_notebook_starts_a_kernel_that_died_at_start_once_more(tmp_path, monkeypatch):
    import papermill

    from vaelib.reporting import report

    calls = []

    def execute(*args, **kwargs):
        calls.append(args)
        if len(calls) < fails + 1:
            raise RuntimeError(report.KERNEL_DIED)

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    fails = 1
    report.run_notebook(tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb", {}, 60, True)
    assert len(calls) == 2  # died once, started again
    calls.clear()
    fails = 2
    with pytest.raises(RuntimeError, match=report.KERNEL_DIED):  # at most KERNEL_STARTS starts
        report.run_notebook(tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb", {}, 60, True)
    assert len(calls) == report.KERNEL_STARTS == 2
    calls.clear()
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: (calls.append(a), 1 / 0))
    with pytest.raises(ZeroDivisionError):  # any other error: not retried
        report.run_notebook(tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb", {}, 60, True)
    assert len(calls) == 1
