"""Malformed files and odd paths: a file that loads but is wrong inside, or a path that is a folder where a file is
needed (or lies under a file), ends in one line naming the file and the key (exit code 2 on the command line), and
nothing is restored or changed. The fuzz tests mutate a real checkpoint, a real run's metrics.json and
history.json, and a committed report's metrics.json: every load succeeds, and what it loaded works, or it raises
the package's one-line ValueError (MalformedFile), never another exception."""

import copy
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vaelib.__main__ import main
from vaelib.config import get_preset, with_overrides
from vaelib.experiments.evidence import convergence
from vaelib.io.lock import RunLocked, run_lock
from vaelib.models.vae import VAE
from vaelib.reporting.pages import timings_markdown, write_index
from vaelib.reporting.report import REPO, numbered_notebooks
from vaelib.training.checkpoint import MalformedFile, load_checkpoint
from vaelib.training.jsonfiles import load_json, read_failed, read_history, read_report_metrics, read_run_metrics
from vaelib.training.trainer import CHECKPOINT, HISTORY, _optimizer, _resume

TRAIN = ["train", "--preset", "digits", "--epochs", "2", "--max-train", "64", "--device", "cpu", "--quiet"]
CONFIG = with_overrides(get_preset("digits"), **{"train.epochs": 2, "data.max_train": 64})  # what TRAIN trains
REPORT = REPO / "reports" / "mnist-small" / "metrics.json"  # a real report's metrics.json, committed
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished run of TRAIN (2 epochs of one step): checkpoint.pt, history.json, metrics.json, figures."""
    out = tmp_path_factory.mktemp("real") / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def state(run) -> dict:
    return torch.load(run / CHECKPOINT, weights_only=True)


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _one_line(capsys, pattern: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("vaelib: error: "), err
    assert re.search(pattern, err.strip()), err
    return err


def _named_in_one_line(err: Exception, *paths: Path) -> None:
    message = str(err)
    assert "\n" not in message and any(str(p) in message for p in paths), message


# --- the cases of the issue, one by one ------------------------------------------------------------------

def _set(key, value):
    return lambda s: s.update({key: value})


CHECKPOINT_CASES = [  # (what the checkpoint holds, how it is made from the real one, the one line)
    ("empty model state", _set("model", {}), r"checkpoint.pt: model.encoder.convs.0.0.weight is missing \(14 of the "
     r"14 tensors of the config's model are\): the config's model needs a tensor of shape \(32, 1, 3, 3\)$"),
    ("a tensor of the wrong shape", lambda s: s["model"].update({"encoder.convs.0.0.weight": torch.zeros(3)}),
     r"checkpoint.pt: model.encoder.convs.0.0.weight has shape \(3,\), the config's model needs \(32, 1, 3, 3\)$"),
    ("epoch a string", _set("epoch", "2"), r"checkpoint.pt: epoch is a str \('2'\): expected the number of epochs "
     r"trained \(an integer >= 0\)$"),
    ("epoch missing", lambda s: s.pop("epoch"), r"checkpoint.pt: epoch is missing: expected the number of epochs"),
    ("optimizer {}", _set("optimizer", {}), r"checkpoint.pt: optimizer.param_groups is missing: expected a list of 1 "
     r"parameter group"),
    ("generator an int", _set("generator", 3), r"checkpoint.pt: generator is an int \(3\): expected a 1-D uint8 "
     r"tensor of 5056 bytes"),
    ("history.steps a list of ints", lambda s: s["history"].update(steps=[1, 2]),
     r"checkpoint.pt: history.steps\[0\] is an int \(1\): expected a dict of the step's fields"),
    ("a moment of the wrong shape", lambda s: s["optimizer"]["state"][0].update(exp_avg=torch.zeros(2)),
     r"checkpoint.pt: optimizer.state\[0\].exp_avg is a torch.float32 tensor of shape \(2,\): expected a "
     r"floating-point tensor of the parameter's shape \(32, 1, 3, 3\)$"),
    ("an unexpected tensor", lambda s: s["model"].update({"extra.weight": torch.zeros(1)}),
     r"checkpoint.pt: model.extra.weight is unexpected \(1 tensors are\)"),
    ("config a string", _set("config", "digits"), r"checkpoint.pt: config is a str \('digits'\): expected a dict"),
    ("config with a bad value", lambda s: s["config"]["train"].update(seed=-1),
     r"checkpoint.pt: config is invalid: train.seed=-1 is invalid: allowed an integer >= 0"),
]


@pytest.mark.parametrize("mutate, pattern", [pytest.param(m, p, id=i) for i, m, p in CHECKPOINT_CASES])
def test_resuming_a_malformed_checkpoint_is_one_line_and_changes_nothing(run, state, mutate, pattern, tmp_path,
                                                                          capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    bad = copy.deepcopy(state)
    mutate(bad)
    torch.save(bad, out / CHECKPOINT)
    before = _snapshot(tmp_path)
    assert main([*TRAIN, "--out", str(out), "--epochs", "3"]) == 2  # one epoch more: a real resume
    assert str(out / CHECKPOINT) in _one_line(capsys, pattern)
    assert _snapshot(tmp_path) == before


def test_resuming_with_fewer_epochs_than_the_checkpoint_is_refused(run, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    before = _snapshot(tmp_path)
    assert main([*TRAIN, "--out", str(out), "--epochs", "1"]) == 2
    _one_line(capsys, rf"checkpoint '{re.escape(str(out / CHECKPOINT))}' has 2 epochs, --epochs 1 is fewer: "
                      r"allowed --epochs >= 2 \(train.epochs\), or another --out")
    assert _snapshot(tmp_path) == before


def test_the_real_files_read_as_they_are(run, state):
    from vaelib.training.checkpoint import check_checkpoint
    from vaelib.training.jsonfiles import read_report_metrics

    assert check_checkpoint(state, run / CHECKPOINT) == CONFIG
    assert read_history(run / HISTORY).epochs == state["history"]["epochs"]
    assert read_run_metrics(run / "metrics.json")["config"] == CONFIG.to_dict()
    for path in sorted((REPO / "reports").glob("*/metrics.json")):  # every committed report
        assert read_report_metrics(path)["notebooks"]


def test_a_shipped_model_without_optimizer_still_loads(state, tmp_path):
    shipped = tmp_path / "shipped.pt"
    torch.save({k: state[k] for k in ("model", "config", "history", "epoch", "seed", "versions")}, shipped)
    model, _ = load_checkpoint(shipped)
    assert torch.equal(model.state_dict()["decoder.fc.weight"], state["model"]["decoder.fc.weight"])
    torch.save({**state, "model": {}}, shipped)
    with pytest.raises(MalformedFile, match=r"shipped.pt: model.encoder.convs.0.0.weight is missing"):
        load_checkpoint(shipped)


@pytest.fixture
def reports(tmp_path) -> Path:
    """A reports folder holding a copy of a committed report's metrics.json."""
    (tmp_path / "reports" / "mnist-small").mkdir(parents=True)
    shutil.copy(REPORT, tmp_path / "reports" / "mnist-small" / "metrics.json")
    return tmp_path / "reports"


