import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from vaelib.config import BetaSchedule, with_overrides
from vaelib.data.datasets import ImageSplit
from vaelib.runtime import resolve_device
from vaelib.training.checkpoint import load_checkpoint, read_checkpoint
from vaelib.training.history import EPOCH_FIELDS, RECORD_FIELDS, STEP_FIELDS, History
from vaelib.training.trainer import NonFiniteLossError, evaluate, fit


def test_loss_falls_on_a_fixed_batch(tiny_config, tiny_data):
    train, val = tiny_data
    c = with_overrides(tiny_config, **{"train.epochs": 60, "train.batch_size": 64, "train.lr": 3e-3})
    _, h = fit(c, train, val, quiet=True, device="cpu")
    first, last = h.steps[0]["total"], h.steps[-1]["total"]
    assert len(h.steps) == 60
    assert last < 0.5 * first, (first, last)


def test_history_has_every_step_and_epoch(tiny_config, tiny_data):
    _, h = fit(tiny_config, *tiny_data, quiet=True, device="cpu")
    assert [r["step"] for r in h.steps] == list(range(8))  # 64 images / 16 per batch * 2 epochs
    assert all(set(r) == set(STEP_FIELDS) for r in h.steps)  # exactly the documented Step fields
    assert all(set(e) == set(EPOCH_FIELDS + RECORD_FIELDS) for e in h.epochs)  # threads: how each epoch ran
    assert h.column("val_total") == [e["val_total"] for e in h.epochs]
    assert History.from_dict(json.loads(json.dumps(h.to_dict()))) == h  # survives its JSON form
    assert [e["epoch"] for e in h.epochs] == [0, 1]
    with pytest.raises(ValueError, match="val_kl_used.*only for runs with free bits"):
        h.column("val_kl_used")


def test_free_bits_runs_record_the_kl_term_as_optimised(tiny_config, tiny_data):
    """With free bits, each epoch also records val_kl_used (every dimension floored at the free bits), the term the
    convergence rule then judges; val_total stays the true negative ELBO at beta."""
    from vaelib.experiments.evidence import objective_curve

    config = with_overrides(tiny_config, **{"train.free_bits": 0.5})
    _, h = fit(config, *tiny_data, quiet=True, device="cpu")
    floor = 0.5 * config.model.latent_dim
    for e in h.epochs:
        assert set(e) == set(EPOCH_FIELDS + RECORD_FIELDS) | {"val_kl_used"}
        assert e["val_kl_used"] >= floor - 1e-4 and e["val_kl_used"] >= e["val_kl"] - 1e-4
        assert e["val_total"] == pytest.approx(e["val_recon"] + e["beta"] * e["val_kl"], rel=1e-5)
    beta = h.epochs[-1]["beta"]
    assert objective_curve(h).tolist() == pytest.approx([e["val_recon"] + beta * e["val_kl_used"] for e in h.epochs])
    assert History.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert all(e["images_per_sec"] > 0 and e["val_total"] > 0 for e in h.epochs)
    assert h.options["device"] == "cpu"


def test_history_rejects_unknown_fields_and_malformed_json():
    with pytest.raises(ValueError, match="field 'val_loss' is invalid: allowed epoch, beta"):
        History().column("val_loss")
    with pytest.raises(ValueError, match="^history.json: epochs is missing: expected a list of epoch rows$"):
        History.from_dict({"steps": []}, "history.json")
    with pytest.raises(ValueError, match=r"^history: epochs\[0\].seconds is missing: expected a number$"):
        History.from_dict({"steps": [], "epochs": [{k: 0 for k in EPOCH_FIELDS if k != "seconds"}]})
    with pytest.raises(ValueError, match=r"^h.json: steps\[1\] is an int \(2\): expected a dict of the step's fields"):
        History.from_dict({"steps": [{k: 0 for k in STEP_FIELDS}, 2], "epochs": []}, "h.json")
    with pytest.raises(ValueError, match=r"^c.pt: history.epochs\[0\].beta is a str \('1'\): expected a number$"):
        History.from_dict({"steps": [], "epochs": [{**{k: 0 for k in EPOCH_FIELDS}, "beta": "1"}]}, "c.pt", "history")


