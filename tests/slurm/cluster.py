"""A real Slurm cluster on this machine, for the tests: munged, slurmctld and N slurmd.

Debian's Slurm 22.05 packages (installed with apt when missing), every file of the cluster in
one folder (``root``): slurm.conf, gres.conf, cgroup.conf, the munge key and socket, state,
pid and log files, and fake GPU devices. Nothing is written under /etc except one line per node
in /etc/hosts (``127.0.x.y <node>``, so that jobs and Ray can resolve node names), removed again
by ``stop()``.

Several clusters may run on one machine at once (two test sessions): each takes a free "slot"
(its own node names and 127.0.<slot>.x addresses) and records itself in
/tmp/deepmath-slurm-ci/; a later start ends only the clusters whose test process has died
without stopping them.

How the pieces fit on one host:

- each slurmd runs under ``unshare --uts`` with its node's hostname and its own address
  (127.0.<slot>.2, .3, ...; Ray rewrites 127.0.0.1 to the outside address, so it is not used
  for nodes) and port; ``SlurmdParameters=config_overrides`` lets a node declare more CPUs and
  memory than this machine has;
- GPUs without hardware: ``Gres=gpu:<type>:8`` per node and a gres.conf whose ``File=`` entries
  are character devices made with ``mknod ... c 1 3`` (a file-less GPU gres is dropped and the
  node goes INVAL). Slurm then sets ``CUDA_VISIBLE_DEVICES`` in jobs as on real GPU nodes;
- no accounting database: clients must use ``squeue`` for job status (the Snakemake plugin's
  default, ``sacct``, would wait forever), and ``MinJobAge`` is long enough for that;
- the cluster's config is not at the default path, and the Snakemake jobstep removes every
  ``SLURM_*`` variable (``SLURM_CONF`` included) from a rule's environment. So client commands
  are reached through small wrappers in ``root/bin`` that set ``SLURM_CONF`` and exec the real
  tool; ``env()`` puts that folder first on ``PATH``, which jobs inherit (``--export=ALL``).

Usage::

    cluster = LocalSlurm(tmp_path)
    cluster.start()          # a few seconds
    env = cluster.env(os.environ)
    ...
    cluster.stop()
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from deepmath.procs import end_group
from tests.apt import apt_install

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
DAEMONS = {"slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd", "munged": None}
CLIENTS = [
    "sbatch",
    "srun",
    "salloc",
    "squeue",
    "scontrol",
    "sinfo",
    "scancel",
    "sacct",
    "sacctmgr",
    "sshare",
]
HOSTS_FILE = Path("/etc/hosts")
HOSTS_MARK = "# deepmath-slurm-ci"
# One record per running cluster (owner process, daemons, /etc/hosts lines), so that a later
# start() can end the clusters whose test process died without stop(), and only those.
RECORDS = Path(tempfile.gettempdir()) / "deepmath-slurm-ci"
MAX_SLOTS = 50


class ClusterError(RuntimeError):
    pass


# --------------------------------------------------------------------------- can it run here


def unavailable_reason() -> str | None:
    """Why this machine cannot run the local cluster, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"the local Slurm cluster needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return (
            "the local Slurm cluster needs root (slurmd runs jobs as their user, "
            "unshare --uts and /etc/hosts entries); run the tests as root"
        )
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    if not _installed() and not shutil.which("apt-get"):
        return (
            "Slurm is not installed and there is no apt-get to install it "
            f"(needs the Debian packages {' '.join(PACKAGES)})"
        )
    return None


def _installed() -> bool:
    return all(
        Path(p).is_file() for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch")
    ) and bool(shutil.which("munged") or Path("/usr/sbin/munged").is_file())


