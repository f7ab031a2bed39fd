"""prepare_sft_data: the dataset's R1 solutions as chat conversations for supervised fine-tuning.

The paper's SFT baselines train on DeepMath-103K's DeepSeek-R1 solutions: one variant on one
solution per question (``solutions: first`` = ``r1_solution_1``), one on all three
(``solutions: all``: (x, y1), (x, y2), (x, y3), shuffled, for one epoch). Each output row is a
conversation in the ``messages`` column (``[system?], user: question, assistant: solution``),
the multi-turn form verl's SFT trainer reads (``data.messages_key``) and TRL's SFTTrainer
turns into prompt / completion (the loss is on the solution only, in both).

Rows without a question, or without the chosen solution, are counted and dropped; the shuffle
is seeded.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deepmath.io import DeepmathError, atomic_path, load_spec, run_cli, setup_logging, write_json
from deepmath.rldata import DEFAULT_SYSTEM_TEXT, read_inputs

log = logging.getLogger("deepmath.sftdata")

SOLUTIONS = {
    "first": ("r1_solution_1",),
    "all": ("r1_solution_1", "r1_solution_2", "r1_solution_3"),
}
DEFAULTS: dict[str, Any] = {
    "solutions": "first",
    "system_prompt": False,
    "system_text": DEFAULT_SYSTEM_TEXT,
    "seed": 42,
    "max_rows": None,
}
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema(
    [
        ("messages", pa.list_(MESSAGE)),
        ("question_index", pa.int64()),
        ("solution", pa.string()),
    ]
)


def resolve_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    out = {**DEFAULTS, **{k: v for k, v in spec.items() if k in DEFAULTS}}
    if out["solutions"] not in SOLUTIONS:
        raise DeepmathError(
            f"sft spec: solutions {out['solutions']!r}; allowed: {', '.join(SOLUTIONS)}"
        )
    if not isinstance(out["system_prompt"], bool):
        raise DeepmathError("sft spec: system_prompt must be true or false")
    cap = out["max_rows"]
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise DeepmathError(f"sft spec: max_rows must be null or an integer >= 1, got {cap!r}")
    return out


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text if text.strip() else None


def conversations(table: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[list[dict], dict]:
    """(rows, counts): one row per (question, chosen solution), shuffled by the seed."""
    columns = SOLUTIONS[spec["solutions"]]
    missing = [c for c in ("question", *columns) if c not in table.columns]
    if missing:
        raise DeepmathError(f"prepare_sft_data: missing column(s) {', '.join(missing)}")
    rows: list[dict] = []
    counts = {"empty_question": 0, "missing_solution": 0}
    for i, record in enumerate(table.to_dict("records")):
        question = _text(record["question"])
        if question is None:
            counts["empty_question"] += 1
            continue
        for column in columns:
            solution = _text(record[column])
            if solution is None:
                counts["missing_solution"] += 1
                continue
            messages = []
            if spec["system_prompt"]:
                messages.append({"role": "system", "content": spec["system_text"]})
            messages += [
                {"role": "user", "content": question},
                {"role": "assistant", "content": solution},
            ]
            rows.append({"messages": messages, "question_index": i, "solution": column})
    order = np.random.default_rng(spec["seed"]).permutation(len(rows))
    rows = [rows[j] for j in order]
    if spec["max_rows"] is not None:
        rows = rows[: spec["max_rows"]]
    return rows, counts


def prepare(
    inputs: Sequence[str], spec: Mapping[str, Any], train_out: str, val_out: str
) -> dict[str, Any]:
    spec = resolve_spec(spec)
    table = read_inputs(inputs)
    rows, counts = conversations(table, spec)
    if not rows:
        raise DeepmathError(f"prepare_sft_data: no usable rows ({counts})")
    for path, part in ((train_out, rows), (val_out, [])):
        with atomic_path(path) as tmp:
            pq.write_table(pa.Table.from_pylist(part, schema=SCHEMA), tmp)
    stats = {
        "rows_in": len(table),
        "questions": len({r["question_index"] for r in rows}),
        "train": len(rows),
        "solutions": spec["solutions"],
        "dropped": counts,
        "system_prompt": spec["system_prompt"],
        "seed": spec["seed"],
    }
    log.info(
        "SFT data: %d conversations from %d questions (%s solution(s) each)",
        len(rows),
        stats["questions"],
        spec["solutions"],
    )
    return stats


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in", dest="inputs", nargs="+", required=True, help="dataset parquet")
    parser.add_argument("--spec", required=True, help="JSON: rl.runs.<name> (an sft run)")
    parser.add_argument("--train-out", required=True)
    parser.add_argument("--val-out", required=True, help="an empty file in the same schema")
    parser.add_argument("--stats", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    spec = load_spec(args.spec, "rl.runs.<name>")
    write_json(prepare(args.inputs, spec, args.train_out, args.val_out), args.stats)


if __name__ == "__main__":
    run_cli(main)
