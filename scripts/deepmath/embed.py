"""embed_benchmarks / embed_pool: sentence-transformers embeddings, L2-normalised float32.

Rows of the .npy file follow the rows of the input parquet(s), so later stages join by
position. Vectors are normalised so that a dot product is the cosine similarity.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deepmath import dtypes
from deepmath.io import atomic_path, run_cli, setup_logging, write_json, write_parquet

log = logging.getLogger("deepmath.embed")


def pick_device(device: str) -> str:
    """auto -> cuda when a GPU is visible, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_encoder(model_dir: str, device: str, dtype: str, max_seq_length: int) -> Any:
    """A SentenceTransformer from a local folder (prepare_model made it; no hub access)."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device=pick_device(device), local_files_only=True)
    model.max_seq_length = max_seq_length
    if model.device.type == "cuda" and dtype != "float32":
        model = model.to(getattr(torch, dtype))
    return model


def embed_texts(
    model: Any, texts: Sequence[str], batch_size: int = 64, dtype: str = "float32"
) -> np.ndarray:
    """Encode texts into an (n, d) float32 array of unit vectors."""
    import torch

    autocast: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if model.device.type == "cpu" and dtype != "float32":
        autocast = torch.autocast("cpu", dtype=getattr(torch, dtype))
    with torch.inference_mode(), autocast:
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=True,
        )
    return np.asarray(vectors, dtype=np.float32)


def save_npy(array: np.ndarray, path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.embed",
        description="Embed a text column of parquet files with a sentence-transformers model.",
    )
    parser.add_argument("--model", required=True, help="local sentence-transformers folder")
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, help="input parquet(s)")
    parser.add_argument("--column", required=True, help="text column to embed")
    parser.add_argument("--out", required=True, help="output .npy")
    parser.add_argument("--index", help="also write the concatenated rows (minus vectors) here")
    parser.add_argument("--stats", required=True, help="output JSON with throughput")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument(
        "--dtype",
        default=dtypes.AUTO,
        choices=dtypes.CHOICES,
        help="compute dtype; auto: bfloat16 where the CPU/GPU has it natively, else float32",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args(argv)
    setup_logging()
    table = pd.concat([pd.read_parquet(p) for p in args.inputs], ignore_index=True)
    texts = table[args.column].astype(str).tolist()
    device = pick_device(args.device)
    dtype = dtypes.resolve(args.dtype, device, what="embeddings")
    model = load_encoder(args.model, device, dtype, args.max_seq_length)
    log.info("embedding %d texts on %s (%s)", len(texts), model.device, dtype)
    start = time.perf_counter()
    vectors = embed_texts(model, texts, args.batch_size, dtype)
    seconds = time.perf_counter() - start
    rate = len(texts) / seconds if seconds > 0 else float("inf")
    log.info("embedded %d texts in %.1f s (%.1f texts/s)", len(texts), seconds, rate)
    save_npy(vectors, args.out)
    if args.index:
        write_parquet(table, args.index)
    write_json(
        {
            "texts": len(texts),
            "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
            "seconds": round(seconds, 3),
            "texts_per_second": round(rate, 2),
            "device": str(model.device),
            "dtype": dtype,
            "dtype_requested": args.dtype,
            "batch_size": args.batch_size,
        },
        args.stats,
    )


if __name__ == "__main__":
    run_cli(main)
