"""The bad-input table: every error a user can cause on the command line is one line naming the value and what
is allowed, exit code 2, no traceback, and nothing is left behind in --out."""

import errno
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from vaelib.__main__ import main
from vaelib.config import get_preset, with_overrides
from vaelib.training.trainer import CHECKPOINT, HISTORY, fit, nonfinite_advice

TRAIN = ["train", "--preset", "digits", "--epochs", "1", "--max-train", "64", "--device", "cpu", "--quiet"]


def _dangling_lock(tmp_path, out, monkeypatch):
    out.mkdir()
    (out / ".lock").symlink_to(tmp_path / "gone")


def _lock_folder(tmp_path, out, monkeypatch):
    (out / ".lock").mkdir(parents=True)


def _empty_lock(tmp_path, out, monkeypatch):
    out.mkdir()
    (out / ".lock").write_text("")  # what an older vaelib left on a full disk


def _malloc_typo(tmp_path, out, monkeypatch):
    monkeypatch.setenv("VAELIB_MALLOC_TUNING", "x")


def _file(tmp_path, out, monkeypatch):
    out.write_text("not a folder")


def _a_file(tmp_path, out, monkeypatch):
    (tmp_path / "file").write_text("not a folder")


def _garbage_checkpoint(tmp_path, out, monkeypatch):
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"garbage" * 20)


def _finished_run(tmp_path, out, monkeypatch):
    config = with_overrides(get_preset("digits"), **{"train.epochs": 1, "data.max_train": 64})
    fit(config, device="cpu", out_dir=out, quiet=True)  # what TRAIN would have trained


def _locked(tmp_path, out, monkeypatch):
    out.mkdir()
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
    (out / ".lock").write_text(json.dumps(owner))  # this (live) process holds it


def _deny_mkstemp(monkeypatch, lock: bool) -> None:
    """A read-only folder, whoever runs the test (root ignores chmod): new files refused, for the lock's
    candidate file (lock=True) or for every other output."""
    real = tempfile.mkstemp

    def deny(*args, prefix=None, dir=None, **kwargs):
        if str(prefix).startswith(".lock.") == lock:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", deny)


def _lock_denied(tmp_path, out, monkeypatch):
    _deny_mkstemp(monkeypatch, lock=True)


def _disk_full(tmp_path, out, monkeypatch):
    real = torch.save

    def save_to_a_full_disk(obj, f):  # torch.save into /dev/full: a RuntimeError hiding the OSError(ENOSPC)
        with open("/dev/full", "wb") as full:
            real(obj, full)

    monkeypatch.setattr(torch, "save", save_to_a_full_disk)


def _write_denied(tmp_path, out, monkeypatch):
    _deny_mkstemp(monkeypatch, lock=False)


