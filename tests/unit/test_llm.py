"""The LLM client against a real local HTTP server that misbehaves on purpose (no mocks)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from deepmath.io import DeepmathError
from deepmath.llm import (
    Journal,
    LLMError,
    cost_usd,
    load_role,
    make_request,
    read_journal,
    role_config,
    run_requests,
    write_usage,
)
from tests.llm_server import FakeLLMServer, reply_text

FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}


@pytest.fixture
def server():
    with FakeLLMServer() as srv:
        yield srv


def role_for(srv: FakeLLMServer, **over):
    cfg = {"model": "fake-model", "base_url": srv.url, "params": {"temperature": 0}, **FAST}
    cfg.update(over)
    return role_config("judge", cfg)


def ask(role, text: str, sample: int = 0, **kw):
    return make_request(role, [{"role": "user", "content": text}], sample=sample, **kw)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- config + keys


@pytest.mark.parametrize(("scale", "expected"), [(None, 600.0), ("3", 1800.0), ("0.5", 300.0)])
def test_request_timeouts_scale_with_the_machine(monkeypatch, no_timeout_scale, scale, expected):
    if scale is not None:
        monkeypatch.setenv("DEEPMATH_TIMEOUT_SCALE", scale)
    role = role_config("judge", {"model": "m", "base_url": "http://127.0.0.1:1/v1"})
    assert role.timeout_s == expected


@pytest.mark.parametrize("bad", ["fast", "0", "-2", "inf", "nan"])
def test_a_bad_timeout_scale_names_the_variable(monkeypatch, bad):
    monkeypatch.setenv("DEEPMATH_TIMEOUT_SCALE", bad)
    with pytest.raises(DeepmathError, match=f"DEEPMATH_TIMEOUT_SCALE = '{bad}' must be a number"):
        role_config("judge", {"model": "m", "base_url": "http://127.0.0.1:1/v1"})


def test_role_config_validation_names_keys(no_timeout_scale):
    ok = role_config(
        "rater",
        {
            "model": "gpt-4o",
            "base_url": "https://user:pw@api.example.com/v1?key=abc",
            "api_key_env": "DM_TEST_KEY",
            "params": {"temperature": 1, "stop": "###", "top_k": 20},
            "prices": {"prompt": 2.5, "completion": 10},
        },
    )
    assert ok.params == {"temperature": 1.0, "stop": ["###"], "top_k": 20}
    assert ok.endpoint == "https://api.example.com/v1"  # no user info, no query
    assert (ok.max_concurrency, ok.max_retries, ok.timeout_s) == (8, 5, 600.0)

    with pytest.raises(DeepmathError) as err:
        role_config(
            "judge",
            {
                "base_url": "ftp://x",
                "serve": {"engine": "vllm"},
                "max_concurrency": 0,
                "max_retries": -1,
                "timeout": 3,
                "params": {"temprature": 0.5},
                "prices": {"input": 1},
            },
        )
    msg = str(err.value)
    for part in (
        "llm.judge.model",
        "both serve and base_url",
        "llm.judge.max_concurrency = 0",
        "llm.judge.max_retries = -1",
        "unknown key 'llm.judge.timeout'",
        "llm.judge.params.temprature",
        "llm.judge.prices",
    ):
        assert part in msg, part

    with pytest.raises(DeepmathError, match="no server URL"):
        role_config("solver", {"model": "m", "serve": {"model": "m"}})
    served = role_config(
        "solver", {"model": "m", "serve": {"model": "m"}}, base_url="http://127.0.0.1:8/v1"
    )
    assert served.served and served.base_url == "http://127.0.0.1:8/v1"
    with pytest.raises(DeepmathError, match="either base_url"):
        role_config("x", {"model": "m"})
    with pytest.raises(DeepmathError, match=r"params.top_p = 1.5 must be <= 1"):
        role_config("x", {"model": "m", "base_url": "http://h/v1", "params": {"top_p": 1.5}})
    with pytest.raises(DeepmathError, match="defined roles: judge"):
        load_role({"llm": {"judge": {"model": "m", "base_url": "http://h/v1"}}}, "rater")


def test_request_keys_are_stable_and_cover_model_messages_params_sample(server):
    role = role_for(server, params={"temperature": 0.6, "seed": 42})
    a = ask(role, "hi", meta="row-1")
    assert a.key == ask(role, "hi", meta="other metadata").key  # meta is not hashed
    assert a.params["seed"] == 42 and ask(role, "hi", sample=3).params["seed"] == 45
    others = {
        ask(role, "hi!").key,
        ask(role, "hi", sample=1).key,
        ask(role, "hi", params={"temperature": 0.7}).key,
        ask(role_for(server, model="other"), "hi").key,
        make_request(role, prompt="hi").key,
    }
    assert a.key not in others and len(others) == 5
    # 1 and 1.0 are the same temperature: same key
    r1 = role_for(server, params={"temperature": 1})
    r2 = role_for(server, params={"temperature": 1.0})
    assert ask(r1, "x").key == ask(r2, "x").key
    with pytest.raises(DeepmathError, match="exactly one of messages or prompt"):
        make_request(role)
    with pytest.raises(DeepmathError, match="'content' string"):
        make_request(role, [{"role": "user"}])


# ----------------------------------------------------------------------------- happy path


def test_results_in_order_with_usage_and_dedup(server, tmp_path):
    role = role_for(server, max_concurrency=4, prices={"prompt": 2.0, "completion": 8.0})
    texts = [f"question number {i}" for i in range(12)]
    reqs = [ask(role, t, meta=i) for i, t in enumerate(texts)] + [ask(role, texts[0], meta="dup")]
    journal = tmp_path / "j.jsonl"
    out = run_requests(role, reqs, journal, progress=False)
    assert [r.text for r in out] == [reply_text(t, {"temperature": 0.0}) for t in texts + texts[:1]]
    assert [r.meta for r in out] == [*range(12), "dup"]
    assert all(r.finish_reasons == ("stop",) and r.attempts == 1 for r in out)
    assert len(server.received) == 12  # the duplicate was sent once
    u = out.usage
    assert (u.requests, u.unique_requests, u.sent_requests, u.replayed_requests) == (13, 12, 12, 0)
    assert u.sent_prompt_tokens == 12 * 3 and u.sent_completion_tokens == 12 * 6
    assert len(lines(journal)) == 12

    # second run: everything from the journal, nothing sent
    again = run_requests(role, reqs, journal, progress=False)
    assert [r.text for r in again] == [r.text for r in out]
    assert all(r.replayed for r in again) and len(server.received) == 12
    assert (again.usage.sent_requests, again.usage.replayed_requests) == (0, 12)

    doc = write_usage(tmp_path / "out.parquet.usage.json", [out.usage, again.usage])
    judge = doc["roles"]["judge"]
    assert judge["sent"]["requests"] == 12 and judge["replayed"]["requests"] == 12
    sent_cost = cost_usd(36, 72, {"prompt": 2.0, "completion": 8.0})
    assert sent_cost == pytest.approx((36 * 2 + 72 * 8) / 1e6)
    assert judge["cost_usd"]["sent"] == pytest.approx(sent_cost, abs=1e-6)
    assert doc["cost_usd"]["total"] == pytest.approx(2 * sent_cost, abs=1e-6)
    assert json.loads((tmp_path / "out.parquet.usage.json").read_text()) == doc


def test_samples_n_choices_and_plain_completions(server, tmp_path):
    role = role_for(server, params={"temperature": 0.6, "seed": 7, "n": 2})
    reqs = [ask(role, "q", sample=i) for i in range(3)]
    reqs.append(make_request(role, prompt="complete me", params={"n": 1}))
    out = run_requests(role, reqs, tmp_path / "j.jsonl", progress=False)
    assert out[1].texts == (
        reply_text("q", {"temperature": 0.6, "seed": 8}),
        reply_text("q", {"temperature": 0.6, "seed": 8}, 1),
    )
    assert {r["body"]["seed"] for r in server.received} == {7, 8, 9}
    assert out[3].text == reply_text("complete me", {"temperature": 0.6, "seed": 7})
    assert out[3].finish_reasons == ("length",)
    paths = {r["content"]: r["path"] for r in server.received}
    assert paths == {"q": "/v1/chat/completions", "complete me": "/v1/completions"}


# ----------------------------------------------------------------------------- failures


def test_retries_succeed_after_transient_failures(server, tmp_path, caplog, no_timeout_scale):
    role = role_for(server, max_retries=3, timeout_s=0.5, max_concurrency=4)
    server.hang_s = 3.0
    server.plan = {"flaky": [429, 500, 503], "dropped": ["drop"], "slow": ["hang"]}
    names = ["flaky", "dropped", "slow", "fine"]
    with caplog.at_level(logging.INFO, logger="deepmath"):
        out = run_requests(
            role, [ask(role, n) for n in names], tmp_path / "j.jsonl", progress=False
        )
    assert [r.text for r in out] == [reply_text(n, {"temperature": 0.0}) for n in names]
    assert [server.count(n) for n in names] == [4, 2, 2, 1]
    assert [r.attempts for r in out] == [4, 2, 2, 1]
    assert out.usage.retries == 5 and out.usage.attempts == 9
    assert "HTTP 429" in caplog.text and "timed out after 0.5 s" in caplog.text
    assert "connection error" in caplog.text
    journaled = {e["texts"][0]: e["attempts"] for e in lines(tmp_path / "j.jsonl")}
    assert [journaled[r.text] for r in out] == [4, 2, 2, 1]


def test_permanent_failure_names_role_and_endpoint_after_all_attempts(server, tmp_path):
    role = role_for(server, max_retries=2, max_concurrency=1)
    server.plan = {"doomed": [503] * 10}
    reqs = [ask(role, "first"), ask(role, "doomed"), ask(role, "never sent")]
    with pytest.raises(LLMError) as err:
        run_requests(role, reqs, tmp_path / "j.jsonl", progress=False)
    msg = str(err.value)
    assert "role 'judge'" in msg and server.url in msg and "fake-model" in msg
    assert "after 3 attempt(s)" in msg and "HTTP 503" in msg
    assert server.count("doomed") == 3  # 1 + max_retries, no hidden client retries
    assert server.count("never sent") == 0  # nothing new starts after a fatal failure
    assert [e["texts"][0] for e in lines(tmp_path / "j.jsonl")] == [
        reply_text("first", {"temperature": 0.0})
    ]
    # an endpoint nobody listens on: connection errors, same clear error
    dead = role_config(
        "solver", {"model": "m", "base_url": "http://127.0.0.1:1/v1", "max_retries": 1, **FAST}
    )
    with pytest.raises(LLMError, match=r"role 'solver'.*127\.0\.0\.1:1/v1.*2 attempt.*connection"):
        run_requests(dead, [ask(dead, "x")], tmp_path / "dead.jsonl", progress=False)


def test_client_error_fails_at_once_and_in_flight_work_is_kept(server, tmp_path):
    server.delay_s = 0.2
    server.plan = {"bad": [400] * 5}
    role = role_for(server, max_retries=5, max_concurrency=4, on_rejected="fail")
    reqs = [ask(role, "bad")] + [ask(role, f"ok {i}") for i in range(3)] + [ask(role, "later")]
    with pytest.raises(LLMError, match=r"non-retryable error after 1 attempt\(s\).*HTTP 400"):
        run_requests(role, reqs, tmp_path / "j.jsonl", progress=False)
    assert server.count("bad") == 1
    # the three requests in flight beside it finished and are journaled for the rerun
    assert len(lines(tmp_path / "j.jsonl")) == 3 and server.count("later") == 0

    # return_errors: the run goes on; the failed one is reported, not journaled
    out = run_requests(role, reqs, tmp_path / "j.jsonl", progress=False, return_errors=True)
    assert out[0].error and "HTTP 400" in out[0].error and out[0].texts == ()
    assert [r.replayed for r in out[1:]] == [True, True, True, False]
    assert out.usage.failed_requests == 1 and server.count("ok 0") == 1
    assert len(lines(tmp_path / "j.jsonl")) == 4


def test_concurrency_bound_is_respected(server, tmp_path):
    server.delay_s = 0.05
    for limit in (1, 4):
        server.reset()
        role = role_for(server, max_concurrency=limit)
        reqs = [ask(role, f"c{limit} {i}") for i in range(24)]
        run_requests(role, reqs, tmp_path / f"j{limit}.jsonl", progress=False)
        assert len(server.received) == 24
        assert server.max_in_flight <= limit
        assert server.max_in_flight >= min(limit, 2)  # it really runs concurrently


# ----------------------------------------------------------------------------- resume

CLIENT_SCRIPT = """
import json, sys
from deepmath.io import setup_logging
from deepmath.llm import make_request, role_config, run_requests
setup_logging()
url, journal, out = sys.argv[1:4]
role = role_config("solver", {"model": "fake-model", "base_url": url, "max_concurrency": 4,
                              "params": {"temperature": 0.6, "seed": 1}})
