"""prepare_rl_data: the published dataset turned into verl's RL parquet (train + val).

Each output row is what ``verl.utils.dataset.rl_dataset.RLHFDataset`` reads: the ``prompt``
column is a list of chat messages ``{role, content}`` that verl hands to the tokenizer's
``apply_chat_template(..., add_generation_prompt=True)`` (the same list TRL's GRPOTrainer takes
as a conversational prompt); ``reward_model.ground_truth`` reaches the reward function as
``ground_truth``; ``extra_info`` reaches it as ``extra_info`` (``reward_gate`` picks the format
rule per model, ``index`` identifies the source row). The system message carries the DeepMath
instruction when the run keeps it (DeepMath-Zero-7B) and is left out when it does not
(DeepMath-1.5B, ``rm_system_prompt``).

Every usable dataset row trains (the authors train on all 103,110). Validation rows come from a
benchmark set (``rl.validation.benchmark``, the authors' MATH-500; ``pull_benchmark``'s parquet
with ``problem`` / ``answer``), prompted the same way; ``limit`` takes a seeded sample. Rows with
an empty question or answer are counted and dropped.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deepmath.io import DeepmathError, atomic_path, load_spec, run_cli, setup_logging, write_json
from deepmath.reward import GATES

log = logging.getLogger("deepmath.rldata")

DEFAULT_SYSTEM_TEXT = "Please reason step by step, and put your final answer within \\boxed{}."
DEFAULTS: dict[str, Any] = {
    "system_prompt": True,
    "system_text": DEFAULT_SYSTEM_TEXT,
    "reward_gate": "think",
    "seed": 42,
    "data_source": "deepmath-103k",
    "max_train_rows": None,
}
INPUT_COLUMNS = ("question", "final_answer")

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("answer", pa.string()),
                    ("question", pa.string()),
                    ("reward_gate", pa.string()),
                ]
            ),
        ),
    ]
)
COLUMNS = SCHEMA.names


def resolve_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in and the keys this stage uses checked (other run keys are ignored)."""
    out = {**DEFAULTS, **{k: v for k, v in spec.items() if k in DEFAULTS}}
    if not isinstance(out["system_prompt"], bool):
        raise DeepmathError(
            f"rl spec: system_prompt must be true or false, got {out['system_prompt']!r}"
        )
    if out["system_prompt"] and not str(out["system_text"] or "").strip():
        raise DeepmathError("rl spec: system_prompt is true but system_text is empty")
    if out["reward_gate"] not in GATES:
        raise DeepmathError(
            f"rl spec: reward_gate {out['reward_gate']!r}; allowed: {', '.join(GATES)}"
        )
    seed = out["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise DeepmathError(f"rl spec: seed must be an integer >= 0, got {seed!r}")
    limit = (spec.get("validation") or {}).get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise DeepmathError(f"rl validation: limit must be null or an integer >= 1, got {limit!r}")
    out["val_limit"] = limit
    cap = out["max_train_rows"]
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise DeepmathError(f"rl spec: max_train_rows must be null or an integer >= 1, got {cap!r}")
    if not str(out["data_source"] or "").strip():
        raise DeepmathError("rl spec: data_source must be a non-empty string")
    return out


def read_inputs(paths: Sequence[str]) -> pd.DataFrame:
    """Concatenate the dataset shards in the order given; question and final_answer required."""
    if not paths:
        raise DeepmathError("prepare_rl_data: no input parquet files")
    frames = []
    for path in paths:
        frame = pd.read_parquet(path)
        missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
        if missing:
            raise DeepmathError(f"{path}: missing column(s) {', '.join(missing)}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | series.astype(str).str.strip().eq("")


def drop_bad_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows with an empty question or answer leave; counts per reason (question checked first)."""
    no_question = _blank(table["question"])
    no_answer = _blank(table["final_answer"]) & ~no_question
    keep = ~(no_question | no_answer)
    dropped = {"empty_question": int(no_question.sum()), "empty_answer": int(no_answer.sum())}
    return table[keep].reset_index(drop=True), dropped


def benchmark_rows(path: str, limit: int | None, seed: int) -> pd.DataFrame:
    """A benchmark parquet (``problem``, ``answer``) as validation rows (question, final_answer).

    ``limit``: a seeded sample of at most that many problems, in file order."""
    bench = pd.read_parquet(path)
    missing = [c for c in ("problem", "answer") if c not in bench.columns]
    if missing:
        raise DeepmathError(f"{path}: missing column(s) {', '.join(missing)} (a benchmark file?)")
    table = pd.DataFrame({"question": bench["problem"], "final_answer": bench["answer"]})
    table, _ = drop_bad_rows(table)
    if limit is not None and len(table) > limit:
        keep = np.sort(np.random.default_rng([seed, 2]).choice(len(table), limit, replace=False))
        table = table.iloc[keep].reset_index(drop=True)
    return table


def cap_rows(idx: np.ndarray, cap: int | None, seed: int) -> np.ndarray:
    """A seeded subset of at most ``cap`` positions (order kept); None keeps all."""
    if cap is None or len(idx) <= cap:
        return idx
    rng = np.random.default_rng([seed, 1])
    return np.sort(rng.choice(idx, size=cap, replace=False))


def messages(question: str, spec: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat prompt: optional system instruction, then the question as the user turn."""
    msgs = []
    if spec["system_prompt"]:
        msgs.append({"role": "system", "content": spec["system_text"]})
    msgs.append({"role": "user", "content": question})
    return msgs


def to_records(
    table: pd.DataFrame, idx: np.ndarray, split: str, spec: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """verl RL rows for the given positions; ``extra_info.index`` is the cleaned-input position."""
    records = []
    for i in idx:
        row = table.iloc[int(i)]
        question, answer = str(row["question"]), str(row["final_answer"]).strip()
        records.append(
            {
                "data_source": spec["data_source"],
                "prompt": messages(question, spec),
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": answer},
                "extra_info": {
                    "split": split,
                    "index": int(i),
                    "answer": answer,
                    "question": question,
                    "reward_gate": spec["reward_gate"],
                },
            }
        )
    return records


def write_rl_parquet(records: list[dict[str, Any]], path: str) -> None:
    table = pa.Table.from_pylist(records, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def prepare(
    inputs: Sequence[str],
    spec: Mapping[str, Any],
    train_out: str,
    val_out: str,
    val_bench: str | None = None,
) -> dict[str, Any]:
    """Read, clean, write the train file (all rows) and the val file (the benchmark's rows)."""
    spec = resolve_spec(spec)
    table = read_inputs(inputs)
    rows_in = len(table)
    table, dropped = drop_bad_rows(table)
    if dropped["empty_question"] or dropped["empty_answer"]:
        log.warning(
            "dropped %d row(s) with an empty question and %d with an empty answer",
            dropped["empty_question"],
            dropped["empty_answer"],
        )
    if table.empty:
        raise DeepmathError("prepare_rl_data: no usable rows (all questions or answers empty)")
    all_idx = np.arange(len(table))
    train_idx = cap_rows(all_idx, spec["max_train_rows"], spec["seed"])
    val = (
        benchmark_rows(val_bench, spec["val_limit"], spec["seed"]) if val_bench else table.iloc[0:0]
    )
    write_rl_parquet(to_records(table, train_idx, "train", spec), train_out)
    val_spec = {**spec, "data_source": _val_source(val_bench) or spec["data_source"]}
    write_rl_parquet(to_records(val, np.arange(len(val)), "val", val_spec), val_out)
    stats = {
        "rows_in": rows_in,
        "dropped": dropped,
        "rows_usable": len(table),
        "train": len(train_idx),
        "train_capped_from": len(table) if len(train_idx) < len(table) else None,
        "val": len(val),
        "val_source": _val_source(val_bench),
        "system_prompt": spec["system_prompt"],
        "reward_gate": spec["reward_gate"],
        "data_source": spec["data_source"],
        "seed": spec["seed"],
    }
    log.info(
        "RL data: %d rows in, %d train, %d val from %s (%s system prompt, gate %s)",
        rows_in,
        len(train_idx),
        len(val),
        _val_source(val_bench) or "nothing",
        "with" if spec["system_prompt"] else "no",
        spec["reward_gate"],
    )
    return stats


def _val_source(path: str | None) -> str | None:
    """The benchmark's name (``benchmarks/<name>.parquet``)."""
    return Path(path).stem if path else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, help="dataset parquet")
    parser.add_argument("--spec", required=True, help="JSON: rl.runs.<name> merged with rl keys")
    parser.add_argument("--train-out", required=True)
    parser.add_argument("--val-out", required=True)
    parser.add_argument("--val-bench", help="benchmark parquet of the validation set")
    parser.add_argument("--stats", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    spec = load_spec(args.spec, "rl.runs.<name> merged with rl keys")
    stats = prepare(args.inputs, spec, args.train_out, args.val_out, args.val_bench)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