def test_sync_every_does_not_change_the_history(tiny_config, tiny_data):
    _, every = fit(with_overrides(tiny_config, **{"train.sync_every": 1}), *tiny_data, quiet=True, device="cpu")
    _, rarely = fit(with_overrides(tiny_config, **{"train.sync_every": 7}), *tiny_data, quiet=True, device="cpu")
    assert every.steps == rarely.steps and every.column("val_total") == rarely.column("val_total")


def test_same_seed_same_history(tiny_config, tiny_data):
    _, h1 = fit(tiny_config, *tiny_data, quiet=True, device="cpu")
    _, h2 = fit(tiny_config, *tiny_data, quiet=True, device="cpu")
    strip = [{k: v for k, v in r.items()} for r in h1.steps]
    assert strip == h2.steps
    other = with_overrides(tiny_config, **{"train.seed": 1})
    _, h3 = fit(other, *tiny_data, quiet=True, device="cpu")
    assert h3.steps[0]["total"] != h1.steps[0]["total"]


def test_beta_follows_the_schedule(tiny_config, tiny_data):
    c = dataclasses.replace(tiny_config, train=dataclasses.replace(
        tiny_config.train, epochs=3, schedule=BetaSchedule("warmup", beta=0.5, warmup_epochs=1)))
    _, h = fit(c, *tiny_data, quiet=True, device="cpu")
    assert [r["beta"] for r in h.steps] == [0.0] * 4 + [0.5] * 8


def test_gradient_clipping_records_pre_clip_norm(tiny_config, tiny_data):
    c = with_overrides(tiny_config, **{"train.grad_clip": 1e-3})
    _, h = fit(c, *tiny_data, quiet=True, device="cpu")
    assert all(r["grad_norm"] > 1e-3 for r in h.steps)  # the norm before clipping, not after


