"""torchrun with 2 CPU processes (gloo): identical weights on both ranks, equal to one process with the same batch."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from vaelib.config import with_overrides
from vaelib.training.trainer import fit

SCRIPT = textwrap.dedent("""
    import sys, torch
    from vaelib.training import distributed
    from vaelib.config import Config
    from vaelib.training.trainer import fit
    device = distributed.init("cpu")
    rank, world = distributed.world()
    train, val = torch.load(sys.argv[1])
    model, history = fit(Config.from_json(open(sys.argv[2]).read()), train, val, device=device, quiet=True,
                         out_dir=sys.argv[3])
    torch.save({"model": model.state_dict(), "history": history}, f"{sys.argv[3]}/rank{rank}.pt")
""")


def _torchrun(tmp_path, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_two_ranks_match_one_process(tiny_config, tiny_data, tmp_path):
    config = with_overrides(tiny_config, **{"train.epochs": 2, "train.batch_size": 16})
    torch.save(tiny_data, tmp_path / "data.pt")
    (tmp_path / "config.json").write_text(config.to_json())
    (tmp_path / "run.py").write_text(SCRIPT)
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun(tmp_path, "run.py", str(tmp_path / "data.pt"), str(tmp_path / "config.json"), str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for k in r0["model"]:
        assert torch.equal(r0["model"][k], r1["model"][k]), k  # both ranks hold identical weights
    single, history = fit(config, *tiny_data, device="cpu", quiet=True)
    for k, v in single.state_dict().items():
        assert torch.allclose(r0["model"][k], v, rtol=1e-4, atol=1e-5), k
    # all-reduced gradients sum in another order than one process's: equal up to fp32 rounding (rounding both
    # to 2 decimals instead would fail whenever a loss sits near a rounding boundary)
    assert [r["total"] for r in r0["history"].steps] == pytest.approx([r["total"] for r in history.steps],
                                                                          rel=1e-4)
    assert r0["history"].options["world_size"] == 2
    assert (out / "checkpoint.pt").exists()  # written by rank 0 only, atomically


def test_torchrun_cli_trains_and_resumes(tmp_path):
    args = ["-m", "vaelib", "train", "--preset", "digits", "--epochs", "1", "--max-train", "256",
            "--device", "cpu", "--quiet", "--out", str(tmp_path / "run")]
    proc = _torchrun(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # only rank 0 reports and writes metrics
    assert (tmp_path / "run" / "metrics.json").exists()
    args[args.index("--epochs") + 1] = "2"
    proc = _torchrun(tmp_path, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 2 and len(state["history"]["epochs"]) == 2