reqs = [make_request(role, [{"role": "user", "content": f"question {i:02d}"}]) for i in range(40)]
res = run_requests(role, reqs, journal)
json.dump({"texts": [r.text for r in res], "sent": res.usage.sent_requests,
           "replayed": res.usage.replayed_requests}, open(out, "w"))
"""


def run_client(args, env):
    return subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_resume_after_sigkill_sends_no_duplicates(tmp_path, venv_env):
    journal = tmp_path / ".journal" / "solve" / "shard-0000.jsonl"
    questions = [f"question {i:02d}" for i in range(40)]
    with FakeLLMServer(delay_s=0.15) as srv:
        # the same role and requests as CLIENT_SCRIPT (concurrency does not enter the key)
        role = role_config(
            "solver",
            {"model": "fake-model", "base_url": srv.url, "params": {"temperature": 0.6, "seed": 1}},
        )
        question_of = {ask(role, q).key: q for q in questions}
        proc = run_client([srv.url, str(journal), str(tmp_path / "a.json")], venv_env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 10:
                break
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        journaled = {question_of[k] for k in read_journal(journal)}
        first = srv.contents()
        assert 10 <= len(journaled) < 40, "the kill must land mid-shard"
        assert journaled <= set(first)

        proc = run_client([srv.url, str(journal), str(tmp_path / "b.json")], venv_env)
        log_text = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, log_text
        resumed = json.loads((tmp_path / "b.json").read_text())
        second = srv.contents(len(first))

        # a clean, uninterrupted run for comparison
        srv.delay_s = 0
        clean = run_requests(
            role, [ask(role, q) for q in questions], tmp_path / "clean.jsonl", progress=False
        )
    # (a) every request journaled before the rerun reached the server exactly once overall;
    # the rerun sent exactly the rest (those in flight at the kill), once each
    both = Counter(first + second)
    assert all(both[q] == 1 for q in journaled)
    assert sorted(second) == sorted(set(questions) - journaled)
    assert resumed["replayed"] == len(journaled) and resumed["sent"] == 40 - len(journaled)
    assert "already in journal" in log_text
    # (b) same output as a clean run; the journal holds each key once, every line whole
    assert resumed["texts"] == [r.text for r in clean]
    assert len(lines(journal)) == 40 and set(read_journal(journal)) == set(question_of)


def test_torn_last_line_is_repaired_and_bad_lines_skipped(server, tmp_path):
    # one request at a time, so the journal's last line is the last request (t4)
    role = role_for(server, max_concurrency=1)
    reqs = [ask(role, f"t{i}") for i in range(5)]
    journal = tmp_path / "j.jsonl"
    run_requests(role, reqs, journal, progress=False)
    raw = journal.read_bytes()
    body = raw.splitlines(keepends=True)
    # SIGKILL mid-write: the last line is cut in half
    journal.write_bytes(b"".join(body[:-1]) + body[-1][: len(body[-1]) // 2])
    server.reset()
    out = run_requests(role, reqs, journal, progress=False)
    assert server.contents() == ["t4"]
    assert [r.replayed for r in out] == [True] * 4 + [False]
    assert journal.read_bytes().endswith(b"\n") and len(lines(journal)) == 5

    # a whole entry whose newline never made it is kept; junk mid-file is skipped
    journal.write_bytes(b"".join(body[:2]) + b"{not json\n" + b"".join(body[2:]).rstrip(b"\n"))
    server.reset()
    with Journal(journal) as j:
        assert len(j.entries) == 5 and j.skipped_lines == 1
        # one writer at a time
        with pytest.raises(DeepmathError, match="in use by another process"):
            Journal(journal).open()
    out = run_requests(role, reqs, journal, progress=False)
    assert server.contents() == [] and all(r.replayed for r in out)
    assert journal.read_bytes().endswith(b"\n")


# ----------------------------------------------------------------------------- secrets


def test_secret_never_written_to_journal_usage_logs_or_errors(
    server, tmp_path, caplog, capfd, monkeypatch
):
    secret = "sk-test-DO-NOT-LEAK-0123456789"
    monkeypatch.setenv("DM_TEST_KEY", secret)
    server.require_key = secret
    server.echo_auth_in_errors = True  # a hostile server reflecting the key in its errors
    role = role_for(server, api_key_env="DM_TEST_KEY", max_retries=1, on_rejected="fail")
    server.plan = {"retry me": [503]}
    journal = tmp_path / "j.jsonl"
    with caplog.at_level(logging.DEBUG):
        out = run_requests(role, [ask(role, "hello"), ask(role, "retry me")], journal)
        write_usage(tmp_path / "x.usage.json", [out.usage])
        server.plan = {"rejected": [400]}
        with pytest.raises(LLMError) as err:
            run_requests(role, [ask(role, "rejected")], journal)
    assert all(r["auth"] == f"Bearer {secret}" for r in server.received)  # the key is used
    assert "you sent Authorization: Bearer ***" in str(err.value)
    captured = capfd.readouterr()
    for text in (
        journal.read_text(),
        (tmp_path / "x.usage.json").read_text(),
        caplog.text,
        captured.out + captured.err,
        str(err.value),
        repr(role),
    ):
        assert secret not in text
    assert "HTTP 503" in caplog.text  # the retry was logged, redacted

    # a missing variable is reported by name, only when something must be sent
    monkeypatch.delenv("DM_TEST_KEY")
    replay = run_requests(role, [ask(role, "hello")], journal, progress=False)
    assert replay[0].replayed
    with pytest.raises(DeepmathError, match="DM_TEST_KEY is not set"):
        run_requests(role, [ask(role, "new")], journal, progress=False)


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda e: {**e, "texts": "not a list"}, "texts must be a non-empty list"),
        (lambda e: {**e, "texts": []}, "texts must be a non-empty list"),
        (lambda e: {**e, "texts": [None]}, "texts must be strings"),
        (lambda e: {**e, "finish_reasons": ["stop", "stop"]}, "one reason per text"),
        (lambda e: {**e, "usage": "12 tokens"}, "usage must be an object"),
        (lambda e: {**e, "v": 0}, "format version 0"),
        (lambda e: {k: v for k, v in e.items() if k != "key"}, "no key"),
        (lambda e: [e], "not an object"),
    ],
)
def test_a_bad_journal_entry_is_dropped_and_its_request_sent_again(
    server, tmp_path, caplog, damage, why
):
    role = role_for(server)
    reqs = [ask(role, f"q{i}") for i in range(3)]
    journal = tmp_path / "j.jsonl"
    clean = run_requests(role, reqs, journal, progress=False)
    entries = lines(journal)  # in the order the answers came back
    at = next(i for i, e in enumerate(entries) if e["key"] == reqs[1].key)
    entries[at] = damage(entries[at])
    journal.write_text("".join(json.dumps(e) + "\n" for e in entries))
    server.reset()
    with caplog.at_level("WARNING", logger="deepmath.llm"):
        out = run_requests(role, reqs, journal, progress=False)
    assert server.contents() == ["q1"]  # only the damaged one is paid for again
    assert [r.replayed for r in out] == [True, False, True]
    assert [r.text for r in out] == [r.text for r in clean]
    assert why in caplog.text and f"line {at + 1} dropped" in caplog.text
    assert read_journal(journal)[reqs[1].key]["texts"] == [clean[1].text]


def test_nothing_is_ever_sent_to_the_stand_in_url(tmp_path):
    """Requests are built against a stand-in URL before a server exists; sending to it would be
    a bug (a request the journal was thought to hold), so it fails at once, naming the role."""
    from deepmath.llm import NOT_STARTED_URL

    role = role_config("solver", {"model": "m", "base_url": NOT_STARTED_URL, **FAST})
    with pytest.raises(DeepmathError, match="role solver: 1 request.*no server was started"):
        run_requests(role, [ask(role, "x")], tmp_path / "j.jsonl", progress=False)


def test_replay_keeps_only_what_it_needs(tmp_path):
    """A big judge journal replays in about its own size: each entry keeps the fields a replay
    uses, the file is read line by line."""
    journal = tmp_path / "j.jsonl"
    entry = {
        "v": 1, "role": "judge", "model": "m", "sample": 0, "texts": ["True"],
        "finish_reasons": ["stop"], "reasoning": None,
        "usage": {"prompt_tokens": 300, "completion_tokens": 1}, "attempts": 1,
        "latency_s": 0.2, "finished_at": 1.7e9,
    }  # fmt: skip
    journal.write_text("".join(json.dumps({**entry, "key": f"k{i}"}) + "\n" for i in range(2000)))
    with Journal(journal) as j:
        kept = j.entries["k7"]
    assert set(kept) == {
        "texts", "finish_reasons", "reasoning", "usage", "attempts", "latency_s", "finished_at"
    }  # fmt: skip
    assert len(j.entries) == 2000


def test_a_refused_request_is_dropped_not_fatal_unless_asked(server, tmp_path):
    """A prompt the server will refuse on every rerun (a 400 for a 1 MB question) must not
    fail its shard forever: by default the row goes on without an answer, counted."""
    role = role_for(server)
    server.plan = {"huge": [400] * 10}
    reqs = [ask(role, "small"), ask(role, "huge"), ask(role, "also small")]
    out = run_requests(role, reqs, tmp_path / "j.jsonl", progress=False)
    assert [bool(r.texts) for r in out] == [True, False, True]
    assert "HTTP 400" in out[1].error and server.count("huge") == 1  # never retried
    assert out.usage.rejected_requests == 1
    assert out.usage.to_dict()["sent"]["rejected_requests"] == 1
    assert reqs[1].key not in read_journal(tmp_path / "j.jsonl")  # not a paid answer
    strict = role_for(server, on_rejected="fail")
    with pytest.raises(LLMError, match="non-retryable"):
        run_requests(strict, [ask(strict, "huge")], tmp_path / "k.jsonl", progress=False)
    with pytest.raises(DeepmathError, match="on_rejected = 'ignore' is not allowed"):
        role_for(server, on_rejected="ignore")


@pytest.mark.parametrize("seed", range(5))
def test_a_flaky_endpoint_completes_with_the_clean_output(tmp_path, seed):
    """30% of attempts fail (500, 429 with Retry-After, dropped connections). With 3 attempts
    per request, ~5 of 200 requests would each fail the shard; the job's retry budget lets
    them go on while the rest succeeds, and the output equals a clean run's."""
    with FakeLLMServer() as srv:
        role = role_for(srv, max_retries=2, max_concurrency=8)
        reqs = [ask(role, f"question {i}") for i in range(200)]
        clean = run_requests(role, reqs, tmp_path / "clean.jsonl", progress=False)
        srv.reset()
        srv.failure_rate, srv.failure_seed = 0.3, seed
        flaky = run_requests(role, reqs, tmp_path / "flaky.jsonl", progress=False)
        assert [r.text for r in flaky] == [r.text for r in clean]
        assert flaky.usage.budget_retries > 0  # without the budget this run would have failed
        # no budget: the same endpoint fails the job, naming it
        srv.reset()
        strict = role_for(srv, max_retries=2, max_concurrency=8, retry_budget=0)
        with pytest.raises(LLMError, match=srv.url.replace(".", r"\.")):
            run_requests(strict, reqs, tmp_path / "strict.jsonl", progress=False)


