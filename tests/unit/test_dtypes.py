"""dtype: auto - bfloat16 only where the hardware computes it natively, float32 otherwise."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from deepmath import dtypes
from deepmath.dtypes import CpuInfo, decide_cpu, decide_cuda
from tests.paths import REPO


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [
        # AVX2-only CPUs (the project's 2-core machines, most older servers): bf16 is emulated
        (CpuInfo("AVX2", avx512_bf16=False, amx=False), "float32"),
        (CpuInfo("DEFAULT", avx512_bf16=False, amx=False), "float32"),
        # AVX512 without the BF16 extension (Skylake/Cascade Lake servers)
        (CpuInfo("AVX512", avx512_bf16=False, amx=False), "float32"),
        # native bf16: Cooper Lake / Zen 4+ (AVX512-BF16), Sapphire Rapids+ (AMX)
        (CpuInfo("AVX512", avx512_bf16=True, amx=False), "bfloat16"),
        (CpuInfo("AVX512", avx512_bf16=True, amx=True), "bfloat16"),
        (CpuInfo("AVX512", avx512_bf16=False, amx=True), "bfloat16"),
        # the instructions exist but torch was told to run AVX2 kernels (ATEN_CPU_CAPABILITY)
        (CpuInfo("AVX2", avx512_bf16=True, amx=True), "float32"),
        (CpuInfo("AVX2", avx512_bf16=True, amx=False), "float32"),
        # other architectures: no rule that bf16 is native, so the safe choice
        (CpuInfo("SVE256", avx512_bf16=False, amx=False), "float32"),
    ],
)
def test_cpu_decision(cpu: CpuInfo, expected: str) -> None:
    choice = decide_cpu(cpu)
    assert choice.dtype == expected
    assert cpu.capability in choice.reason  # the log line says what torch reported


@pytest.mark.parametrize(
    ("name", "capability", "expected"),
    [
        ("NVIDIA H20", (9, 0), "bfloat16"),
        ("NVIDIA A100-SXM4-80GB", (8, 0), "bfloat16"),
        ("NVIDIA GeForce RTX 3090", (8, 6), "bfloat16"),
        ("Tesla V100-SXM2-32GB", (7, 0), "float32"),
        ("Tesla T4", (7, 5), "float32"),
        ("none", None, "float32"),
    ],
)
def test_cuda_decision(name: str, capability: tuple[int, int] | None, expected: str) -> None:
    choice = decide_cuda(name, capability)
    assert choice.dtype == expected
    if capability is not None:
        assert name in choice.reason


@pytest.mark.parametrize("explicit", ["float32", "bfloat16", "float16"])
def test_an_explicit_dtype_wins(explicit: str) -> None:
    assert dtypes.resolve(explicit, "cpu", what="test") == explicit


def test_auto_follows_this_machine_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    caplog.set_level(logging.INFO, logger="deepmath.dtypes")
    what = "test-logged-once"
    first = dtypes.resolve("auto", "cpu", what=what)
    assert dtypes.resolve(None, "cpu", what=what) == first
    native = torch.backends.cpu.get_cpu_capability() == "AVX512" and (
        torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    )
    assert first == ("bfloat16" if native else "float32")
    lines = [r.getMessage() for r in caplog.records if what in r.getMessage()]
    assert len(lines) == 1 and first in lines[0] and "(" in lines[0]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu, cuda"):
        dtypes.decide("tpu")


def _cli(env_extra: dict[str, str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), **env_extra}
    out = subprocess.run(
        [sys.executable, "-m", "deepmath.dtypes"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_forcing_avx2_kernels_gives_float32_on_any_cpu() -> None:
    """What an AVX2-only machine sees, reproduced on any x86 CPU: torch's AVX2 kernels."""
    got = _cli({"ATEN_CPU_CAPABILITY": "avx2"})
    assert got["cpu"]["capability"] in ("AVX2", "DEFAULT")
    assert got["cpu"]["dtype"] == "float32"
    assert "emulated" in got["cpu"]["reason"] or "no native bf16" in got["cpu"]["reason"]


def test_cli_reports_this_machine() -> None:
    got = _cli({})
    assert got["cpu"]["dtype"] == dtypes.decide("cpu").dtype
    assert got["cpu"]["capability"] == dtypes.probe_cpu().capability


def test_cuda_without_a_visible_gpu_is_decided_for_the_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    choice = dtypes.decide("cuda")
    assert choice.dtype == dtypes.decide("cpu").dtype
    assert choice.reason.startswith("no CUDA device visible, so the CPU decides")