def test_checkpoint_is_self_describing(tiny_config, tiny_data, tmp_path):
    model, h = fit(tiny_config, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
    state = read_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 2 and state["seed"] == 0
    assert set(state["versions"]) >= {"torch", "torchvision", "vaelib", "python", "git_commit"}
    rebuilt, _ = load_checkpoint(tmp_path / "checkpoint.pt")
    x = tiny_data[1].float() / 255
    assert torch.equal(rebuilt.reconstruct(x), model.reconstruct(x))
    assert json.loads((tmp_path / "history.json").read_text())["steps"] == h.steps
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_run_resumes_to_the_same_history(tiny_config, tiny_data, tmp_path):
    c = with_overrides(tiny_config, **{"train.epochs": 4})
    _, full = fit(c, *tiny_data, quiet=True, device="cpu")

    def interrupt(epoch, model, history):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(c, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path, callbacks=[interrupt])
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2
    _, resumed = fit(c, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
    assert resumed.steps == full.steps
    assert [e["val_total"] for e in resumed.epochs] == [e["val_total"] for e in full.epochs]


def test_each_epoch_records_its_thread_count_so_a_resumed_run_on_other_threads_says_so(tiny_config, tiny_data,
                                                                                        tmp_path):
    """options["threads"] is the count the run started with; a run resumed on another count records, in each epoch
    row, the threads that epoch ran on (read back from history.json and the checkpoint), and nothing else changes:
    the steps are those of the run made on one count throughout."""
    c = with_overrides(tiny_config, **{"train.epochs": 2})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, straight = fit(c, *tiny_data, quiet=True, device="cpu")
        fit(with_overrides(c, **{"train.epochs": 1}), *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
        torch.set_num_threads(2)
        _, resumed = fit(c, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
    finally:
        torch.set_num_threads(before)
    assert straight.column("threads") == [1, 1] and resumed.options["threads"] == 1
    assert resumed.column("threads") == [1, 2]
    assert History.from_dict(json.loads((tmp_path / "history.json").read_text())).column("threads") == [1, 2]
    assert [e["threads"] for e in read_checkpoint(tmp_path / "checkpoint.pt")["history"]["epochs"]] == [1, 2]
    assert resumed.steps[:4] == straight.steps[:4]  # the first epoch, trained on one thread in both
    old = {**resumed.to_dict(), "epochs": [{k: v for k, v in e.items() if k != "threads"} for e in resumed.epochs]}
    with pytest.raises(ValueError, match=r"field 'threads' is invalid for this run: it is recorded only by a later "
                                         r"vaelib"):
        History.from_dict(old).column("threads")  # a history of an earlier vaelib still reads
    bad = {**resumed.to_dict(), "epochs": [{**resumed.epochs[0], "threads": 0}]}
    with pytest.raises(ValueError, match=r"^h.json: epochs\[0\].threads is an int \(0\): expected an integer >= 1"):
        History.from_dict(bad, "h.json")


def test_a_callback_sees_the_model_and_history_and_can_stop_the_run(tiny_config, tiny_data, tmp_path):
    c = with_overrides(tiny_config, **{"train.epochs": 5})
    seen = []

    def stop_at_1(epoch, model, history):
        return epoch == 1

    def record(epoch, model, history):
        seen.append((epoch, len(history.epochs), model.training))

    model, h = fit(c, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path, callbacks=[stop_at_1, record])
    assert len(h.epochs) == 2 and seen == [(0, 1, True), (1, 2, True)]  # both ran at epoch 1, then it stopped
    assert read_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 2


def test_resume_refuses_a_different_config(tiny_config, tiny_data, tmp_path):
    fit(tiny_config, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
    other = with_overrides(tiny_config, **{"train.lr": 1e-2})
    with pytest.raises(ValueError, match="was made with a different config"):
        fit(other, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)


def test_a_cyclic_run_is_resumed_only_at_the_length_its_cycles_were_laid_over(tiny_config, tiny_data, tmp_path):
    """beta of a cyclic schedule depends on the total steps: a 2-epoch run resumed as a 4-epoch one would hold
    steps of two different schedules under one label; a linear one (absolute anneal_steps) may grow."""
    cyclic = with_overrides(tiny_config, **{"train.epochs": 2, "train.schedule": {"kind": "cyclic", "beta": 1.0,
                                                                                  "cycles": 2, "ratio": 0.5}})
    fit(cyclic, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"cyclic beta schedule laid over 2 epochs; with --epochs 4 .*allowed "
                                         r"--epochs 2"):
        fit(with_overrides(cyclic, **{"train.epochs": 4}), *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "c")
    linear = with_overrides(tiny_config, **{"train.epochs": 2, "train.schedule": {"kind": "linear", "beta": 1.0,
                                                                                  "anneal_steps": 3}})
    fit(linear, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "l")
    _, history = fit(with_overrides(linear, **{"train.epochs": 3}), *tiny_data, quiet=True, device="cpu",
                     out_dir=tmp_path / "l")
    assert len(history.epochs) == 3


def test_killed_process_leaves_a_loadable_checkpoint(tiny_config, tiny_data, tmp_path):
    """SIGKILL during training: the checkpoint on disk is the last complete epoch's, never a torn file."""
    torch.save(tiny_data, tmp_path / "data.pt")
    c = with_overrides(tiny_config, **{"train.epochs": 10_000})
    script = textwrap.dedent(f"""
        import torch
        from vaelib.config import Config
        from vaelib.training.trainer import fit
        train, val = torch.load({str(tmp_path / 'data.pt')!r})
        fit(Config.from_json({c.to_json()!r}), train, val, quiet=True, device="cpu", out_dir={str(tmp_path)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    ckpt = tmp_path / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and read_checkpoint(ckpt)["epoch"] >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "training process ended early"
        proc.kill()  # SIGKILL: no chance to clean up
    finally:
        proc.wait()
    state = read_checkpoint(ckpt)
    assert state["epoch"] >= 3 and len(state["history"]["epochs"]) == state["epoch"]
    model, _ = load_checkpoint(ckpt)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # The killed run resumes: one more epoch continues from the saved one.
    _, h = fit(with_overrides(c, **{"train.epochs": state["epoch"] + 1}), *tiny_data, quiet=True, device="cpu",
               out_dir=tmp_path)
    assert len(h.epochs) == state["epoch"] + 1
    assert h.steps[: len(state["history"]["steps"])] == state["history"]["steps"]


def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(tiny_config, tiny_data, tmp_path, monkeypatch):
    fit(tiny_config, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "run")
    # fit refuses NaN images (test_fit_refuses_bad_arguments_and_images_in_one_line): let them through here, to
    # reach the loop's guard as a loss that goes non-finite would
    monkeypatch.setattr("vaelib.models.base.check_pixels", lambda images, subject: None)
    good = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    c = with_overrides(tiny_config, **{"train.epochs": 3})
    bad_train = tiny_data[0].float() / 255
    bad_train[5] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss or gradient at step \d+ \(epoch 2\)"):
        # epochs 0-1 come from the good checkpoint; the corrupted data poisons epoch 2
        fit(c, bad_train, tiny_data[1], quiet=True, device="cpu", out_dir=tmp_path / "run")
    after = read_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert after["epoch"] == good["epoch"] == 2
    for k, v in good["model"].items():
        assert torch.equal(v, after["model"][k])


def test_device_and_data_errors(tiny_config, tiny_data):
    with pytest.raises(ValueError, match="device='tpu' is invalid"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match=r"train images of shape \(4, 3, 16, 16\) are invalid"):
        fit(tiny_config, torch.zeros(4, 3, 16, 16, dtype=torch.uint8), tiny_data[1], quiet=True, device="cpu")


class _Trained(Exception):
    """Raised in place of fit's first epoch: the arguments got that far."""


def test_fit_refuses_bad_arguments_and_images_in_one_line(tiny_config, tiny_data, monkeypatch):
    """A config given as a dict, data or callbacks of the wrong kind, and images of another dtype, outside [0, 1]
    or not finite are refused in one line naming the argument, before any epoch; uint8, and floats in [0, 1] of
    any precision, train."""
    def first_epoch(*args):
        raise _Trained

    monkeypatch.setattr("vaelib.training.trainer._epoch", first_epoch)
    train, val = tiny_data
    floats = train.float() / 255
    nan, inf = floats.clone(), floats.clone()
    nan[5, 0, 3, 3], inf[0, 0, 0, 0] = float("nan"), -float("inf")
    allowed = r"allowed uint8 \(0..255\) or floating point in \[0, 1\]"
    for change, message in [
        ({"config": tiny_config.to_dict()}, r"^config=<dict of 4 keys> is invalid: allowed a vaelib Config "
                                            r"\(Config.from_dict\(d\) converts a dict of its fields"),
        ({"train": train.tolist()}, r"^train=<list of 64 items> is invalid: allowed None \(loaded from config.data\), "
                                    r"an ImageSplit, or a uint8 or float torch tensor \(N, C, H, W\)"),
        ({"val": val.numpy()}, r"^val=<ndarray uint8 \(16, 1, 16, 16\)> is invalid: .*torch.from_numpy\(a\) converts"),
        ({"val": ImageSplit(val.numpy(), None, None)}, r"^val.images=<ndarray uint8 \(16, 1, 16, 16\)> is invalid"),
        ({"callbacks": [5]}, r"^callbacks=\[5\] is invalid: allowed a list of callables cb\(epoch, model, history\)"),
        ({"callbacks": print}, r"^callbacks=<built-in function print> is invalid: allowed a list of callables"),
        ({"stop": 5}, r"^stop=5 is invalid: allowed None or a callable stop\(history\) -> bool$"),
        ({"train": train.float()}, rf"^train images with values in \[0, 255\] are invalid: {allowed} \(x / 255"),
        ({"train": train.long()}, rf"^train images of dtype torch.int64 are invalid: {allowed}"),
        ({"val": val.bool()}, rf"^val images of dtype torch.bool are invalid: {allowed}"),
        ({"train": nan}, rf"^train images holding NaN or inf are invalid: {allowed}, every value finite$"),
        ({"val": inf}, rf"^val images holding NaN or inf are invalid: {allowed}, every value finite$"),
    ]:
        args = {"config": tiny_config, "train": train, "val": val, **change}
        with pytest.raises(ValueError, match=message) as err:
            fit(args.pop("config"), args.pop("train"), args.pop("val"), quiet=True, device="cpu", **args)
        assert "\n" not in str(err.value)
    for good in (floats, floats.double(), floats.bfloat16(), ImageSplit(train, None, None)):
        with pytest.raises(_Trained):
            fit(tiny_config, good, val, quiet=True, device="cpu", callbacks=(print,))


def test_evaluate_is_deterministic_and_in_nats(tiny_config, tiny_data):
    model, _ = fit(tiny_config, *tiny_data, quiet=True, device="cpu")
    a = evaluate(model, tiny_data[1], tiny_config)
    b = evaluate(model, tiny_data[1], tiny_config)
    assert a == b and a["total"] == pytest.approx(a["recon"] + tiny_config.train.schedule.beta * a["kl"], rel=1e-5)


def test_float_images_in_unit_range_are_not_rescaled(tiny_config, tiny_data):
    train_u8, val_u8 = tiny_data
    _, h_u8 = fit(tiny_config, train_u8, val_u8, quiet=True, device="cpu")
    _, h_f = fit(tiny_config, train_u8.float() / 255, val_u8.float() / 255, quiet=True, device="cpu")
    assert [r["total"] for r in h_f.steps] == pytest.approx([r["total"] for r in h_u8.steps], rel=1e-5)


def test_non_finite_error_carries_step_and_history(tiny_config, tiny_data, monkeypatch):
    monkeypatch.setattr("vaelib.models.base.check_pixels", lambda images, subject: None)  # let NaN images through
    bad = tiny_data[0].float() / 255
    bad[:] = float("nan")
    with pytest.raises(NonFiniteLossError) as err:
        fit(tiny_config, bad, tiny_data[1], quiet=True, device="cpu")
    assert err.value.step == 0 and err.value.epoch == 0 and err.value.history.steps == []


def test_weights_broken_by_the_last_step_are_caught_before_the_checkpoint(tiny_config, tiny_data, tmp_path):
    # one step per epoch: the step's own loss is finite (read before the update), the update is not
    c = with_overrides(tiny_config, **{"train.epochs": 1, "train.batch_size": 64, "train.lr": 1e30})
    with pytest.raises(NonFiniteLossError, match=r"non-finite validation loss after epoch 0.*lr=1e\+30 is large"):
        fit(c, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()  # no checkpoint of broken weights


def test_bf16_path_keeps_the_loss_in_fp32(tiny_config, tiny_data, monkeypatch):
    # The bf16 branch (CUDA, or CPUs with avx512_bf16/AMX) runs on any CPU when allowed: autocast around the
    # model only, the ELBO and the optimizer state in fp32. Here it is slow but its logic is the same.
    monkeypatch.setenv("VAELIB_CPU_BF16", "1")  # as on a CPU with avx512_bf16, whatever this one has
    config = with_overrides(tiny_config, **{"train.epochs": 2})
    _, fp32 = fit(config, *tiny_data, device="cpu", quiet=True)
    model, history = fit(with_overrides(config, **{"train.precision": "bf16"}), *tiny_data, device="cpu", quiet=True)
    assert history.options["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    steps = history.steps
    assert all(torch.isfinite(torch.tensor([s["total"], s["kl"], s["grad_norm"]])).all() for s in steps)
    assert steps[-1]["total"] < steps[0]["total"]  # it still learns
    first, first_fp32 = steps[0]["total"], fp32.steps[0]["total"]
    assert first != first_fp32  # autocast did run the model in bf16 ...
    assert first == pytest.approx(first_fp32, rel=0.02)  # ... and the loss, summed in fp32, stays close


def test_bf16_is_refused_where_it_would_be_slow(tiny_config, tiny_data, monkeypatch):
    monkeypatch.setenv("VAELIB_CPU_BF16", "0")  # as on a CPU without avx512_bf16, whatever this one has
    with pytest.raises(ValueError, match="precision='bf16' is invalid on cpu: this device has no fast bf16"):
        fit(with_overrides(tiny_config, **{"train.precision": "bf16"}), *tiny_data, device="cpu", quiet=True)


def test_resume_hands_the_generator_a_cpu_state(tiny_config, tiny_data, tmp_path, monkeypatch):
    # torch.Generator.set_state takes a CPU ByteTensor on every device; a checkpoint mapped to CUDA must not
    # pass its (then CUDA) tensor straight through. Checked here with a generator that records what it got.
    import vaelib.training.trainer as train

    fit(tiny_config, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True)
    state = read_checkpoint(tmp_path / "checkpoint.pt")

    class Mapped(torch.Tensor):  # stands for the CUDA tensor torch.load(map_location="cuda") would give
        def cpu(self):
            return state["generator"]

    mapped = state["generator"].as_subclass(Mapped)
    monkeypatch.setattr(train, "read_checkpoint", lambda path, map_location: {**state, "generator": mapped})
    got = []

    class Recorder:
        def get_state(self):  # the size the checkpoint's state is checked against
            return torch.Generator().get_state()

        def set_state(self, t):
            got.append(t)

    model = train.build_model(tiny_config)
    opt = train._optimizer(model, tiny_config, torch.device("cpu"))
    train._resume(tmp_path / "checkpoint.pt", tiny_config, model, opt, Recorder(), torch.device("cuda"))
    assert len(got) == 1 and type(got[0]) is torch.Tensor and got[0].device.type == "cpu"  # .cpu() was called


def test_stop_tol_stops_at_convergence_and_a_rerun_loads_instead_of_training_on(tiny_config, tiny_data, tmp_path):
    from vaelib.experiments.evidence import MIN_EPOCHS, StopWhenConverged, convergence, stopped

    full = with_overrides(tiny_config, **{"train.epochs": 40})
    _, every = fit(full, *tiny_data, device="cpu", quiet=True)
    early = with_overrides(full, **{"train.stop_tol": 0.2})
    with pytest.raises(ValueError, match=r"train.stop_tol=0.2 needs a stop rule: allowed stop_tol=0, or fit"):
        fit(early, *tiny_data, device="cpu", quiet=True)  # refused before any step: never silently trained on
    _, history = fit(early, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True, stop=StopWhenConverged(early))
    n = len(history.epochs)
    assert MIN_EPOCHS <= n < 40 and convergence(history, 0.2)["converged"]
    per_epoch = len(every.steps) // 40
    prefix = dataclasses.replace(every, epochs=every.epochs[:n - 1], steps=every.steps[:(n - 1) * per_epoch])
    assert not convergence(prefix, 0.2)["converged"]  # it stopped at the first epoch that converged
    assert history.steps == every.steps[:len(history.steps)]  # the same run as without stop_tol, cut short
    _, again = fit(early, *tiny_data, device="cpu", out_dir=tmp_path, quiet=True,  # resumes: already finished
                   stop=StopWhenConverged(early))
    assert again == history and stopped(again, early)


def test_stop_tol_waits_for_the_final_beta_and_refuses_cyclic(tiny_config):
    from vaelib.experiments.evidence import stopped
    from vaelib.training.history import History

    warm = with_overrides(tiny_config, **{"train.stop_tol": 0.5, "train.schedule.kind": "warmup",
                                          "train.schedule.beta": 1.0, "train.schedule.warmup_epochs": 30})
    def settled(beta):  # learned in the first epochs, flat since
        return [{"epoch": i, "beta": beta, "val_total": v, "val_recon": v, "val_kl": 0.0}
                for i, v in enumerate([30.0, 20.0, 15.0] + [10.0] * 7)]

    during = History(epochs=settled(0.0))
    assert not stopped(during, warm)  # settled, but still at beta_start: the warmup is not over
    after = History(epochs=settled(1.0))
    assert stopped(after, warm) and not stopped(after, tiny_config)  # stop_tol = 0: never stops early
    frozen = History(epochs=[{**e, "val_total": 10.0, "val_recon": 10.0} for e in after.epochs])
    assert not stopped(frozen, warm)  # flat from the first epoch: frozen, so it trains on to its cap
    longer = with_overrides(warm, **{"train.epochs": 8, "train.min_epochs": 7})
    assert not stopped(History(epochs=after.epochs[:6]), longer)  # converged, but before min_epochs: train on
    assert stopped(History(epochs=after.epochs[:7]), longer)
    with pytest.raises(ValueError, match=r"train.min_epochs=9 is invalid: allowed an integer >= 0 and <= train.epochs"):
        with_overrides(longer, **{"train.min_epochs": 9})
    with pytest.raises(ValueError, match="train.stop_tol=0.1 is invalid: allowed 0 with a cyclic schedule"):
        with_overrides(tiny_config, **{"train.stop_tol": 0.1, "train.schedule.kind": "cyclic"})
    laid = with_overrides(tiny_config, **{"train.stop_tol": 0.1, "train.schedule.kind": "cyclic", "train.epochs": 4,
                                          "train.min_epochs": 2})  # cycles over 2 epochs, then beta held
    assert laid.train.min_epochs == 2
    trivial = {"ignore_input": {"val_recon": 9.0, "val_kl_used": 0.0}}  # flat at 10, above the trivial model's 9
    assert stopped(History(epochs=after.epochs, options=trivial), warm)  # derailed and flat: trains no further
    assert not stopped(History(epochs=after.epochs[:6], options=trivial), longer)  # not before min_epochs
    assert stopped(History(epochs=after.epochs[:7], options=trivial), longer)
    falling = History(epochs=[{**e, "val_total": v, "val_recon": v} for e, v in
                              zip(after.epochs, [30.0, 25.0, 22.0, 20.0, 18.0, 16.0, 14.0, 13.0, 12.0, 11.0])],
                      options=trivial)
    assert not stopped(falling, with_overrides(warm, **{"train.stop_tol": 0.05}))  # still falling: trains on
    with pytest.raises(ValueError, match=r"train.stop_tol=1.5 is invalid: allowed 0 \(train every epoch\)"):
        with_overrides(tiny_config, **{"train.stop_tol": 1.5})


def test_fit_records_what_the_model_that_ignores_its_input_scores(tiny_config, tiny_data):
    """history.options['ignore_input']: the training mean decoded for every validation image, KL 0 (free bits charge
    free_bits per dimension); the convergence rule calls a run that ends no better derailed."""
    from vaelib.experiments.evidence import ignore_input_objective
    from vaelib.lessons.failure_gallery import mean_image_nll
    from vaelib.runtime import to_float

    x_train, x_val = tiny_data
    _, history = fit(tiny_config, x_train, x_val, device="cpu", quiet=True)
    terms = history.options["ignore_input"]
    assert terms["val_recon"] == pytest.approx(mean_image_nll(x_val, to_float(x_train).mean(0)), rel=1e-5)
    assert terms["val_kl_used"] == 0 and ignore_input_objective(history) == pytest.approx(terms["val_recon"])
    fb = with_overrides(tiny_config, **{"train.free_bits": 0.5, "train.schedule.beta": 2.0})
    _, h = fit(fb, x_train, x_val, device="cpu", quiet=True)
    assert h.options["ignore_input"]["val_kl_used"] == 0.5 * tiny_config.model.latent_dim
    assert ignore_input_objective(h) == pytest.approx(h.options["ignore_input"]["val_recon"] + 2.0 * 0.5 * 4)


def test_an_empty_out_dir_is_refused_not_taken_as_the_current_folder(tiny_config, tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for empty in ("", " "):
        with pytest.raises(ValueError, match=r"^out_dir='\s*' is invalid: allowed a folder's path, or None"):
            fit(tiny_config, *tiny_data, device="cpu", out_dir=empty, quiet=True)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_target_rate_run_records_the_kl_term_as_optimised_and_is_keyed_apart(tiny_config, tiny_data):
    """A run with train.target_rate records the KL term as optimised (|KL - target|, val_kl_used), the model that
    ignores its input is charged the target (KL 0), its key differs from the ELBO run's, and None keeps every key."""
    from vaelib.experiments import cache
    from vaelib.experiments.evidence import ignore_input_objective
    from vaelib.models.registry import build_model

    target = with_overrides(tiny_config, **{"train.target_rate": 3.0, "train.schedule.beta": 1.0})
    _, h = fit(target, *tiny_data, quiet=True, device="cpu")
    for e in h.epochs:
        assert e["val_kl_used"] == pytest.approx(abs(e["val_kl"] - 3.0), abs=1e-4)
        assert e["val_total"] == pytest.approx(e["val_recon"] + e["beta"] * e["val_kl"], rel=1e-5)  # the true ELBO
    assert h.options["ignore_input"]["val_kl_used"] == 3.0
    assert ignore_input_objective(h) == pytest.approx(h.options["ignore_input"]["val_recon"] + 3.0)
    assert cache.config_hash(target) != cache.config_hash(with_overrides(target, **{"train.target_rate": None}))
    assert "target_rate" not in cache._key(tiny_config)["train"]  # absent at None: every cached run keeps its key
    with pytest.raises(ValueError, match=r"train\.target_rate=-1\.0 is invalid: allowed None or a number > 0"):
        with_overrides(tiny_config, **{"train.target_rate": -1.0})
    with pytest.raises(ValueError, match=r"train\.target_rate=3\.0 is invalid: allowed None with free_bits > 0"):
        with_overrides(target, **{"train.free_bits": 0.5})
    with pytest.raises(ValueError, match=r"train\.target_rate=3 is invalid for model\.kind='ae'.*allowed None"):
        build_model(with_overrides(target, **{"model.kind": "ae"}))