def _latency(s: dict) -> dict:
    return next(e for e in s["notebooks"] if "latency_ms" in e["metrics"])["metrics"]


@pytest.mark.parametrize("mutate, pattern", [
    (lambda s: s.update(seconds=None), r"seconds is None: expected a number of seconds >= 0"),
    (lambda s: _latency(s).update(latency_ms=[1, 2]), r"notebooks\[\d\].metrics.latency_ms is a list \(2 items\): "
     r"expected a dict \{control: \{median, p95\}\}"),
    (lambda s: s["versions"].update(git_commit=None), r"versions.git_commit is None: expected a string"),
    (lambda s: s["notebooks"].append(3), r"notebooks\[\d+\] is an int \(3\): expected a dict"),
], ids=["seconds null", "latency_ms not a dict", "git_commit null", "a notebook entry an int"])
def test_timings_of_a_malformed_report_is_one_line(reports, mutate, pattern, capsys):
    path = reports / "mnist-small" / "metrics.json"
    s = json.loads(path.read_text())
    mutate(s)
    path.write_text(json.dumps(s))
    assert main(["timings", "--reports", str(reports)]) == 2
    assert _one_line(capsys, pattern).startswith(f"vaelib: error: {path}: ")
    with pytest.raises(MalformedFile, match=pattern):
        write_index(reports)


