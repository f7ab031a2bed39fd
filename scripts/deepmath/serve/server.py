"""One vLLM server's lifecycle: start it, wait until it answers, notice when it dies, stop it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepmath.io import (
    TIMEOUT_SCALE_ENV,
    timeout_scale,
)
from deepmath.procs import (
    STOP_GRACE_S,
    child_preexec,
    despite_signals,
    pid_alive,
    pid_start_time,
    signals_deferred,
    signals_raise,
    stop_group,
)
from deepmath.serve.cmdline import build_command, rpc_dir_for, server_env
from deepmath.serve.config import ServeConfig, ServerError, with_resolved_dtype

log = logging.getLogger("deepmath.serve")


LOG_NAME = "server.log"


_POLL_S = 1.0


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


# The detached launcher: start the server in a new session and exit, so the server is
# re-parented (no zombie in our process) and outlives the job that started it. The launcher has
# a session of its own too: a Ctrl-C or a signal to the job's process group cannot kill it
# between starting the server and printing its pid (the server would run on, unrecorded).
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
        server whose starter is killed mid-startup can still be found and stopped). Launching and
        ``on_launch`` run with the stop signals held back: one arriving then is raised once the
        pid is known, and the server is stopped, never left running unrecorded.
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
                with signals_deferred():
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
            despite_signals(self.stop)
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
                start_new_session=True,
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
                    preexec_fn=child_preexec(os.getpid()),
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
        with signals_deferred():
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
        try:
            self._signals.enter_context(signals_raise())
            return self.start()
        except BaseException:
            self._signals.close()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            despite_signals(self.stop)  # a second signal cannot skip the stop
        finally:
            if self._signals is not None:
                self._signals.close()


class _PortTaken(Exception):
    pass
