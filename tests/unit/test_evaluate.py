"""generate_eval / score_eval / results_table (deepmath.evaluate).

No mocks. Scoring runs the shared checker's real worker pool on handmade generations; the
server path runs against the project's small real HTTP server (tests/llm_server.py) for speed
and, in the slow test, against the real vLLM CPU server on SmolLM2; the offline engine's pieces
(vLLM SamplingParams, the model's chat template, journaling real vLLM RequestOutputs and
replaying them) run on CPU, while LLM.generate itself needs a GPU node.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepmath import dtypes
from deepmath.evaluate import (
    DEFAULT_SYSTEM_TEXT,
    build_requests,
    eval_spec,
    generate,
    generate_offline,
    load_benchmark,
    messages_for,
    metrics_from_scored,
    offline_dtype,
    offline_llm_kwargs,
    offline_sampling_kwargs,
    prompt_tokens,
    render_prompt,
    results_table,
    score_samples,
    vllm_version,
)
from deepmath.io import DeepmathError
from deepmath.llm import read_journal
from tests.llm_server import FakeLLMServer
from tests.paths import REPO, SMOLLM2

GSM8K = REPO / "results" / "demo" / "benchmarks" / "gsm8k.parquet"


def spec_for(**over):
    base = {
        "model_name": "m",
        "sampling": {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 32, "seed": 42},
        "engine": {"kind": "server", "base_url": "http://127.0.0.1:9/v1"},
    }
    base.update(over)
    return base


def bench_file(tmp_path: Path, rows: list[tuple[str, str, str]], category=None) -> Path:
    frame = pd.DataFrame(
        {
            "bench": "toy",
            "id": [r[0] for r in rows],
            "problem": [r[1] for r in rows],
            "answer": [r[2] for r in rows],
            "category": category if category is not None else [None] * len(rows),
        }
    )
    path = tmp_path / "toy.parquet"
    frame.to_parquet(path, index=False)
    return path


# --------------------------------------------------------------------------- spec


def test_spec_defaults_and_sampling():
    spec = eval_spec({"model_name": "m", "engine": {"base_url": "http://x:1/v1"}})
    assert spec.n == 1 and spec.params == {"seed": 42}  # uni_eval's base seed
    assert spec.engine == "server" and not spec.system_prompt
    assert spec.system_text == DEFAULT_SYSTEM_TEXT and spec.label == "m"
    assert spec.scoring["pass_k"] == [1, 2, 4, 8] and spec.scoring["maj_equivalence"]
    spec = eval_spec(spec_for(label="Model M"))
    assert spec.n == 2 and "n" not in spec.params and spec.label == "Model M"
    assert spec.role_spec["model"] == "m" and spec.role_spec["params"]["max_tokens"] == 32


def test_spec_serve_block_defaults_its_model():
    spec = eval_spec(spec_for(engine={"serve": {"dtype": "bfloat16"}, "max_concurrency": 4}))
    assert spec.role_spec["serve"]["model"] == "m" and spec.role_spec["max_concurrency"] == 4


@pytest.mark.parametrize(
    ("over", "needles"),
    [
        ({"modle_name": "x"}, ["unknown key 'evaluation.modle_name'"]),
        ({"model_name": ""}, ["evaluation.model_name"]),
        ({"sampling": {"n": 0}}, ["evaluation.sampling.n"]),
        ({"sampling": {"n": 2, "tempreature": 1}}, ["evaluation.sampling.tempreature"]),
        ({"engine": {"kind": "gpu"}}, ["evaluation.engine.kind", "server, offline"]),
        ({"engine": {"kind": "server"}}, ["needs serve: (a vLLM server) or base_url:"]),
        ({"engine": {"serve": {"dtype": "fp8"}}}, ["evaluation.engine.serve.dtype"]),
        ({"limit": 0}, ["evaluation.limit"]),
        ({"scoring": {"pass_k": [0]}}, ["evaluation.scoring.pass_k"]),
        ({"system_prompt": "yes"}, ["evaluation.system_prompt"]),
        (
            {"engine": {"kind": "offline", "offline": {"tensor_paralel": 2}}},
            ["unknown key 'evaluation.engine.offline.tensor_paralel'"],
        ),
        (
            {"engine": {"kind": "offline", "offline": {"dtype": "bf16"}}},
            ["evaluation.engine.offline.dtype = 'bf16'", "auto, float32, bfloat16"],
        ),
        (
            {
                "sampling": {"n": 1, "response_format": {"type": "json"}},
                "engine": {"kind": "offline"},
            },
            ["no vllm.SamplingParams equivalent"],
        ),
    ],
)
def test_spec_errors_name_the_key(over, needles):
    with pytest.raises(DeepmathError) as err:
        eval_spec(spec_for(**over))
    for needle in needles:
        assert needle in str(err.value)


# --------------------------------------------------------------------------- requests


def test_messages_system_prompt_only_when_asked():
    plain = eval_spec(spec_for())
    assert messages_for("1+1?", plain) == [{"role": "user", "content": "1+1?"}]
    zero = eval_spec(spec_for(system_prompt=True, prompt_suffix="\nThink."))
    assert messages_for("1+1?", zero) == [
        {"role": "system", "content": DEFAULT_SYSTEM_TEXT},
        {"role": "user", "content": "1+1?\nThink."},
    ]


def test_requests_one_per_sample_with_seed_plus_index(tmp_path):
    table = load_benchmark(bench_file(tmp_path, [("a", "P1", "1"), ("b", "P2", "2")]))
    reqs = build_requests(table, eval_spec(spec_for(sampling={"n": 3, "seed": 42})))
    assert [r.meta for r in reqs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [r.params["seed"] for r in reqs] == [42, 43, 44] * 2
    assert all("n" not in r.params for r in reqs)  # each request is one sample
    assert len({r.key for r in reqs}) == 6


def test_load_benchmark_limit_and_schema(tmp_path):
    path = bench_file(tmp_path, [("a", "P1", "1"), ("b", "P2", "2"), ("c", "P3", "3")])
    assert list(load_benchmark(path, 2)["id"]) == ["a", "b"]
    pd.DataFrame({"bench": ["x"], "id": ["a"], "question": ["q"]}).to_parquet(tmp_path / "bad.pq")
    with pytest.raises(DeepmathError, match="lacks column"):
        load_benchmark(tmp_path / "bad.pq")


# --------------------------------------------------------------------------- server engine


def test_generate_via_endpoint_records_everything_and_resumes(tmp_path):
    bench = bench_file(
        tmp_path, [("a", "What is 1+1?", "2"), ("b", "What is 2+2?", "4")], ["x", "y"]
    )
    with FakeLLMServer() as server:
        spec = eval_spec(
            spec_for(system_prompt=True, engine={"base_url": server.url, "max_concurrency": 4})
        )
        out, journal = tmp_path / "gen.parquet", tmp_path / "j" / "eval.jsonl"
        frame = generate(bench, spec, out=out, journal=journal)
        assert len(server.received) == 4
        bodies = [r["body"] for r in server.received]
        assert sorted(b["seed"] for b in bodies) == [42, 42, 43, 43]
        assert all(b["messages"][0]["content"] == DEFAULT_SYSTEM_TEXT for b in bodies)
        assert all("n" not in b for b in bodies)
        # the rerun replays the journal: nothing is sent, the table is the same
        again = generate(bench, spec, out=tmp_path / "gen2.parquet", journal=journal)
        assert len(server.received) == 4
    pd.testing.assert_frame_equal(frame, again)
    pd.testing.assert_frame_equal(frame, pd.read_parquet(out))
    assert list(frame["id"]) == ["a", "a", "b", "b"] and list(frame["sample"]) == [0, 1, 0, 1]
    assert list(frame["seed"]) == [42, 43, 42, 43]
    assert frame["response"].str.startswith("echo ?1+1").tolist() == [True, True, False, False]
    row = frame.iloc[1]
    assert row["finish_reason"] == "stop" and row["tokens"] > 0 and row["prompt_tokens"] > 0
    assert (row["model_name"], row["engine"], row["temperature"], row["top_p"]) == (
        "m",
        "server",
        0.6,
        0.95,
    )
    assert json.loads(row["sampling_params"]) == {
        "n": 1,
        "seed": 43,
        "temperature": 0.6,
        "top_p": 0.95,
        "max_tokens": 32,
    }
    assert row["vllm_version"] and row["category"] == "x" and row["finished_at"] > 1e9
    usage = json.loads(Path(f"{out}.usage.json").read_text())
    assert usage["roles"]["eval"]["sent"]["requests"] == 4
    assert len(read_journal(journal)) == 4


# --------------------------------------------------------------------------- offline engine


def test_offline_engine_pieces_and_journal_replay(tmp_path):
    """What the offline engine does besides LLM.generate, with the real vLLM classes."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    from vllm import SamplingParams
    from vllm.outputs import CompletionOutput, RequestOutput

    from deepmath.evaluate.generate import _append_all, _journal_entry
    from deepmath.llm import Journal

    over = {
        "sampling": {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "top_k": -1},
        "engine": {"kind": "offline", "offline": {"tensor_parallel": 2, "max_model_len": 4096}},
    }
    spec = eval_spec(spec_for(**over))
    table = load_benchmark(bench_file(tmp_path, [("a", "P1", "1"), ("b", "P2", "2")]))
    reqs = build_requests(table, spec)
    params = [SamplingParams(**offline_sampling_kwargs(r.params)) for r in reqs]
    assert [(p.n, p.seed, p.max_tokens, p.top_k) for p in params[:2]] == [
        (1, 42, 64, -1),
        (1, 43, 64, -1),
    ]
    assert params[0].temperature == 0.6 and params[0].top_p == 0.95
    kwargs = offline_llm_kwargs(spec, "/models/m", offline_dtype(spec))
    # dtype auto: what the GPU (or, with none visible, the CPU) computes natively
    assert kwargs["dtype"] == dtypes.decide("cuda").dtype != "auto"
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["max_model_len"] == 4096
    assert kwargs["seed"] == 42 and kwargs["model"] == "/models/m"

    # the first problem was generated (and journaled) before the job died ...
    journal = tmp_path / "offline.jsonl"
    outputs = [
        RequestOutput(
            request_id=str(i),
            prompt="p",
            prompt_token_ids=[1, 2, 3],
            prompt_logprobs=None,
            outputs=[CompletionOutput(0, f"\\boxed{{{i}}}", [5, 6], None, None, "stop")],
            finished=True,
        )
        for i in range(2)
    ]
    with Journal(journal) as jr:
        asyncio.run(
            _append_all(
                jr, [_journal_entry(r, o, 1.0) for r, o in zip(reqs[:2], outputs, strict=True)]
            )
        )
    # ... so a rerun has only problem b left; with every sample journaled nothing is loaded
    with Journal(journal) as jr:
        asyncio.run(_append_all(jr, [_journal_entry(r, outputs[0], 1.0) for r in reqs[2:]]))
    usage = tmp_path / "usage.json"
    resp = generate_offline(
        reqs, spec, journal=journal, usage=usage, model_dir="/nonexistent", server_dir=None
    )
    assert [r.texts[0] for r in resp] == ["\\boxed{0}", "\\boxed{1}", "\\boxed{0}", "\\boxed{0}"]
    assert all(r.replayed and r.completion_tokens == 2 and r.prompt_tokens == 3 for r in resp)
    assert json.loads(usage.read_text())["roles"]["eval"]["replayed"]["requests"] == 4


