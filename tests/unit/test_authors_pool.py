"""The authors' scorer in worker processes of .venv-authors: same verdicts as calling the rules
directly, a hard deadline per pair, killed and broken workers, threads, the interpreter record.

Everything runs for real: the workers are `python -m deepmath.answers.authors.worker` under
.venv-authors (`make venv-authors`, which `make test` builds first).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from deepmath.answers.authors import Verdict
from deepmath.answers.authors import pool as authors_pool
from deepmath.answers.authors.pool import (
    PYTHON_ENV,
    VENV_PYTHON,
    AuthorsPool,
    authors_python,
    worker_env,
)
from deepmath.io import DeepmathError

pytestmark = pytest.mark.skipif(
    not VENV_PYTHON.exists(), reason=f"{VENV_PYTHON} is missing: run `make venv-authors`"
)
PYTHON = str(VENV_PYTHON)
HOSTILE = "<think>x</think> so \\boxed{10^{10^{10^{10}}}}"

# (response, gold, rule, precision): accepted and rejected, by each branch.
EVAL_CASES = [
    ("So the answer is \\boxed{\\frac{1}{2}}.", "0.5", "general", None),  # (A) numbers
    ("\\boxed{1} then \\boxed{2}", "1", "general", None),  # last box only: rejected
    ("We get 3.\nThe answer is: 3", "3", "general", None),  # (B) last line
    ("The answer is: 3\nso", "3", "general", None),  # (B) not at the end: rejected
    ("$x = \\frac{\\sqrt{2}}{2}$", "\\frac{1}{\\sqrt{2}}", "general", None),  # (C) whole text
    ("\\boxed{5\\text{ cm}}", "5", "general", None),  # units dropped
    ("\\boxed{(1,2)}", "(1, 3)", "general", None),  # tuples item by item: rejected
    ("", "1", "general", None),  # empty
    ("\\boxed{12\\%}", "0.12", "general", None),  # percent
    ("<think>a</think> \\boxed{2}", "2", "olympiad", 1e-8),
]
# (response, gold, gate)
REWARD_CASES = [
    ("<think>maybe \\boxed{5}</think> it is \\boxed{4}", "4", "think"),  # after the last tag
    ("<think>a</think>\\boxed{4}</think> \\boxed{5}", "4", "think"),  # LAST </think> counts
    ("it is \\boxed{4}", "4", "think"),  # no </think>
    ("\\boxed{\\dfrac{1}{2}}", "0.5", "one_box"),
    ("\\boxed{1} or \\boxed{0.5}", "0.5", "one_box"),  # two boxes
    ("no box, 0.5", "0.5", "one_box"),  # none
]

DIRECT = r"""
import json, sys
from dataclasses import asdict
from deepmath.answers.authors.rules import eval_verdict, reward_verdict
cases = json.load(sys.stdin)
out = {
    "eval": [asdict(eval_verdict(r, g, rule, p)) for r, g, rule, p in cases["eval"]],
    "reward": [asdict(reward_verdict(r, g, gate)) for r, g, gate in cases["reward"]],
}
print(json.dumps(out))
"""


def direct_verdicts() -> dict[str, list[Verdict]]:
    """The rules called in one .venv-authors process, no pool in between."""
    proc = subprocess.run(
        [PYTHON, "-c", DIRECT],
        input=json.dumps({"eval": EVAL_CASES, "reward": REWARD_CASES}),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    raw = json.loads(proc.stdout)
    return {k: [Verdict(**v) for v in vs] for k, vs in raw.items()}


@pytest.fixture(scope="module")
def pool():
    with AuthorsPool(PYTHON, workers=2, timeout_s=20) as p:
        yield p


def test_pool_gives_the_verdicts_of_the_rules_called_directly(pool):
    want = direct_verdicts()
    assert pool.eval_verdicts(EVAL_CASES) == want["eval"]
    assert pool.reward_verdicts(REWARD_CASES) == want["reward"]
    # both kinds of answer are in the table
    assert {v.correct for v in want["eval"]} == {True, False}
    assert {v.correct for v in want["reward"]} == {True, False}


def test_environment_is_the_authors_and_exact(pool):
    env = pool.environment()
    assert env["math-verify"] == "0.7.0"
    assert env["antlr4-python3-runtime"] == "4.11.0"
    assert pool.hello()["exact"] is True
    assert pool.hello()["python"] == PYTHON


def test_workers_do_not_see_the_callers_packages():
    # the caller's .venv has math-verify 0.9.0; the workers must import the authors' 0.7.0
    env = worker_env({"PYTHONPATH": "/somewhere/else", "PATH": "/usr/bin"})
    assert env["PYTHONPATH"] == str(authors_pool.SCRIPTS_DIR)
    assert env["PYTHONNOUSERSITE"] == "1"


def test_empty_call_starts_nothing():
    with AuthorsPool(PYTHON, workers=2) as p:
        assert p.reward_verdicts([]) == []
        assert p.pids() == []


def test_a_hung_pair_costs_one_timeout_and_a_fresh_worker_answers_next(no_timeout_scale):
    with AuthorsPool(PYTHON, workers=1, timeout_s=1.0, grace_s=0.5) as p:
        first = p.run("ping", [{}])[0].value["pid"]
        start = time.monotonic()
        hung = p.run("sleep", [{"s": 60}])[0]
        took = time.monotonic() - start
        assert hung.status == "timeout"
        assert 1.4 <= took < 10
        assert not _alive(first)  # killed, not left running
        after = p.run("ping", [{}])[0]
        assert after.status == "ok" and after.value["pid"] != first
        assert p.timeouts == 1 and p.respawns == 1


def test_a_pathological_answer_times_out_as_minus_one_and_the_rest_are_scored(no_timeout_scale):
    items = [(HOSTILE, "1", "think"), ("<think>x</think> \\boxed{4}", "4", "think")]
    with AuthorsPool(PYTHON, workers=1, timeout_s=2.0, grace_s=0.5) as p:
        start = time.monotonic()
        got = p.reward_verdicts(items)
        assert time.monotonic() - start < 30
    assert got[0] == Verdict(False, "timeout", None)
    assert got[1].correct is True


def test_several_pairs_in_flight_each_keep_their_own_deadline(no_timeout_scale):
    with AuthorsPool(PYTHON, workers=3, timeout_s=1.0, grace_s=0.5) as p:
        got = p.run("sleep", [{"s": 60}, {"s": 0.1}, {"s": 60}, {"s": 0}])
    assert [o.status for o in got] == ["timeout", "ok", "timeout", "ok"]


def test_a_killed_worker_gives_an_error_and_is_replaced():
    with AuthorsPool(PYTHON, workers=1, timeout_s=30) as p:
        pid = p.run("ping", [{}])[0].value["pid"]
        killer = threading.Timer(0.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        got = p.run("sleep", [{"s": 20}])[0]
        killer.join()
        assert got.status == "error" and "exit code -9" in got.detail
        assert p.reward_verdicts([("\\boxed{2}", "2", "one_box")])[0].correct is True
        assert p.pids() and pid not in p.pids()


def test_an_error_inside_a_pair_is_an_error_verdict_and_the_worker_lives_on():
    with AuthorsPool(PYTHON, workers=1) as p:
        pid = p.run("ping", [{}])[0].value["pid"]
        bad = p.reward_verdicts([("\\boxed{2}", "2", "no-such-gate")])
        assert bad == [Verdict(False, "error", None)]
        assert p.run("nope", [{}])[0].status == "error"
        assert p.run("ping", [{}])[0].value["pid"] == pid


@pytest.mark.parametrize(
    ("python", "says"),
    [
        ("/no/such/python", "No such file"),
        ("/usr/bin/python3", "ModuleNotFoundError"),  # a Python without sympy / math-verify
        ("/bin/true", "exit code 0"),  # a program that is not a worker at all
    ],
)
def test_an_interpreter_that_cannot_start_a_worker_is_one_clear_error(python, says):
    if not Path(python).exists() and python != "/no/such/python":
        pytest.skip(f"{python} is not on this machine")
    p = AuthorsPool(python, workers=2)
    start = time.monotonic()
    with pytest.raises(DeepmathError) as err:
        p.reward_verdicts([("\\boxed{1}", "1", "one_box")] * 4)
    assert time.monotonic() - start < 60  # no respawn loop
    assert python in str(err.value) and says in str(err.value)
    assert "make venv-authors" in str(err.value)
    assert p.pids() == []


def test_calls_from_four_threads_at_once_get_their_own_answers():
    cases = [
        (f"<think>x</think> \\boxed{{{i}}}", str(i if i % 3 else i + 1), "think") for i in range(12)
    ]
    want = [i % 3 != 0 for i in range(12)]
    got: dict[int, list[bool]] = {}
    errors: list[BaseException] = []

    def call(k: int) -> None:
        try:
            mine = cases[k:] + cases[:k]
            got[k] = [v.correct for v in p.reward_verdicts(mine)]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with AuthorsPool(PYTHON, workers=2, timeout_s=30) as p:
        threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(p.pids()) <= 2
    assert not errors
    assert got == {k: want[k:] + want[:k] for k in range(4)}


def test_the_caller_keeps_its_own_alarm(no_timeout_scale):
    # the pool never arms SIGALRM or replaces its handler in the caller
    handler = signal.getsignal(signal.SIGALRM)
    with AuthorsPool(PYTHON, workers=1, timeout_s=1.0, grace_s=0.2) as p:
        p.reward_verdicts([("\\boxed{1}", "1", "one_box")])
        p.run("sleep", [{"s": 30}])
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is handler


def test_workers_have_a_memory_cap_and_close_kills_them():
    p = AuthorsPool(PYTHON, workers=2, memory_mb=2048)
    p.run("sleep", [{"s": 0}, {"s": 0}])
    pids = p.pids()
    assert len(pids) == 2
    for pid in pids:
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max address space"))
        assert str(2048 * 1024 * 1024) in line
    p.close()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(DeepmathError, match="closed"):
        p.run("ping", [{}])


def test_worker_stdout_carries_only_protocol_lines(venv_env):
    # a library that prints must not corrupt the stream: fd 1 goes to stderr
    code = (
        "from deepmath.answers.authors import worker\n"
        "out = worker.protocol_stream()\n"
        "print('noise from a library')\n"
        "import os; os.write(1, b'noise from C\\n')\n"
        "worker.send(out, {'id': 1})\n"
    )
    proc = subprocess.run(
        [PYTHON, "-c", code], env=worker_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.stdout == '{"id": 1}\n'
    assert "noise from a library" in proc.stderr and "noise from C" in proc.stderr


def test_worker_protocol_end_to_end():
    requests = [
        {
            "id": 7,
            "op": "reward",
            "args": {"response": "\\boxed{3}", "gold": "3", "gate": "one_box"},
        },
        {"id": 8, "op": "eval", "args": {"response": "\\boxed{3}", "gold": [3], "rule": "general"}},
        "not json",
    ]
    lines = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in requests)
    proc = subprocess.run(
        [PYTHON, "-m", "deepmath.answers.authors.worker"],
        input=lines,
        env=worker_env(),
        cwd=authors_pool.SCRIPTS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0
    assert out[0]["hello"] == "deepmath.answers.authors.worker" and out[0]["exact"] is True
    assert out[1] == {"id": 7, "ok": True, "result": {"correct": True, "via": "boxed", "pred": "3"}}
    assert out[2]["id"] == 8 and out[2]["result"]["correct"] is True  # a list gold of one
    assert out[3]["ok"] is False and "not a JSON request" in out[3]["error"]


def test_interpreter_resolution_order(tmp_path, monkeypatch, caplog):
    """flag > record > environment > .venv-authors: a record the workflow checked is not
    overridden by a stray environment variable, which is named in a warning."""
    record = tmp_path / "python.json"
    record.write_text(json.dumps({"python": "/from/record", "environment": {}}))
    env = {PYTHON_ENV: "/from/env"}
    assert authors_python("/from/flag", env, record) == "/from/flag"
    with caplog.at_level("WARNING", logger="deepmath.answers.authors.pool"):
        assert authors_python(None, env, record) == "/from/record"
    assert "/from/env" in caplog.text and "/from/record" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="deepmath.answers.authors.pool"):
        assert authors_python(None, {PYTHON_ENV: "/from/record"}, record) == "/from/record"
    assert caplog.text == ""  # the same interpreter both ways: nothing to say
    assert authors_python(None, env, None) == "/from/env"
    assert authors_python(None, {}, record) == "/from/record"
    assert authors_python(None, {}, None) == str(VENV_PYTHON)
    monkeypatch.setattr(authors_pool, "VENV_PYTHON", tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(DeepmathError, match="make venv-authors"):
        authors_python(None, {}, None)
    record.write_text("{}")
    with pytest.raises(DeepmathError, match="no 'python'"):
        authors_python(None, {}, record)


def test_a_relative_interpreter_is_made_absolute_and_starts(tmp_path, monkeypatch):
    """The workers start in scripts/: a path relative to the caller's folder must still work,
    given as a flag, in the environment or in a record; a bare name is looked up on PATH."""
    monkeypatch.chdir(VENV_PYTHON.parents[2])
    relative = os.path.relpath(VENV_PYTHON)
    assert "/" in relative and not relative.startswith("/")
    record = tmp_path / "python.json"
    record.write_text(json.dumps({"python": relative, "environment": {}}))
    for got in (
        authors_python(relative, {}),
        authors_python(None, {PYTHON_ENV: relative}),
        authors_python(None, {}, record),
    ):
        assert got == str(VENV_PYTHON)
    bare = Path(sys.executable).name
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert authors_python(bare, {}) == str(Path(sys.executable).parent / bare)
    assert authors_python("no-such-python-here", {}) == "no-such-python-here"
    with AuthorsPool(relative, workers=1) as p:  # a pool given the relative path starts too
        assert p.hello()["exact"] is True


def test_workers_run_with_a_fixed_hash_seed():
    """Whatever the caller's seed, every worker has PYTHONHASHSEED=0, and the hello says so."""
    assert worker_env({"PYTHONHASHSEED": "random"})["PYTHONHASHSEED"] == "0"
    assert worker_env({})["PYTHONHASHSEED"] == "0"
    with AuthorsPool(PYTHON, workers=2) as p:
        p.run("ping", [{}, {}])
        assert p.hello()["hash_seed"] == "0"
        for pid in p.pids():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert b"PYTHONHASHSEED=0" in environ


def test_the_deadline_check_leaves_an_answer_already_read():
    """A worker whose answer is in its buffer when the deadline passes is not overdue, and the
    answer is still there to be read; one with a partial line or nothing is overdue."""
    from deepmath.answers.authors.pool import _overdue, _Worker

    procs = [
        subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(3)
    ]
    workers = [_Worker(proc, tempfile.TemporaryFile()) for proc in procs]  # noqa: SIM115 - kill() closes them
    try:
        answered, partial, silent = workers
        answered.buf.extend(b'{"id": 0, "ok": true}\n')
        partial.buf.extend(b'{"id": 1, "o')
        now = time.monotonic()
        mine = {w: (i, now - 1.0) for i, w in enumerate(workers)}
        assert _overdue(mine, now) == [partial, silent]
        assert answered.line() == b'{"id": 0, "ok": true}'
        assert _overdue({answered: (0, now + 5.0)}, now) == []  # not yet due
    finally:
        for w in workers:
            w.kill()


def test_where_records_an_exact_interpreter_and_refuses_another(tmp_path, venv_env):
    out = tmp_path / "authors" / "python.json"
    cmd = [sys.executable, "-m", "deepmath.answers.authors.pool", "where", "--out", str(out)]
    env = {k: v for k, v in venv_env.items() if k != PYTHON_ENV}
    # this interpreter (.venv) is not exact: it falls back to .venv-authors and checks it
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=120)
    record = json.loads(out.read_text())
    assert record["python"] == PYTHON and record["environment"]["sympy"] == "1.13.1"
    # the rule's conda env case: the running interpreter is exact, so it records itself
    out.unlink()
    subprocess.run(
        [PYTHON, *cmd[1:]], env=worker_env(), check=True, capture_output=True, timeout=120
    )
    assert json.loads(out.read_text())["python"] == PYTHON
    # a named interpreter with other versions is refused, naming them
    out.unlink()
    verl = Path(sys.executable).parents[2] / ".venv-verl" / "bin" / "python"
    other = str(verl) if verl.exists() else sys.executable
    proc = subprocess.run(
        [*cmd, "--authors-python", other], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and not out.exists()
    assert "does not have the authors' scorer versions" in proc.stderr and other in proc.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"