def ensure_installed(timeout: float = 600) -> str:
    """Install Debian's Slurm and munge with apt when missing; returns what was done."""
    if _installed():
        return "already installed"
    start = time.monotonic()
    proc = apt_install(PACKAGES, timeout)
    if proc.returncode != 0 or not _installed():
        raise ClusterError(
            f"apt-get install {' '.join(PACKAGES)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return f"installed {' '.join(PACKAGES)} with apt in {time.monotonic() - start:.0f} s"


# --------------------------------------------------------------------------- the cluster


@dataclass(frozen=True)
class Node:
    name: str
    addr: str
    port: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalSlurm:
    """munged + slurmctld + ``nodes`` slurmd on 127.0.<slot>.2.., all state under ``root``.

    Node names are ``<prefix>-n1``, ``<prefix>-n2``, ... (``<prefix><slot>-n1`` for slots > 0);
    ``nodes`` is filled in by ``start()``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        nodes: int = 2,
        cpus: int = 32,
        mem_mb: int = 65536,
        gpus: int = 8,
        gpu_type: str = "a100",
        partitions: Sequence[str] = ("cpu", "gpu"),
        prefix: str = "dmci",
    ):
        self.root = Path(root).resolve()
        self.cpus, self.mem_mb, self.gpus, self.gpu_type = cpus, mem_mb, gpus, gpu_type
        self.partitions = list(partitions)
        self.prefix, self.num_nodes = prefix, nodes
        self.host = socket.gethostname().split(".")[0]
        self.ctld_port = _free_port()
        self.slot: int | None = None
        self.nodes: list[Node] = []
        self.conf = self.root / "etc" / "slurm.conf"
        self.bin = self.root / "bin"
        self.log_dir = self.root / "log"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._hosts_added: list[str] = []
        self.start_seconds: float | None = None

    # ----------------------------------------------------------------- files

    def write_files(self) -> None:
        for sub in ("etc", "bin", "log", "run", "state/ctld", "munge", "dev"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            (self.root / "state" / node.name).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)

        # Fake GPUs: character devices (same major/minor as /dev/null) that gres.conf lists.
        for i in range(self.gpus):
            dev = self.root / "dev" / f"nvidia{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
                os.chmod(dev, 0o666)

        key = self.root / "munge" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)

        gres = f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"
        node_names = ",".join(n.name for n in self.nodes)
        lines = [
            "# Written by tests/slurm/cluster.py: a throwaway cluster on one machine.",
            "ClusterName=deepmath-ci",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.nodes[0].port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root}/state/ctld",
            f"SlurmdSpoolDir={self.root}/state/%n",
            f"SlurmctldPidFile={self.root}/run/slurmctld.pid",
            f"SlurmdPidFile={self.root}/run/slurmd-%n.pid",
            f"SlurmctldLogFile={self.log_dir}/slurmctld.log",
            f"SlurmdLogFile={self.log_dir}/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            f"PlugStackConfig={self.root}/etc/plugstack.conf",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "GresTypes=gpu",
            "MpiDefault=none",
            "SwitchType=switch/none",
            "ReturnToService=2",
            # Finished jobs stay visible to squeue (the status command without accounting)
            # and to the tests' scontrol checks, which on a slow machine come >10 min later.
            "MinJobAge=3600",
            "SlurmdParameters=config_overrides",
            "SlurmdTimeout=300",
            "InactiveLimit=0",
            "KillWait=5",
            "Waittime=0",
            "SchedulerParameters=sched_interval=2,bf_interval=2",
        ]
        for node in self.nodes:
            lines.append(
                f"NodeName={node.name} NodeAddr={node.addr} NodeHostname={node.name} "
                f"Port={node.port} CPUs={self.cpus} RealMemory={self.mem_mb} Gres={gres} "
                "State=UNKNOWN"
            )
        for i, part in enumerate(self.partitions):
            default = "YES" if i == 0 else "NO"
            lines.append(
                f"PartitionName={part} Nodes={node_names} Default={default} "
                "MaxTime=INFINITE State=UP"
            )
        self.conf.write_text("\n".join(lines) + "\n")

        typ = f" Type={self.gpu_type}" if self.gpu_type else ""
        last = self.gpus - 1
        (self.root / "etc" / "gres.conf").write_text(
            "AutoDetect=off\n"
            f"NodeName={node_names} Name=gpu{typ} File={self.root}/dev/nvidia[0-{last}]\n"
        )
        # Not used by proctrack/linuxproc + task/none (cgroups are not delegated in most
        # containers); written so a run with cgroup plugins finds one next to slurm.conf.
        (self.root / "etc" / "cgroup.conf").write_text("CgroupPlugin=autodetect\n")
        (self.root / "etc" / "plugstack.conf").write_text("")

        # Client wrappers: SLURM_CONF survives the jobstep's removal of SLURM_* this way.
        for tool in CLIENTS:
            real = shutil.which(tool, path="/usr/bin:/usr/sbin:/bin")
            if not real:
                continue
            wrapper = self.bin / tool
            wrapper.write_text(
                f'#!/bin/sh\nSLURM_CONF={self.conf}\nexport SLURM_CONF\nexec {real} "$@"\n'
            )
            wrapper.chmod(0o755)

    # ----------------------------------------------------------------- lifecycle

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) with the wrappers first on PATH and SLURM_CONF set."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["SLURM_CONF"] = str(self.conf)
        for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":
                env.pop(var)
        return env

    def start(self, timeout: float = 90) -> float:
        """Start everything and wait until every node is idle; returns the seconds it took."""
        t0 = time.monotonic()
        RECORDS.mkdir(exist_ok=True)
        with _records_lock():
            _end_stale()
            self.slot = _free_slot()
            name = self.prefix if self.slot == 0 else f"{self.prefix}{self.slot}"
            self.nodes = [
                Node(f"{name}-n{i + 1}", f"127.0.{self.slot}.{i + 2}", _free_port())
                for i in range(self.num_nodes)
            ]
            self.write_files()
            self._add_hosts()
            _record(self)
        try:
            munged = shutil.which("munged") or "/usr/sbin/munged"
            self._spawn(
                "munged",
                [
                    munged,
                    "--foreground",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={self.root}/munge/munge.key",
                    f"--pid-file={self.root}/run/munged.pid",
                    f"--log-file={self.log_dir}/munged.log",
                    f"--seed-file={self.root}/munge/munged.seed",
                ],
            )
            _wait_for(lambda: self.munge_socket.exists(), 20, "munged socket", self)
            self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D", "-c", "-f", str(self.conf)])
            _wait_for(self._ctld_up, 30, "slurmctld", self)
            for node in self.nodes:
                script = 'hostname "$1" && exec /usr/sbin/slurmd -D -N "$1" -f "$2"'
                self._spawn(
                    f"slurmd-{node.name}",
                    [
                        "unshare",
                        "--uts",
                        "--",
                        "/bin/sh",
                        "-c",
                        script,
                        "sh",
                        node.name,
                        str(self.conf),
                    ],
                )
            _wait_for(self._nodes_idle, timeout, "all nodes idle", self)
        except BaseException:
            self.stop()
            raise
        _record(self)
        self.start_seconds = time.monotonic() - t0
        return self.start_seconds

    def stop(self) -> None:
        """Cancel every job, stop the daemons (TERM, then KILL), drop the /etc/hosts lines."""
        if self._procs.get("slurmctld") and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                self.run("scancel", "--user=root", "--full", check=False, timeout=20)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and self.jobs():
                    time.sleep(1)
        order = [n for n in self._procs if n.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            proc = self._procs.get(name)
            if proc is not None:
                end_group(proc, grace_s=10)
        self._procs = {}
        self._remove_hosts()
        with contextlib.suppress(OSError):
            _record_path(self.root).unlink()

    def __enter__(self) -> LocalSlurm:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- clients

    def run(
        self, tool: str, *args: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        proc = subprocess.run(
            [str(self.bin / tool), *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def jobs(self) -> list[str]:
        out = self.run("squeue", "-h", "-o", "%i %T", check=False, timeout=20).stdout
        return [line for line in out.splitlines() if line.strip()]

    def job_info(self, job_id: str) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (finished jobs stay for MinJobAge)."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        info: dict[str, str] = {}
        for item in out.split():
            key, sep, value = item.partition("=")
            if sep:
                info[key] = value
        return info

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %T", check=False, timeout=20).stdout
        states: dict[str, str] = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    def diagnostics(self, lines: int = 40) -> str:
        """The tail of every daemon log, for failure messages."""
        parts = []
        for log in sorted(self.log_dir.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ----------------------------------------------------------------- internals

    def _spawn(self, name: str, cmd: list[str]) -> None:
        with open(self.log_dir / f"{name}.out", "ab") as out:
            self._procs[name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env(),
            )

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ClusterError(
                    f"{name} exited with code {proc.returncode}\n{self.diagnostics()}"
                )

    def _ctld_up(self) -> bool:
        self._check_alive()
        return self.run("scontrol", "ping", check=False, timeout=10).returncode == 0

    def _nodes_idle(self) -> bool:
        self._check_alive()
        states = self.node_states()
        return len(states) == len(self.nodes) and all(
            s.rstrip("*~#") == "idle" for s in states.values()
        )

    def _add_hosts(self) -> None:
        text = HOSTS_FILE.read_text()
        known = {tuple(line.split()[:2]) for line in text.splitlines() if len(line.split()) >= 2}
        new = [
            f"{n.addr} {n.name} {HOSTS_MARK}" for n in self.nodes if (n.addr, n.name) not in known
        ]
        if new:
            # Write in place: /etc/hosts is often a bind mount that cannot be replaced.
            with open(HOSTS_FILE, "a") as fh:
                fh.write(("" if text.endswith("\n") or not text else "\n") + "\n".join(new) + "\n")
            self._hosts_added = new

    def _remove_hosts(self) -> None:
        if not self._hosts_added:
            return
        with contextlib.suppress(OSError):
            lines = HOSTS_FILE.read_text().splitlines()
            kept = [line for line in lines if line not in self._hosts_added]
            with open(HOSTS_FILE, "w") as fh:
                fh.write("\n".join(kept) + "\n")
        self._hosts_added = []


# --------------------------------------------------------------------------- helpers


def _wait_for(check, timeout: float, what: str, cluster: LocalSlurm) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise ClusterError(
                f"timed out after {timeout:g} s waiting for {what}\n{cluster.diagnostics()}"
            )
        time.sleep(0.5)


def _record_path(root: Path) -> Path:
    return RECORDS / f"{hashlib.sha1(str(root).encode()).hexdigest()[:16]}.json"


def _process_start(pid: int) -> str | None:
    """The start time of a process (/proc/<pid>/stat field 22): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@contextlib.contextmanager
def _records_lock():
    import fcntl

    with open(RECORDS / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _record(cluster: LocalSlurm) -> None:
    """Remember this cluster: its owner (this process), daemons, slot and /etc/hosts lines."""
    data = {
        "owner": os.getpid(),
        "owner_start": _process_start(os.getpid()),
        "root": str(cluster.root),
        "slot": cluster.slot,
        "pids": [p.pid for p in cluster._procs.values()],
        "hosts": cluster._hosts_added,
    }
    with contextlib.suppress(OSError):
        _record_path(cluster.root).write_text(json.dumps(data))


def _live_records() -> list[dict]:
    out = []
    for path in RECORDS.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            if _process_start(data["owner"]) == data["owner_start"]:
                out.append(data)
    return out


def _free_slot() -> int:
    used = {data["slot"] for data in _live_records()}
    for slot in range(MAX_SLOTS):
        if slot not in used:
            return slot
    raise ClusterError(f"{MAX_SLOTS} local Slurm clusters already run on this machine")


def _end_stale() -> None:
    """End the clusters whose owning test process is gone (killed before stop())."""
    for path in RECORDS.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _process_start(data["owner"]) == data["owner_start"]:
            continue  # its test session is still running: not ours to touch
        for pid in data.get("pids", []):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            # Only processes that are still that cluster's (their command line names its root).
            if data["root"] in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        if data.get("hosts"):
            with contextlib.suppress(OSError):
                lines = HOSTS_FILE.read_text().splitlines()
                kept = [line for line in lines if line not in data["hosts"]]
                with open(HOSTS_FILE, "w") as fh:
                    fh.write("\n".join(kept) + "\n")
        with contextlib.suppress(OSError):
            path.unlink()


if __name__ == "__main__":
    # Manual use, from the repo root (starts the cluster, prints its env, waits for Ctrl-C):
    #   PYTHONPATH=scripts .venv/bin/python -m tests.slurm.cluster [ROOT]
    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="slurm-"))
    print(ensure_installed())
    cluster = LocalSlurm(root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    took = cluster.start()
    print(f"cluster up in {took:.1f} s under {root}")
    print(f"export PATH={cluster.bin}:$PATH SLURM_CONF={cluster.conf}")
    try:
        signal.pause()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        cluster.stop()
