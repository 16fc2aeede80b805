"""Where tensors live and how they are autocast, chosen once: ``device = "auto" | "cpu" |
"cuda" | "cuda:N" | "mps"``.

``auto`` takes CUDA when torch sees a GPU, else Apple's MPS where torch has it, else the CPU.
bf16 autocast (Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training") is used
only where the hardware runs bf16 matrix products natively: CUDA devices that report bf16
support, and CPUs with AMX or AVX-512 BF16; elsewhere it would emulate bf16 slowly, so
``autocast`` leaves fp32.

``describe_device`` is the string a result records: ``"cpu"``, ``"cuda:0 (NVIDIA H200)"``,
``"mps"``. A bare ``"cuda"`` resolves to the current GPU's index (``cuda:0``), so the device a
model reports compares equal to the device its tensors report.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from lmbench.core.errors import LmbenchError

DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")  # "cuda:N" picks a GPU


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)  # absent from some torch builds
    return bool(backend is not None and backend.is_available())


def check_device_name(name: str) -> None:
    """Raise unless ``name`` is a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``),
    without asking whether this machine has that device (a run file is checked anywhere)."""
    if not isinstance(name, str):
        raise LmbenchError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got "
                           f"{name!r}")
    kind, _, index = name.partition(":")
    if kind not in DEVICE_NAMES or (index and (kind != "cuda" or not index.isdigit())):
        raise LmbenchError(f"device must be one of {', '.join(DEVICE_NAMES)} or cuda:N, "
                           f"got {name!r}")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for ``name``; an unknown name or an absent device is an error."""
    if isinstance(name, torch.device):
        return resolve_device("cuda") if name.type == "cuda" and name.index is None else name
    check_device_name(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise LmbenchError(f"device {name!r}: torch sees no CUDA GPU here (use 'cpu' or "
                               "'auto')")
        if index and int(index) >= torch.cuda.device_count():
            raise LmbenchError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                               "device(s)")
        if not index:
            return torch.device("cuda", torch.cuda.current_device())
    if kind == "mps" and not _mps_available():
        raise LmbenchError("device 'mps': this torch build has no MPS backend here")
    return torch.device(name)


def describe_device(device: torch.device | str) -> str:
    """What a result records: ``"cpu"``, ``"cuda:0 (NVIDIA H200)"``, ``"mps"``."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


# The vector extensions that choose a CPU's matmul kernels: fp32 on AVX2 or AVX-512, bf16
# natively on AVX-512 BF16 or AMX. Under a hypervisor two CPU generations can share one model
# name ("AMD EPYC"), and these, with the family and model numbers, tell them apart.
CPU_MATMUL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor's fields in the text of /proc/cpuinfo (a block per processor)."""
    fields: dict[str, str] = {}
    for line in text.strip().split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """This machine's ``parse_cpuinfo`` ({} where /proc/cpuinfo cannot be read)."""
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:
        return {}


def cpu_isa() -> str | None:
    """The CPU's family, model and matmul extensions, e.g. ``"family 25 model 1: avx2"``
    (None where /proc/cpuinfo cannot be read): what a record adds to the CPU's name, so runs
    on two CPUs that share a name are not taken for runs on one machine."""
    info = _cpuinfo()
    if not info:
        return None
    flags = set(info.get("flags", "").split())
    present = " ".join(flag for flag in CPU_MATMUL_FLAGS if flag in flags) or "none"
    return f"family {info.get('cpu family', '?')} model {info.get('model', '?')}: {present}"


def _cpu_has_native_bf16() -> bool:
    flags = set(_cpuinfo().get("flags", "").split())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def supports_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively on ``device`` (see the module docstring)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return _cpu_has_native_bf16()
    return False


def autocast_precision(device: torch.device, enabled: bool = True) -> str:
    """The precision ``autocast(device, enabled)`` computes matmuls in: "bf16" or "fp32"."""
    return "bf16" if enabled and supports_bf16(device) else "fp32"


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on ``device`` when ``enabled`` and supported there; else a no-op."""
    if autocast_precision(device, enabled) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (timing on CUDA needs it; a no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start counting ``peak_memory_bytes`` afresh (CUDA only; a no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """The most tensor bytes allocated on ``device`` since ``reset_peak_memory``
    (``torch.cuda.max_memory_allocated``); None where torch does not count them (the CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None