def test_offline_prompt_uses_the_models_chat_template():
    if not (SMOLLM2 / "tokenizer.json").is_file():
        pytest.skip(f"{SMOLLM2} missing")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2)
    plain = render_prompt(tok, [{"role": "user", "content": "What is 1+1?"}])
    # SmolLM2's own template adds its default system turn when there is none
    assert plain.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert plain.endswith("What is 1+1?<|im_end|>\n<|im_start|>assistant\n")
    spec = eval_spec(spec_for(system_prompt=True))
    zero = render_prompt(tok, messages_for("What is 1+1?", spec))
    assert zero.startswith(f"<|im_start|>system\n{DEFAULT_SYSTEM_TEXT}<|im_end|>")
    ids = prompt_tokens(tok, messages_for("What is 1+1?", spec))["prompt_token_ids"]
    assert tok.decode(ids) == zero  # token ids of exactly the rendered text, nothing added


# --------------------------------------------------------------------------- scoring


def generations(rows):
    """A generations table from (id, sample, response, answer, category, finish_reason)."""
    return pd.DataFrame(
        [
            {
                "bench": "toy",
                "id": pid,
                "problem": f"problem {pid}",
                "answer": answer,
                "category": category,
                "sample": sample,
                "response": response,
                "finish_reason": finish,
                "tokens": 10 + sample,
                "model_name": "m",
                "engine": "server",
                "vllm_version": "0.32.0",
                "sampling_params": json.dumps({"n": 1, "seed": 42 + sample, "temperature": 0.6}),
                "system_prompt": False,
                "finished_at": 1.7e9 + sample,
            }
            for pid, sample, response, answer, category, finish in rows
        ]
    )


