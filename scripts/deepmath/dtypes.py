"""``dtype: auto``: bfloat16 only where the hardware computes it natively, float32 otherwise.

Why: on a CPU without bf16 instructions torch emulates bfloat16, and every stage that uses it
gets several times slower, not faster (MiniLM embeddings: 2-5x slower than float32 on an
AVX2-only CPU, measured side by side by ``tests/benchmarks/bench_dtype.py``). On CPUs with
AVX512-BF16 or AMX, and on bf16-capable GPUs, bfloat16 is the faster choice. So the embeddings,
the GGUF model conversion, the vLLM servers, the offline evaluation engine and TRL training all
take ``auto`` by default and ask :func:`resolve` in the job, on the machine that runs it. An
explicit dtype in the config always wins.

The decision itself (:func:`decide_cpu`, :func:`decide_cuda`) is a pure function of what torch
reports, so it is tested for every kind of machine; :func:`probe_cpu` and :func:`probe_cuda` read
the real hardware. torch's CPU capability honours ``ATEN_CPU_CAPABILITY``: with
``ATEN_CPU_CAPABILITY=avx2`` torch runs its AVX2 kernels and ``auto`` picks float32 even on a
bf16-capable CPU (how to reproduce an AVX2-only machine's behaviour on a newer one).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass

log = logging.getLogger("deepmath.dtypes")

AUTO = "auto"
DTYPES = ("float32", "bfloat16", "float16")
CHOICES = (AUTO, *DTYPES)
DEVICES = ("cpu", "cuda")
# torch's CPU kernel levels that can use AVX512-BF16 / AMX instructions
_BF16_CAPABLE_LEVELS = ("AVX512",)
# compute capability from which NVIDIA GPUs have bf16 tensor cores (Ampere, sm_80)
_CUDA_BF16_MAJOR = 8


@dataclass(frozen=True)
class CpuInfo:
    """What torch reports about the CPU (``torch.backends.cpu`` / ``torch.cpu``)."""

    capability: str  # torch.backends.cpu.get_cpu_capability(): AVX2, AVX512, DEFAULT, ...
    avx512_bf16: bool
    amx: bool


@dataclass(frozen=True)
class Choice:
    """A resolved dtype and the reason, in words, for the job's log."""

    dtype: str
    reason: str


def decide_cpu(cpu: CpuInfo) -> Choice:
    """bfloat16 when torch runs AVX512 kernels on a CPU with AVX512-BF16 or AMX, else float32."""
    native = [name for name, has in (("AMX", cpu.amx), ("AVX512-BF16", cpu.avx512_bf16)) if has]
    if not native:
        return Choice("float32", f"CPU ({cpu.capability}) has no native bf16 (no AVX512-BF16/AMX)")
    if cpu.capability not in _BF16_CAPABLE_LEVELS:
        return Choice(
            "float32",
            f"CPU has {'/'.join(native)} but torch runs {cpu.capability} kernels "
            "(ATEN_CPU_CAPABILITY?), where bf16 is emulated",
        )
    return Choice("bfloat16", f"CPU ({cpu.capability}) computes bf16 natively ({'/'.join(native)})")


def decide_cuda(name: str, capability: tuple[int, int] | None) -> Choice:
    """bfloat16 on GPUs of compute capability 8.0 or newer, float32 on older ones."""
    if capability is None:
        return Choice("float32", "no CUDA device visible")
    major, minor = capability
    if major >= _CUDA_BF16_MAJOR:
        return Choice("bfloat16", f"GPU {name} (sm_{major}{minor}) computes bf16 natively")
    return Choice("float32", f"GPU {name} (sm_{major}{minor}) has no native bf16")


@functools.cache
def probe_cpu() -> CpuInfo:
    import torch

    return CpuInfo(
        capability=str(torch.backends.cpu.get_cpu_capability()),
        avx512_bf16=bool(torch.cpu._is_avx512_bf16_supported()),
        amx=bool(torch.cpu._is_amx_tile_supported()),
    )


_CUDA_PROBE = (
    "import json, torch; p = torch.cuda.get_device_properties(0); "
    "print(json.dumps([p.name, p.major, p.minor]))"
)


@functools.cache
def probe_cuda() -> tuple[str, tuple[int, int] | None]:
    """(name, compute capability) of the first visible GPU; capability None when there is none.

    The properties are read in a child process: initialising CUDA here would make an
    in-process vLLM engine started afterwards fall back to spawned workers.
    ``torch.cuda.is_available()`` itself initialises nothing.
    """
    import subprocess
    import sys

    import torch

    if not torch.cuda.is_available():
        return "none", None
    out = subprocess.run(
        [sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"could not read the GPU's properties: {out.stderr.strip()[-500:]}")
    name, major, minor = json.loads(out.stdout.strip().splitlines()[-1])
    return str(name), (int(major), int(minor))


def decide(device: str) -> Choice:
    """What ``auto`` means on this machine for ``device`` (cpu or cuda).

    ``cuda`` on a machine with no visible GPU is decided for the CPU, where the work then runs
    (vLLM's CPU build serves a block that asks for GPUs on a CPU-only machine).
    """
    if device == "cuda":
        name, capability = probe_cuda()
        if capability is None:
            cpu = decide_cpu(probe_cpu())
            return Choice(cpu.dtype, f"no CUDA device visible, so the CPU decides: {cpu.reason}")
        return decide_cuda(name, capability)
    if device == "cpu":
        return decide_cpu(probe_cpu())
    raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


_logged: set[tuple[str, str, str]] = set()


def resolve(requested: str | None, device: str, *, what: str) -> str:
    """The dtype ``what`` (e.g. "embeddings") runs in on ``device``; logged once per process.

    ``requested`` is the config's value: ``auto`` (or None) asks the hardware, anything else
    is returned as given.
    """
    if requested not in (None, AUTO):
        choice = Choice(str(requested), "set explicitly in the config")
    else:
        choice = decide(device)
    key = (what, device, choice.dtype)
    if key not in _logged:
        _logged.add(key)
        log.info("%s dtype on %s: %s (%s)", what, device, choice.dtype, choice.reason)
    return choice.dtype


def main(argv: list[str] | None = None) -> None:
    """``python -m deepmath.dtypes``: what ``auto`` picks on this machine, and why."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m deepmath.dtypes",
        description="Print what dtype: auto resolves to on this machine's CPU (and GPU).",
    )
    parser.parse_args(argv)
    out = {"cpu": vars(probe_cpu()) | vars(decide("cpu"))}
    name, capability = probe_cuda()
    if capability is not None:
        out["cuda"] = {"name": name, "capability": capability} | vars(decide("cuda"))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
