"""``lmbench.core.device``: device names, errors for absent or unknown devices, and bf16 autocast
only where the hardware runs it (a no-op elsewhere). Machine-independent: CUDA and the CPU's bf16
support are patched where a test depends on them."""

from __future__ import annotations

import pytest
import torch

from lmbench.core import device as device_module
from lmbench.core.device import (
    autocast,
    check_device_name,
    cpu_isa,
    describe_device,
    parse_cpuinfo,
    peak_memory_bytes,
    reset_peak_memory,
    resolve_device,
    supports_bf16,
    synchronize,
)
from lmbench.core.errors import LmbenchError


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine where torch sees neither CUDA nor MPS."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_names_resolve_to_torch_devices(no_gpu):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")  # no GPU: the CPU
    assert resolve_device() == torch.device("cpu")
    given = torch.device("cpu")
    assert resolve_device(given) is given
    assert describe_device(resolve_device("cpu")) == "cpu"


@pytest.mark.parametrize("name, message", [
    ("cuda", "torch sees no CUDA GPU here"),
    ("cuda:0", "torch sees no CUDA GPU here"),
    ("mps", "no MPS backend"),
    ("tpu", "device must be one of auto, cpu, cuda, mps or cuda:N, got 'tpu'"),
    ("cpu:1", "got 'cpu:1'"),
    ("cuda:x", "got 'cuda:x'"),
    ("", "got ''"),
])
def test_absent_and_unknown_devices_are_one_line_errors(no_gpu, name, message):
    with pytest.raises(LmbenchError, match="device") as error:
        resolve_device(name)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_torch_cuda_device_without_a_gpu_is_refused(no_gpu):
    with pytest.raises(LmbenchError, match="no CUDA GPU"):
        resolve_device(torch.device("cuda"))


def test_names_are_checked_without_asking_the_hardware(no_gpu):
    for name in ("auto", "cpu", "cuda", "cuda:3", "mps"):
        check_device_name(name)  # a run file naming a GPU is valid on a machine without one
    for name in ("tpu", "cuda:-1", "gpu"):
        with pytest.raises(LmbenchError, match="device must be one of"):
            check_device_name(name)
    with pytest.raises(LmbenchError, match="device must be a string"):
        check_device_name(0)


def _matmul_dtype(device: torch.device, enabled: bool = True) -> torch.dtype:
    a = torch.randn(4, 4)
    with autocast(device, enabled):
        return (a @ a).dtype


def test_autocast_is_a_no_op_where_bf16_is_not_native(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "_cpu_has_native_bf16", lambda: False)
    assert not supports_bf16(cpu)
    assert _matmul_dtype(cpu) == torch.float32
    monkeypatch.setattr(device_module, "_cpu_has_native_bf16", lambda: True)
    assert supports_bf16(cpu)
    assert _matmul_dtype(cpu) == torch.bfloat16  # AMX / AVX-512 BF16: bf16 matmuls
    assert _matmul_dtype(cpu, enabled=False) == torch.float32  # turned off: fp32 anyway
    assert not supports_bf16(torch.device("meta"))  # neither CUDA nor a CPU


ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 fma avx avx2 sha_ni

processor\t: 1
model\t\t: 17
flags\t\t: fpu avx2 avx512f avx512_bf16
"""


def test_cpu_isa_tells_two_cpus_of_one_name_apart(monkeypatch):
    assert parse_cpuinfo(ZEN3)["model"] == "1"  # the first processor's block
    monkeypatch.setattr(device_module, "_cpuinfo", lambda: parse_cpuinfo(ZEN3))
    assert cpu_isa() == "family 25 model 1: avx2"
    assert not device_module._cpu_has_native_bf16()
    zen4 = ZEN3.replace("model\t\t: 1\n", "model\t\t: 17\n").replace(
        "avx2 sha_ni", "avx2 avx512f avx512_bf16")
    monkeypatch.setattr(device_module, "_cpuinfo", lambda: parse_cpuinfo(zen4))
    assert cpu_isa() == "family 25 model 17: avx2 avx512f avx512_bf16"
    assert device_module._cpu_has_native_bf16()
    monkeypatch.setattr(device_module, "_cpuinfo", lambda: parse_cpuinfo("flags : fpu sse2"))
    assert cpu_isa() == "family ? model ?: none"
    monkeypatch.setattr(device_module, "_cpuinfo", dict)  # no /proc/cpuinfo
    assert cpu_isa() is None and not device_module._cpu_has_native_bf16()


def test_cpu_timing_and_memory_helpers_are_no_ops():
    cpu = torch.device("cpu")
    synchronize(cpu)
    reset_peak_memory(cpu)
    assert peak_memory_bytes(cpu) is None  # torch does not count CPU tensor bytes
