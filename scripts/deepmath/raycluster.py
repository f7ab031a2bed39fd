"""A Ray cluster over the nodes of a Slurm job, started and always torn down by the job itself.

Used by multi-node vLLM serving (``deepmath.serve``, ``serve.nodes > 1``) and by multi-node
training. The standard Slurm pattern::

    head (the node the job's shell runs on):  ray start --head --node-ip-address=IP --port=P --block
    every other node:  srun --nodes=1 --ntasks=1 --overlap -w NODE ray start --address=IP:P --block

then wait until Ray reports every node alive, run the work on the head with ``RAY_ADDRESS`` set,
and tear down: ``ray stop --force`` on every node (through ``srun`` for the workers), the ``srun``
and head processes killed.

Why ``--nodes/--ntasks`` on every ``srun``: the Snakemake Slurm jobstep strips ``SLURM_*`` from
the rule's shell (it keeps ``SLURM_JOB_ID``), so ``srun`` would otherwise inherit nothing sensible
about the step's shape. For the same reason the node list comes from ``SLURM_JOB_NODELIST`` when
present, else from ``scontrol show job $SLURM_JOB_ID``. ``--overlap`` lets the teardown steps run
while the worker steps still hold their nodes.

Ray is only used through its ``ray`` CLI and a short ``python -c`` probe in a subprocess, so this
module imports without Ray installed (the serving and training envs bring it).

CLI: ``python -m deepmath.raycluster run [--nodes a,b] [--num-gpus 8] -- python train.py ...``
runs the command on the head with ``RAY_ADDRESS`` set, then tears everything down and exits with
the command's exit code. ``--dry-run`` prints the commands it would run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath.io import DeepmathError, run_cli, setup_logging
from deepmath.procs import end_group, signals_raise

log = logging.getLogger("deepmath.raycluster")

DEFAULT_PORT = 6379
DEFAULT_TIMEOUT_S = 300.0

# Printed by the probe: the node IPs Ray reports alive.
_PROBE = (
    "import json, sys, ray\n"
    "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
    "print(json.dumps(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive'])))\n"
)


# --------------------------------------------------------------------------- node list


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm host list: ``gpu[01-03,7],login1`` -> gpu01, gpu02, gpu03, gpu7, login1.

    Handles one bracket group per name (what Slurm prints for simple node names); ``scontrol show
    hostnames`` is used instead when available.
    """
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", text.strip()):
        match = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(","):
            low, _, high = part.partition("-")
            if not high:
                hosts.append(f"{prefix}{low}{suffix}")
                continue
            if not (low.isdigit() and high.isdigit()) or int(high) < int(low):
                raise DeepmathError(f"cannot expand host range '{part}' in host list '{text}'")
            width = len(low)
            hosts += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(low), int(high) + 1)]
    return hosts


