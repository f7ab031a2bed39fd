"""The evaluation engine's length: each model's own context length, and max_tokens that fits it.

The authors started vLLM without ``max_model_len`` (so at each model's own length, read from its
config.json) and asked for 32,768 tokens with every prompt; the engine stopped a sample at its
length. Model folders here are real folders on disk (a config.json, and SmolLM2's tokenizer
where prompts are counted); the server path runs against the project's small real HTTP server
and, in the slow test, a real vLLM CPU server that refuses a request longer than its length.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepmath.config import _evaluation_problems
from deepmath.evaluate.generate import (
    build_requests,
    generate,
    length_record,
    load_benchmark,
    messages_for,
    model_identity_of,
    offline_llm_kwargs,
    prompt_tokens,
    token_budgets,
)
from deepmath.evaluate.spec import (
    LONG_LENGTH_ENV,
    engine_length,
    eval_spec,
    length_problem,
    token_budget,
    with_length,
)
from deepmath.io import DeepmathError
from deepmath.models import DEFAULT_CONTEXT_LENGTH, context_length
from tests.llm_server import FakeLLMServer
from tests.paths import REPO, SMOLLM2

GSM8K = REPO / "results" / "demo" / "benchmarks" / "gsm8k.parquet"
QWEN_MATH = {  # Qwen2.5-Math-7B's config.json, the length keys of it
    "model_type": "qwen2",
    "max_position_embeddings": 4096,
    "sliding_window": 4096,
    "use_sliding_window": False,
    "rope_scaling": None,
}


def model_folder(root: Path, config: dict, name: str = "m", tokenizer: bool = False) -> Path:
    """A model folder with this config.json (and SmolLM2's tokenizer where prompts are counted)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer:
        if not (SMOLLM2 / "tokenizer.json").is_file():
            pytest.skip(f"{SMOLLM2} missing: snakemake --profile profiles/demo {SMOLLM2}")
        for item in SMOLLM2.iterdir():
            if item.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy(item, folder / item.name)
    return folder


def offline_spec(max_model_len=None, env=None, max_tokens=32768, llm_kwargs=None):
    offline = {"max_model_len": max_model_len, "env": env or {}, "llm_kwargs": llm_kwargs or {}}
    return eval_spec(
        {
            "model_name": "qwen2.5-math-7b",
            "sampling": {"n": 2, "temperature": 0.6, "max_tokens": max_tokens, "seed": 42},
            "engine": {"kind": "offline", "offline": offline},
        }
    )


def served_spec(url, max_model_len=None, max_tokens=32, system_prompt=True):
    engine = {"base_url": url, "max_concurrency": 4}
    if max_model_len is not None:
        engine = {"serve": {"model": "m", "max_model_len": max_model_len}}
    return eval_spec(
        {
            "model_name": "m",
            "system_prompt": system_prompt,
            "sampling": {"n": 2, "temperature": 0.6, "max_tokens": max_tokens, "seed": 42},
            "engine": engine,
        }
    )


def bench_file(tmp_path: Path, problems: list[str]) -> Path:
    frame = pd.DataFrame(
        {
            "bench": "toy",
            "id": [f"p{i}" for i in range(len(problems))],
            "problem": problems,
            "answer": ["1"] * len(problems),
        }
    )
    path = tmp_path / "toy.parquet"
    frame.to_parquet(path, index=False)
    return path


# --------------------------------------------------------------------------- the model's length


@pytest.mark.parametrize(
    ("config", "length", "source"),
    [
        (QWEN_MATH, 4096, "max_position_embeddings"),
        ({"max_position_embeddings": 131072, "sliding_window": 4096}, 131072, "max_pos"),
        ({"n_positions": 1024}, 1024, "n_positions"),  # GPT-2
        ({"max_position_embeddings": 8192, "seq_length": 2048}, 2048, "seq_length"),  # smallest
        ({"max_position_embeddings": 8192, "model_max_length": 131072}, 131072, "model_max"),
        ({"hidden_size": 8}, DEFAULT_CONTEXT_LENGTH, "default"),  # no key: vLLM assumes 2048
        # RoPE scaling: vLLM multiplies by the factor, except where the length already counts it
        ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 4.0}},
         16384, "factor 4"),
        ({"max_position_embeddings": 4096,
          "rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, 8192, "factor 2"),
        ({"max_position_embeddings": 32768,
          "rope_scaling": {"type": "yarn", "factor": 4.0,
                           "original_max_position_embeddings": 32768}}, 131072, "yarn"),
        ({"max_position_embeddings": 131072,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, 131072, "max_pos"),
        ({"max_position_embeddings": 131072,
          "rope_scaling": {"type": "su", "factor": 32.0}}, 131072, "max_pos"),
        # transformers 5 writes rope_parameters; the default rope type has no factor
        ({"max_position_embeddings": 8192,
          "rope_parameters": {"rope_type": "default", "rope_theta": 1e5}}, 8192, "max_pos"),
        # a multimodal config: the language model's own
        ({"max_position_embeddings": 512,
          "text_config": {"num_attention_heads": 8, "max_position_embeddings": 32768}},
         32768, "max_pos"),
    ],
)  # fmt: skip
def test_context_length_reads_config_json_as_vllm_does(tmp_path, config, length, source):
    got, said = context_length(model_folder(tmp_path, config))
    assert got == length and isinstance(got, int)
    assert source in said


def test_context_length_sliding_window_only_when_disabled_and_used(tmp_path):
    used = model_folder(tmp_path, {"max_position_embeddings": 32768, "sliding_window": 4096}, "a")
    unused = model_folder(tmp_path, {**QWEN_MATH, "max_position_embeddings": 32768}, "b")
    assert context_length(used)[0] == 32768
    assert context_length(used, disable_sliding_window=True) == (
        4096,
        "sliding_window (disable_sliding_window)",
    )
    assert context_length(unused, disable_sliding_window=True)[0] == 32768


def test_context_length_of_a_folder_without_a_readable_config(tmp_path):
    with pytest.raises(DeepmathError, match=r"config.json is missing"):
        context_length(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(DeepmathError, match=r"config.json is not valid JSON"):
        context_length(tmp_path)


def test_context_length_of_the_demo_model_matches_installed_vllm(tmp_path):
    """The same number as the installed vLLM's own reading, on the demo's model and on
    configs with RoPE scaling (YaRN aside: vLLM 0.7.3, the authors', scales it; later ones
    take max_position_embeddings as already scaled)."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip(f"{SMOLLM2} missing")
    from types import SimpleNamespace

    from transformers import AutoConfig
    from vllm.config.model import _get_and_verify_max_len
    from vllm.transformers_utils.model_arch_config_convertor import (
        ModelArchConfigConvertorBase,
    )

    base = json.loads((SMOLLM2 / "config.json").read_text())
    folders = [SMOLLM2]
    for i, rope in enumerate(
        [{"rope_type": "linear", "factor": 4.0}, {"rope_type": "dynamic", "factor": 2.0}]
    ):
        rope = {**rope, "rope_theta": 1e5}
        folders.append(model_folder(tmp_path, {**base, "rope_parameters": rope}, f"m{i}"))
    for folder in folders:
        hf = AutoConfig.from_pretrained(folder)
        arch = ModelArchConfigConvertorBase(hf, hf).derive_max_model_len_and_key()
        theirs = _get_and_verify_max_len(
            hf, SimpleNamespace(derived_max_model_len_and_key=arch), None, None, False, None
        )
        assert context_length(folder)[0] == theirs


# --------------------------------------------------------------------------- the engine's length


def test_engine_runs_each_model_at_its_own_length(tmp_path):
    math7b = model_folder(tmp_path, QWEN_MATH, "math")
    long = model_folder(tmp_path, {**QWEN_MATH, "max_position_embeddings": 131072}, "long")
    spec = offline_spec()
    for folder, length in ((math7b, 4096), (long, 131072)):
        got = engine_length(spec, folder)
        assert (got.max_model_len, got.model_len) == (length, length)
        assert "max_position_embeddings" in got.source
        resolved = with_length(spec, got)
        assert resolved.max_model_len == length == resolved.offline["max_model_len"]
        # the offline engine starts with it ...
        assert offline_llm_kwargs(resolved, str(folder), "bfloat16")["max_model_len"] == length
    # ... and the checkpoint's identity (journal, request keys) carries it
    short = with_length(spec, engine_length(offline_spec(max_model_len=2048), math7b))
    full = with_length(spec, engine_length(spec, math7b))
    assert model_identity_of(short, str(math7b), "m") != model_identity_of(full, str(math7b), "m")
    # the model's own length set explicitly is the same engine: its journal replays
    same = with_length(spec, engine_length(offline_spec(max_model_len=4096), math7b))
    assert model_identity_of(same, str(math7b), "m") == model_identity_of(full, str(math7b), "m")


@pytest.mark.parametrize("asked", [34816, 4097])
def test_an_engine_length_above_the_models_stops_with_both_numbers(tmp_path, asked):
    folder = model_folder(tmp_path, QWEN_MATH)
    with pytest.raises(DeepmathError) as err:
        engine_length(offline_spec(max_model_len=asked), folder)
    msg = str(err.value)
    for needle in (
        f"evaluation.engine.offline.max_model_len = {asked}",
        "'qwen2.5-math-7b'",
        "context length 4096",
        "max_position_embeddings",
        "at most 4096",
    ):
        assert needle in msg, msg


@pytest.mark.parametrize("asked", [4096, 2048, 1])
def test_an_engine_length_up_to_the_models_is_used(tmp_path, asked):
    got = engine_length(offline_spec(max_model_len=asked), model_folder(tmp_path, QWEN_MATH))
    assert (got.max_model_len, got.model_len) == (asked, 4096)
    assert got.source == "evaluation.engine.offline.max_model_len"


def test_vllms_long_length_switch_lets_a_longer_length_through(tmp_path, monkeypatch):
    folder = model_folder(tmp_path, QWEN_MATH)
    monkeypatch.delenv(LONG_LENGTH_ENV, raising=False)
    for value in ("1", "true", 1):
        spec = offline_spec(max_model_len=34816, env={LONG_LENGTH_ENV: value})
        assert engine_length(spec, folder).max_model_len == 34816
    with pytest.raises(DeepmathError):
        engine_length(offline_spec(max_model_len=34816, env={LONG_LENGTH_ENV: "0"}), folder)
    monkeypatch.setenv(LONG_LENGTH_ENV, "1")  # the job's own environment counts too
    assert engine_length(offline_spec(max_model_len=34816), folder).max_model_len == 34816


def test_disable_sliding_window_bounds_the_engine_length(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 32768, "sliding_window": 4096})
    spec = offline_spec(llm_kwargs={"disable_sliding_window": True})
    assert engine_length(spec, folder).max_model_len == 4096
    with pytest.raises(DeepmathError, match="context length 4096"):
        engine_length(offline_spec(max_model_len=8192, llm_kwargs=spec.offline["llm_kwargs"]),
                      folder)  # fmt: skip


def test_served_engine_length_is_the_serve_blocks_or_the_models(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 8192})
    assert engine_length(served_spec(None, max_model_len=4096), folder).max_model_len == 4096
    assert engine_length(served_spec("http://127.0.0.1:9/v1"), folder).max_model_len == 8192
    with pytest.raises(DeepmathError, match=r"serve.max_model_len = 16384 .* 8192"):
        engine_length(served_spec(None, max_model_len=16384), folder)


def test_workflow_start_names_a_too_long_engine_for_a_folder_that_exists(tmp_path):
    models = tmp_path / "models"
    model_folder(models, QWEN_MATH, "qwen25_math_7b")
    config = {
        "models_dir": str(models),
        "run": "r",
        "models": {"qwen25_math_7b": {}, "not_built_yet": {}},
        "evaluation": {
            "sampling": {"n": 1, "max_tokens": 32768},
            "engine": {"kind": "offline", "offline": {"max_model_len": 34816}},
            "models": {
                "qwen2.5-math-7b": {"model": "qwen25_math_7b"},
                "later": {"model": "not_built_yet"},  # its generate job checks it
            },
        },
    }
    problems = _evaluation_problems(config)
    assert len(problems) == 1, problems
    assert problems[0].startswith("evaluation.models.qwen2.5-math-7b: ")
    assert "34816" in problems[0] and "4096" in problems[0]
    config["evaluation"]["engine"]["offline"]["max_model_len"] = None
    assert _evaluation_problems(config) == []
    spec = offline_spec(max_model_len=34816)
    assert length_problem(spec, tmp_path / "nowhere") is None


# --------------------------------------------------------------------------- max_tokens per prompt


@pytest.mark.parametrize(
    ("max_tokens", "prompt", "length", "sent"),
    [
        (32768, 100, 131072, 32768),  # fits: as configured
        (32768, 100, 4096, 3996),  # the rest of the engine length
        (32768, 4095, 4096, 1),
        (None, 100, 4096, 3996),  # unset: up to the engine length, as vLLM does
        (96, 40, 4096, 96),
    ],
)
def test_token_budget_is_what_fits(max_tokens, prompt, length, sent):
    assert token_budget(max_tokens, prompt, length, "toy p0") == sent


@pytest.mark.parametrize("prompt", [4096, 5000])
def test_token_budget_of_a_prompt_that_fills_the_engine(prompt):
    with pytest.raises(DeepmathError, match=rf"toy p0: the prompt has {prompt} tokens.*4096"):
        token_budget(32768, prompt, 4096, "toy p0")


def test_budgets_count_the_chat_templated_prompt(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 96}, tokenizer=True)
    table = load_benchmark(bench_file(tmp_path, ["What is 1+1?", "Add " + "one " * 50]))
    spec = with_length(
        served_spec("http://x/v1"), engine_length(served_spec("http://x/v1"), folder)
    )
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    counts = [
        len(prompt_tokens(tok, messages_for(p, spec))["prompt_token_ids"]) for p in table.problem
    ]
    assert token_budgets(table, spec, str(folder)) == [min(32, 96 - c) for c in counts]
    assert 96 - counts[0] >= 32 > 96 - counts[1] > 0  # one fits, one is cut
    reqs = build_requests(table, spec, str(folder), token_budgets(table, spec, str(folder)))
    assert [r.params["max_tokens"] for r in reqs] == [32, 32, 96 - counts[1], 96 - counts[1]]
    too_long = load_benchmark(bench_file(tmp_path, ["word " * 80]))
    with pytest.raises(DeepmathError, match=r"toy problem 'p0' on model 'm': the prompt has"):
        token_budgets(too_long, spec, str(folder))


def test_generate_sends_what_fits_and_records_the_length_per_row(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 96}, tokenizer=True)
    bench = bench_file(tmp_path, ["What is 1+1?", "Add " + "one " * 50])
    with FakeLLMServer() as server:
        spec = served_spec(server.url)
        out, journal = tmp_path / "gen.parquet", tmp_path / "j" / "eval.jsonl"
        frame = generate(bench, spec, out=out, journal=journal, model_dir=str(folder))
        sent = sorted(r["body"]["max_tokens"] for r in server.received)
        again = generate(bench, spec, out=tmp_path / "again.parquet", journal=journal,
                         model_dir=str(folder))  # fmt: skip
        assert len(server.received) == 4  # the rerun replays: the same keys
    pd.testing.assert_frame_equal(frame, again)
    assert (frame["max_model_len"] == 96).all() and (frame["max_tokens_config"] == 32).all()
    cut = frame[frame["id"] == "p1"]
    assert sent == sorted(frame["max_tokens"].tolist()) and sent[-1] == 32 and sent[0] < 32
    assert (cut["max_tokens"] < 32).all() and (frame[frame["id"] == "p0"]["max_tokens"] == 32).all()
    assert all(
        json.loads(s)["max_tokens"] == m
        for s, m in zip(frame.sampling_params, frame.max_tokens, strict=True)
    )
    # no model folder (an external endpoint with nothing local): configured max_tokens, no length
    with FakeLLMServer() as server:
        plain = generate(
            bench, served_spec(server.url), out=tmp_path / "p.parquet", journal=tmp_path / "p.jsonl"
        )
        assert {r["body"]["max_tokens"] for r in server.received} == {32}
    assert plain["max_model_len"].isna().all() and (plain["max_tokens"] == 32).all()
    # what metrics.json says of it
    record = length_record(frame)
    assert record["max_model_len"] == 96 and record["max_tokens"] == 32
    assert record["max_tokens_sent"] == {"min": sent[0], "max": 32}
    assert record["samples_sent_less"] == 2 and 0 <= record["samples_stopped_at_length"] <= 2
    assert length_record(plain) == {"max_model_len": None}


def test_generate_stops_before_any_request_on_a_too_long_engine(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 2048}, tokenizer=True)
    bench = bench_file(tmp_path, ["What is 1+1?"])
    with FakeLLMServer() as server:
        spec = served_spec(server.url)
        spec = eval_spec({**spec.raw, "engine": {"serve": {"model": "m", "max_model_len": 4096}}})
        with pytest.raises(DeepmathError, match=r"max_model_len = 4096 .* context length 2048"):
            generate(bench, spec, out=tmp_path / "g.parquet", journal=tmp_path / "j.jsonl",
                     model_dir=str(folder), server_dir=str(tmp_path / "servers"))  # fmt: skip
        assert server.received == []
    assert not (tmp_path / "servers").exists()  # no server was started


# --------------------------------------------------------------------------- a real vLLM server


@pytest.mark.slow
def test_real_vllm_server_gets_what_fits_its_length(tmp_path, venv_env):
    """SmolLM2 served with max_model_len 192 and asked for 512 tokens: vLLM refuses such a
    request (400: max_tokens above the length); we send what fits, vLLM counts the same prompt
    tokens as we do, and every sample stops within the engine length."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    for need in (SMOLLM2 / "config.json", GSM8K):
        if not need.is_file():
            pytest.skip(f"{need} missing: snakemake --profile profiles/demo {need}")
    spec = json.dumps(
        {
            "model_name": "smollm2",
            "system_prompt": True,
            "sampling": {"n": 1, "temperature": 0.6, "max_tokens": 512, "seed": 42},
            "engine": {
                "kind": "server",
                "max_concurrency": 2,
                "timeout_s": 600,
                "serve": {
                    "model": "smollm2",
                    "dtype": "auto",
                    "max_model_len": 192,
                    "extra_args": ["--enforce-eager"],
                    "env": {"VLLM_CPU_KVCACHE_SPACE": 1, "HF_HUB_OFFLINE": 1},
                    "startup_timeout_s": 900,
                },
            },
            "limit": 2,
        }
    )
    out = tmp_path / "generations.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.evaluate", "generate", "--bench", str(GSM8K),
         "--model-dir", str(SMOLLM2), "--spec", spec, "--journal", str(tmp_path / "j.jsonl"),
         "--server-dir", str(tmp_path / ".serve"), "--out", str(out)],
        env=venv_env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_parquet(out)
    assert len(frame) == 2 and (frame["max_model_len"] == 192).all()
    assert (frame["max_tokens_config"] == 512).all()
    # vLLM's prompt count is ours: max_tokens is exactly the rest of the engine length
    assert (frame["max_tokens"] == 192 - frame["prompt_tokens"]).all()
    assert (frame["prompt_tokens"] + frame["tokens"] <= 192).all()
    assert set(frame["finish_reason"]) <= {"stop", "length"}
