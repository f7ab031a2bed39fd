"""build_pool: merge the raw sources into one deduplicated, sharded question pool.

Sources are taken in config order, so when two sources hold the same question the earlier one
keeps it. Ids are hashes of the normalised text and shards are a function of the id alone, so
a question lands in the same shard on every run and every machine.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from deepmath.io import DeepmathError, run_cli, setup_logging, write_json, write_parquet
from deepmath.pull import SOURCE_COLUMNS
from deepmath.text import dedup_key, normalize_text, shard_of, stable_id

log = logging.getLogger("deepmath.pool")


MAX_CHARS = 10_000  # default cap on a question's (and a reference answer's) length


def build_pool(
    frames: Sequence[pd.DataFrame], num_shards: int, max_chars: int | None = MAX_CHARS
) -> tuple[list[pd.DataFrame], dict[str, Any]]:
    """Concatenate, normalise, drop empty and over-long rows and exact and near-exact
    duplicates, split by id hash.

    ``max_chars`` caps the question and the reference answer: a forum post of a megabyte is no
    problem with one answer, and every LLM server downstream would refuse it (a 4xx no retry
    fixes), failing its shard on every rerun. None: no cap.
    """
    if num_shards < 1:
        raise DeepmathError(f"shards = {num_shards}; must be at least 1")
    pool = pd.concat([f[SOURCE_COLUMNS] for f in frames], ignore_index=True)
    n_in = len(pool)
    pool["question"] = pool["question"].map(
        lambda q: normalize_text(q) if isinstance(q, str) else ""
    )
    empty = pool["question"] == ""
    pool = pool[~empty]
    too_long = pd.Series(False, index=pool.index)
    if max_chars is not None:
        answers = pool["reference_answer"].map(lambda a: len(a) if isinstance(a, str) else 0)
        too_long = (pool["question"].str.len() > max_chars) | (answers > max_chars)
        pool = pool[~too_long]
    pool["id"] = pool["question"].map(stable_id)

    exact = pool.duplicated("id", keep="first")
    pool = pool[~exact]
    keys = pool["question"].map(dedup_key)
    near = keys.duplicated(keep="first")
    pool = pool[~near].reset_index(drop=True)

    shard_ids = pool["id"].map(lambda i: shard_of(i, num_shards))
    shards = [
        pool[shard_ids == s].sort_values("id").reset_index(drop=True) for s in range(num_shards)
    ]
    stats = {
        "rows_in": int(n_in),
        "empty_dropped": int(empty.sum()),
        "too_long_dropped": int(too_long.sum()),
        "max_chars": max_chars,
        "exact_duplicates": int(exact.sum()),
        "near_duplicates": int(near.sum()),
        "rows_out": int(len(pool)),
        "per_source": {k: int(v) for k, v in pool["source"].value_counts().sort_index().items()},
        "per_shard": [int(len(s)) for s in shards],
    }
    return shards, stats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.pool",
        description="Merge raw sources into a deduplicated pool split into N shards.",
    )
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, help="raw parquets")
    parser.add_argument("--out", nargs="+", required=True, help="one parquet per shard, in order")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    parser.add_argument(
        "--max-chars",
        type=int,
        default=MAX_CHARS,
        help=f"drop questions or reference answers longer than this (default {MAX_CHARS}; "
        "0: no cap)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    frames = [pd.read_parquet(p) for p in args.inputs]
    shards, stats = build_pool(frames, len(args.out), args.max_chars or None)
    if stats["too_long_dropped"]:
        log.warning(
            "pool: dropped %d rows longer than %d characters (pool.max_chars)",
            stats["too_long_dropped"],
            args.max_chars,
        )
    log.info(
        "pool: %d rows in, %d exact and %d near-exact duplicates removed, %d rows in %d shards",
        stats["rows_in"],
        stats["exact_duplicates"],
        stats["near_duplicates"],
        stats["rows_out"],
        len(shards),
    )
    for shard, path in zip(shards, args.out, strict=True):
        write_parquet(shard, path)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
