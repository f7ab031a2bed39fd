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