def test_a_dead_endpoint_still_fails_after_max_retries(tmp_path):
    """The budget is for a job that makes progress: with nothing succeeding it is not used."""
    with FakeLLMServer() as srv:
        srv.always = 503
        role = role_for(srv, max_retries=2, max_concurrency=2)
        with pytest.raises(LLMError, match="after 3 attempt"):
            run_requests(role, [ask(role, f"q{i}") for i in range(4)], tmp_path / "j.jsonl",
                         progress=False)  # fmt: skip
        assert max(srv.count(f"q{i}") for i in range(4)) == 3


def test_retry_after_is_waited_for(tmp_path):
    with FakeLLMServer() as srv:
        srv.retry_after = "0.4"
        srv.plan = {"busy": [429]}
        role = role_for(srv, backoff_s=0.01, backoff_max_s=5)
        run_requests(role, [ask(role, "busy")], tmp_path / "j.jsonl", progress=False)
        times = [r["time"] for r in srv.received]
        assert len(times) == 2 and times[1] - times[0] >= 0.4


def test_timeout_follows_the_roles_output_length():
    from deepmath.llm import default_timeout_s

    assert default_timeout_s({"max_tokens": 4}) == pytest.approx(120.4)
    assert default_timeout_s({"max_tokens": 32768}) == pytest.approx(3396.8)
    assert default_timeout_s({"max_tokens": 100_000}) == 3600.0
    assert default_timeout_s({}) == 600.0
    judge = role_config("judge", {"model": "m", "base_url": "http://h:1/v1",
                                  "params": {"max_tokens": 8}})  # fmt: skip
    assert judge.timeout_s == pytest.approx(120.8)
    given = role_config("judge", {"model": "m", "base_url": "http://h:1/v1", "timeout_s": 30,
                                  "params": {"max_tokens": 8}})  # fmt: skip
    assert given.timeout_s == 30


