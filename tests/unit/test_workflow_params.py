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
