"""Nothing lost under faults: links at an output's name, a killed writer, a full disk, read-only outputs."""

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from vaelib.__main__ import main
from vaelib.evaluation.plots import save_figure
from vaelib.io.files import atomic_write_bytes, clean_temporaries, save_json
from vaelib.io.lock import LOCK, run_lock

TRAIN = ["train", "--preset", "digits", "--epochs", "1", "--max-train", "64", "--device", "cpu", "--quiet"]


def test_a_link_at_the_destination_is_replaced_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    save_json(link, {"a": 1})
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text().startswith("{")


def test_train_never_writes_through_a_link_planted_in_its_run_folder(tmp_path, capsys):
    out, victim = tmp_path / "run", tmp_path / "victim"
    victim.write_bytes(b"precious")
    assert main([*TRAIN, "--out", str(out)]) == 0  # the run's own folder, then links planted in it
    for name in ("samples.png", "metrics.json", "history.json"):
        (out / name).unlink()
        (out / name).symlink_to(victim)
    assert main([*TRAIN, "--out", str(out), "--epochs", "2"]) == 0
    assert victim.read_bytes() == b"precious"
    for name in ("samples.png", "metrics.json", "history.json"):
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 0
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_figure_is_written_atomically_in_the_format_of_its_suffix(tmp_path):
    fig = plt.figure()
    try:
        assert save_figure(fig, tmp_path / "a" / "f.png").read_bytes()[:4] == b"\x89PNG"
        assert save_figure(fig, tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    finally:
        plt.close(fig)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "f.pdf", "f.png"]  # no temporary left


def test_a_folder_or_a_name_under_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"'[^']*dir' is a folder: allowed a file name"):
        save_json(tmp_path / "dir", {})
    with pytest.raises(ValueError, match=r"'[^']*file/x.json' cannot be written: '[^']*file' is a file"):
        save_json(tmp_path / "file" / "x.json", {})