def test_a_hung_endpoint_is_reported_while_it_hangs(tmp_path, caplog):
    """A server that accepts requests and never answers: progress lines show nothing
    finishing, and a warning names the endpoint long before the retries run out."""
    with FakeLLMServer(hang_s=30) as srv:
        srv.plan = {"stuck": ["hang"] * 5}
        role = role_for(srv, timeout_s=2.5, max_retries=0, progress_s=0.3, stall_s=1.0)
        with caplog.at_level("INFO", logger="deepmath.llm"), pytest.raises(LLMError):
            run_requests(role, [ask(role, "fine"), ask(role, "stuck")], tmp_path / "j.jsonl",
                         progress=False)  # fmt: skip
    progress = [r.getMessage() for r in caplog.records if "in flight" in r.getMessage()]
    assert any("1/2 done, 1 in flight" in m for m in progress), progress
    stall = [r for r in caplog.records if "no request has finished for" in r.getMessage()]
    assert stall and srv.url in stall[0].getMessage() and stall[0].levelname == "WARNING"


# ----------------------------------------------------------------------------- refusals

TOO_LONG = (
    "This model's maximum context length is 2048 tokens. However, you requested 2311 tokens "
    "(263 in the messages, 2048 in the completion). Please reduce the length of the messages "
    "or completion."
)


def test_an_unknown_model_fails_at_once_naming_what_is_served(server, tmp_path):
    """A wrong model name (vLLM answers 404) is not a rejected request: under the default
    on_rejected: drop the job fails at once, names the models the endpoint serves, and
    retries nothing."""
    server.served_models = ["smollm2", "qwen"]
    role = role_for(server, model="smollm", max_concurrency=4, max_retries=5)
    reqs = [ask(role, f"q{i}") for i in range(20)]
    journal = tmp_path / "j.jsonl"
    for return_errors in (False, True):  # a caller taking errors back gets this one too
        server.reset()
        with pytest.raises(LLMError) as err:
            run_requests(role, reqs, journal, progress=False, return_errors=return_errors)
        msg = str(err.value)
        assert f"model 'smollm' is not served at {server.url}" in msg
        assert "it serves: ['smollm2', 'qwen']" in msg and "llm.judge.model" in msg
        assert "does not exist" in msg  # what the server said
        assert err.value.role == "judge" and err.value.base_url == server.url
        assert len(server.received) <= 4  # the requests already in flight, none after
        assert max(server.count(f"q{i}") for i in range(20)) == 1  # no retries
    assert not journal.exists() or journal.read_text() == ""


def test_a_missing_route_names_the_base_url(server, tmp_path):
    # the base URL without /v1: the server has neither the route nor a model list there
    bare = server.url.removesuffix("/v1")
    role = role_for(server, base_url=bare)
    with pytest.raises(LLMError) as err:
        run_requests(role, [ask(role, "q")], tmp_path / "j.jsonl", progress=False)
    msg = str(err.value)
    assert "HTTP 404" in msg and "no route /chat/completions" in msg
    assert f"{bare}/models could not be listed" in msg and "llm.judge.base_url" in msg
    assert err.value.attempts == 1
    # the model is served but this route is not (a chat-only endpoint asked for a completion)
    server.served_models = ["fake-model"]
    server.routes = {"/v1/chat/completions"}
    role = role_for(server)
    with pytest.raises(LLMError) as err:
        run_requests(role, [make_request(role, prompt="p")], tmp_path / "k.jsonl", progress=False)
    msg = str(err.value)
    assert "serves model 'fake-model' but answers 404 for /completions" in msg
    assert "llm.judge.base_url" in msg


@pytest.mark.parametrize(
    ("status", "words"),
    [(401, "refused the API key"), (403, "refused access")],
)
def test_a_refused_key_fails_at_once_naming_the_variable(
    server, tmp_path, monkeypatch, status, words
):
    secret = "sk-wrong-key-0123456789"
    monkeypatch.setenv("DM_TEST_KEY", secret)
    server.echo_auth_in_errors = True
    if status == 401:
        server.require_key = "sk-the-right-one"
    else:
        server.always = 403
    role = role_for(server, api_key_env="DM_TEST_KEY", max_concurrency=2, max_retries=5)
    reqs = [ask(role, f"q{i}") for i in range(10)]
    with pytest.raises(LLMError) as err:
        run_requests(role, reqs, tmp_path / "j.jsonl", progress=False)
    msg = str(err.value)
    assert f"HTTP {status}" in msg and words in msg and "$DM_TEST_KEY" in msg
    assert "llm.judge.api_key_env" in msg and server.url in msg
    assert secret not in msg and "Bearer ***" in msg  # what the server said, redacted
    assert len(server.received) <= 2 and max(server.count(f"q{i}") for i in range(10)) == 1
    # a role that sends no key is told to name one
    keyless = role_for(server, max_retries=0)
    with pytest.raises(LLMError, match=r"sends no API key.*llm\.judge\.api_key_env"):
        run_requests(keyless, [ask(keyless, "q0")], tmp_path / "k.jsonl", progress=False)


def test_other_client_errors_fail_the_job_even_under_drop(server, tmp_path):
    """Only a refusal of the request's own content (400, 413, 422) may be dropped: a 405 or a
    402 says the endpoint will refuse every request."""
    for status in (402, 405):
        server.reset()
        server.always = status
        role = role_for(server, max_concurrency=1)
        with pytest.raises(LLMError, match=f"HTTP {status}"):
            run_requests(role, [ask(role, f"a{status}"), ask(role, f"b{status}")],
                         tmp_path / f"j{status}.jsonl", progress=False)  # fmt: skip
        assert len(server.received) == 1


def test_a_few_prompts_too_long_are_dropped_and_counted_with_reasons(server, tmp_path):
    server.error_messages = {400: TOO_LONG, 422: "max_tokens must be at least 1"}
    server.plan = {"long 0": [400] * 5, "long 1": [400] * 5, "odd": [422] * 5}
    # transient failures beside them are retried and answered
    server.plan |= {"busy": [429, 500], "flaky": [503]}
    role = role_for(server, max_concurrency=3, max_retries=3)
    names = ["long 0", "long 1", "odd", "busy", "flaky"] + [f"ok {i}" for i in range(7)]
    out = run_requests(role, [ask(role, n) for n in names], tmp_path / "j.jsonl", progress=False)
    assert [bool(r.texts) for r in out] == [False] * 3 + [True] * 9
    assert "maximum context length is 2048 tokens" in out[0].error
    assert [server.count(n) for n in names[:5]] == [1, 1, 1, 3, 2]
    u = out.usage
    assert (u.rejected_requests, u.sent_requests, u.retries) == (3, 9, 3)
    reasons = u.to_dict()["sent"]["rejected_reasons"]
    assert reasons == {
        "HTTP 400: This model's maximum context length is <n> tokens. However, you requested "
        "<n> tokens (<n> in the messages, <n> in the completion). Please reduce the length of "
        "the messages or completion.": 2,
        "HTTP 422: max_tokens must be at least <n>": 1,
    }
    # reasons add up over usages, as a stage's usage file sums its calls
    doc = write_usage(tmp_path / "u.json", [u, u])
    assert sum(doc["roles"]["judge"]["sent"]["rejected_reasons"].values()) == 6
    # the rerun replays the answers and sends the refused ones again: the share of refusals
    # counts the whole job, so it is no more "mostly refused" than the first run
    server.reset()
    again = run_requests(role, [ask(role, n) for n in names], tmp_path / "j.jsonl",
                         progress=False)  # fmt: skip
    assert again.usage.rejected_requests == 3 and again.usage.replayed_requests == 9
    assert sorted(server.contents()) == ["long 0", "long 1", "odd"]


def test_a_job_whose_requests_are_mostly_refused_fails(server, tmp_path):
    """Too long for most prompts means the role is wrong (max_tokens above the model's
    context, a server that answers 400 to everything), not a few odd rows."""
    server.error_messages = {400: TOO_LONG}
    server.plan = {f"long {i}": [400] for i in range(6)}
    role = role_for(server, max_concurrency=2)
    names = [f"ok {i}" for i in range(4)] + [f"long {i}" for i in range(6)]
    journal = tmp_path / "j.jsonl"
    with pytest.raises(LLMError) as err:
        run_requests(role, [ask(role, n) for n in names], journal, progress=False)
    msg = str(err.value)
    assert "6 of 10 requests" in msg and "refused" in msg and "more than half" in msg
    assert "maximum context length is 2048 tokens" in msg and server.url in msg
    assert len(lines(journal)) == 4  # the answers that did come are kept for the rerun

    # a big job that the server refuses all along stops early instead of sending everything
    server.reset()
    server.always = 400
    many = [ask(role, f"m{i}") for i in range(200)]
    with pytest.raises(LLMError, match="20 of 200 requests were refused.*not one was answered"):
        run_requests(role, many, tmp_path / "m.jsonl", progress=False)
    assert len(server.received) < 50


# ----------------------------------------------------------------------------- journal repair


def journal_of(server, tmp_path, n: int = 4):
    """A journal of n answered requests (one at a time, so in request order)."""
    role = role_for(server, max_concurrency=1)
    reqs = [ask(role, f"j{i}") for i in range(n)]
    journal = tmp_path / "j.jsonl"
    run_requests(role, reqs, journal, progress=False)
    return role, reqs, journal, journal.read_bytes().splitlines(keepends=True)


@pytest.mark.parametrize(
    "junk",
    [
        b"{not json\n",  # garbage: no key to know its request by
        b'{"v": 1, "key": "0123abcd", "texts": "cut"}\n',  # a key this job never asks for
        b"\x00\x00\x00\x00\n",  # a block of zeros after a crash
        b'{"v": 99, "key": "k", "texts": ["newer format"]}\n',
    ],
)
def test_a_dropped_line_is_said_truthfully_and_removed_from_the_file(
    server, tmp_path, caplog, junk
):
    role, reqs, journal, good = journal_of(server, tmp_path)
    journal.write_bytes(good[0] + junk + b"".join(good[1:3]) + junk + good[3])
    inode = journal.stat().st_ino
    server.reset()
    with caplog.at_level("WARNING", logger="deepmath.llm"):
        out = run_requests(role, reqs, journal, progress=False)
    assert server.contents() == [] and all(r.replayed for r in out)
    text = caplog.text
    assert "line 2 dropped" in text and "line 5 dropped" in text
    assert "if it was a request of this job, that request will be sent again" in text
    assert "their requests will be sent again" not in text  # not known: they had no key
    assert "2 line(s) were not valid entries" in text and "removed from the file" in text
    # the journal holds exactly the good lines, in their order; the dropped ones are kept aside
    assert journal.read_bytes() == b"".join(good)
    assert journal.stat().st_ino != inode  # rewritten by rename, never half-written
    assert Path(f"{journal}.dropped").read_bytes() == junk * 2
    caplog.clear()
    with caplog.at_level("WARNING", logger="deepmath.llm"), Journal(journal) as j:
        assert len(j.entries) == 4 and j.skipped_lines == 0
        # the rewritten file is the one locked: a second writer is still refused
        with pytest.raises(DeepmathError, match="in use by another process"):
            Journal(journal).open()
    assert caplog.text == ""  # the warning does not come back on every replay


def test_repair_keeps_appending_to_the_locked_file(server, tmp_path):
    role, reqs, journal, good = journal_of(server, tmp_path)
    journal.write_bytes(b"garbage\n" + b"".join(good[:2]) + good[2][:20])  # and a torn tail
    out = run_requests(role, reqs, journal, progress=False)
    assert server.contents()[-2:] == ["j2", "j3"] and [r.replayed for r in out] == [
        True, True, False, False
    ]  # fmt: skip
    assert [e["key"] for e in lines(journal)] == [r.key for r in reqs]
    assert Path(f"{journal}.dropped").read_bytes() == b"garbage\n"  # a torn tail is not kept


def test_a_duplicate_key_with_another_answer_is_reported_once(server, tmp_path, caplog):
    role, reqs, journal, good = journal_of(server, tmp_path)
    other = [json.loads(line) for line in good[:3]]
    for entry in other:
        entry["texts"] = ["a different answer"]
    same = good[3]  # an identical repeat is harmless and not reported
    extra = b"".join(json.dumps(e).encode() + b"\n" for e in other)
    journal.write_bytes(b"".join(good) + extra + same)
    with caplog.at_level("WARNING", logger="deepmath.llm"):
        out = run_requests(role, reqs, journal, progress=False)
    assert [r.text for r in out] == [reply_text(f"j{i}", {"temperature": 0.0}) for i in range(4)]
    warnings = [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()]
    assert len(warnings) == 1 and "3 key(s)" in warnings[0]
    assert "the first answer of each is used" in warnings[0]
