"""Every compared dataset as one table of items: ``id, question, answer``.

A compared set comes from ``deepmath.pull`` (``reference_answer``), from the DeepMath-103K
schema (``final_answer``: our own dataset, the published one, or any copy of it) or from a
benchmark table (``problem``, ``answer``); the analyses read them all the same way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from deepmath.io import DeepmathError
from deepmath.text import stable_id

ITEM_COLUMNS = ["id", "question", "answer"]
OPTIONAL = ["difficulty"]  # kept where a dataset has it (ours, the DeepMath-103K schema)
OURS = "ours"  # the name of this run's dataset among the compared ones
_QUESTION = ("question", "problem")
_ANSWER = ("final_answer", "reference_answer", "answer")


def items(table: pd.DataFrame, what: str = "table") -> pd.DataFrame:
    """``id, question, answer`` of a table in any of the known layouts."""
    qcol = next((c for c in _QUESTION if c in table.columns), None)
    if qcol is None:
        raise DeepmathError(
            f"{what}: no question column (looked for {', '.join(_QUESTION)}; has "
            f"{', '.join(map(str, table.columns))})"
        )
    acol = next((c for c in _ANSWER if c in table.columns), None)
    questions = table[qcol].astype(object)
    out = pd.DataFrame(
        {
            "question": questions,
            "answer": table[acol].astype(object) if acol else None,
        }
    )
    ids = table["id"] if "id" in table.columns else None
    out.insert(0, "id", ids if ids is not None else questions.map(lambda q: stable_id(str(q))))
    kept = [c for c in OPTIONAL if c in table.columns]
    for column in kept:
        out[column] = table[column].to_numpy()
    return out.reset_index(drop=True)[ITEM_COLUMNS + kept]


def read_items(paths: Sequence[str | os.PathLike[str]], what: str = "dataset") -> pd.DataFrame:
    """The items of one dataset stored in one or more parquet files, in file order."""
    if not paths:
        raise DeepmathError(f"{what}: no files")
    table = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return items(table, what)
