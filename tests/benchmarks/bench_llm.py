"""Demo LLM throughput: the vLLM CPU server alone vs. through deepmath.llm (journal, retries).

    python tests/benchmarks/bench_llm.py [--requests 48] [--concurrency 16]

Starts SmolLM2-135M-Instruct (results/models/smollm2, built by ``make demo``) with vLLM on the
CPU exactly as the demo serves it, then for two workloads shaped like the demo's stages (a
judge: long prompt, 4 tokens out; a solver: short prompt, 128 tokens out) sends the same
requests (1) with a bare ``openai.AsyncOpenAI`` client at the same concurrency — the server
alone — and (2) through ``deepmath.llm.run_requests`` with a fresh journal, then (3) replays
them from that journal. Prints requests/s and completion tokens/s for each; the README quotes
the figures. Different prompts per pass so vLLM's prefix cache cannot favour the second one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from deepmath.llm import make_request, role_config, run_requests  # noqa: E402
from deepmath.serve import ManagedServer, serve_config  # noqa: E402

MODEL = REPO / "results" / "models" / "smollm2"
SERVE = {
    "model": "smollm2",
    "gpus": 0,
    "dtype": "auto",  # as the demo: bfloat16 where this CPU has it natively, else float32
    "max_model_len": 4096,
    "extra_args": ["--enforce-eager"],
    "env": {"VLLM_CPU_KVCACHE_SPACE": "2"},
    "startup_timeout_s": 900,
}
PASSAGE = (
    "Problem A: A train leaves the station at 3 pm travelling at 60 km/h; a second train "
    "leaves the same station at 4 pm at 80 km/h on the same track. When does it catch up? "
)
WORKLOADS = {
    # the judge: two problems compared, a one-word verdict
    "judge": {"max_tokens": 4, "temperature": 0.0, "text": PASSAGE * 4 + "Same problem? {i}"},
    # the solver: a short question, a long sampled answer
    "solver": {
        "max_tokens": 128,
        "temperature": 0.6,
        "top_p": 0.95,
        "text": "Question {i}: what is {i} times 7? Reason step by step.",
    },
}


def prompts(workload: dict, n: int, tag: str) -> list[str]:
    return [f"[{tag}] " + workload["text"].format(i=i) for i in range(n)]


async def bare(url: str, texts: list[str], params: dict, concurrency: int) -> tuple[float, int]:
    """The server alone: plain async openai calls, ``concurrency`` in flight."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="EMPTY")
    gate = asyncio.Semaphore(concurrency)

    async def one(text: str) -> int:
        async with gate:
            out = await client.chat.completions.create(
                model="smollm2", messages=[{"role": "user", "content": text}], **params
            )
            return out.usage.completion_tokens

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(t) for t in texts))
    return time.perf_counter() - start, sum(tokens)


def through_client(url: str, texts: list[str], params: dict, concurrency: int, journal: Path):
    role = role_config(
        "bench",
        {"model": "smollm2", "base_url": url, "params": params, "max_concurrency": concurrency},
    )
    reqs = [make_request(role, [{"role": "user", "content": t}]) for t in texts]
    start = time.perf_counter()
    out = run_requests(role, reqs, journal, progress=False)
    elapsed = time.perf_counter() - start
    return elapsed, sum(r.completion_tokens for r in out if not r.replayed)


def row(name: str, n: int, elapsed: float, tokens: int) -> dict:
    return {
        "pass": name,
        "requests": n,
        "seconds": round(elapsed, 2),
        "req_per_s": round(n / elapsed, 2),
        "completion_tok_per_s": round(tokens / elapsed, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=48)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    if not (MODEL / "config.json").exists():
        sys.exit(f"{MODEL} is missing: run `make demo` (or the prepare_model rule) first")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        server = ManagedServer(serve_config(SERVE), MODEL, state_dir=Path(tmp) / "server")
        with server as url:
            print(f"server ready in {server.started_s:.0f} s at {url}", flush=True)
            for name, workload in WORKLOADS.items():
                params = {k: v for k, v in workload.items() if k != "text"}
                n, c = args.requests, args.concurrency
                elapsed, tok = asyncio.run(bare(url, prompts(workload, n, "a"), params, c))
                results.append({"workload": name, **row("server alone", n, elapsed, tok)})
                journal = Path(tmp) / f"{name}.jsonl"
                texts = prompts(workload, n, "b")
                elapsed, tok = through_client(url, texts, params, c, journal)
                results.append({"workload": name, **row("deepmath.llm", n, elapsed, tok)})
                elapsed, _ = through_client(url, texts, params, c, journal)
                results.append({"workload": name, **row("journal replay", n, elapsed, 0)})
                for r in results[-3:]:
                    print(json.dumps(r), flush=True)
    print("\n| workload | pass | req/s | completion tok/s |\n|---|---|--:|--:|")
    for r in results:
        print(f"| {r['workload']} | {r['pass']} | {r['req_per_s']} | {r['completion_tok_per_s']} |")


if __name__ == "__main__":
    main()
