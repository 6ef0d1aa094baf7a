"""One writer per run folder: a second lock is refused, a stale one taken over, and the lock never outlives its run."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from vaelib.__main__ import main
from vaelib.io.lock import LOCK, RunLocked, run_lock


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lock_names_its_owner_and_a_second_one_is_refused(tmp_path):
    with run_lock(tmp_path / "run") as path:
        owner = json.loads(path.read_text())
        assert path == tmp_path / "run" / LOCK
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["started"]
        folder = re.escape(str(tmp_path / "run"))
        with pytest.raises(RunLocked, match=rf"run folder '{folder}' is in use by pid {os.getpid()} on "
                                            rf"{socket.gethostname()} since .*: allowed one writer per folder"):
            with run_lock(tmp_path / "run"):
                pass
        assert json.loads(path.read_text()) == owner  # the refused writer left the lock alone
    assert not (tmp_path / "run").exists()  # made by the lock, empty: removed with it


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2024-01-01T00:00:00+00:00"}
    (tmp_path / LOCK).write_text(json.dumps(stale))
    with pytest.warns(UserWarning, match=rf"took over the stale lock .*pid {stale['pid']} .* is no longer running"):
        with run_lock(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists() and tmp_path.exists()  # a folder it did not make stays


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    other = {"pid": _dead_pid(), "host": "elsewhere.example", "started": "2024-01-01T00:00:00+00:00"}
    (tmp_path / LOCK).write_text(json.dumps(other))
    with pytest.raises(RunLocked, match=rf"is in use by pid {other['pid']} on elsewhere.example"):
        with run_lock(tmp_path):
            pass
    assert json.loads((tmp_path / LOCK).read_text()) == other


def test_the_lock_is_removed_after_an_exception(tmp_path):
    with pytest.raises(KeyError):
        with run_lock(tmp_path / "run"):
            (tmp_path / "run" / "checkpoint.pt").write_text("work")
            raise KeyError("boom")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt"]  # the work stays, the lock goes
    with run_lock(tmp_path / "run"):  # and the folder can be locked again
        pass


def test_a_second_train_process_is_refused_while_another_writes(tmp_path, capsys):
    out = tmp_path / "run"
    holder = textwrap.dedent(f"""
        import sys
        from vaelib.io.lock import run_lock
        with run_lock({str(out)!r}):
            print("locked", flush=True)
            sys.stdin.read()  # hold the lock until the test closes stdin
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"
        assert main(["train", "--preset", "digits", "--epochs", "1", "--max-train", "64", "--device", "cpu",
                     "--quiet", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err == (f"vaelib: error: run folder '{out}' is in use by pid {proc.pid} on {socket.gethostname()} "
                       f"since {json.loads((out / LOCK).read_text())['started']}: allowed one writer per folder; "
                       f"wait for it, use another folder, or delete '{out / LOCK}' if that process is gone\n")
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # the refused run wrote nothing
    finally:
        proc.communicate("")
    assert proc.returncode == 0 and not out.exists()


def test_the_run_cache_takes_the_lock(tiny_config, tiny_data, tmp_path):
    from vaelib.experiments.cache import cached_fit, run_dir

    with run_lock(run_dir(tiny_config, tmp_path)):
        with pytest.raises(RunLocked, match=r"is in use by pid .* \(waited 0.1 s\)"):
            cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True, wait=0.1)
    _, _, out = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True)
    assert (out / "checkpoint.pt").exists() and not (out / LOCK).exists()


def test_the_run_cache_waits_for_another_process_training_the_same_config(tiny_config, tiny_data, tmp_path):
    """Two notebooks, one config: the second waits for the first to let go of the run folder (then it loads
    what the first trained; here the first only held the lock, so it trains)."""
    from vaelib.experiments.cache import cached_fit, run_dir

    folder = run_dir(tiny_config, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from vaelib.io.lock import run_lock
        with run_lock({str(folder)!r}):
            print("locked", flush=True)
            time.sleep(1.5)
        print(time.time(), flush=True)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    _, history, out = cached_fit(tiny_config, *tiny_data, root=tmp_path, device="cpu", quiet=True, wait=60)
    released = float(holder.stdout.readline())
    assert holder.wait(10) == 0
    assert (out / "checkpoint.pt").stat().st_mtime >= released  # trained only once the holder had let go
    assert len(history.epochs) == tiny_config.train.epochs and not (out / LOCK).exists()


def test_a_lock_that_cannot_clear_by_itself_is_refused_without_waiting(tmp_path):
    import time

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "then"}))
    t0 = time.monotonic()
    with pytest.raises(RunLocked, match="in use by pid 1 on elsewhere"):
        with run_lock(folder, wait=30):
            pass
    assert time.monotonic() - t0 < 5  # another host's lock: refused at once, not after 30 s


def test_a_waiting_lock_says_whom_it_waits_for_once(tmp_path, capsys):
    with run_lock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=r"\(waited 0.3 s\)"):
            with run_lock(tmp_path / "run", wait=0.3, poll=0.1):
                pass
    err = capsys.readouterr().err
    assert err.count("vaelib: waiting for the lock: run folder") == 1 and f"pid {os.getpid()}" in err
    with pytest.raises(ValueError, match="wait=-1, poll=1.0 are invalid"):
        with run_lock(tmp_path / "run", wait=-1):
            pass


@pytest.mark.parametrize("owner", [{"pid": 10**30}, {"pid": 2**31}, {"pid": 1.5}, {"pid": -3}, {"pid": True},
                                   {"pid": 0}, "nested"])
def test_a_lock_vaelib_cannot_have_written_is_refused_in_one_line(tmp_path, owner):
    text = "[" * 200_000 + "]" * 200_000 if owner == "nested" else json.dumps({**owner, "host": socket.gethostname(),
                                                                               "started": "then"})
    (tmp_path / LOCK).write_text(text)
    with pytest.raises(RunLocked) as refused:
        with run_lock(tmp_path, wait=5.0):
            pass
    message = str(refused.value)
    assert "\n" not in message and f"rm {tmp_path / LOCK}" in message
    assert ("which no process can have" in message) if owner != "nested" else ("unreadable lock" in message)
