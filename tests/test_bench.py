import pytest
import torch

from vaelib.config import get_preset, with_overrides
from vaelib.perf import bench, loops
from vaelib.runtime import BF16_ENV, bf16_supported


def test_flops_per_image_matches_the_measured_scale():
    # forward + backward of the fashion_mnist preset: 17.3 MFLOP per image by hand-checked conv arithmetic
    # (two 3x3 stride-2 convs, linear heads, mirrored transposed convs); cifar10 about 184 MFLOP
    flops = bench.flops_per_image(get_preset("fashion_mnist"), torch.device("cpu"))
    assert 15e6 < flops < 20e6
    assert bench.flops_per_image(get_preset("cifar10"), torch.device("cpu")) > 5 * flops


@pytest.mark.parametrize("cpu_bf16", ["0", "1"])
def test_variants_cover_each_option_alone_and_all_together(cpu_bf16, monkeypatch):
    monkeypatch.setenv(BF16_ENV, cpu_bf16)  # both kinds of CPU, on whichever this is
    cpu = torch.device("cpu")
    rows = bench.variants(get_preset("fashion_mnist"), cpu)
    assert rows["fit default"] == get_preset("fashion_mnist")
    assert rows["fit all fast options"].train.adam_impl == "fused"
    assert ("fit bf16" in rows) == (cpu_bf16 == "1") == bf16_supported(cpu)
    assert (rows["fit all fast options"].train.precision == "bf16") == (cpu_bf16 == "1")
    names = [r.name for r in bench.rows_for(get_preset("fashion_mnist"), cpu)]
    # "all fast options" trains exactly like the default only where bf16 is not among the fast options
    assert ("fit all fast options (= default)" in names) == (cpu_bf16 == "0")
    assert ("fit all fast options" in names) == (cpu_bf16 == "1")
    assert sum(1 for k in rows if k.startswith("fit channels_last")) == 1  # the non-default setting only
    assert rows["fit adam foreach"].train.adam_impl == "foreach"
    assert "fit adam fused" not in rows  # fused is what the default 'auto' means: the same run twice


def test_bench_preset_rows_and_ratios():
    config = with_overrides(get_preset("fashion_mnist"), **{"train.batch_size": 16})
    x = loops.images_for(config, 32)
    assert x.shape == (32, 1, 32, 32) and x.dtype == torch.uint8
    cpu = torch.device("cpu")
    for loop in (loops.naive_loop, loops.bare_loop, loops.fit_loop):
        assert loop(config, x, 2, cpu) > 0
    results = bench.bench_preset("fashion_mnist", batch_sizes=(16,), rounds=1, steps=2, device="cpu",
                                 log=lambda _: None)
    naive = next(r for r in results if r["row"] == "naive")
    assert naive["x_naive"] == 1.0
    rows = {r["row"]: r for r in results}
    assert {"bare", "fit default", "bare, allocator tuned", "fit, allocator untuned"} <= set(rows)
    assert all(r["images_per_sec"] > 0 for r in results)
    # as each worker reported it after the run: fit must not have tuned the untuned worker
    assert not rows["bare"]["allocator_tuned"] and rows["bare, allocator tuned"]["allocator_tuned"]
    assert rows["fit default"]["allocator_tuned"] and not rows["fit, allocator untuned"]["allocator_tuned"]
    # exactly the rows the bench says this CPU gets (with or without bf16, see the variants test)
    expected = [r.name for r in bench.rows_for(with_overrides(get_preset("fashion_mnist"), **{"train.batch_size": 16}),
                                               cpu)]
    assert [r["row"] for r in results] == expected
    assert "fit default" in bench.table(results)


def test_rows_run_in_the_worker_their_allocator_setting_asks_for():
    # fit tunes the allocator of the process it runs in, so untuned rows must run in a process of their own
    config = with_overrides(get_preset("fashion_mnist"), **{"train.batch_size": 16})
    rows = bench.rows_for(config, torch.device("cpu"))
    assert [r.name for r in rows if not r.tuned] == ["naive", "bare", "fit, allocator untuned"]
    cpu = torch.device("cpu")
    with bench.Workers() as workers:
        for tuned in (False, True):
            with pytest.raises(RuntimeError, match="benchmark row 'broken' failed in its worker: KeyError"):
                workers.run(bench.Row("broken", "no such loop", config, tuned), 2, cpu)
            ips, was_tuned = workers.run(bench.Row("fit", "fit", config, tuned), 2, cpu)  # and it keeps serving
            assert ips > 0 and was_tuned == tuned
        workers.procs[True].kill()  # e.g. killed for memory
        with pytest.raises(RuntimeError, match="benchmark row 'fit': its worker process died"):
            workers.run(bench.Row("fit", "fit", config, True), 2, cpu)


def test_cuda_rows_peak_and_table_logic_without_a_gpu(monkeypatch):
    # The CUDA branches that need no GPU to run: the peak lookup, the rows, the table's %peak column.
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_: True)
    cuda = torch.device("cuda")
    assert bench.peak_flops(cuda) == 989e12
    assert bench.peak_flops(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Some Future GPU")
    assert bench.peak_flops(cuda) is None  # unknown: no fraction rather than a made-up one
    rows = bench.rows_for(get_preset("cifar10"), cuda)
    names = [r.name for r in rows]
    assert "fit bf16" in names and not any("allocator" in n for n in names)  # the allocator rows are CPU-only
    assert next(r for r in rows if r.name == "fit all fast options").config.train.precision == "bf16"
    line = bench.table([{"preset": "cifar10", "batch_size": 128, "row": "fit default", "images_per_sec": 50_000.0,
                         "x_naive": 12.5, "x_bare": 2.0, "peak_fraction": 0.2}])
    assert line.splitlines()[1].split()[-4:] == ["50000", "12.50", "2.00", "20.0"]


def test_options_say_which_device_settings_applied():
    from vaelib.training.trainer import _options

    cpu = _options(get_preset("fashion_mnist"), torch.device("cpu"), 1)
    cuda = _options(get_preset("fashion_mnist"), torch.device("cuda"), 2)
    assert not cpu["cudnn_benchmark"] and cpu["channels_last"] and cpu["world_size"] == 1
    assert cuda["cudnn_benchmark"] and cuda["world_size"] == 2 and cuda["device"] == "cuda"
    assert cpu["adam_impl"] == "fused"  # 'auto' resolved, so a result says what ran