@pytest.mark.parametrize("target, pattern", [("folder", "is a folder"), ("missing.md", "is missing")])
def test_timings_write_onto_a_folder_or_a_missing_file_is_refused_first(reports, target, pattern, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    before = _snapshot(tmp_path)
    assert main(["timings", "--reports", str(reports), "--write", str(tmp_path / target)]) == 2
    _one_line(capsys, rf"timings file '{re.escape(str(tmp_path / target))}' {pattern}: allowed a file holding")
    assert _snapshot(tmp_path) == before


def test_notebooks_into_a_folder_under_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["notebooks", str(tmp_path / "file" / "class")]) == 2
    _one_line(capsys, rf"notebooks folder {re.escape(str(tmp_path / 'file' / 'class'))} lies under "
                      rf"{re.escape(str(tmp_path / 'file'))}, a file: allowed a folder")


def test_bench_and_report_out_under_a_file_are_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub"
    assert main(["bench", "--preset", "digits", "--batch-sizes", "8", "--out", str(out)]) == 2
    _one_line(capsys, rf"--out folder {re.escape(str(out))} lies under {re.escape(str(tmp_path / 'file'))}, a file")
    assert main(["report", "--dataset", "digits", "--budget", "tiny", "--out", str(out)]) == 2
    _one_line(capsys, rf"--out folder {re.escape(str(out))} lies under")


def test_notebooks_force_onto_a_folder_named_like_a_notebook_copies_nothing(tmp_path, capsys):
    name = numbered_notebooks()[0].name
    (tmp_path / "class" / name).mkdir(parents=True)
    assert main(["notebooks", str(tmp_path / "class"), "--force"]) == 2
    _one_line(capsys, rf"notebook {re.escape(str(tmp_path / 'class' / name))} is a folder: allowed")
    assert [p.name for p in (tmp_path / "class").iterdir()] == [name]  # nothing copied


# --- a path that is no file, and nesting deeper than any file vaelib writes -----------------------------------

READERS = {"read_history": read_history, "read_run_metrics": read_run_metrics, "read_failed": read_failed,
           "read_report_metrics": read_report_metrics, "load_json": load_json}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_json_reader_names_a_folder_a_device_or_a_pipe_as_what_it_is(reader, tmp_path):
    """Not '... does not exist': what the path is, and what is allowed; a named pipe is refused, never read (that
    would wait for a writer forever)."""
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    allowed = r"allowed a JSON file vaelib wrote \(history.json, metrics.json, ...\)$"
    for path, what in ((tmp_path / "folder", "is a folder"), ("/dev/null", r"is not a regular file \(a character "
                                                                           r"device\)"),
                       (tmp_path / "pipe", r"is not a regular file \(a named pipe\)")):
        with pytest.raises(ValueError, match=rf"^JSON file '{re.escape(str(path))}' {what}: {allowed}") as err:
            READERS[reader](path)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError, match=r"^JSON file '[^']*gone.json' does not exist: allowed a JSON file"):
        READERS[reader](tmp_path / "gone.json")


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


