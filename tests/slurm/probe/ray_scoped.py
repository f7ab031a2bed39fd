"""`ray` for the 2-node test: the real Ray CLI, except that `ray stop` ends only this job's Ray.

deepmath.raycluster tears down with `ray stop --force` on every node, which ends every Ray
process of the machine. On a real cluster the job holds its nodes exclusively; here both
"nodes" are this one shared machine, so `stop` ends only the Ray processes that belong to this
Slurm job (SLURM_JOB_ID in their environment; the test's Ray venv in their command line, or a
`ray::` process title as `ray stop` matches them), with SIGKILL as `--force` does. Every other
subcommand is the real `ray`.

Installed by the `ray_bin` fixture as `ray` next to a `python` of the Ray venv, with the real
Ray bin/ in DEEPMATH_TEST_RAY_BIN.
"""

import os
import signal
import sys

REAL_BIN = os.environ["DEEPMATH_TEST_RAY_BIN"]

if sys.argv[1:2] != ["stop"]:
    os.execv(os.path.join(REAL_BIN, "ray"), [os.path.join(REAL_BIN, "ray"), *sys.argv[1:]])

job = os.environ.get("SLURM_JOB_ID")
venv = os.path.dirname(REAL_BIN).encode()
ended = 0
if job:
    mark = f"SLURM_JOB_ID={job}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in (os.getpid(), os.getppid()):
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read()
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        # Ray's processes: started from the test's Ray venv, or renamed `ray::<Name>` (workers
        # and agents set their process title), of this job.
        if mark in environ and (venv in cmdline or cmdline.startswith(b"ray::")):
            try:
                os.kill(int(pid), signal.SIGKILL)
                ended += 1
            except ProcessLookupError:
                pass
print(f"ray stop (job {job}): ended {ended} Ray process(es) of this job", file=sys.stderr)
