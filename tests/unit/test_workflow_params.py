"""Rule parameters carry only what their outputs depend on (a changed default reruns nothing)."""

from __future__ import annotations

from deepmath.config import load_config, validate_config
from deepmath.workflow import model_spec, rl_run_spec
from tests.paths import REPO


def test_dtype_is_a_parameter_of_gguf_conversions_only():
    hub = {"hub": {"repo_id": "o/m", "revision": "abc"}, "dtype": "auto"}
    assert model_spec(hub) == {"hub": {"repo_id": "o/m", "revision": "abc"}}
    local = {"local": "pkg://p/model", "dtype": "bfloat16"}
    assert model_spec(local) == {"local": "pkg://p/model"}
    gguf = {"gguf": {"file": "m.gguf"}, "dtype": "auto"}
    assert model_spec(gguf) == gguf


def test_dtype_reaches_trl_runs_only():
    rl = {
        "validation": {"benchmark": "math500", "every": -1},
        "dataset": "published",
        "published": {"load": {"path": "x"}},
        "runs": {
            "a": {"backend": "trl", "dtype": "auto", "steps": 3},
            "b": {"backend": "verl", "dtype": "auto", "steps": 500},
        },
    }
    trl = rl_run_spec(rl, "a", seed=0)
    assert trl == {
        "validation": {"benchmark": "math500", "every": -1},
        "backend": "trl",
        "dtype": "auto",
        "steps": 3,
        "seed": 0,
        "name": "a",
    }
    verl = rl_run_spec(rl, "b", seed=1)
    assert "dtype" not in verl and verl["name"] == "b" and verl["seed"] == 1


def test_paper_config_hub_models_and_verl_runs_carry_no_dtype():
    """The schema fills dtype: auto into every entry; none of it may reach a hub or verl job."""
    config = load_config([REPO / "config" / "config.yaml"])
    validate_config(config)
    for name, spec in config["models"].items():
        assert spec.get("dtype") == "auto", name  # the default is filled in ...
        if "gguf" not in spec:
            assert "dtype" not in model_spec(spec), name  # ... but is no parameter
    for name, run in config["rl"]["runs"].items():
        if run["backend"] == "verl":
            assert "dtype" not in rl_run_spec(config["rl"], name, config["seed"]), name


def _paper():
    config = load_config([REPO / "config" / "config.yaml"])
    validate_config(config)
    return config


def _role_spec_arg(cli: str) -> dict:
    import json
    import shlex

    args = shlex.split(cli)
    return json.loads(args[args.index("--role-spec") + 1])


def test_llm_params_hold_no_run_only_keys():
    """A job's --role-spec (a rule param) lacks concurrency, timeouts, retries, prices, ports
    and placement; they reach the job through DEEPMATH_RUNTIME and merge back to the config."""
    import json
    import os

    from deepmath.fingerprint import ROLE_RUNTIME_KEYS, SERVE_RUNTIME_KEYS, deep_merge
    from deepmath.workflow import RUNTIME_ENV, llm_cli, runtime_from_env, runtime_settings

    config = _paper()
    for role, spec in config["llm"].items():
        cli = llm_cli(config, role, "p.txt", "j.jsonl", "u.json", "servers", "m", None)
        shaping = _role_spec_arg(cli)
        assert not set(shaping) & set(ROLE_RUNTIME_KEYS), role
        assert not set(shaping.get("serve") or {}) & set(SERVE_RUNTIME_KEYS), role
        runtime = runtime_settings(config)["llm"][role]
        assert deep_merge(shaping, runtime) == json.loads(json.dumps(spec)), role
        old = os.environ.get(RUNTIME_ENV)
        os.environ[RUNTIME_ENV] = json.dumps(runtime_settings(config))
        try:
            assert runtime_from_env("llm", role) == runtime
        finally:
            if old is None:
                os.environ.pop(RUNTIME_ENV)
            else:
                os.environ[RUNTIME_ENV] = old


def test_dataset_params_do_not_change_with_run_only_keys():
    from deepmath.workflow import curation_config

    config = _paper()
    edited = json_copy(config)
    for spec in edited["llm"].values():
        spec.update(max_concurrency=3, timeout_s=9, max_retries=1, prices={"prompt": 9.0,
                    "completion": 9.0}, progress_s=1, stall_s=2)  # fmt: skip
        if spec.get("serve"):
            spec["serve"].update(port=12345, startup_timeout_s=5, tensor_parallel=4)
    assert curation_config(edited) == curation_config(config)
    edited["llm"]["solver"]["params"]["temperature"] = 0.1  # this one shapes the answers
    assert curation_config(edited) != curation_config(config)


def json_copy(value):
    import json

    return json.loads(json.dumps(value))


def test_data_rules_read_only_their_keys():
    """prepare_rl_data / prepare_sft_data params: what rldata / sftdata read, so a recipe edit
    reruns the training only."""
    from deepmath import rldata, sftdata
    from deepmath.workflow import RL_DATA_KEYS, SFT_DATA_KEYS, data_spec

    assert set(RL_DATA_KEYS) == {*rldata.DEFAULTS, "validation"}
    assert set(SFT_DATA_KEYS) == set(sftdata.DEFAULTS)
    config = _paper()
    rl = config["rl"]
    for name, run in rl["runs"].items():
        before = data_spec(rl, name, 0)
        edited = json_copy(rl)
        edited["runs"][name]["recipe"]["lr"] = 1.0
        edited["runs"][name]["steps"] = 7
        edited["validation"] = {**(edited.get("validation") or {}), "every": 5}
        assert data_spec(edited, name, 0) == before, name
        assert set(before) <= set(SFT_DATA_KEYS if run["backend"] == "sft" else RL_DATA_KEYS)