DEEP = {  # what the file holds: (its text, where the refusal says the nesting starts)
    "200,000 [": ("[" * 200_000, "the top level"),  # json.loads itself fails (RecursionError)
    "500 levels, parsed": (_nested(500), r"\[0\]\[0\]\[0\]"),  # json.dumps or repr of it would fail later
    "an option 150 levels deep": ('{"steps": [], "epochs": [], "options": {"x": ' + _nested(150) + "}}",
                                  r"options\.x\[0\]"),
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("case", sorted(DEEP))
def test_json_nested_too_deep_is_refused_in_one_line_naming_the_file(reader, case, tmp_path):
    text, where = DEEP[case]
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(MalformedFile, match=rf"^{re.escape(str(path))}: {where}\.\.\. is nested more than 100 levels "
                                            r"deep.*: expected at most 100 levels \(vaelib writes a few\)$") as err:
        READERS[reader](path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_timings_of_a_report_nested_too_deep_is_one_line(reports, capsys):
    path = reports / "mnist-small" / "metrics.json"
    path.write_text("[" * 200_000)
    assert main(["timings", "--reports", str(reports)]) == 2
    _one_line(capsys, rf"{re.escape(str(path))}: the top level\.\.\. is nested more than 100 levels deep")


@pytest.mark.parametrize("text, says", [
    ("[" * 200_000, "has an unreadable lock"),
    ('{"pid": ' + _nested(900) + "}", "naming pid a list of 1 items, which no process can have"),
    (f'{{"pid": {os.getpid()}, "host": {_nested(900)}, "started": "then"}}',
     "whose host is a list of 1 items, which vaelib never writes (allowed a string)"),
], ids=["200,000 [", "pid 900 levels deep", "host 900 levels deep"])
def test_a_lock_nested_deep_is_refused_in_one_short_line_and_left_alone(text, says, tmp_path):
    (tmp_path / ".lock").write_text(text)
    with pytest.raises(RunLocked) as refused:
        with run_lock(tmp_path):
            pass
    message = str(refused.value)
    assert "\n" not in message and len(message) < 300 + 3 * len(str(tmp_path)) and says in message
    assert f"rm {tmp_path / '.lock'}" in message
    assert (tmp_path / ".lock").read_text() == text


def _deep(how: str) -> list:
    x: list = []
    if how == "holding itself":
        x.append(x)
    for _ in range(5000 if how == "5,000 levels" else 0):
        x = [x]
    return x


@pytest.mark.parametrize("how, says", [
    ("5,000 levels", r"history\.options\.x\.\.\. is nested more than 100 levels deep: expected at most 100 levels"),
    ("holding itself", r"history\.options\.x holds itself: expected plain nested values"),
])
def test_a_checkpoint_whose_history_nests_too_deep_is_refused_on_load_not_in_torch_save(run, state, how, says,
                                                                                         tmp_path, capsys):
    """torch.load rebuilds any depth (and a value that holds itself); torch.save and json.dumps of it would fail
    with a RecursionError (or 'Circular reference') only once a resumed run writes its first checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(run, out)
    bad = {**state, "history": {**state["history"], "options": {**state["history"]["options"], "x": _deep(how)}}}
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # pickle recurses once per level: vaelib never writes such a file
    try:
        torch.save(bad, out / CHECKPOINT)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(MalformedFile, match=rf"^{re.escape(str(out / CHECKPOINT))}: {says}") as err:
        load_checkpoint(out / CHECKPOINT)
    assert "\n" not in str(err.value)
    before = _snapshot(tmp_path)
    assert main([*TRAIN, "--out", str(out), "--epochs", "3"]) == 2  # a resume: refused before any epoch
    assert str(out / CHECKPOINT) in _one_line(capsys, says)
    assert _snapshot(tmp_path) == before


# --- fuzz: keys removed, retyped or reshaped --------------------------------------------------------------

def _paths(obj, prefix=()) -> list[tuple]:
    """Every key path into nested dicts and lists (tensors, tuples and scalars are leaves)."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    return [prefix] + [p for k, v in items for p in _paths(v, (*prefix, k))]


def _apply(obj, path: tuple, op: str, value, shape: tuple):
    """obj with the value at path deleted, replaced, or (a tensor) reshaped; a path a former edit removed is
    left alone."""
    if not path:
        return obj if op == "delete" else value
    parent = obj
    for key in path:
        if not isinstance(parent, (dict, list)) or (key not in parent if isinstance(parent, dict)
                                                    else not isinstance(key, int) or key >= len(parent)):
            return obj
        parent, above = parent[key], parent
    parent, old = above, parent
    if op == "delete":
        del parent[path[-1]]
    elif op == "reshape" and isinstance(old, torch.Tensor):
        parent[path[-1]] = old.flatten() if not shape else torch.zeros(shape, dtype=old.dtype)
    else:
        parent[path[-1]] = value
    return obj


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.just(10**400), st.floats(),
                    st.text(max_size=4))
JSON_VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), SCALARS,
                                                                               max_size=3))
TENSORS = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype), st.lists(st.integers(0, 3), max_size=3),
                    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool,
                                     torch.complex64]))
SHAPES = st.lists(st.integers(1, 40), max_size=4).map(tuple)
OPS = st.sampled_from(["delete", "replace", "reshape"])


_EDITS: dict[int, st.SearchStrategy] = {}  # id of an original -> its edits (its paths are listed once)


def _edits(obj, values) -> st.SearchStrategy:
    """1-3 edits, each at a path under a top-level key drawn first (every key as likely as the model's 14
    tensors), or at the root (as likely as one key)."""
    if id(obj) not in _EDITS:
        by_key = {(k,): [p for p in _paths(obj) if p[:1] == (k,)] for k in obj} | {(): [()]}
        paths = st.sampled_from(sorted(by_key, key=str)).flatmap(lambda k: st.sampled_from(by_key[k]))
        _EDITS[id(obj)] = st.lists(st.tuples(paths, OPS, values, SHAPES), min_size=1, max_size=3)
    return _EDITS[id(obj)]


