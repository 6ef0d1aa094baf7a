import json
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from vaelib.training import allocator

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="the allocator tuning is glibc's mallopt")


def _python(code: str, **env: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_the_environment_switch_turns_the_tuning_off(monkeypatch, value):
    monkeypatch.setenv("VAELIB_MALLOC_TUNING", value)
    assert not allocator.tuning_enabled()
    monkeypatch.setenv("VAELIB_MALLOC_TUNING", "1")
    assert allocator.tuning_enabled()


@glibc
def test_fit_alone_never_tunes_but_the_run_cache_and_the_cli_path_do():
    # fit has no process-wide side effect; cached_fit (notebooks, reports) and run_experiment (the train
    # command) opt in on the CPU, and run_experiment records it in metrics.json's options.
    line = _python("""
        import json, tempfile, torch
        from vaelib.training import allocator
        from vaelib.config import get_preset, with_overrides
        from vaelib.experiments.cache import cached_fit
        from vaelib.training.trainer import fit
        x = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
        c = with_overrides(get_preset("digits"), **{"train.epochs": 1, "train.batch_size": 32})
        _, h = fit(c, x, x, device="cpu", quiet=True)
        after_fit = allocator.allocator_tuned()
        cached_fit(c, x, x, root=tempfile.mkdtemp(), device="cpu", quiet=True)
        print(json.dumps(["malloc_tuned" in h.options, after_fit, allocator.allocator_tuned()]))
    """, VAELIB_MALLOC_TUNING="1")
    assert json.loads(line) == [False, False, True]


@glibc
def test_the_run_cache_leaves_the_allocator_alone_when_told():
    line = _python("""
        import json, tempfile, torch
        from vaelib.training import allocator
        from vaelib.config import get_preset, with_overrides
        from vaelib.experiments.cache import cached_fit
        x = torch.randint(0, 256, (64, 1, 32, 32), dtype=torch.uint8)
        c = with_overrides(get_preset("digits"), **{"train.epochs": 1, "train.batch_size": 32})
        cached_fit(c, x, x, root=tempfile.mkdtemp(), device="cpu", quiet=True, tune_allocator=False)
        print(json.dumps(allocator.allocator_tuned()))
    """, VAELIB_MALLOC_TUNING="1")
    assert json.loads(line) is False


@glibc
def test_tuning_removes_the_page_faults_of_a_training_step():
    # The reason for the tuning: without it every step re-faults its freshly allocated activation buffers.
    line = _python("""
        import json, resource, torch
        from vaelib.training.allocator import tune_cpu_allocator
        from vaelib.config import get_preset
        from vaelib.losses import elbo
        from vaelib.models.vae import VAE
        torch.manual_seed(0)
        config = get_preset("fashion_mnist")
        model = VAE(config)
        opt = torch.optim.Adam(model.parameters())
        x = torch.rand(128, 1, 32, 32)

        def faults_per_step(steps=6):
            for _ in range(2):
                step()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(steps):
                step()
            return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

        def step():
            logits, mu, logvar = model(x)
            opt.zero_grad()
            elbo(x, logits, mu, logvar).total.backward()
            opt.step()

        untuned = faults_per_step()
        assert tune_cpu_allocator()
        print(json.dumps([untuned, faults_per_step()]))
    """)
    untuned, tuned = json.loads(line)
    if untuned < 100:  # how much glibc faults depends on its version and on which kernels torch picks
        pytest.skip(f"the system allocator faulted only {untuned:.0f} times per step here: nothing to remove")
    assert tuned < untuned / 10, (untuned, tuned)
