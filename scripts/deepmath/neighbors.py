"""retrieve_neighbors: exact top-k cosine neighbours of pool questions among benchmark items.

Exact search as a blocked matrix product: the pool side is cut into blocks so one block of the
(pool x benchmark) score matrix fits the configured memory, whatever the pool size. Each
candidate pair also gets a normalised Indel similarity; pairs above the threshold are flagged
contaminated here, so the LLM judge never needs to see them.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from deepmath.embed import pick_device
from deepmath.io import DeepmathError, run_cli, setup_logging, write_json, write_parquet
from deepmath.text import indel_similarity

log = logging.getLogger("deepmath.neighbors")

NEIGHBOR_COLUMNS = [
    "id",
    "question",
    "rank",
    "bench",
    "bench_id",
    "bench_problem",
    "bench_answer",
    "score",
    "indel",
    "precheck",
]


def block_rows(num_keys: int, memory_mb: int) -> int:
    """Pool rows per block so that a float32 block of scores stays within memory_mb."""
    return max(1, (memory_mb * 1024 * 1024) // (4 * max(1, num_keys)))


def topk_cosine(
    queries: np.ndarray,
    keys: np.ndarray,
    k: int,
    memory_mb: int = 512,
    device: str = "auto",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and indices (n_queries x k, best first) of the k most similar keys.

    Inputs are unit vectors, so the dot product is the cosine similarity.
    """
    import torch

    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise DeepmathError(
            f"embedding shapes do not match: pool {queries.shape}, benchmarks {keys.shape}"
        )
    k = min(k, keys.shape[0])
    dev = torch.device(pick_device(device))
    key_t = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.float32)).to(dev)
    step = block_rows(keys.shape[0], memory_mb)
    scores = np.empty((queries.shape[0], k), dtype=np.float32)
    index = np.empty((queries.shape[0], k), dtype=np.int64)
    starts = range(0, queries.shape[0], step)
    for start in tqdm(starts, desc="neighbour search", unit="block", disable=not progress):
        block = torch.from_numpy(np.ascontiguousarray(queries[start : start + step])).to(dev)
        top = torch.topk(block @ key_t.T, k, dim=1)
        scores[start : start + step] = top.values.cpu().numpy()
        index[start : start + step] = top.indices.cpu().numpy()
    return scores, index


def neighbor_table(
    pool: pd.DataFrame,
    bench: pd.DataFrame,
    scores: np.ndarray,
    index: np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """Long table: one row per (pool question, rank) with texts, cosine, Indel and the flag."""
    n, k = index.shape
    flat = index.reshape(-1)
    picked = bench.iloc[flat].reset_index(drop=True)
    questions = np.repeat(pool["question"].to_numpy(), k)
    table = pd.DataFrame(
        {
            "id": np.repeat(pool["id"].to_numpy(), k),
            "question": questions,
            "rank": np.tile(np.arange(1, k + 1), n),
            "bench": picked["bench"],
            "bench_id": picked["id"],
            "bench_problem": picked["problem"],
            "bench_answer": picked["answer"],
            "score": scores.reshape(-1).astype(np.float64),
        }
    )
    table["indel"] = [
        indel_similarity(q, p)
        for q, p in zip(
            tqdm(questions, desc="string pre-check", unit="pair", mininterval=5),
            table["bench_problem"],
            strict=True,
        )
    ]
    table["precheck"] = table["indel"] > threshold
    return table[NEIGHBOR_COLUMNS]


def summarise(table: pd.DataFrame, seconds: float) -> dict[str, Any]:
    flagged = table.groupby("id")["precheck"].any()
    # a question counts once under every benchmark it matched (MATH-500 items are in MATH too)
    by_bench = table[table["precheck"]].drop_duplicates(["id", "bench"])["bench"].value_counts()
    return {
        "questions": int(table["id"].nunique()),
        "pairs": int(len(table)),
        "precheck_flagged_questions": int(flagged.sum()),
        "precheck_flagged_by_benchmark": {k: int(v) for k, v in by_bench.sort_index().items()},
        "search_seconds": round(seconds, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.neighbors",
        description="Top-k benchmark neighbours of each pool question, with a string pre-check.",
    )
    parser.add_argument("--pool", required=True, help="pool shard parquet")
    parser.add_argument("--pool-emb", required=True, help="pool shard embeddings (.npy)")
    parser.add_argument(
        "--bench", nargs="+", required=True, help="benchmark index parquet(s), searched as one"
    )
    parser.add_argument(
        "--bench-emb", nargs="+", required=True, help="their embeddings (.npy), in the same order"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--memory-mb", type=int, default=512)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", required=True, help="output neighbours parquet")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    args = parser.parse_args(argv)
    setup_logging()
    pool = pd.read_parquet(args.pool)
    if len(args.bench) != len(args.bench_emb):
        raise DeepmathError(
            f"{len(args.bench)} benchmark index file(s) but {len(args.bench_emb)} embedding file(s)"
        )
    bench = pd.concat([pd.read_parquet(p) for p in args.bench], ignore_index=True)
    queries = np.load(args.pool_emb)
    keys = np.concatenate([np.load(p) for p in args.bench_emb])
    if len(pool) != len(queries) or len(bench) != len(keys):
        raise DeepmathError(
            f"rows and embeddings disagree: pool {len(pool)} vs {len(queries)}, "
            f"benchmarks {len(bench)} vs {len(keys)}; rebuild the embeddings"
        )
    log.info("searching %d questions against %d benchmark items", len(pool), len(bench))
    start = time.perf_counter()
    scores, index = topk_cosine(queries, keys, args.top_k, args.memory_mb, args.device, True)
    seconds = time.perf_counter() - start
    table = neighbor_table(pool, bench, scores, index, args.threshold)
    stats = summarise(table, seconds)
    log.info(
        "%d of %d questions flagged by the string pre-check (threshold %.2f)",
        stats["precheck_flagged_questions"],
        stats["questions"],
        args.threshold,
    )
    write_parquet(table, args.out)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