def _mutated(data, original, values):
    obj = copy.deepcopy(original)
    for edit in data.draw(_edits(original, values)):
        obj = _apply(obj, *edit)
    return obj


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoints_load_and_resume_or_refuse_in_one_line(run, state, tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "fuzz" / CHECKPOINT
    path.parent.mkdir(exist_ok=True)
    torch.save(_mutated(data, state, st.one_of(JSON_VALUES, TENSORS)), path)
    try:
        model, _ = load_checkpoint(path)
        model(torch.zeros(2, *model.config.input_shape))  # what it loaded works
        event("load_checkpoint: loaded")
    except ValueError as err:
        _named_in_one_line(err, path)
        event(f"load_checkpoint: refused ({_why(err, path)})")
    torch.manual_seed(0)
    model = VAE(CONFIG)
    opt = _optimizer(model, CONFIG, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    fresh = copy.deepcopy(model.state_dict()), gen.get_state()
    try:
        _resume(path, CONFIG, model, opt, gen, torch.device("cpu"))
    except ValueError as err:
        _named_in_one_line(err, path)
        assert all(torch.equal(v, fresh[0][k]) for k, v in model.state_dict().items()), "restored before refusing"
        assert not opt.state and torch.equal(gen.get_state(), fresh[1])
        event(f"resume: refused ({_why(err, path)})")
        return
    event("resume: restored")
    x = torch.rand(4, *CONFIG.input_shape)
    eps = torch.randn(4, CONFIG.model.latent_dim, generator=gen)
    logits, mu, logvar = model(x, eps=eps)
    (logits.square().mean() + mu.square().mean()).backward()
    opt.step()  # the restored optimizer state takes a step


def _why(err: Exception, path: Path) -> str:
    """The key a refusal names (for hypothesis' statistics): 'optimizer.state[3].step' -> 'optimizer'."""
    rest = str(err).split(f"{path}: ", 1)[-1]
    return re.split(r"[ .\[]", rest, maxsplit=1)[0]


_ORIGINALS: dict[Path, dict] = {}  # each real file parsed once (the edits are cached by its id)


def _json_case(data, original: Path, path: Path) -> None:
    """Write a mutation of the JSON file `original` to `path`."""
    if original not in _ORIGINALS:
        _ORIGINALS[original] = json.loads(original.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_mutated(data, _ORIGINALS[original], JSON_VALUES)))


@FUZZ
@given(data=st.data())
def test_fuzz_history_and_run_metrics_read_or_refuse_in_one_line(run, tmp_path_factory, data):
    folder = tmp_path_factory.getbasetemp() / "fuzz-json"
    history = folder / HISTORY
    _json_case(data, run / HISTORY, history)
    try:
        h = read_history(history)
        convergence(h)  # what the run cache asks of a read history (train.stopped)
        h.column("val_total"), h.column("grad_norm", per="step")
        event("history: read")
    except ValueError as err:
        _named_in_one_line(err, history)
        event(f"history: refused ({_why(err, history)})")
    metrics = folder / "metrics.json"
    _json_case(data, run / "metrics.json", metrics)
    try:
        m = read_run_metrics(metrics)
        print(f"{m['metrics']['test_elbo']['total']:.1f} {m['seconds']:.0f}")  # what `train` prints formats
        event("run metrics: read")
    except ValueError as err:
        _named_in_one_line(err, metrics)
        event(f"run metrics: refused ({_why(err, metrics)})")


@FUZZ
@given(data=st.data())
def test_fuzz_report_metrics_index_and_timings_or_refuse_in_one_line(tmp_path_factory, data):
    root = tmp_path_factory.getbasetemp() / "fuzz-reports"
    path = root / "mnist-small" / "metrics.json"
    _json_case(data, REPORT, path)
    for build in (timings_markdown, write_index):
        try:
            build(root)
            event(f"{build.__name__}: built")
        except ValueError as err:  # MalformedFile, or no report left there ("holds no report", naming the folder)
            _named_in_one_line(err, path, root)
            event(f"{build.__name__}: refused ({_why(err, path)})")
