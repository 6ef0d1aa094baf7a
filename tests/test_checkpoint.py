"""Loading a checkpoint never runs code from it, and a broken one is named in one line."""

import errno
import os
import re

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.experiments.cache import cached_fit, run_dir
from vaelib.io.files import save_json, shareable_mode
from vaelib.lessons.latent_explorer import load_trained
from vaelib.models.registry import build_model
from vaelib.training.checkpoint import checkpoint_state, load_checkpoint, read_checkpoint, save_checkpoint
from vaelib.training.history import History
from vaelib.training.trainer import CHECKPOINT, fit


class _Payload:
    """Unpickling this calls os.system: what a hostile checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant(path, marker, config):
    """A checkpoint that looks like vaelib's (config, model, epoch) but runs a command when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": config.to_dict(), "model": {}, "epoch": 1, "history": {"steps": [], "epochs": []},
                "extra": _Payload(marker)}, path)


def test_every_loading_path_refuses_a_checkpoint_that_carries_code(tiny_config, tiny_data, tmp_path):
    marker = tmp_path / "ran"
    config = with_overrides(tiny_config, **{"train.epochs": 1})
    evil = tmp_path / "shared" / CHECKPOINT
    _plant(evil, marker, config)
    _plant(run_dir(config, tmp_path / "runs") / CHECKPOINT, marker, config)  # what the run cache would load
    paths = {
        "read_checkpoint": lambda: read_checkpoint(evil),
        "load_checkpoint": lambda: load_checkpoint(evil),
        "fit resume": lambda: fit(config, *tiny_data, device="cpu", out_dir=evil.parent, quiet=True),
        "run cache": lambda: cached_fit(config, *tiny_data, root=tmp_path / "runs", device="cpu", quiet=True),
        "explorer's model": lambda: load_trained(config, tmp_path / "runs", train_if_missing=False),
    }
    for name, load in paths.items():
        with pytest.raises(ValueError, match=r"is refused: .* could run code \(it calls for \w+\.system\)"):
            load()
        assert not marker.exists(), f"{name} ran the checkpoint's code"


def test_the_train_command_refuses_it_in_one_line(tmp_path, capsys):
    from vaelib.__main__ import main
    from vaelib.config import get_preset

    marker = tmp_path / "ran"
    _plant(tmp_path / "run" / CHECKPOINT, marker, get_preset("digits"))
    assert main(["train", "--preset", "digits", "--epochs", "1", "--max-train", "64", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is refused" in err and str(tmp_path / "run") in err
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"garbage" * 20, "half"])
def test_a_broken_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "ckpt.pt"
    if content == "half":  # a real checkpoint cut off mid-write (by hand: vaelib writes atomically)
        save_checkpoint(path, {"config": {}, "model": {"w": torch.zeros(4096)}})
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        read_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and f"checkpoint {str(path)!r} is unreadable" in message


def test_load_checkpoint_names_a_bad_path_or_device_in_one_line(tiny_config, tmp_path):
    model = build_model(tiny_config)
    state = checkpoint_state(model, torch.optim.Adam(model.parameters()), tiny_config, History(), 0,
                             torch.Generator().manual_seed(0))
    save_checkpoint(good := tmp_path / "good.pt", state)
    for path, shown in ((5, "5"), (None, "None"), (b"good.pt", "b'good.pt'")):
        for load in (load_checkpoint, read_checkpoint):
            with pytest.raises(ValueError, match=rf"^path={shown} is invalid: allowed a path to a checkpoint file "
                                                 r"\(a str or a pathlib.Path\)$"):
                load(path)
    with pytest.raises(ValueError, match=r"^device='nosuch' is invalid: allowed 'auto', 'cpu', 'cuda', 'cuda:N'$"):
        load_checkpoint(good, device="nosuch")  # about the device, not 'unreadable file'
    loaded, _ = load_checkpoint(str(good), device=torch.device("cpu"))
    assert all(torch.equal(v, state["model"][k]) for k, v in loaded.state_dict().items())


