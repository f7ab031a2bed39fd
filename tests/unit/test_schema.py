"""The schema's ``$defs`` are the one set of rules for roles, serve blocks and engines.

The workflow checks the whole config against config/schema.yaml before any job; a job checks
the one block it reads against the same ``$defs`` entry. These tests hold the wording (key,
value, what is allowed) and that the two checks can never disagree.
"""

from __future__ import annotations

import copy

import pytest

from deepmath import dtypes, schema
from deepmath.config import ConfigError, load_config, validate_config
from deepmath.evaluate.spec import eval_spec
from deepmath.io import DeepmathError
from deepmath.llm import ROLE_KEYS, normalize_params, role_config
from deepmath.serve import SERVE_KEYS, serve_config

ROLE_CASES = [
    # (role block, the words the one line about it must hold)
    ({"model": "m", "base_url": "localhost:8000"}, ["llm.r.base_url = 'localhost:8000'", "http"]),
    ({"model": "m", "base_url": "http://u:s3cret@/v1"}, ["llm.r.base_url", "***@"]),
    ({"model": "m"}, ["llm.r needs either base_url", "serve"]),
    ({"model": "m", "base_url": "http://h/v1", "serve": {"model": "x"}}, ["both serve and base"]),
    ({"base_url": "http://h/v1"}, ["missing key 'llm.r.model'"]),
    ({"model": "", "base_url": "http://h/v1"}, ["llm.r.model = ''"]),
    ({"model": "m", "base_url": "http://h/v1", "api_key_env": "my key"}, ["llm.r.api_key_env"]),
    (
        {"model": "m", "base_url": "http://h/v1", "max_concurrency": 0},
        ["max_concurrency = 0", ">= 1"],
    ),
    ({"model": "m", "base_url": "http://h/v1", "timeout_s": 0}, ["llm.r.timeout_s = 0", "> 0"]),
    (
        {"model": "m", "base_url": "http://h/v1", "max_retries": 1.5},
        ["max_retries = 1.5", "integer"],
    ),
    ({"model": "m", "base_url": "http://h/v1", "on_rejected": "keep"}, ["'keep'", "drop, fail"]),
    ({"model": "m", "base_url": "http://h/v1", "prices": {"input": 1}}, ["llm.r.prices"]),
    ({"model": "m", "base_url": "http://h/v1", "timeout": 3}, ["unknown key 'llm.r.timeout'"]),
    (
        {"model": "m", "base_url": "http://h/v1", "params": {"temprature": 0.5}},
        ["unknown key 'llm.r.params.temprature'", "temperature", "extra_body"],
    ),
    (
        {"model": "m", "base_url": "http://h/v1", "params": {"temperature": 3}},
        ["llm.r.params.temperature = 3", "<= 2"],
    ),
    (
        {"model": "m", "base_url": "http://h/v1", "params": {"max_tokens": True}},
        ["llm.r.params.max_tokens = True", "integer"],
    ),
    (
        {"model": "m", "base_url": "http://h/v1", "params": {"stop": 5}},
        ["llm.r.params.stop = 5", "string or array"],
    ),
    (
        {"model": "m", "serve": {"model": "x", "tensor_paralel": 2}},
        ["unknown key 'llm.r.serve.tensor_paralel'", "tensor_parallel"],
    ),
    ({"model": "m", "serve": {"engine": "vllm"}}, ["missing key 'llm.r.serve.model'"]),
    ({"model": "m", "serve": {"model": "x", "dtype": "fp8"}}, ["serve.dtype = 'fp8'", "bfloat16"]),
    ({"model": "m", "serve": {"model": "x", "share": "run"}}, ["'run'", "job, workflow"]),
    (
        {"model": "m", "serve": {"model": "x", "share": "workflow", "nodes": 2}},
        ["llm.r.serve.nodes = 2", "must be 1"],
    ),
    ({"model": "m", "serve": {"model": "x", "env": {"A-B": 1}}}, ["llm.r.serve.env", "'A-B'"]),
    ({"model": "m", "serve": "vllm"}, ["llm.r.serve = 'vllm'", "object"]),
]


@pytest.mark.parametrize(("role", "needles"), ROLE_CASES)
def test_a_bad_role_gets_one_line_naming_key_and_value(role, needles):
    found = schema.check(role, "role", "llm.r")
    assert found and len(found) <= 3, found
    assert any(all(needle in line for needle in needles) for line in found), found


@pytest.mark.parametrize(("role", "needles"), ROLE_CASES)
def test_workflow_and_job_report_the_same_problem(demo_config, role, needles):
    """The job's role_config and the workflow's config check say the same thing."""
    config = copy.deepcopy(demo_config)
    config["llm"]["r"] = role
    with pytest.raises(ConfigError) as at_start:
        validate_config(config)
    with pytest.raises(DeepmathError) as in_job:
        role_config("r", role, base_url="http://127.0.0.1:9/v1" if "serve" in role else None)
    for line in schema.check(role, "role", "llm.r"):
        assert line in str(at_start.value)
        assert line in str(in_job.value)


@pytest.fixture
def demo_config():
    config = load_config(["config/demo.yaml"])
    validate_config(config)
    return config