HANDMADE = [
    # a: the last box of the whole response counts; then "The answer is" alone
    ("a", 0, "<think>maybe \\boxed{3}</think> So \\boxed{4}.", "4", "Algebra", "stop"),
    ("a", 1, "We get 2+2. The answer is: 4", "4", "Algebra", "stop"),
    # b: wrong last box, right "The answer is" sentence (uni_eval ORs both); thinking cut off
    # before any answer
    ("b", 0, "\\boxed{5}\nThe answer is: 7", "7", "Algebra", "stop"),
    ("b", 1, "<think>Let me think about this", "7", "Algebra", "length"),
    # c: no </think> means the whole response is scored; equivalent spellings vote together
    ("c", 0, "First $\\frac12$ then \\boxed{\\frac{1}{2}}", "0.5", "Geometry", "stop"),
    ("c", 1, "\\boxed{3}", "0.5", "Geometry", "stop"),
    # d: wrong twice, with the majority on a wrong answer
    ("d", 0, "\\boxed{9}", "8", "Geometry", "stop"),
    ("d", 1, "<think>no</think> The final answer is 9.", "8", "Geometry", "stop"),
]


def test_eval_policy_scores_the_whole_response_as_the_authors_do():
    """uni_eval takes the last box of the whole response, thinking included."""
    from deepmath.answers import EVAL, check_answer

    thinking_only = "<think>so it is \\boxed{18}</think>"
    assert check_answer(thinking_only, "18", **EVAL.options()).equivalent
    after = "<think>maybe \\boxed{16}</think> The total is \\boxed{18}."
    assert check_answer(after, "18", **EVAL.options()).equivalent
    assert not check_answer(after, "16", **EVAL.options()).equivalent


def test_score_handmade_generations():
    spec = eval_spec(spec_for(), need_engine=False)
    scored, links = score_samples(generations(HANDMADE), spec.scoring)
    assert scored["correct_ours"].tolist() == [True, True, True, False, True, False, False, False]
    assert scored["method"].iloc[2] == "answer_is" and scored["pred"].iloc[2] == "7"
    assert scored["reason"].iloc[3] == "no_answer"  # cut off before any answer
    assert scored["pred"].iloc[0] == "4" and scored["pred"].iloc[7] == "9"
    # the authors' scorer agrees on these; "The answer is: 7" after a wrong box is its (B)
    assert scored["correct_authors"].tolist() == scored["correct_ours"].tolist()
    assert scored["authors_via"].tolist()[:3] == ["boxed", "answer_is", "answer_is"]
    assert scored["authors_pred"].iloc[2] == "5"  # (A) extracts the last box, wrong here

    metrics = metrics_from_scored(scored, links, spec)
    assert (metrics["n"], metrics["problems"], metrics["samples"]) == (2, 4, 8)
    assert set(metrics["scorers"]) == {"authors", "ours"}
    for name in ("authors", "ours"):
        m = metrics["scorers"][name]
        assert m["pass@1"] == 50.0  # (1 + 0.5 + 0.5 + 0) / 4
        assert m["pass@1_per_sample"] == [75.0, 25.0] and m["pass@1_std"] == 25.0
        assert m["pass@k"] == {"1": 50.0, "2": 75.0}
        # maj@2: a -> 4 (right), b -> 7 (only voter, right), c -> 1/2 (tie, first), d -> 9
        assert m["maj@n"] == 75.0
        assert m["per_category"] == {
            "Algebra": {"problems": 2, "pass@1": 75.0},
            "Geometry": {"problems": 2, "pass@1": 25.0},
        }
        assert m["counts"]["correct"] == 4
    counts = metrics["scorers"]["ours"]["counts"]
    assert counts["no_answer"] == 1 and counts["answer_is_rescued"] == 1 and counts["timeout"] == 0
    authors = metrics["scorers"]["authors"]["counts"]
    assert authors["accepted_by"] == {"answer_is": 2, "boxed": 2} and authors["timeout"] == 0
    assert metrics["truncated"] == 1
    assert metrics["scorer_disagreement"]["authors_only"] == 0
    assert metrics["scorer_disagreement"]["ours_only"] == 0
    env = metrics["authors_env"]
    assert env["versions"]["math-verify"] and isinstance(env["is_exact"], bool)
    assert metrics["sampling"]["n"] == 2 and metrics["sampling"]["seed"] == 42
    assert metrics["generated_at"].startswith("2023-11-14")
    assert (metrics["model_name"], metrics["bench"], metrics["maj_grouping"]) == (
        "m",
        "toy",
        "equivalence",
    )