def test_a_replaced_file_keeps_its_mode(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"old")
    path.chmod(0o444)
    atomic_write_bytes(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o444


def test_a_resumed_read_only_checkpoint_stays_read_only(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    (out / "checkpoint.pt").chmod(0o444)
    assert main([*TRAIN[:3], "--epochs", "2", *TRAIN[5:], "--out", str(out)]) == 0
    assert stat.S_IMODE((out / "checkpoint.pt").stat().st_mode) == 0o444


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from vaelib.io.files import atomic_write_bytes

    def write(f):
        f.write(b"half a checkpoint")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # killed mid-save: no except or finally runs

    atomic_write_bytes(sys.argv[1], write)
""")


def test_a_writer_killed_mid_save_leaves_the_old_file_and_its_temporary_is_cleaned_next_run(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    path.write_bytes(b"the last good checkpoint")
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    left = list(path.parent.glob(".checkpoint.pt.*.tmp"))
    assert len(left) == 1 and left[0].read_bytes() == b"half a checkpoint"
    assert path.read_bytes() == b"the last good checkpoint"
    with run_lock(path.parent):  # the next run's lock: no live writer can own a temporary now
        assert not list(path.parent.glob(".*.tmp"))
    assert path.read_bytes() == b"the last good checkpoint"


def test_clean_temporaries_removes_only_what_vaelib_wrote(tmp_path):
    mine = ".checkpoint.pt.vaelib-abc123.tmp"
    theirs = [".keep", ".notes.tmp", "x.tmp", ".thesis.draft.tmp", ".cache.v2.tmp", ".checkpoint.pt.abc123.tmp"]
    for name in (mine, *theirs):
        (tmp_path / name).write_text("x")
    assert [p.name for p in clean_temporaries(tmp_path)] == [mine]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)  # a user's own dot files stay


def test_every_temporary_carries_the_vaelib_mark(tmp_path):
    seen = []

    def write(f):
        seen.extend(p.name for p in tmp_path.iterdir())
        f.write(b"x")

    atomic_write_bytes(tmp_path / "metrics.json", write)
    assert len(seen) == 1 and seen[0].startswith(".metrics.json.vaelib-") and seen[0].endswith(".tmp")


@contextmanager
def full_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs filled to the last byte (needs root and mount; skipped with the reason otherwise)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'not root'}): the full-disk case "
                    "is covered by the monkeypatched test beside this one")
    try:
        (mnt / "run").mkdir()
        filler = mnt / "filler"
        with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush on close
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as err:
                assert err.errno == errno.ENOSPC
        yield mnt, filler
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_at_lock_time_leaves_no_lock(tmp_path):
    with full_tmpfs(tmp_path) as (mnt, filler):
        with pytest.raises(OSError) as err, run_lock(mnt / "run"):
            pass
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(mnt / "run" / LOCK)
        assert sorted(os.listdir(mnt / "run")) == []  # neither a lock nor its temporary
        filler.unlink()  # space freed: the next run takes the lock at once
        with run_lock(mnt / "run") as lock:
            assert lock.exists()
        assert not lock.exists()


def test_a_full_disk_while_writing_a_figure_names_the_figure(tmp_path):
    with full_tmpfs(tmp_path) as (mnt, _):
        fig = plt.figure()
        try:
            with pytest.raises(OSError) as err:
                save_figure(fig, mnt / "run" / "samples.png")
        finally:
            plt.close(fig)
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(mnt / "run" / "samples.png")
        assert os.listdir(mnt / "run") == []


def test_a_failed_lock_write_leaves_no_lock_even_without_a_small_disk(tmp_path, monkeypatch):
    import vaelib.io.lock

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(vaelib.io.lock.os, "fsync", full)
    with pytest.raises(OSError, match="disk full while writing") as err, run_lock(tmp_path / "run"):
        pass
    assert err.value.filename == str(tmp_path / "run" / LOCK)
    assert not (tmp_path / "run").exists()  # the folder it made is gone again, with nothing in it
    monkeypatch.setattr(vaelib.io.lock.os, "fsync", real)
    with run_lock(tmp_path / "run"):
        pass


def test_the_cli_names_the_full_disk_figure(tmp_path, monkeypatch, capsys):
    import vaelib.evaluation.plots

    def full(fig, path, dpi=120):
        raise OSError(errno.ENOSPC, "disk full while writing", str(path))

    monkeypatch.setattr(vaelib.evaluation.plots, "save_figure", full)
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"vaelib: error: disk full while writing {out / 'reconstructions.png'}\n"


@pytest.mark.parametrize("args, message", [
    (["--rounds", "0"], "--rounds 0 is invalid: allowed an integer >= 1"),
    (["--steps", "0"], "--steps 0 is invalid: allowed an integer >= 1"),
    (["--batch-sizes", "1000000000000"], "--batch-sizes item '1000000000000' is invalid: allowed integers in "
                                         "[1, 65536] or 'best'"),
    (["--batch-sizes", "64,x"], "--batch-sizes item 'x' is invalid"),
    (["--out", ""], "--out '' is invalid: allowed a folder path"),
])
def test_bench_refuses_before_any_worker_starts(args, message, tmp_path, capsys, monkeypatch):
    import vaelib.perf.bench

    def no_workers(*a, **k):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(vaelib.perf.bench, "Workers", no_workers)
    assert main(["bench", "--preset", "fashion_mnist", "--out", str(tmp_path / "b"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaelib: error: {message}") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_bench_refuses_a_batch_that_does_not_fit_in_memory(tmp_path, capsys, monkeypatch):
    import vaelib.training.resources

    monkeypatch.setattr(vaelib.training.resources, "available_bytes", lambda device: 2**20)  # 1 MiB free
    assert main(["bench", "--preset", "fashion_mnist", "--batch-sizes", "4096", "--out", str(tmp_path / "b")]) == 2
    assert "GiB is available on cpu" in capsys.readouterr().err