GOOD_ROLES = [
    {"model": "gpt-4o", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"},
    {"model": "m", "base_url": "http://user:pw@10.0.0.1:8000/v1"},
    {"model": "m", "base_url": "http://[::1]:8000/v1"},
    {"model": "m", "base_url": "http://h/v1", "serve": None},
    {"model": "m", "serve": {"model": "x", "tensor_parallel": 8, "nodes": 2, "env": {"A": 1}}},
    {"model": "m", "serve": {"model": "x", "share": "workflow", "nodes": 1, "dtype": "half"}},
    {"model": "m", "base_url": "http://h/v1", "params": {"stop": "</s>", "seed": 0, "top_k": -1}},
    {"model": "m", "base_url": "http://h/v1", "params": {"temperature": None, "extra_body": {}}},
    {
        "model": "m",
        "base_url": "http://h/v1",
        "retry_budget": None,
        "prices": {"prompt": 1, "completion": 2},
    },
]


@pytest.mark.parametrize("role", GOOD_ROLES)
def test_good_roles_pass(role):
    assert schema.check(role, "role", "llm.r") == []


def test_params_are_normalised_after_the_check():
    assert normalize_params({"temperature": 1, "stop": "x", "seed": None}) == {
        "temperature": 1.0,
        "stop": ["x"],
    }
    with pytest.raises(DeepmathError, match="params.top_p = 1.5 must be <= 1"):
        normalize_params({"top_p": 1.5})


def test_documented_keys_come_from_the_schema():
    assert set(ROLE_KEYS) == set(schema.definition("role")["properties"])
    assert set(SERVE_KEYS) == set(schema.definition("serve")["properties"])
    assert all(ROLE_KEYS.values()) and all(SERVE_KEYS.values())


def test_serve_dtypes_are_ours_plus_vllm_aliases():
    allowed = schema.definition("serve")["properties"]["dtype"]["enum"]
    assert set(allowed) == {*dtypes.CHOICES, "half", "float", None}
    offline = schema.definition("offline_engine")["properties"]["dtype"]["enum"]
    assert set(offline) == {*dtypes.CHOICES, None}


def test_rules_a_schema_cannot_say_stay_in_serve_config():
    with pytest.raises(DeepmathError, match="extra_args sets --port"):
        serve_config({"model": "m", "extra_args": ["--port=8"]})
    with pytest.raises(DeepmathError, match="multiple of nodes = 2"):
        serve_config({"model": "m", "tensor_parallel": 3, "nodes": 2})


@pytest.mark.parametrize(
    ("engine", "needle"),
    [
        ({"kind": "server"}, "evaluation.engine (kind server) needs serve"),
        ({"kind": "gpu"}, "evaluation.engine.kind = 'gpu' is not allowed"),
        ({"kind": "offline", "offline": {"dtype": "fp8"}}, "engine.offline.dtype = 'fp8'"),
        ({"kind": "offline", "offline": {"tp": 2}}, "unknown key 'evaluation.engine.offline.tp'"),
        ({"serve": {"tensor_paralel": 2}}, "unknown key 'evaluation.engine.serve.tensor_paralel'"),
        ({"base_url": "localhost"}, "evaluation.engine.base_url = 'localhost'"),
    ],
)
def test_engine_block_is_checked_by_the_schema(engine, needle):
    spec = {"model_name": "m", "sampling": {"n": 1}, "engine": engine}
    with pytest.raises(DeepmathError) as err:
        eval_spec(spec)
    assert needle in str(err.value)


def test_engine_serve_model_defaults_to_the_model_name():
    spec = eval_spec({"model_name": "m", "sampling": {"n": 1}, "engine": {"serve": {"gpus": 0}}})
    assert spec.role_spec["serve"]["model"] == "m"


@pytest.mark.parametrize(
    ("analysis", "needle"),
    [
        ({"compare": {"ours": {"kind": "published", "load": {"path": "x", "split": "train"}}}},
         "is reserved for this run's dataset"),
        ({"compare": {"a": {"load": {"path": "x", "split": "train"}}}},
         "analysis.compare.a (kind source) needs fields"),
        ({"string_check": {"benchmark": "math5000"}}, "analysis.string_check.benchmark"),
        ({"contamination": {"paper": {"nope": 3.0}}}, "analysis.contamination.paper.nope"),
        ({"contamination": {"paper": {"math500": 120}}}, "must be <= 100"),
        ({"novelty": {"treshold": 0.9}}, "unknown key 'analysis.novelty.treshold'"),
        ({"map": {"per_dataset": 1}}, "analysis.map.per_dataset = 1 must be >= 3"),
    ],
)  # fmt: skip
def test_analysis_mistakes_stop_before_any_job(demo_config, analysis, needle):
    config = copy.deepcopy(demo_config)
    config["analysis"] = analysis
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert needle in str(err.value)


def test_scoring_enums_follow_the_checker():
    from deepmath.answers import JUDGES, POLICIES

    rule = schema.definition("scoring_rule")["properties"]
    assert set(rule["judges"]["items"]["enum"]) == set(JUDGES)
    assert set(schema.definition("scoring")["properties"]["policy"]["enum"]) == {*POLICIES, None}


@pytest.mark.parametrize(
    ("scoring", "needle"),
    [
        ({"policy": "lenient"}, "evaluation.scoring.policy = 'lenient' is not allowed"),
        ({"text": "answer_only"}, "evaluation.scoring.text = 'answer_only' is not allowed"),
        ({"rules": {"aime24": {"judges": ["sympy"]}}}, "scoring.rules.aime24.judges.0 = 'sympy'"),
        ({"rules": {"aime24": {"precision": 0}}}, "rules.aime24.precision = 0 must be > 0"),
        ({"rules": {"aime24": {"strict": True}}}, "unknown key 'evaluation.scoring.rules.aime24.s"),
        ({"pass_k": []}, "evaluation.scoring.pass_k = []"),
        ({"memory_mb": 8}, "evaluation.scoring.memory_mb = 8 must be >= 64"),
    ],
)  # fmt: skip
def test_scoring_block_is_checked_by_the_schema(scoring, needle):
    with pytest.raises(DeepmathError) as err:
        eval_spec({"model_name": "m", "sampling": {"n": 1}, "scoring": scoring}, need_engine=False)
    assert needle in str(err.value)