def test_maj_groups_equivalent_answers_only_with_equivalence_on():
    rows = [
        ("e", 0, "\\boxed{3}", "0.5", None, "stop"),
        ("e", 1, "\\boxed{\\frac{1}{2}}", "0.5", None, "stop"),
        ("e", 2, "\\boxed{0.5}", "0.5", None, "stop"),
        ("e", 3, "\\boxed{4}", "0.5", None, "stop"),
    ]
    on = eval_spec(spec_for(), need_engine=False)
    scored, links = score_samples(generations(rows), on.scoring)
    assert links == {"e": [("\\frac{1}{2}", "0.5")]}
    # 1/2 and 0.5 are one answer with 2 votes; apart, the 4-way tie goes to the first: 3
    assert metrics_from_scored(scored, links, on)["scorers"]["ours"]["maj@n"] == 100.0
    off = eval_spec(spec_for(scoring={"maj_equivalence": False}), need_engine=False)
    scored, links = score_samples(generations(rows), off.scoring)
    metrics = metrics_from_scored(scored, links, off)
    ours = metrics["scorers"]["ours"]
    assert links == {} and ours["maj@n"] == 0.0 and metrics["maj_grouping"] == "normalised"
    assert ours["per_category"] is None


def test_score_rejects_ragged_samples():
    spec = eval_spec(spec_for(), need_engine=False)
    rows = [r for r in HANDMADE if (r[0], r[1]) != ("d", 1)]
    scored, links = score_samples(generations(rows), spec.scoring)
    with pytest.raises(DeepmathError, match="different numbers of samples"):
        metrics_from_scored(scored, links, spec)


