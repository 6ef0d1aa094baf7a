import re

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vaelib.__main__ import main
from vaelib.config import with_overrides
from vaelib.training import distributed
from vaelib.training import trainer as train
from vaelib.training.tensorboard import GRID, STEP_TAGS, VAL_TAGS, TensorBoardLog
from vaelib.training.trainer import fit
from vaelib.training.validation import kl_per_dimension

IMAGE_TAGS = ("images/val", "images/reconstruction", "images/prior_sample")


def _events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    acc.Reload()
    return acc


def _steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


def _numbers(h) -> tuple[list, list]:
    """The history without wall-clock fields."""
    clock = {"seconds", "images_per_sec"}
    return h.steps, [{k: v for k, v in e.items() if k not in clock} for e in h.epochs]


def test_logging_does_not_change_training(tiny_config, tiny_data, tmp_path):
    m1, plain = fit(tiny_config, *tiny_data, quiet=True, device="cpu")
    m2, logged = fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir=tmp_path / "tb")
    assert _numbers(plain) == _numbers(logged)
    assert all(torch.equal(a, b) for a, b in zip(m1.state_dict().values(), m2.state_dict().values()))


def test_event_file_holds_every_step_and_epoch(tiny_config, tiny_data, tmp_path):
    model, h = fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir=tmp_path / "tb")
    acc = _events(tmp_path / "tb")
    tags = acc.Tags()
    assert set(tags["scalars"]) == ({f"train/{k}" for k in STEP_TAGS} | {f"val/{k}" for k in VAL_TAGS}
                                    | {"val/dims_with_kl_above_0.01"})
    for key in STEP_TAGS:  # 64 images / 16 per batch = 4 steps per epoch, 2 epochs
        assert _steps(acc, f"train/{key}") == list(range(8)), key
        assert [e.value for e in acc.Scalars(f"train/{key}")] == pytest.approx([r[key] for r in h.steps], rel=1e-6)
    for key in VAL_TAGS:  # one event per epoch, on the epoch's last step
        assert _steps(acc, f"val/{key}") == [3, 7]
        assert [e.value for e in acc.Scalars(f"val/{key}")] == pytest.approx(h.column(f"val_{key}"), rel=1e-6)
    assert set(tags["images"]) == set(IMAGE_TAGS)
    for tag in IMAGE_TAGS:
        assert [e.step for e in acc.Images(tag)] == [3, 7]
        assert acc.Images(tag)[-1].width > 16  # a grid of GRID images, not one
    (hist,) = [e for e in acc.Histograms("val/kl_per_dim") if e.step == 7]
    kl = kl_per_dimension(model, tiny_data[1][:512])  # the library's KL per dimension, (D,)
    assert hist.histogram_value.num == tiny_config.model.latent_dim
    assert hist.histogram_value.sum == pytest.approx(kl.sum(), rel=1e-5)
    assert hist.histogram_value.max == pytest.approx(kl.max(), rel=1e-5)


def test_resumed_run_continues_the_step_numbers(tiny_config, tiny_data, tmp_path):
    one = with_overrides(tiny_config, **{"train.epochs": 1})
    fit(one, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "run", log_dir=tmp_path / "tb")
    _, h = fit(tiny_config, *tiny_data, quiet=True, device="cpu", out_dir=tmp_path / "run", log_dir=tmp_path / "tb")
    acc = _events(tmp_path / "tb")
    assert len(list((tmp_path / "tb").glob("events.out.tfevents.*"))) == 2  # appended, not overwritten
    assert _steps(acc, "train/total") == list(range(8))
    assert [e.value for e in acc.Scalars("train/total")] == pytest.approx([r["total"] for r in h.steps], rel=1e-6)
    assert _steps(acc, "val/total") == [3, 7]


def test_resume_replaces_what_an_interrupted_run_wrote(tiny_config, tmp_path):
    rows = [{"step": s, "epoch": 0, "beta": 1.0, "lr": 1e-3, "total": float(s), "recon": 0.0, "kl": 0.0,
             "grad_norm": 1.0} for s in range(6)]
    crashed = TensorBoardLog(tmp_path, tiny_config)
    crashed.log_steps(rows)  # steps 3-5 were never checkpointed
    crashed.close()
    resumed = TensorBoardLog(tmp_path, tiny_config, first_step=3)
    resumed.log_steps(rows[:2] + [{**r, "total": -r["total"]} for r in rows[3:]])  # rows before 3: not again
    resumed.close()
    acc = _events(tmp_path)
    assert _steps(acc, "train/total") == list(range(6))
    assert [e.value for e in acc.Scalars("train/total")] == [0, 1, 2, -3, -4, -5]


def test_interrupted_epoch_steps_are_written(tiny_config, tiny_data, tmp_path, monkeypatch):
    def interrupt(*args):  # after the epoch's steps, before its end: nothing logged but by close()
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "_end_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir=tmp_path)
    acc = _events(tmp_path)
    assert _steps(acc, "train/total") == list(range(4)) and acc.Tags()["images"] == []


def test_only_rank_0_writes(tiny_config, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir=tmp_path / "tb")
    assert not (tmp_path / "tb").exists()


def test_a_file_as_log_dir_is_refused_before_training(tiny_config, tiny_data, tmp_path):
    (tmp_path / "f").write_text("")
    for bad in (tmp_path / "f", tmp_path / "f" / "tb"):
        message = f"log_dir='{bad}' (--tensorboard) is invalid: it or a parent is a file; allowed a folder"
        with pytest.raises(ValueError, match=re.escape(message)):
            fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir=bad, callbacks=[pytest.fail])
    message = ("log_dir='/proc/self/tb' (--tensorboard) cannot be created (new entries cannot be made there): allowed "
               "a folder you can create and write to")  # was the bare FileNotFoundError of mkdir
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(tiny_config, *tiny_data, quiet=True, device="cpu", log_dir="/proc/self/tb", callbacks=[pytest.fail])


def test_train_command_writes_tensorboard(tmp_path, capsys):
    tb = tmp_path / "tb"
    assert main(["train", "--preset", "digits", "--epochs", "1", "--max-train", "128", "--batch-size", "64",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"), "--tensorboard", str(tb)]) == 0
    acc = _events(tb)
    assert _steps(acc, "train/grad_norm") == [0, 1] and _steps(acc, "val/kl") == [1]
    assert acc.Images("images/prior_sample")[0].width >= GRID
    (tmp_path / "file").write_text("")
    assert main(["train", "--preset", "digits", "--out", str(tmp_path / "run2"), "--tensorboard",
                 str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == (f"vaelib: error: --tensorboard folder {tmp_path / 'file'} is a file: "
                                               "allowed a folder (new or existing)")
    assert not (tmp_path / "run2").exists()  # refused before anything was written