def _probe_denied(tmp_path, out, monkeypatch):
    """A folder no new entry can be made in, whoever runs the test (root ignores chmod): check_folder's probe."""
    from vaelib.io.paths import PROBE

    real = tempfile.mkdtemp

    def deny(*args, prefix=None, dir=None, **kwargs):
        if prefix == PROBE:
            raise PermissionError(errno.EACCES, "Permission denied", str(dir))
        return real(*args, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", deny)


def _empty_root(tmp_path, out, monkeypatch):
    (tmp_path / "data").mkdir()


OUT_IS = r"run folder '[^']*run'"
CASES = [  # (extra arguments, what the one line must match, setup)
    (["--preset", "svhn"], r"unknown preset 'svhn': allowed fashion_mnist, .*shapes$", None),
    (["--epochs", "0"], r"train.epochs=0 is invalid: allowed an integer >= 1 and <= 100000$", None),
    (["--epochs", str(10**12)], r"train.epochs=1000000000000 is invalid: allowed an integer >= 1 and <= 100000", None),
    (["--epochs", "ten"], r"argument --epochs: invalid int value: 'ten' \(see python -m vaelib train --help\)", None),
    (["--lr", "inf"], r"train.lr=inf is invalid: allowed a value > 0 and finite", None),
    (["--lr", "nan"], r"train.lr=nan is invalid: allowed a value > 0 and finite", None),
    (["--stop-tol", "2"], r"train.stop_tol=2.0 is invalid: allowed 0 \(train every epoch\) or a value in", None),
    (["--stop-tol", "0.05", "--schedule", "cyclic"], r"train.stop_tol=0.05 is invalid: allowed 0 with a cyclic", None),
    (["--lr", "-0.1"], r"train.lr=-0.1 is invalid: allowed a value > 0", None),
    (["--lr", "0"], r"train.lr=0.0 is invalid: allowed a value > 0", None),
    (["--beta", "1e300"], r"schedule.beta=1e\+300 is invalid: allowed a value >= 0 and <= 1e\+06", None),
    (["--beta", "-1"], r"schedule.beta=-1.0 is invalid: allowed a value >= 0", None),
    (["--beta", "nan"], r"schedule.beta=nan is invalid", None),
    (["--free-bits", "inf"], r"train.free_bits=inf is invalid: allowed a value >= 0 and <= 100 \(nats", None),
    (["--free-bits", "-1"], r"train.free_bits=-1.0 is invalid", None),
    (["--grad-clip", "inf"], r"train.grad_clip=inf is invalid: allowed None or a value > 0 and finite", None),
    (["--grad-clip", "0"], r"train.grad_clip=0.0 is invalid: allowed None or a value > 0", None),
    (["--schedule", "warmup", "--warmup-epochs", "inf"],
     r"schedule.warmup_epochs=inf is invalid: allowed a value >= 0 and <= 100000", None),
    (["--seed", str(2**64)], r"train.seed=18446744073709551616 is invalid: allowed an integer >= 0 and < 2\*\*32",
     None),
    (["--seed", "-1"], r"train.seed=-1 is invalid: allowed an integer >= 0", None),
    (["--schedule", "sigmoid"], r"schedule.kind='sigmoid' is invalid: allowed one of constant, warmup", None),
    (["--recon", "l1"], r"train.recon='l1' is invalid: allowed one of mse, bernoulli", None),
    (["--precision", "fp8"], r"train.precision='fp8' is invalid: allowed one of fp32, bf16", None),
    (["--latent-dim", "0"], r"model.latent_dim=0 is invalid: allowed an integer >= 1", None),
    (["--latent-dim", str(10**9)], r"model.latent_dim=1000000000 is invalid: allowed an integer >= 1 and <= 4096$",
     None),
    (["--image-size", "100000"], r"data.image_size=100000 is invalid: allowed an integer >= 8 and <= 1024$", None),
    (["--latent-dim", "4096", "--image-size", "1024"], r"the model and one batch need about [\d.e+]+ GiB but "
     r"[\d.e+]+ GiB is available on cpu \(model.latent_dim=4096, data.image_size=1024, .*allowed a smaller "
     r"--latent-dim", None),
    (["--image-size", "4"], r"data.image_size=4 is invalid: allowed an integer >= 8", None),
    (["--batch-size", "0"], r"train.batch_size=0 is invalid: allowed an integer >= 1", None),
    (["--batch-size", "100"], r"train.batch_size=100 is invalid for 64 training images: allowed at most 64", None),
    (["--max-train", "0"], r"data.max_train=0 is invalid: allowed None or an integer >= 1", None),
    (["--device", "tpu"], r"device='tpu' is invalid", None),
    ([], OUT_IS + r" is invalid: '[^']*run' is a file; allowed a folder", _file),
    (["--out", "{tmp}/run/sub"], r"run folder '[^']*run/sub' is invalid: '[^']*run' is a file", _file),
    ([], OUT_IS + r" is not writable \(Permission denied\): allowed a folder you can write to", _lock_denied),
    ([], OUT_IS + r" is in use by pid \d+ on .* since 2024-01-01.*: allowed one writer per folder", _locked),
    ([], r"checkpoint '[^']*checkpoint.pt' is unreadable \(truncated, empty or not a torch file\)",
     _garbage_checkpoint),
    (["--tensorboard", "{tmp}/file/tb"], r"--tensorboard folder [^ ]*file/tb lies under [^ ]*file, a file: "
     r"allowed a folder", _a_file),
    (["--lr", "0.01"], r"checkpoint '[^']*checkpoint.pt' was made with a different config",
     _finished_run),
    (["--preset", "fashion_mnist", "--root", "{tmp}/data"],
     r"Fashion-MNIST not found .*download=True \(DataConfig.download; --download on the command line\)", _empty_root),
    (["--lr", "1e30", "--max-train", "128"], r"non-finite loss or gradient at step \d+ \(epoch 0\).*"
     r"Likely cause: lr=1e\+30 is large: try lr <= 1e-3; no grad_clip: try grad_clip=1.0\.$", None),
    ([], r"disk full while writing [^ ]*run/checkpoint.pt$", _disk_full),
    ([], r"cannot write [^ ]*run: Permission denied; allowed a folder you can write to$", _write_denied),
    (["--out", ""], r"--out '' is invalid: allowed a folder path \(omit --out for the default\)$", None),
    (["--out", "{tmp}/" + "y" * 256], r"--out '[^']*'\.\.\. has a name of 256 bytes: allowed names of at most 255",
     None),
    (["--tensorboard", " "], r"--tensorboard ' ' is invalid: allowed a folder path", None),
    (["--out", "/proc/self"], r"run folder '/proc/self' is not writable \(new files cannot be made there\)", None),
    (["--out", "/proc/self/x/y"], r"run folder '/proc/self/x/y' cannot be created \(new entries cannot be made "
     r"there\): allowed a folder you can write to$", None),
    (["--tensorboard", "/proc/self/tb"], r"--tensorboard folder /proc/self/tb cannot be created in /proc/self \(new "
     r"entries cannot be made there\): allowed a folder you can create and write to$", None),
    (["--tensorboard", "{tmp}/tb/sub"], r"--tensorboard folder [^ ]*tb/sub cannot be created in [^ ]* \(Permission "
     r"denied\): allowed a folder you can create and write to$", _probe_denied),
    ([], OUT_IS + r" has a lock '[^']*run/.lock' that is a symbolic link \(to '[^']*gone'\): allowed a plain file"
     r".*; remove the link: rm [^ ]*run/.lock$", _dangling_lock),
    ([], OUT_IS + r" has a lock '[^']*run/.lock' that is not a file: .*remove it: rm -r [^ ]*run/.lock$",
     _lock_folder),
    ([], OUT_IS + r" has an unreadable lock '[^']*run/.lock' \(empty or not JSON, written 20\d\d-.*if no process "
     r"writes there, clear it: rm [^ ]*run/.lock$", _empty_lock),
    ([], r"VAELIB_MALLOC_TUNING='x' is invalid: allowed 1, true, on, yes \(tune, the default\) or 0", _malloc_typo),
]
REPORT_CASES = [
    (["--dataset", "svhn"], r"dataset='svhn' is invalid: allowed fashion_mnist, "),
    (["--budget", "huge"], r"budget='huge' is invalid: allowed tiny, small, full"),
    (["-p", "dataset", "shapes"], r"parameter 'dataset' cannot be set with -p: use --dataset"),
    (["-p", "epochz", "3"], r"parameter 'epochz' is declared by no notebook: allowed ablation_epochs, "),
    (["--seed", "-1"], r"train.seed=-1 is invalid"),
    (["--timeout", "0"], r"--timeout 0 is invalid: allowed seconds >= 1"),
    (["--out", "{tmp}/file"], r"--out '[^']*file' is a file: allowed a folder"),
    (["--out", "{tmp}/file/sub"], r"--out folder [^ ]*file/sub lies under [^ ]*file, a file: allowed a folder"),
    (["--out", ""], r"--out '' is invalid: allowed a folder path"),
    (["--out", "{tmp}/" + "x" * 300], r"--out '[^']*'\.\.\. has a name of 300 bytes: allowed names of at most 255"),
    (["--out", "/proc/self/reports"], r"--out folder /proc/self/reports cannot be created in /proc/self \(new entries "
     r"cannot be made there\): allowed a folder you can create and write to$"),
    (["--device", "tpu"], r"device='tpu' is invalid: allowed 'auto', 'cpu', 'cuda', 'cuda:N'"),
    (["-p", "image_size", "-3"], r"-p image_size -3 is invalid \(00_vae_from_scratch.ipynb declares image_size: "
     r"int\): allowed an integer >= 0$"),
    (["-p", "image_size", "4"], r"data.image_size=4 is invalid: allowed an integer >= 8"),
    (["-p", "seeds", "two"], r"-p seeds 'two' is invalid \((batchnorm|failure_modes|future_work|stability).ipynb "
     r"declares seeds: int\): allowed an integer > 0$"),
    (["-p", "seeds", "0"], r"-p seeds 0 is invalid .*allowed a value >= 2$"),  # the comment: (at least 2)
    (["-p", "betas", "[0.1, -1]"], r"-p betas \[0.1, -1\] is invalid .*allowed a non-empty JSON list of finite "
     r"numbers > 0"),
    (["-p", "retrain", "yes"], r"-p retrain 'yes' is invalid .*allowed true or false$"),
    (["-p", "clip_lr", "nan"], r"-p clip_lr 'nan' is invalid .*allowed a finite number > 0$"),
]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with a hash of its bytes: what 'nothing left behind' compares."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def _assert_one_clean_line(capsys, pattern: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("vaelib: error: ")
    assert re.search(pattern, err.strip()), err


@pytest.mark.parametrize("args, pattern, setup", [pytest.param(*c, id=" ".join(c[0]) or c[2].__name__)
                                                   for c in CASES])
def test_train_bad_input_is_one_line_exit_2_and_leaves_nothing(args, pattern, setup, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    if setup is not None:
        setup(tmp_path, out, monkeypatch)
    before = _snapshot(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main([*TRAIN, "--out", str(out), *args]) == 2
    _assert_one_clean_line(capsys, pattern)
    assert _snapshot(tmp_path) == before  # no checkpoint, no partial file, no lock, no empty folder


@pytest.mark.parametrize("args, pattern", [pytest.param(*c, id=" ".join(c[0])) for c in REPORT_CASES])
def test_report_bad_input_is_one_line_exit_2_and_leaves_nothing(args, pattern, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    before = _snapshot(tmp_path)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["report", "--dataset", "digits", "--budget", "tiny", "--out", str(tmp_path / "reports"), *args]) == 2
    _assert_one_clean_line(capsys, pattern)
    assert _snapshot(tmp_path) == before


def test_the_table_is_long_enough():
    assert len(CASES) + len(REPORT_CASES) >= 30


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how, tmp_path, monkeypatch):
    argv = [*TRAIN, "--out", str(tmp_path / "run"), "--lr", "inf"]
    if how == "flag":
        argv.append("--debug")
    else:
        monkeypatch.setenv("VAELIB_DEBUG", "1")
    with pytest.raises(ValueError, match="train.lr=inf is invalid"):
        main(argv)


def test_a_real_process_prints_one_line_and_exits_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vaelib", *TRAIN, "--out", str(tmp_path / "run"), "--beta", "1e300"],
                         capture_output=True, text=True, env={**os.environ, "VAELIB_DEBUG": "0"})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "vaelib: error: schedule.beta=1e+300 is invalid: allowed a value >= 0 and <= 1e+06\n"


def test_an_uncreatable_tensorboard_folder_is_one_line_in_a_real_process_before_training(tmp_path):
    """The command of the issue: /proc/self refuses new entries with a bare 'No such file or directory' once
    training began; now one line before any work, and no run folder is made."""
    out = subprocess.run([sys.executable, "-m", "vaelib", *TRAIN, "--tensorboard", "/proc/self/tb", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, env={**os.environ, "VAELIB_DEBUG": "0"})
    assert out.returncode == 2 and out.stdout == "" and not (tmp_path / "x").exists()
    assert out.stderr == ("vaelib: error: --tensorboard folder /proc/self/tb cannot be created in /proc/self (new "
                          "entries cannot be made there): allowed a folder you can create and write to\n")


def test_a_corrupt_history_is_rewritten_from_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    _finished_run(tmp_path, out, None)  # a finished run of the command's config (its default lr)
    (out / HISTORY).write_text('{"steps": [')  # damaged after the run finished
    assert main([*TRAIN, "--out", str(out)]) == 0  # nothing to train: metrics and figures are made again
    assert "wrote" in capsys.readouterr().out
    state = torch.load(out / CHECKPOINT, weights_only=True)
    assert json.loads((out / HISTORY).read_text()) == json.loads(json.dumps(state["history"]))
    assert not (out / ".lock").exists()


def test_batch_size_above_the_training_set_is_refused_by_fit(tiny_config, tiny_data):
    config = with_overrides(tiny_config, **{"train.batch_size": 65})
    with pytest.raises(ValueError, match=r"train.batch_size=65 is invalid for 64 training images: allowed at most 64"):
        fit(config, *tiny_data, device="cpu", quiet=True)
    _, history = fit(with_overrides(tiny_config, **{"train.batch_size": 64}), *tiny_data, device="cpu", quiet=True)
    assert len(history.steps) == 2  # one full batch per epoch


@pytest.mark.parametrize("overrides, says, not_says", [
    ({"train.schedule.beta": 50.0, "train.grad_clip": 1.0}, "beta=50 is large: try beta <= 10",
     ("lr", "free_bits", "grad_clip")),
    ({"train.free_bits": 20.0, "train.grad_clip": 1.0}, "free_bits=20 nats per dimension is large",
     ("beta", "lr", "grad_clip")),
    ({"train.lr": 0.1, "train.grad_clip": 1.0}, "lr=0.1 is large: try lr <= 1e-3", ("beta", "free_bits", "grad_clip")),
    ({"train.grad_clip": None}, "no grad_clip: try grad_clip=1.0", ("beta", "free_bits", "lr")),
    ({"train.grad_clip": 5.0}, "try a lower lr than 0.001 or a smaller grad_clip than 5", ("beta", "free_bits")),
])
def test_non_finite_advice_names_the_likely_cause(tiny_config, overrides, says, not_says):
    text = nonfinite_advice(with_overrides(tiny_config, **overrides))  # tiny_config: beta 1, lr 1e-3, no clip
    assert text.startswith(says)
    assert not any(word in text for word in not_says)


def test_memory_estimate_counts_the_real_parameters_and_refuses_with_the_figure():
    from vaelib.models.vae import VAE
    from vaelib.training.resources import check_memory, estimate_bytes, parameter_count

    for name in ("digits", "shapes", "celeba_small"):
        config = get_preset(name)
        assert parameter_count(config) == sum(p.numel() for p in VAE(config).parameters())
    config = get_preset("digits")
    bigger = with_overrides(config, **{"model.latent_dim": 1024})
    assert estimate_bytes(bigger) > estimate_bytes(config) > 4 * 4 * parameter_count(config)
    check_memory(config, torch.device("cpu"), available=2**30)  # 1 GiB is plenty
    with pytest.raises(ValueError, match=r"need about 0.0\d+ GiB but 0.000977 GiB is available on cpu"):
        check_memory(config, torch.device("cpu"), available=2**20)


def test_ctrl_c_is_a_normal_stop_in_one_line(monkeypatch, capsys):
    from vaelib import __main__ as cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_train", interrupted)
    assert cli.main(["train", "--preset", "digits"]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err and "run the same command to resume" in err


def test_ctrl_c_during_a_report_leaves_no_half_built_folder(monkeypatch, tmp_path):
    from vaelib.reporting import report

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_run_one", interrupted)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "notes.txt").write_text("the user's")
    with pytest.raises(KeyboardInterrupt):
        report.build_report("digits", "tiny", out_root=tmp_path / "reports", runs_dir=tmp_path / "runs", quiet=True)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["notes.txt"]  # no .building-* left


@pytest.mark.parametrize("argv, flag", [(["notebooks", ""], "notebooks folder ''"),
                                        (["timings", "--reports", ""], "--reports ''")])
def test_an_empty_folder_argument_is_refused_not_taken_as_the_current_folder(argv, flag, capsys, tmp_path,
                                                                             monkeypatch):
    from vaelib import __main__ as cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and "allowed a folder" in err
    assert list(tmp_path.iterdir()) == []  # nothing copied or written here


def test_train_writes_only_into_a_folder_it_made(tmp_path, capsys):
    """A user's folder holding files vaelib did not write, or another config's run, is refused before anything is
    written (--force writes there anyway); a run folder of this config is resumed as before."""
    from vaelib import __main__ as cli

    base = ["train", "--preset", "digits", "--epochs", "1", "--max-train", "64", "--quiet", "--device", "cpu"]
    mine = tmp_path / "mypictures"
    mine.mkdir()
    for name in ("samples.png", "metrics.json", "history.json"):
        (mine / name).write_text("the user's own")
    assert cli.main([*base, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds files vaelib did not write as a run" in err and "--force" in err
    assert all((mine / n).read_text() == "the user's own" for n in ("samples.png", "metrics.json", "history.json"))
    run = tmp_path / "run"
    assert cli.main([*base, "--out", str(run)]) == 0
    (run / "checkpoint.pt").unlink()  # another config's run whose checkpoint is gone
    before = (run / "metrics.json").read_bytes()
    assert cli.main([*base, "--lr", "0.002", "--beta", "4", "--out", str(run)]) == 2
    assert "holds another run" in capsys.readouterr().err and (run / "metrics.json").read_bytes() == before
    assert cli.main([*base, "--epochs", "2", "--out", str(run)]) == 0  # the same config: trained there again
    assert cli.main([*base, "--out", str(mine), "--force"]) == 0  # asked for: written there
    assert (mine / "checkpoint.pt").is_file()


def test_a_run_folder_marker_nested_too_deep_is_one_line_and_the_folder_is_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".vaelib-run.json").write_text("[" * 200_000)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and len(err) < 400, err
    assert ".vaelib-run.json cannot be read" in err and "--force" in err
    assert sorted(p.name for p in out.iterdir()) == [".vaelib-run.json"]