def test_score_and_table_clis(tmp_path, venv_env):
    gen = tmp_path / "generations.parquet"
    generations(HANDMADE).to_parquet(gen, index=False)
    spec = json.dumps(spec_for(label="Model M"))
    cmd = [sys.executable, "-m", "deepmath.evaluate"]
    out = tmp_path / "metrics.json"
    proc = subprocess.run(
        [*cmd, "score", "--in", str(gen), "--spec", spec, "--out", str(out), "--scored",
         str(tmp_path / "scored.parquet")],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert metrics["scorers"]["authors"]["pass@1"] == 50.0 and metrics["label"] == "Model M"
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["correct_ours"].sum() == scored["correct_authors"].sum() == 4
    table_spec = tmp_path / "evaluation.json"
    table_spec.write_text(json.dumps({"benchmarks": ["toy"], "paper_results": {"m": {"toy": 42}}}))
    proc = subprocess.run(
        [*cmd, "table", "--metrics", str(out), "--spec", str(table_spec), "--out-md",
         str(tmp_path / "t.md"), "--out-csv", str(tmp_path / "t.csv")],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "| Model M | 2 | 2023-11-14 | 50.0 ± 25.0 / 42.0 (+8.0) |"
        in (tmp_path / "t.md").read_text()
    )
    assert pd.read_csv(tmp_path / "t.csv")["delta"].tolist() == [8.0]
    proc = subprocess.run(
        [*cmd, "score", "--in", str(gen), "--spec", "{\"model_name\": 3}", "--out", str(out)],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "evaluation.model_name" in proc.stderr


def test_score_cli_takes_the_authors_interpreter_from_the_record(tmp_path, venv_env):
    """The rule hands the job the authors_python job's record: that interpreter scores, and one
    that cannot start stops the job naming it (no silent fallback to another)."""
    gen = tmp_path / "generations.parquet"
    generations(HANDMADE[:2]).to_parquet(gen, index=False)
    spec = json.dumps({**spec_for(), "sampling": {"n": 2}})
    cmd = [sys.executable, "-m", "deepmath.evaluate", "score", "--in", str(gen), "--spec", spec]
    record = tmp_path / "python.json"
    good = REPO / ".venv-authors" / "bin" / "python"
    record.write_text(json.dumps({"python": str(good), "environment": {}}))
    out = tmp_path / "metrics.json"
    proc = subprocess.run([*cmd, "--authors-record", str(record), "--out", str(out)],
                          env=venv_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["authors_env"]["python"] == str(good)
    record.write_text(json.dumps({"python": str(tmp_path / "no-python"), "environment": {}}))
    proc = subprocess.run([*cmd, "--authors-record", str(record), "--out", str(out)],
                          env=venv_env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode != 0 and str(tmp_path / "no-python") in proc.stderr


# --------------------------------------------------------------------------- table


def fake_metrics(model, bench, p1, std=1.0, n=16, day="2025-05-01", label=None):
    scored = {"pass@1": p1, "pass@1_std": std, "pass@k": {"1": p1, "2": p1 + 5}, "maj@n": p1 + 2}
    return {
        "model_name": model,
        "label": label,
        "bench": bench,
        "scorers": {"authors": scored, "ours": scored},
        "n": n,
        "problems": 500,
        "generated_at": f"{day}T10:00:00+00:00",
        "vllm_version": "0.9.2",
    }


def test_results_table_side_by_side():
    spec = {
        "benchmarks": ["math500", "aime24"],
        "models": {
            "r1-distill-qwen-1.5b": {"model": "r1", "label": "R1-Distill-Qwen-1.5B"},
            "deepmath-1.5b": {"checkpoint": "deepmath-1.5b", "label": "DeepMath-1.5B (ours)"},
        },
        "labels": {"math500": "MATH500", "aime24": "AIME24", "qwen-7b": "Qwen2.5-7B-Base"},
        "paper_results": {
            "r1-distill-qwen-1.5b": {"math500": 84.7, "aime24": 29.4},
            "deepmath-1.5b": {"math500": 89.9, "aime24": 37.3},
            "qwen-7b": {"math500": 54.8, "aime24": 7.7},
        },
    }
    metrics = [
        fake_metrics("deepmath-1.5b", "math500", 88.1, day="2025-05-02"),
        fake_metrics("r1-distill-qwen-1.5b", "math500", 84.0),
        fake_metrics("r1-distill-qwen-1.5b", "aime24", 28.4, std=4.2),
        fake_metrics("extra", "gsm8k", 30.0, std=0.0, n=1),
    ]
    md, frame = results_table(metrics, spec)
    lines = md.splitlines()
    assert lines[0] == "| Model | n | Run date | MATH500 | AIME24 | gsm8k | Avg. |"
    assert lines[2] == (
        "| R1-Distill-Qwen-1.5B | 16 | 2025-05-01 | 84.0 ± 1.0 / 84.7 (−0.7) "
        "| 28.4 ± 4.2 / 29.4 (−1.0) | – | 56.2 / 57.1 |"
    )
    assert lines[3] == (
        "| DeepMath-1.5B (ours) | 16 | 2025-05-02 | 88.1 ± 1.0 / 89.9 (−1.8) | – / 37.3 | – "
        "| – / 63.6 |"
    )
    assert lines[4] == "| extra | 1 | 2025-05-01 | – | – | 30.0 | – |"  # n = 1: no std
    assert lines[5] == "| Qwen2.5-7B-Base | – | – | – / 54.8 | – / 7.7 | – | – / 31.3 |"
    assert "n = 1, 16 samples per problem" in md

    assert list(frame.columns[:9]) == [
        "model",
        "label",
        "family",
        "bench",
        "pass@1",
        "pass@1_std",
        "paper_pass@1",
        "delta",
        "maj@n",
    ]
    row = frame[(frame["model"] == "deepmath-1.5b") & (frame["bench"] == "math500")].iloc[0]
    assert (row["pass@1"], row["paper_pass@1"], row["delta"], row["n"], row["date"]) == (
        88.1,
        89.9,
        -1.8,
        16,
        "2025-05-02",
    )
    # one CSV row per (model, bench) with a number: r1 2, deepmath 2, extra 1, qwen 2
    assert len(frame) == 7
    with pytest.raises(DeepmathError, match="two metrics files"):
        results_table([metrics[0], metrics[0]], spec)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_generate_score_resume_with_real_vllm_server(tmp_path, venv_env):
    """3 GSM8K problems x n=2 on SmolLM2 through a real vLLM CPU server, scored, then resumed."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    for need in (SMOLLM2 / "config.json", GSM8K):
        if not need.is_file():
            pytest.skip(f"{need} missing: snakemake --profile profiles/demo {need}")
    spec = json.dumps(
        {
            "model_name": "smollm2",
            "system_prompt": True,
            "sampling": {"n": 2, "temperature": 0.6, "top_p": 0.95, "max_tokens": 48, "seed": 42},
            "engine": {
                "kind": "server",
                "max_concurrency": 8,
                "timeout_s": 300,
                "serve": {
                    "model": "smollm2",
                    "dtype": "auto",
                    "max_model_len": 2048,
                    "extra_args": ["--enforce-eager"],
                    "env": {"VLLM_CPU_KVCACHE_SPACE": 1, "HF_HUB_OFFLINE": 1},
                    "startup_timeout_s": 900,
                },
            },
            "limit": 3,
        }
    )
    journal, servers = tmp_path / ".journal" / "gsm8k.jsonl", tmp_path / ".serve"
    cmd = [sys.executable, "-m", "deepmath.evaluate"]

    def gen(out: Path) -> dict:
        proc = subprocess.run(
            [*cmd, "generate", "--bench", str(GSM8K), "--model-dir", str(SMOLLM2), "--spec", spec,
             "--journal", str(journal), "--server-dir", str(servers), "--out", str(out)],
            env=venv_env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        print(proc.stderr[-1500:])
        return json.loads(Path(f"{out}.usage.json").read_text())["roles"]["eval"]

    usage = gen(tmp_path / "generations.parquet")
    assert usage["sent"]["requests"] == 6 and usage["sent"]["completion_tokens"] > 0
    frame = pd.read_parquet(tmp_path / "generations.parquet")
    assert len(frame) == 6 and frame["id"].nunique() == 3
    assert frame["seed"].tolist() == [42, 43] * 3 and (frame["tokens"] <= 48).all()
    assert frame["response"].str.len().gt(0).all()
    assert set(frame["finish_reason"]) <= {"stop", "length"}
    assert (frame["vllm_version"] == vllm_version()).all() and vllm_version()

    proc = subprocess.run(
        [*cmd, "score", "--in", str(tmp_path / "generations.parquet"), "--spec", spec,
         "--out", str(tmp_path / "metrics.json")],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["problems"] == 3
    for scored in metrics["scorers"].values():
        for key in ("pass@1", "pass@1_std", "pass@k", "maj@n", "counts", "per_category"):
            assert key in scored
        assert set(scored["pass@k"]) == {"1", "2"} and 0.0 <= scored["pass@1"] <= 100.0

    started = sorted(p.name for p in servers.iterdir())
    again = gen(tmp_path / "generations-again.parquet")
    assert again["sent"]["requests"] == 0 and again["replayed"]["requests"] == 6
    assert sorted(p.name for p in servers.iterdir()) == started  # no server was started
    pd.testing.assert_frame_equal(frame, pd.read_parquet(tmp_path / "generations-again.parquet"))
