import pytest
import torch

from vaelib import runtime


def test_the_bf16_override_and_the_cpu_flags(monkeypatch, tmp_path):
    cpu = torch.device("cpu")
    monkeypatch.delenv("VAELIB_CPU_BF16", raising=False)
    assert runtime.bf16_supported(cpu) == runtime.cpu_bf16_flags()  # unset: the CPU's own flags decide
    for value, expected in (("1", True), ("0", False)):
        monkeypatch.setenv("VAELIB_CPU_BF16", value)
        assert runtime.bf16_supported(cpu) is expected
    for flags, expected in (("avx512f avx512_vnni", False), ("avx512f avx512_bf16", True), ("amx_bf16", True)):
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags : fpu sse2 {flags}\n")
        assert runtime.cpu_bf16_flags(tmp_path / "cpuinfo") is expected
    assert runtime.cpu_bf16_flags(tmp_path / "missing") is False
    monkeypatch.setenv("VAELIB_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="VAELIB_CPU_BF16='yes' is invalid: allowed '1'"):
        runtime.bf16_supported(cpu)


def test_headless_reads_its_environment_variable(monkeypatch):
    for value, expected in (("1", True), ("0", False), ("", False)):
        monkeypatch.setenv("VAELIB_HEADLESS", value)
        assert runtime.headless() is expected
    monkeypatch.setenv("VAELIB_HEADLESS", "yes")
    with pytest.raises(ValueError, match="VAELIB_HEADLESS='yes' is invalid: allowed '1'"):
        runtime.headless()