def _scontrol_hostnames(nodelist: str, scontrol: str) -> list[str] | None:
    if not shutil.which(scontrol):
        return None
    out = subprocess.run(
        [scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60
    )
    if out.returncode != 0:
        return None
    return out.stdout.split()


def job_nodes(
    explicit: Sequence[str] | str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    scontrol: str = "scontrol",
) -> list[str]:
    """The hosts of this Slurm job, head first.

    ``explicit`` (a list or a comma/space separated string, may use Slurm ranges) wins; else
    ``SLURM_JOB_NODELIST``/``SLURM_NODELIST``; else ``scontrol show job $SLURM_JOB_ID``
    (the Snakemake jobstep keeps only the job id).
    """
    env = os.environ if env is None else env
    if explicit:
        items = explicit.replace(" ", ",") if isinstance(explicit, str) else ",".join(explicit)
        hosts = [h for h in expand_hostlist(items) if h]
        if not hosts:
            raise DeepmathError(f"empty node list {explicit!r}")
        return hosts
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist and env.get("SLURM_JOB_ID") and shutil.which(scontrol):
        out = subprocess.run(
            [scontrol, "show", "job", "-o", env["SLURM_JOB_ID"]],
            capture_output=True,
            text=True,
            timeout=60,
        )
        match = re.search(r"(?<![A-Za-z])NodeList=(\S+)", out.stdout)
        if match and match.group(1) != "(null)":
            nodelist = match.group(1)
    if not nodelist:
        raise DeepmathError(
            "no node list: not inside a Slurm job (SLURM_JOB_NODELIST and SLURM_JOB_ID unset); "
            "pass the nodes explicitly (--nodes a,b)"
        )
    return _scontrol_hostnames(nodelist, scontrol) or expand_hostlist(nodelist)


def resolve_ip(host: str) -> str:
    """The IPv4 address of ``host`` as this machine resolves it (Ray wants IPs)."""
    try:
        return socket.gethostbyname(host)
    except OSError as err:
        raise DeepmathError(f"cannot resolve node '{host}': {err}") from None


def _resolve_or_name(host: str) -> str:
    try:
        return resolve_ip(host)
    except DeepmathError:
        return host


# --------------------------------------------------------------------------- commands


def _resources(num_gpus: int | None, num_cpus: int | None) -> list[str]:
    out = []
    if num_gpus is not None:
        out.append(f"--num-gpus={num_gpus}")
    if num_cpus is not None:
        out.append(f"--num-cpus={num_cpus}")
    return out


def srun_prefix(node: str, *, srun: str = "srun", extra: Sequence[str] = ()) -> list[str]:
    """``srun`` for one task on one named node of the current job, shape passed explicitly."""
    return [
        srun,
        "--nodes=1",
        "--ntasks=1",
        "--ntasks-per-node=1",
        "--overlap",
        "--kill-on-bad-exit=0",
        "-w",
        node,
        *extra,
    ]


def head_command(
    node_ip: str,
    *,
    port: int = DEFAULT_PORT,
    num_gpus: int | None = None,
    num_cpus: int | None = None,
    ray: str = "ray",
    extra: Sequence[str] = (),
) -> list[str]:
    """``ray start --head`` in the foreground (``--block``) on the head node."""
    return [
        ray,
        "start",
        "--head",
        f"--node-ip-address={node_ip}",
        f"--port={port}",
        *_resources(num_gpus, num_cpus),
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--block",
        *extra,
    ]


def worker_command(
    node: str,
    head_address: str,
    *,
    node_ip: str | None = None,
    num_gpus: int | None = None,
    num_cpus: int | None = None,
    ray: str = "ray",
    srun: str = "srun",
    extra: Sequence[str] = (),
) -> list[str]:
    """``srun ... -w node ray start --address=head --block`` for one worker node.

    With ``num_gpus`` the step also asks for that many GPUs (``--gres=gpu:N``).
    """
    gres = [f"--gres=gpu:{num_gpus}"] if num_gpus else []
    ip = [f"--node-ip-address={node_ip}"] if node_ip else []
    return [
        *srun_prefix(node, srun=srun, extra=gres),
        ray,
        "start",
        f"--address={head_address}",
        *ip,
        *_resources(num_gpus, num_cpus),
        "--disable-usage-stats",
        "--block",
        *extra,
    ]


def stop_command(node: str | None = None, *, ray: str = "ray", srun: str = "srun") -> list[str]:
    """``ray stop --force`` on ``node`` through srun, or locally when ``node`` is None."""
    local = [ray, "stop", "--force"]
    return local if node is None else [*srun_prefix(node, srun=srun), *local]


def probe_command(address: str, *, python: str | None = None) -> list[str]:
    """A Python one-off that prints the IPs of the alive Ray nodes as JSON."""
    return [python or sys.executable, "-c", _PROBE, address]


def plan(
    nodes: Sequence[str],
    *,
    ips: Mapping[str, str],
    port: int = DEFAULT_PORT,
    num_gpus: int | None = None,
    num_cpus: int | None = None,
    ray: str = "ray",
    srun: str = "srun",
) -> dict[str, Any]:
    """Every command of the cluster's lifecycle (pure): head, workers, stops, address."""
    head, workers = nodes[0], list(nodes[1:])
    address = f"{ips[head]}:{port}"
    kw = {"num_gpus": num_gpus, "num_cpus": num_cpus, "ray": ray}
    return {
        "address": address,
        "head": head_command(ips[head], port=port, **kw),
        "workers": {
            w: worker_command(w, address, node_ip=ips[w], srun=srun, **kw) for w in workers
        },
        "stop": [stop_command(w, ray=ray, srun=srun) for w in workers] + [stop_command(ray=ray)],
    }


# --------------------------------------------------------------------------- lifecycle


class RayCluster:
    """Start Ray over ``nodes`` (head first), wait for all of them, always tear down.

    ``with RayCluster(job_nodes()) as cluster:`` then ``cluster.address`` (``ip:port``) is what
    ``RAY_ADDRESS`` should hold. Logs go to ``log_dir`` (``ray-head.log``, ``ray-<node>.log``).
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        port: int = DEFAULT_PORT,
        num_gpus: int | None = None,
        num_cpus: int | None = None,
        ray: str | None = None,
        python: str | None = None,
        srun: str = "srun",
        timeout_s: float = DEFAULT_TIMEOUT_S,
        log_dir: str | os.PathLike[str] = ".",
        ips: Mapping[str, str] | None = None,
    ):
        if not nodes:
            raise DeepmathError("a Ray cluster needs at least one node")
        self.nodes = list(nodes)
        self.port = port
        self.num_gpus, self.num_cpus = num_gpus, num_cpus
        self.ray = ray or _ray_executable()
        self.python = python or _python_next_to(self.ray)
        self.srun = srun
        self.timeout_s = timeout_s
        self.log_dir = Path(log_dir)
        self._ips = dict(ips) if ips else None
        self._head: subprocess.Popen[bytes] | None = None
        self._workers: dict[str, subprocess.Popen[bytes]] = {}
        self._plan: dict[str, Any] | None = None

    @property
    def head(self) -> str:
        return self.nodes[0]

    @property
    def workers(self) -> list[str]:
        return self.nodes[1:]

    @property
    def ips(self) -> dict[str, str]:
        if self._ips is None:
            self._ips = {n: resolve_ip(n) for n in self.nodes}
        return self._ips

    @property
    def head_ip(self) -> str:
        return self.ips[self.head]

    @property
    def address(self) -> str:
        return f"{self.head_ip}:{self.port}"

    def plan(self) -> dict[str, Any]:
        if self._plan is None:
            self._plan = plan(
                self.nodes,
                ips=self.ips,
                port=self.port,
                num_gpus=self.num_gpus,
                num_cpus=self.num_cpus,
                ray=self.ray,
                srun=self.srun,
            )
        return self._plan

    def start(self) -> str:
        """Start head and workers and wait until Ray sees every node; stops all on failure."""
        if shutil.which(self.ray) is None:
            raise DeepmathError(
                f"the ray CLI ('{self.ray}') is not installed in this environment; install "
                "ray (the serving/training envs pin it) or use one node"
            )
        if self.workers and shutil.which(self.srun) is None:
            raise DeepmathError(f"'{self.srun}' not found: a multi-node Ray cluster needs Slurm")
        steps = self.plan()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            log.info("ray head on %s: %s", self.head, " ".join(steps["head"]))
            self._head = _spawn(steps["head"], self.log_dir / "ray-head.log")
            for node, cmd in steps["workers"].items():
                log.info("ray worker on %s: %s", node, " ".join(cmd))
                self._workers[node] = _spawn(cmd, self.log_dir / f"ray-{node}.log")
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self.address

    def wait(self) -> list[str]:
        """Block until every node is alive in Ray (``timeout_s``); returns their IPs."""
        deadline = time.monotonic() + self.timeout_s
        seen: list[str] = []
        while True:
            for name, proc in [("head", self._head), *self._workers.items()]:
                if proc is not None and proc.poll() is not None:
                    logfile = "ray-head.log" if name == "head" else f"ray-{name}.log"
                    raise DeepmathError(
                        f"ray on {self.head if name == 'head' else name} exited with code "
                        f"{proc.returncode}; see {self.log_dir / logfile}"
                    )
            out = subprocess.run(
                probe_command(self.address, python=self.python),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode == 0:
                with contextlib.suppress(ValueError):
                    seen = json.loads(out.stdout.strip().splitlines()[-1])
                if len(seen) >= len(self.nodes):
                    log.info("ray cluster up at %s with %d node(s)", self.address, len(seen))
                    return seen
            if time.monotonic() > deadline:
                raise DeepmathError(
                    f"ray cluster at {self.address}: {len(seen)} of {len(self.nodes)} nodes alive "
                    f"after {self.timeout_s:g} s; logs in {self.log_dir}"
                )
            time.sleep(2)

    def stop(self) -> None:
        """``ray stop --force`` everywhere, then end the srun and head processes."""
        steps = self._plan
        if steps is None:
            return
        procs = []
        for cmd in steps["stop"]:
            try:
                procs.append(
                    subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )
            except OSError as err:
                log.warning("could not run %s: %s", " ".join(cmd), err)
        for proc in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in [*self._workers.values(), self._head]:
            if proc is not None:
                end_group(proc, grace_s=15)
        self._workers, self._head = {}, None
        log.info("ray cluster at %s torn down", self.address)

    def __enter__(self) -> RayCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ray_executable() -> str:
    sibling = Path(sys.executable).parent / "ray"
    return str(sibling) if sibling.is_file() else "ray"


def _python_next_to(ray: str) -> str:
    found = shutil.which(ray)
    if found:
        candidate = Path(found).parent / "python"
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def _spawn(cmd: Sequence[str], logfile: Path) -> subprocess.Popen[bytes]:
    with open(logfile, "ab") as fh:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.raycluster",
        description="Start Ray over a Slurm job's nodes, run a command on the head, tear down.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run a command on the head with RAY_ADDRESS set")
    p.add_argument("--nodes", help="nodes, head first (default: the Slurm job's nodes)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="Ray head port (default 6379)")
    p.add_argument("--num-gpus", type=int, help="GPUs per node Ray may use (default: detect)")
    p.add_argument("--num-cpus", type=int, help="CPUs per node Ray may use (default: detect)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait")
    p.add_argument("--log-dir", default=".", help="folder for ray-head.log and ray-<node>.log")
    p.add_argument("--dry-run", action="store_true", help="print the commands as JSON; run none")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- command to run on the head")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    nodes = job_nodes(args.nodes)
    cluster = RayCluster(
        nodes,
        port=args.port,
        num_gpus=args.num_gpus,
        num_cpus=args.num_cpus,
        timeout_s=args.timeout,
        log_dir=args.log_dir,
    )
    if args.dry_run:
        cluster._ips = {n: _resolve_or_name(n) for n in nodes}  # names stay where DNS has none
        print(json.dumps({"nodes": nodes, **cluster.plan(), "command": command}, indent=2))
        return
    if not command:
        raise DeepmathError("run needs a command after --")
    with signals_raise(), cluster:
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        code = subprocess.call(command, env=env)
    sys.exit(code)


if __name__ == "__main__":
    run_cli(main)