def test_a_folder_a_device_or_a_pipe_given_as_a_checkpoint_is_named_as_what_it_is(tiny_config, tmp_path):
    """Not 'does not exist': a folder is called a folder (naming the checkpoint.pt a run folder holds), /dev/null
    and a named pipe (which torch.load would wait on forever) no regular file; each one line with what is allowed."""
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(pipe := tmp_path / "pipe")
    allowed = r"allowed a checkpoint file \(checkpoint.pt in a run folder, or a model vaelib shipped\)"
    cases = [(run, ValueError, rf"^checkpoint '{re.escape(str(run))}' is a folder: {allowed}$"),
             ("/dev/null", ValueError, rf"^checkpoint '/dev/null' is not a regular file \(a character device\): "
                                       rf"{allowed}$"),
             (pipe, ValueError, rf"^checkpoint '{re.escape(str(pipe))}' is not a regular file \(a named pipe\): "),
             (tmp_path / "gone.pt", FileNotFoundError, rf"^checkpoint '[^']*gone.pt' does not exist: {allowed}$"),
             ("", ValueError, rf"^path='' is invalid: {allowed}$")]
    for path, kind, pattern in cases:
        for load in (load_checkpoint, read_checkpoint):
            with pytest.raises(kind, match=pattern) as err:
                load(path)
            assert "\n" not in str(err.value)
    model = build_model(tiny_config)
    save_checkpoint(run / CHECKPOINT, checkpoint_state(model, torch.optim.Adam(model.parameters()), tiny_config,
                                                       History(), 0, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match=rf"is a folder: {allowed}, e.g. '{re.escape(str(run / CHECKPOINT))}', "
                                         r"which it holds$"):
        load_checkpoint(run)


def test_a_real_checkpoint_loads_safely_and_stores_plain_versions(tiny_config, tiny_data, tmp_path):
    fit(with_overrides(tiny_config, **{"train.epochs": 1}), *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)  # no allow-list needed for what vaelib writes
    assert type(state["versions"]["torch"]) is str
    model, _ = load_checkpoint(tmp_path / CHECKPOINT)
    assert model.config == tiny_config.__class__.from_dict(state["config"])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        assert shareable_mode() == mode and shareable_mode(directory=True) == 0o777 & ~umask
        save_json(tmp_path / "metrics.json", {"a": 1})
        save_checkpoint(tmp_path / "checkpoint.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("metrics.json", "checkpoint.pt"):  # mkstemp alone would make them 0600
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(mode), name


def test_a_full_disk_is_named_and_keeps_the_old_file(tmp_path):
    from vaelib.io.files import atomic_write_bytes

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"w": torch.ones(2)})

    def to_a_full_disk(f):  # torch.save onto /dev/full hides the OSError behind "unexpected pos ..."
        with open("/dev/full", "wb") as full:
            torch.save({"w": torch.zeros(4096)}, full)

    with pytest.raises(OSError, match=r"disk full while writing") as err:
        atomic_write_bytes(path, to_a_full_disk)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left


def test_a_checkpoint_whose_epoch_disagrees_with_its_history_or_holds_non_finite_weights_is_refused(
        tiny_config, tiny_data, tmp_path):
    import math

    from vaelib.io.refusals import MalformedFile

    fit(tiny_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    good = read_checkpoint(tmp_path / "checkpoint.pt")
    for key, value, message in (("epoch", 3, r"epoch is 3 but its history holds 2 epochs"),
                                ("epoch", 10**30, r"epoch is 1000000000000000000000000000000 but its history")):
        save_checkpoint(tmp_path / "bad.pt", {**good, key: value})
        with pytest.raises(MalformedFile, match=message):
            load_checkpoint(tmp_path / "bad.pt")
    name = next(iter(good["model"]))
    for bad in (math.nan, math.inf):
        weights = {**good["model"], name: torch.full_like(good["model"][name], bad)}
        save_checkpoint(tmp_path / "bad.pt", {**good, "model": weights})
        with pytest.raises(MalformedFile, match=rf"bad.pt: model.{re.escape(name)} holds non-finite values"):
            load_checkpoint(tmp_path / "bad.pt")