# --------------------------------------------------------------------------- score_eval's code


def _scoring_tree(dest):
    """A copy of the code score_eval's digest covers, laid out as under scripts/."""
    import shutil

    src = REPO / "scripts" / "deepmath"
    shutil.copytree(src / "answers", dest / "deepmath" / "answers",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (dest / "deepmath" / "evaluate").mkdir(parents=True)
    shutil.copy(src / "evaluate" / "score.py", dest / "deepmath" / "evaluate" / "score.py")
    return dest


def _digest_in_new_process(scripts, seed):
    import os
    import subprocess
    import sys

    code = "import sys; from deepmath.workflow import score_code; print(score_code(sys.argv[1]))"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO / "scripts")}
    proc = subprocess.run([sys.executable, "-c", code, str(scripts)], env=env,
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    return proc.stdout.strip()


def test_score_code_is_the_same_in_every_process_and_tracks_every_scoring_file(tmp_path):
    """score_eval's code param: the same digest for the same tree whatever the process (so a
    dry run of an unchanged tree reruns nothing), another one for any change to either checker
    (authors/ included) or to the scoring; other modules and caches do not count."""
    from deepmath.workflow import score_code

    tree = _scoring_tree(tmp_path / "scripts")
    base = score_code(tree)
    assert base == score_code(REPO / "scripts")  # content, not where it lives
    assert _digest_in_new_process(tree, "1") == _digest_in_new_process(tree, "2") == base
    pkg = tree / "deepmath"
    (pkg / "answers" / "__pycache__").mkdir(exist_ok=True)
    (pkg / "answers" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "answers" / "notes.txt").write_text("not code")
    (pkg / "evaluate" / "table.py").write_text("# the table, not the scoring\n")
    (pkg / "reward.py").write_text("# not the scoring\n")
    assert score_code(tree) == base
    for changed in ("answers/check.py", "answers/authors/grader.py", "answers/authors/pool.py",
                    "evaluate/score.py"):  # fmt: skip
        path = pkg / changed
        before = path.read_text()
        path.write_text(before + "\n# a fix\n")
        assert score_code(tree) != base, changed
        path.write_text(before)
    assert score_code(tree) == base
    (pkg / "answers" / "authors" / "new_judge.py").write_text("X = 1\n")
    assert score_code(tree) != base


MINI_SNAKEFILE = """
import sys
sys.path.insert(0, {scripts!r})
from deepmath.workflow import score_code

rule score_eval:
    output: "metrics.json"
    params: code=score_code({tree!r})
    shell: "echo done > {{output}}"
"""


def test_snakemake_reruns_scoring_only_when_its_code_changes(tmp_path):
    """The code param for real: after a run, a dry run in a new Snakemake process has nothing
    to do; after a change to the authors' checker it reruns score_eval for changed params."""
    import subprocess
    import sys
    from pathlib import Path

    tree = _scoring_tree(tmp_path / "scripts")
    work = tmp_path / "work"
    work.mkdir()
    snakefile = work / "Snakefile"
    snakefile.write_text(MINI_SNAKEFILE.format(scripts=str(REPO / "scripts"), tree=str(tree)))
    snakemake = Path(sys.executable).parent / "snakemake"

    def run(*args):
        cmd = [str(snakemake), "-s", str(snakefile), "-d", str(work), "--cores", "1", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr

    run()
    assert (work / "metrics.json").exists()
    assert "Nothing to be done" in run("-n")
    grader = tree / "deepmath" / "answers" / "authors" / "grader.py"
    grader.write_text(grader.read_text() + "\n# a fix\n")
    out = run("-n")
    assert "score_eval" in out and "Nothing to be done" not in out
    assert "params" in out.lower()


def test_new_pins_of_the_authors_env_re_record_its_interpreter(tmp_path):
    """authors_python takes the authors' env's pins as inputs: a record older than
    requirements/authors.txt or envs/authors.yaml is made again (and, through it, everything
    that reads it); a newer one is left alone."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "config").symlink_to(REPO / "config")  # the config's paths are relative
    record = tmp_path / "results" / "demo" / "authors" / "python.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    pins = [REPO / "requirements" / "authors.txt", REPO / "envs" / "authors.yaml"]
    newest = max(p.stat().st_mtime for p in pins)

    def dry_run():
        cmd = [str(Path(sys.executable).parent / "snakemake"), "results/demo/authors/python.json",
               "-n", "--cores", "1", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
               "--configfile", "config/demo.yaml"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    os.utime(record, (newest + 60, newest + 60))
    assert "Nothing to be done" in dry_run()
    os.utime(record, (newest - 60, newest - 60))
    out = dry_run()
    assert "rule authors_python" in out and "Updated input files" in out
    for pin in pins:
        if pin.stat().st_mtime > newest - 60:
            assert str(pin) in out
