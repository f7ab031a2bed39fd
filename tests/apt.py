"""Debian packages the tests need (Slurm, munge, Chromium), installed with apt when missing.

The tests run as root on a Debian machine that reaches the Debian mirrors (the project's CI and
dev machines); elsewhere the callers skip with a reason instead of calling this.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence


def can_install() -> str | None:
    """Why apt cannot install packages here, or None when it can."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("apt-get"):
        return "no apt-get"
    return None


def apt_install(packages: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``apt-get install -y --no-install-recommends``; on failure refresh the lists and retry once.

    A dpkg lock held by another apt run is waited for instead of failing at once.
    """
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    cmd = ["apt-get", *lock, "install", "-y", "--no-install-recommends", *packages]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        # package lists missing or stale (fresh containers): refresh once and retry
        subprocess.run(
            ["apt-get", *lock, "update"], env=env, capture_output=True, text=True, timeout=timeout
        )
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc
