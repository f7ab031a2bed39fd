"""The RL reward: the authors' gates and check by default (in .venv-authors workers), our
checker as the `ours` option, bounded in time without touching the caller's thread."""

from __future__ import annotations

import copy
import json
import threading
import time

import pytest
import yaml

from deepmath import reward
from deepmath.answers.authors.pool import PYTHON_ENV, VENV_PYTHON
from deepmath.reward import compute_score, score, score_many, trl_reward

needs_authors_env = pytest.mark.skipif(
    not VENV_PYTHON.exists(), reason=f"{VENV_PYTHON} is missing: run `make venv-authors`"
)
HOSTILE = "<think>x</think>\\boxed{10^{10^{10^{10}}}}"
R1_RIGHT = "<think>2+2 is 4, so \\boxed{5}? no.</think>\nThe answer is $\\boxed{4}$."
R1_WRONG = "<think>hmm</think>\nSo $\\boxed{5}$."


@pytest.fixture
def fresh_pools(monkeypatch):
    """This process's reward pools started anew (so a changed bound or scorer applies)."""
    monkeypatch.delenv(reward.SCORER_ENV, raising=False)
    reward.close_pools()
    yield monkeypatch
    reward.close_pools()


@needs_authors_env
@pytest.mark.parametrize(
    ("response", "truth", "gate", "expected"),
    [
        # think gate: needs </think>, scores only the text after the LAST one
        (R1_RIGHT, "4", "think", 1.0),
        (R1_WRONG, "4", "think", -1.0),
        ("<think>a</think>\\boxed{4}</think> so \\boxed{5}", "4", "think", -1.0),
        ("<think>a</think>\\boxed{5}</think> so \\boxed{4}", "4", "think", 1.0),
        ("The answer is \\boxed{4}", "4", "think", -1.0),  # no </think>
        ("<think>\\boxed{4}</think> I am not sure.", "4", "think", -1.0),  # box in thinking only
        ("<think>x</think> so $x = \\frac{1}{2}$", "0.5", "think", 1.0),  # (C) on the text
        ("<think>x</think> \\boxed{\\frac12}", "0.5", "think", 1.0),  # (A) math_equal
        ("<think>x</think> \\boxed{50\\%}", "0.5", "think", 1.0),  # x100 / 100 accepted
        ("", "1", "think", -1.0),
        # one_box gate: exactly one \boxed in the WHOLE response, thinking included
        ("So \\boxed{\\dfrac{1}{2}}.", "0.5", "one_box", 1.0),
        ("\\boxed{1} or \\boxed{0.5}", "0.5", "one_box", -1.0),
        ("<think>\\boxed{1}</think> \\boxed{0.5}", "0.5", "one_box", -1.0),
        ("so 0.5", "0.5", "one_box", -1.0),  # no box
        ("So \\boxed{0.4}.", "0.5", "one_box", -1.0),
    ],
)
def test_authors_reward_table(response, truth, gate, expected):
    got = score(response, truth, gate)
    assert got["score"] == expected
    assert got["acc"] is (expected == 1.0)


@needs_authors_env
def test_a_failed_gate_is_a_format_reason_without_a_check():
    assert score("it is \\boxed{4}", "4", "think")["reason"] == "format"
    assert score("\\boxed{4}\\boxed{4}", "4", "one_box")["reason"] == "format"
    ok = score("<think>x</think> \\boxed{4}", "4", "think")
    assert ok == {"score": 1.0, "acc": True, "pred": "4", "reason": "boxed"}


@pytest.mark.parametrize(
    ("response", "truth", "gate", "expected"),
    [
        (R1_RIGHT, "4", "think", 1.0),  # only text after </think> is scored
        (R1_WRONG, "4", "think", -1.0),
        ("The answer is \\boxed{4}", "4", "think", -1.0),  # no </think>: format fails
        ("<think>\\boxed{4}</think> I am not sure.", "4", "think", -1.0),
        ("<think>x</think> it is \\frac{1}{2}", "0.5", "think", 1.0),  # math-verify on the text
        ("So \\boxed{\\dfrac{1}{2}}.", "0.5", "one_box", 1.0),
        ("\\boxed{1} or \\boxed{0.5}", "0.5", "one_box", -1.0),  # Zero-Math: exactly one box
        ("last \\boxed{7}", "7", "none", 1.0),
        ("", "1", "think", -1.0),
    ],
)
def test_ours_score_table(response, truth, gate, expected):
    assert score(response, truth, gate, scorer="ours")["score"] == expected


# The authors' math_equal accepts gold x 100 (50 for 0.5), our checker does not: the same
# response tells the scorers apart.
APART = "<think>x</think> so \\boxed{50}"


def test_the_scorer_comes_from_the_environment(fresh_pools):
    fresh_pools.setenv(reward.SCORER_ENV, "ours")
    assert compute_score("deepmath", APART, "0.5", {"reward_gate": "think"})["score"] == -1.0
    fresh_pools.setenv(reward.SCORER_ENV, "nope")
    with pytest.raises(ValueError, match="allowed: authors, ours"):
        compute_score("deepmath", APART, "0.5", {})


@needs_authors_env
def test_authors_is_the_default_scorer(fresh_pools):
    assert reward.run_scorer({}) == "authors"
    assert score(APART, "0.5")["score"] == 1.0
    assert compute_score("deepmath", APART, "0.5", {"reward_gate": "think"})["score"] == 1.0
    assert score(APART, "0.5", scorer="ours")["score"] == -1.0


@needs_authors_env
def test_compute_score_reads_gate_from_extra_info():
    assert compute_score("deepmath", "\\boxed{3}", "3", {"reward_gate": "one_box"})["score"] == 1
    assert compute_score("deepmath", "\\boxed{3}", "3", {})["score"] == -1  # think gate default


@needs_authors_env
def test_trl_reward_batch_and_chat_completions():
    completions = [[{"role": "assistant", "content": R1_RIGHT}], [{"content": R1_WRONG}]]
    assert trl_reward(["p", "p"], completions, ground_truth=["4", "4"]) == [1.0, -1.0]
    mixed = trl_reward(
        ["p"] * 3,
        ["\\boxed{2}", "\\boxed{2}", "<think></think>\\boxed{2}"],
        ground_truth=["2", "2", "2"],
        reward_gate=["one_box", "think", "think"],
    )
    assert mixed == [1.0, -1.0, 1.0]


@needs_authors_env
@pytest.mark.parametrize("scorer", ["authors", "ours"])
def test_hostile_answer_is_minus_one_in_bounded_time_from_any_thread(fresh_pools, scorer):
    fresh_pools.setenv(reward.TIMEOUT_ENV, "2")
    out: dict[str, object] = {}

    def run() -> None:
        start = time.perf_counter()
        out["r"] = score_many([HOSTILE, "<think>x</think>\\boxed{1}"], ["1", "1"], scorer=scorer)
        out["s"] = time.perf_counter() - start

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    hostile, fine = out["r"]
    assert hostile["score"] == -1.0 and fine["score"] == 1.0
    assert out["s"] < 60
    # the main thread too, and it keeps no alarm behind
    start = time.perf_counter()
    assert score(HOSTILE, "1", scorer=scorer)["score"] == -1.0
    assert time.perf_counter() - start < 60
    import signal

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@needs_authors_env
def test_a_timeout_is_minus_one_with_its_reason(fresh_pools):
    fresh_pools.setenv(reward.TIMEOUT_ENV, "1")
    got = score(HOSTILE, "1")
    assert got == {"score": -1.0, "acc": False, "pred": None, "reason": "timeout"}


@needs_authors_env
def test_calls_from_threads_at_once(fresh_pools):
    results: dict[int, list[float]] = {}

    def call(k: int) -> None:
        texts = [f"<think>x</think>\\boxed{{{k + i}}}" for i in range(5)]
        results[k] = [r["score"] for r in score_many(texts, [str(k)] * 5)]

    threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert results == {k: [1.0, -1.0, -1.0, -1.0, -1.0] for k in range(4)}


def test_unknown_gate_and_scorer():
    with pytest.raises(ValueError, match="allowed"):
        score_many(["x"], ["1"], "nope")
    with pytest.raises(ValueError, match="reward_scorer 'mine'; allowed: authors, ours"):
        score_many(["x"], ["1"], "think", "mine")


def test_ours_is_listed_as_a_deviation_and_authors_is_not():
    assert reward.deviations({"reward_scorer": "authors"}) == {}
    assert reward.deviations({}) == {}
    why = reward.deviations({"reward_scorer": "ours"})["reward_scorer"]
    assert "not the paper's" in why and "math-verify 0.7.0" in why


def test_trainer_env_names_the_scorer_and_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    record = tmp_path / "python.json"
    record.write_text(json.dumps({"python": "/envs/authors/bin/python", "environment": {}}))
    assert reward.trainer_env({"reward_scorer": "ours"}, None, record, cores=4, env={}) == {
        reward.SCORER_ENV: "ours",
        reward.WORKERS_ENV: "4",
    }
    assert reward.trainer_env({}, None, record, cores=4, env={}) == {
        reward.SCORER_ENV: "authors",
        PYTHON_ENV: "/envs/authors/bin/python",
        reward.WORKERS_ENV: "4",
    }
    assert reward.trainer_env({}, "/flag/python", record)[PYTHON_ENV] == "/flag/python"


@needs_authors_env
def test_scorer_versions_start_the_interpreter_once_and_refuse_a_broken_one(tmp_path):
    from deepmath.io import DeepmathError

    env = reward.trainer_env({}, str(VENV_PYTHON))
    assert reward.scorer_versions({}, env)["math-verify"] == "0.7.0"
    assert reward.scorer_versions({"reward_scorer": "ours"}, {}) is None
    with pytest.raises(DeepmathError, match="/usr/bin/python3|No such file"):
        reward.scorer_versions({}, {PYTHON_ENV: str(tmp_path / "missing-python")})


@needs_authors_env
def test_an_interpreter_with_other_versions_is_said_in_the_log(caplog):
    from pathlib import Path

    verl = Path(__file__).resolve().parents[2] / ".venv-verl" / "bin" / "python"
    if not verl.exists():
        pytest.skip(".venv-verl (another math-verify) is not built")
    with caplog.at_level("WARNING", logger="deepmath.reward"):
        versions = reward.scorer_versions({}, {PYTHON_ENV: str(verl)})
    assert versions["math-verify"] != "0.7.0"
    assert "not the authors' versions" in caplog.text and str(verl) in caplog.text
    caplog.clear()
    reward.scorer_versions({}, {PYTHON_ENV: str(VENV_PYTHON)})
    assert "not the authors' versions" not in caplog.text


def test_config_refuses_a_bad_reward_scorer(repo, monkeypatch):
    from deepmath.config import ConfigError, validate_config

    monkeypatch.chdir(repo)
    base = yaml.safe_load((repo / "config" / "demo.yaml").read_text())
    good = copy.deepcopy(base)
    validate_config(good)
    assert good["rl"]["runs"]["smollm2-grpo"]["reward_scorer"] == "authors"  # the default
    bad = copy.deepcopy(base)
    bad["rl"]["runs"]["smollm2-grpo"]["reward_scorer"] = "mine"
    with pytest.raises(ConfigError, match=r"rl\.runs\.smollm2-grpo\.reward_scorer = 'mine'"):
        validate_config(bad)


@needs_authors_env
def test_the_reward_digest_covers_the_authors_interpreter(tmp_path, monkeypatch):
    import argparse
    from pathlib import Path

    from deepmath.backends import Job, reward_code, reward_versions

    monkeypatch.delenv(PYTHON_ENV, raising=False)

    def job(spec: dict, **args: str) -> Job:
        p = Path(tmp_path)
        return Job(spec, p, p / "t", p / "v", p / "w", p / "o", "x", argparse.Namespace(**args))

    authors, ours = job({"backend": "trl"}), job({"backend": "trl", "reward_scorer": "ours"})
    assert reward_versions(authors, {PYTHON_ENV: str(VENV_PYTHON)})["sympy"] == "1.13.1"
    assert reward_code(authors) != reward_code(ours)
    assert reward_code(job({"backend": "sft"})) is None
    # another interpreter with other versions is another reward
    verl = Path(__file__).resolve().parents[2] / ".venv-verl" / "bin" / "python"
    if verl.exists():
        assert reward_code(job({"backend": "trl"}, authors_python=str(verl))) != reward_code(
            authors
        )


@needs_authors_env
def test_no_gate_scores_the_whole_response_with_the_authors_check():
    """The CPU demo's gate: no format condition, the authors' check on the whole response."""
    assert score("\\boxed{1} and then \\boxed{7}", "7", "none")["score"] == 1.0
    wrong = score("\\boxed{7} and then \\boxed{1}", "7", "none")
    assert wrong["score"] == -1.0 and wrong["reason"] != "error"
    inside = score("<think>\\boxed{7}</think> so 8", "7", "none")
    assert inside["score"] == 1.0 and inside["reason"] != "error"  # the whole text is read


# --------------------------------------------------------------------------- worker bounds


def _verl_run(workers: int | None = None, nodes: int = 1, overrides=()) -> dict:
    from tests.verl.conftest import PAPER_1_5B

    spec = copy.deepcopy(PAPER_1_5B)
    if workers is not None:
        spec["recipe"]["reward_workers"] = workers
    spec["nodes"] = nodes
    spec["verl_overrides"] = list(overrides)
    return spec


@pytest.mark.parametrize(
    ("spec", "cores", "env", "bound"),
    [
        # verl: reward.num_workers processes (8 by default), round-robin over the nodes
        (_verl_run(), 64, {}, 8),
        (_verl_run(), 4, {}, 1),  # fewer cores than processes: still one worker each
        (_verl_run(4), 64, {}, 16),
        (_verl_run(8, nodes=2), 64, {}, 16),  # 4 processes per node
        (_verl_run(3, nodes=2), 64, {}, 32),  # 2 on the head node
        (_verl_run(8, overrides=["reward.num_workers=32"]), 64, {}, 2),  # the override wins
        (_verl_run(8, overrides=["+reward.num_workers=2"]), 64, {}, 32),
        # TRL: the reward runs in each rank's process
        ({"backend": "trl"}, 16, {}, 16),
        ({"backend": "trl"}, 16, {"LOCAL_WORLD_SIZE": "4"}, 4),
        # a smaller bound of the user's is kept, a larger one is cut
        (_verl_run(), 64, {reward.WORKERS_ENV: "3"}, 3),
        (_verl_run(), 64, {reward.WORKERS_ENV: "64"}, 8),
    ],
)
def test_trainer_env_bounds_each_processes_workers_by_the_cores(spec, cores, env, bound):
    got = reward.trainer_env({**spec, "reward_scorer": "ours"}, cores=cores, env=env)
    assert got[reward.WORKERS_ENV] == str(bound)


def test_pools_never_start_more_workers_than_the_bound(fresh_pools):
    fresh_pools.setenv(reward.WORKERS_ENV, "2")
    assert reward._pool("ours").workers == 2
    if VENV_PYTHON.exists():
        pool = reward._pool("authors")
        assert pool.workers == 2
        done: list[int] = []

        def call(k: int) -> None:
            texts = [f"<think>x</think>\\boxed{{{k + i}}}" for i in range(6)]
            done.extend(r["score"] for r in score_many(texts, [str(k)] * 6))

        threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(done) == 24 and done.count(1.0) == 4
        assert 1 <= len(pool.pids()) <= 2


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        (reward.TIMEOUT_ENV, "abc", "a number of seconds > 0"),
        (reward.TIMEOUT_ENV, "0", "a number of seconds > 0"),
        (reward.TIMEOUT_ENV, "-2", "a number of seconds > 0"),
        (reward.TIMEOUT_ENV, "nan", "a number of seconds > 0"),
        (reward.TIMEOUT_ENV, "inf", "a number of seconds > 0"),
        (reward.WORKERS_ENV, "two", "an integer >= 1"),
        (reward.WORKERS_ENV, "0", "an integer >= 1"),
        (reward.WORKERS_ENV, "-3", "an integer >= 1"),
        (reward.WORKERS_ENV, "1.5", "an integer >= 1"),
    ],
)
def test_a_bad_bound_in_the_environment_names_the_variable(fresh_pools, name, value, allowed):
    fresh_pools.setenv(name, value)
    with pytest.raises(ValueError) as err:
        score_many(["<think>x</think>\\boxed{1}"], ["1"], scorer="ours")
    assert f"{name}={value!r}" in str(err.value) and allowed in str(err.value)


@pytest.mark.parametrize(
    ("name", "value", "parsed"),
    [
        (reward.TIMEOUT_ENV, "2.5", 2.5),
        (reward.TIMEOUT_ENV, " 7 ", 7.0),
        (reward.TIMEOUT_ENV, "", reward.DEFAULT_TIMEOUT_S["ours"]),
        (reward.WORKERS_ENV, "3", 3),
        (reward.WORKERS_ENV, "", None),
    ],
)
def test_good_bounds_in_the_environment(monkeypatch, name, value, parsed):
    monkeypatch.setenv(name, value)
    if name == reward.TIMEOUT_ENV:
        assert reward.timeout_s("ours") == parsed
    else:
        assert reward.workers_bound() == parsed


# --------------------------------------------------------------------------- scorer by kwarg


def test_compute_score_takes_the_scorer_verl_passes(fresh_pools):
    """verl hands reward.custom_reward_function.reward_kwargs to compute_score: the run's
    scorer reaches a worker whose environment lacks it."""
    gate = {"reward_gate": "think"}
    assert compute_score("deepmath", APART, "0.5", gate, scorer="ours")["score"] == -1.0
    with pytest.raises(ValueError, match="reward_scorer 'mine'; allowed: authors, ours"):
        compute_score("deepmath", APART, "0.5", gate, scorer="mine")
    if VENV_PYTHON.exists():
        fresh_pools.setenv(reward.SCORER_ENV, "ours")  # the run's kwarg wins
        assert compute_score("deepmath", APART, "0.5", gate, scorer="authors")["score"] == 1.0


@pytest.mark.parametrize("scorer", ["authors", "ours", None])
def test_the_verl_overrides_pass_the_runs_scorer(scorer):
    from deepmath import verl_recipe
    from tests.verl.conftest import PATHS

    spec = _verl_run()
    if scorer:
        spec["reward_scorer"] = scorer
    items = verl_recipe.override_items(spec, **PATHS)
    assert items["+reward.custom_reward_function.reward_kwargs.scorer"] == (scorer or "authors")
