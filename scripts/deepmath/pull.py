"""pull_source / pull_benchmark / pull_published: load a dataset with `datasets` and normalise it.

``published`` reads a dataset in DeepMath-103K's published schema (the released
``zwhe99/DeepMath-103K``, or a local parquet folder with the same columns) so that training or
an audit can start from it without curating anything.

Both scales use the same loader: a hub id at a pinned revision (paper) or local json/parquet
files inside an installed package (demo). Malformed rows (no question text) are counted and
reported, never fatal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import string
from collections.abc import Mapping
from typing import Any

import pandas as pd

from deepmath.answers import extract_boxed, extract_gsm8k
from deepmath.io import (
    DeepmathError,
    resolve_path,
    run_cli,
    setup_logging,
    write_json,
    write_parquet,
)
from deepmath.text import normalize_text, stable_id

log = logging.getLogger("deepmath.pull")

SOURCE_COLUMNS = ["id", "source", "question", "reference_solution", "reference_answer"]
BENCH_COLUMNS = ["bench", "id", "problem", "answer", "category"]
_LOCAL_BUILDERS = {"json", "parquet", "csv", "text", "arrow"}


def _resolve_files(files: str | list[str] | None) -> str | list[str] | None:
    if files is None:
        return None
    if isinstance(files, str):
        return resolve_path(files)
    return [resolve_path(f) for f in files]


def offline_hint(load: Mapping[str, Any], what: str) -> str:
    """How to make a hub dataset available on a machine without internet."""
    rev = load.get("revision") or "main"
    return (
        f"{what}: could not load '{load['path']}' (revision {rev}) from the Hugging Face Hub. "
        "If this machine is offline, pre-fetch it where the hub is reachable "
        f"(`huggingface-cli download --repo-type dataset {load['path']} --revision {rev}`, "
        "or run the pull rules there with `snakemake --until pull_source pull_benchmark`) "
        "and point HF_HOME at that cache with HF_DATASETS_OFFLINE=1 and HF_HUB_OFFLINE=1."
    )


def bad_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file that cannot become a row, each ``{file, line, reason}``.

    Read as bytes, one line at a time: invalid UTF-8, a lone surrogate (valid JSON that no
    UTF-8 writer, pyarrow included, can take), broken JSON, or a value that is not an object.
    One such line would otherwise fail the whole source with a pyarrow traceback.
    """
    bad = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            reason = None
            try:
                value = json.loads(raw.decode("utf-8"))
                if not isinstance(value, dict):
                    reason = f"not a JSON object ({type(value).__name__})"
                else:
                    json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeDecodeError as err:
                reason = f"invalid UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
            except UnicodeEncodeError:
                reason = "a lone surrogate (\\ud800-\\udfff) in a string"
            except ValueError as err:
                reason = f"broken JSON ({str(err)[:80]})"
            if reason:
                bad.append({"file": str(path), "line": number, "reason": reason})
    return bad


def _without_lines(path: str, drop: set[int], out_dir: str) -> str:
    """A copy of a JSON-lines file without the given line numbers."""
    out = os.path.join(out_dir, f"{len(os.listdir(out_dir))}-{os.path.basename(path)}")
    with open(path, "rb") as src, open(out, "wb") as dst:
        for number, raw in enumerate(src, 1):
            if number not in drop:
                dst.write(raw)
    return out


def clean_local_json(
    files: str | list[str], policy: str, what: str, tmp_dir: str
) -> tuple[str | list[str], list[dict[str, Any]]]:
    """Local JSON-lines files with their unreadable lines dropped (``skip``) or refused
    (``fail``: one line naming the first bad file and line); returns the files to load and the
    dropped lines."""
    paths = [files] if isinstance(files, str) else list(files)
    dropped: list[dict[str, Any]] = []
    out = []
    for path in paths:
        if not os.path.isfile(path):
            out.append(path)  # a pattern or a missing file: datasets reports it
            continue
        bad = bad_json_lines(path)
        if bad and policy == "fail":
            first = bad[0]
            raise DeepmathError(
                f"{what}: {first['file']}:{first['line']}: {first['reason']} ({len(bad)} bad "
                "line(s) in this file; on_bad_rows: skip drops them and lists them in the stats)"
            )
        dropped += bad
        out.append(_without_lines(path, {b["line"] for b in bad}, tmp_dir) if bad else path)
    for b in dropped[:10]:
        log.warning("%s: dropped %s:%d: %s", what, b["file"], b["line"], b["reason"])
    if len(dropped) > 10:
        log.warning("%s: ... %d bad lines dropped in all", what, len(dropped))
    return (out[0] if isinstance(files, str) else out), dropped


def load_table(
    load: Mapping[str, Any], what: str, on_bad_rows: str = "skip"
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """datasets.load_dataset(**load) as a flat DataFrame (struct columns become a.b), and the
    unreadable lines of local JSON-lines files that were dropped (see :func:`clean_local_json`)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deepmath-pull-") as tmp:
        files = _resolve_files(load.get("data_files"))
        dropped: list[dict[str, Any]] = []
        if load["path"] == "json" and files:
            files, dropped = clean_local_json(files, on_bad_rows, what, tmp)
        return _load_dataset(load, files, what), dropped


def _load_dataset(
    load: Mapping[str, Any], files: str | list[str] | None, what: str
) -> pd.DataFrame:
    import datasets

    path = load["path"]
    kwargs: dict[str, Any] = {"split": load.get("split") or "train"}
    if load.get("name"):
        kwargs["name"] = load["name"]
    if load.get("revision"):
        kwargs["revision"] = load["revision"]
    if files:
        kwargs["data_files"] = files
    is_hub = path not in _LOCAL_BUILDERS
    try:
        ds = datasets.load_dataset(path, **kwargs)
    except FileNotFoundError as err:
        if is_hub:
            raise DeepmathError(offline_hint(load, what) + f" ({err})") from err
        raise DeepmathError(f"{what}: data files not found: {err}") from err
    except (ConnectionError, OSError) as err:
        raise DeepmathError(offline_hint(load, what) + f" ({type(err).__name__}: {err})") from err
    except ValueError as err:
        raise DeepmathError(f"{what}: datasets.load_dataset failed: {err}") from err
    return ds.flatten().to_pandas()


def _column(df: pd.DataFrame, field: str | None, what: str) -> pd.Series:
    if not field:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    if field not in df.columns:
        raise DeepmathError(
            f"{what}: column '{field}' not found; available columns: {', '.join(df.columns)}"
        )
    return df[field]


def _as_text(value: Any) -> str | None:
    """A cell as stripped text, or None when it is missing or empty."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, list | tuple) or hasattr(value, "tolist"):
        # e.g. OlympiadBench's one-element final_answer lists
        items = [str(v).strip() for v in list(value) if v is not None]
        value = ", ".join(i for i in items if i)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # numeric answer columns (MAWPS: 43.0) read as the integer "43"
    text = str(value).strip()
    return text or None


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _question_text(value: Any) -> str | None:
    """A question cell as text; None unless it is a string (a number, a list, an object or a
    boolean in a question column is a malformed row, not a question)."""
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _not_text(column: pd.Series) -> int:
    """How many cells hold something other than text (missing cells not counted)."""
    return int(sum(1 for v in column if not _is_blank(v) and not isinstance(v, str)))


def _as_float(value: Any) -> float | None:
    """A tolerance cell as a number: 1e-8, "1e-2", a one-element list; else None."""
    text = _as_text(value)
    if text is None:
        return None
    try:
        return float(text.split(",")[0])
    except ValueError:
        return None


def _normalised(texts: pd.Series) -> pd.Series:
    """normalize_text over a column, keeping missing values as None (object dtype)."""
    return pd.Series(
        [normalize_text(t) if isinstance(t, str) and t else None for t in texts],
        index=texts.index,
        dtype=object,
    )


def _choice_letter(value: Any) -> str | None:
    try:
        return string.ascii_uppercase[int(value)]
    except (TypeError, ValueError, IndexError):
        return _as_text(value)


CHOICE_LETTERS = string.ascii_uppercase[:10]


def option_lines(options: list[Any]) -> str:
    """Lettered options, one per line: "(A) first\n(B) second"."""
    return "\n".join(f"({string.ascii_uppercase[i]}) {o}" for i, o in enumerate(options))


def choice_prompt(question: str, options: list[str]) -> str:
    """A multiple-choice problem as the authors' GPQA-Diamond set poses it: the question, the
    lettered options, and the request to box one letter."""
    letters = CHOICE_LETTERS[: len(options)]
    lines = option_lines(options)
    boxes = [f"\\boxed{{{x}}}" for x in letters]
    ask = ", ".join(boxes[:-1]) + f", or {boxes[-1]}" if len(boxes) > 1 else boxes[0]
    return f"{question}\n\n\n{lines}\n\nPlease write your final answer in the form of {ask}"


def shuffled_choices(
    question: str, correct: str, distractors: list[str], seed: int
) -> tuple[list[str], str]:
    """The options in a seeded order that depends on the question (so the right answer is not
    always A, and a rerun poses the same problem), and the letter of the right one."""
    import random

    options = [correct, *distractors]
    order = list(range(len(options)))
    random.Random(f"{seed}:{stable_id(question)}").shuffle(order)
    return [options[i] for i in order], CHOICE_LETTERS[order.index(0)]


def multiple_choice(
    df: pd.DataFrame, fields: Mapping[str, Any], seed: int, what: str
) -> tuple[pd.Series, pd.Series]:
    """(problems, answer letters) of a set that stores the right answer and its distractors
    in columns (GPQA's ``Correct Answer`` and ``Incorrect Answer 1..3``)."""
    distractors = fields.get("distractors")
    if not isinstance(distractors, list) or not distractors:
        raise DeepmathError(f"{what}: answer multiple_choice needs fields.distractors (a list)")
    if len(distractors) + 1 > len(CHOICE_LETTERS):
        raise DeepmathError(f"{what}: at most {len(CHOICE_LETTERS)} options")
    questions = _column(df, fields["problem"], what).map(_as_text)
    right = _column(df, fields.get("answer"), what).map(_as_text)
    wrong = [_column(df, c, what).map(_as_text) for c in distractors]
    problems, letters = [], []
    for i, (q, a) in enumerate(zip(questions, right, strict=True)):
        others = [w.iloc[i] for w in wrong]
        if any(not isinstance(v, str) for v in (q, a, *others)):  # None / NaN: a blank cell
            problems.append(None)  # counted as malformed: a problem needs all its options
            letters.append(None)
            continue
        options, letter = shuffled_choices(q, a, others, seed)
        problems.append(choice_prompt(q, options))
        letters.append(letter)
    return (
        pd.Series(problems, index=df.index, dtype=object),
        pd.Series(letters, index=df.index, dtype=object),
    )


def derive_answers(answers: pd.Series, solutions: pd.Series, method: str) -> pd.Series:
    """Reference answers per the configured method (column, boxed, gsm8k, choice_index, none;
    multiple_choice is built with its problems by :func:`multiple_choice`)."""
    if method == "column":
        return answers.map(_as_text)
    if method == "choice_index":
        return answers.map(_choice_letter)
    if method == "boxed":
        return solutions.map(lambda s: extract_boxed(_as_text(s)))
    if method == "gsm8k":
        src = solutions if solutions.notna().any() else answers
        return src.map(lambda s: extract_gsm8k(_as_text(s)))
    return pd.Series([None] * len(answers), index=answers.index, dtype=object)


def _with_choices(problem: str | None, choices: Any) -> str | None:
    if problem is None or choices is None:
        return problem
    try:
        options = list(choices)
    except TypeError:
        return problem
    return problem + "\n" + option_lines(options[:26]) if options else problem


def select_rows(df: pd.DataFrame, spec: Mapping[str, Any], seed: int, what: str) -> pd.DataFrame:
    """Apply the config's filter, then limit (first rows, or a seeded sample)."""
    flt = spec.get("filter")
    if flt:
        col = _column(df, flt["column"], what)
        df = df[col.isin(flt["in"])]
        log.info("%s: %d rows after filter %s in %s", what, len(df), flt["column"], flt["in"])
    limit = spec.get("limit")
    if limit and len(df) > limit:
        df = df.sample(n=limit, random_state=seed) if spec.get("sample") else df.head(limit)
    return df


def normalise_source(
    df: pd.DataFrame, spec: Mapping[str, Any], name: str, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw rows -> id, source, question, reference_solution, reference_answer (+ stats)."""
    what = f"source '{name}'"
    n_loaded = len(df)
    df = select_rows(df, spec, seed, what)
    fields = spec["fields"]
    raw_questions = _column(df, fields["question"], what)
    questions = raw_questions.map(_question_text)
    solutions = _column(df, fields.get("reference_solution"), what).map(_as_text)
    answers = derive_answers(
        _column(df, fields.get("reference_answer"), what), solutions, spec.get("answer", "none")
    )
    out = pd.DataFrame(
        {
            "source": name,
            "question": _normalised(questions),
            "reference_solution": solutions,
            "reference_answer": answers,
        }
    )
    malformed = out["question"].map(lambda q: not isinstance(q, str))
    out = out[~malformed].reset_index(drop=True)
    out.insert(0, "id", out["question"].map(stable_id))
    stats = {
        "source": name,
        "loaded": n_loaded,
        "selected": int(len(df)),
        "malformed_no_question": int(malformed.sum()),
        "malformed_not_text": _not_text(raw_questions),
        "rows": int(len(out)),
        "with_reference_answer": int(out["reference_answer"].notna().sum()),
    }
    return out[SOURCE_COLUMNS], stats


def normalise_benchmark(
    df: pd.DataFrame, spec: Mapping[str, Any], name: str, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw rows -> bench, id, problem, answer, category (+ stats)."""
    what = f"benchmark '{name}'"
    n_loaded = len(df)
    df = select_rows(df, spec, seed, what).reset_index(drop=True)
    fields = spec["fields"]
    raw_problems = None
    if spec.get("answer") == "multiple_choice":
        problems, answers = multiple_choice(df, fields, seed, what)
    else:
        raw_problems = _column(df, fields["problem"], what)
        problems = raw_problems.map(_question_text)
        if fields.get("choices"):
            choices = _column(df, fields["choices"], what)
            problems = pd.Series(
                [_with_choices(p, c) for p, c in zip(problems, choices, strict=True)],
                dtype=object,
            )
        answers = derive_answers(
            _column(df, fields.get("answer"), what),
            _column(df, fields.get("solution"), what).map(_as_text),
            spec.get("answer", "none"),
        )
    ids = (
        _column(df, fields["id"], what).map(str)
        if fields.get("id")
        else pd.Series([f"{name}/{i}" for i in range(len(df))], dtype=object)
    )
    out = pd.DataFrame(
        {
            "bench": name,
            "id": ids,
            "problem": _normalised(problems),
            "answer": answers,
            "category": _column(df, fields.get("category"), what).map(_as_text),
        }
    )
    columns = list(BENCH_COLUMNS)
    if fields.get("precision"):  # a per-problem tolerance (OlympiadBench's `error`)
        if fields["precision"] in df.columns:
            values = _column(df, fields["precision"], what).map(_as_float)
        else:  # optional: a copy of the set without it is scored with the rule's default
            log.warning(
                "%s: no column '%s' for the per-problem precision; using the scoring rule's",
                what,
                fields["precision"],
            )
            values = pd.Series([None] * len(df), index=df.index, dtype=object)
        out["precision"] = pd.to_numeric(values, errors="coerce")
        columns.append("precision")
    malformed = out["problem"].map(lambda q: not isinstance(q, str))
    out = out[~malformed].reset_index(drop=True)
    stats = {
        "bench": name,
        "loaded": n_loaded,
        "selected": int(len(df)),
        "malformed_no_problem": int(malformed.sum()),
        "malformed_not_text": 0 if raw_problems is None else _not_text(raw_problems),
        "rows": int(len(out)),
        "with_answer": int(out["answer"].notna().sum()),
    }
    return out[columns], stats


def normalise_published(
    raw: pd.DataFrame, spec: Mapping[str, Any], name: str, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The published columns, typed as our own dataset's; a missing column is an error."""
    from deepmath.dataset import COLUMNS, to_published

    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DeepmathError(
            f"published dataset '{name}': missing column(s) {', '.join(missing)}; a dataset in "
            f"the DeepMath-103K schema has {', '.join(COLUMNS)} (found: {', '.join(raw.columns)})"
        )
    table = to_published(raw)
    blank_q = table["question"].isna() | table["question"].astype(str).str.strip().eq("")
    blank_a = table["final_answer"].isna() | table["final_answer"].astype(str).str.strip().eq("")
    stats = {
        "name": name,
        "load": dict(spec["load"]),
        "rows": len(table),
        "empty_question": int(blank_q.sum()),
        "empty_answer": int((blank_a & ~blank_q).sum()),
        "extra_columns": sorted(set(raw.columns) - set(COLUMNS)),
    }
    return table, stats


NORMALISERS = {
    "source": normalise_source,
    "benchmark": normalise_benchmark,
    "published": normalise_published,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.pull",
        description="Pull one training source, benchmark or published dataset with "
        "datasets.load_dataset.",
    )
    parser.add_argument("kind", choices=sorted(NORMALISERS))
    parser.add_argument("--name", required=True, help="config name of the source/benchmark")
    parser.add_argument("--spec", required=True, help="its config entry, as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output parquet")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    args = parser.parse_args(argv)
    setup_logging()
    spec = json.loads(args.spec)
    what = f"{args.kind} '{args.name}'"
    log.info("%s: loading %s (split %s)", what, spec["load"]["path"], spec["load"].get("split"))
    log.info("offline mode: HF_HUB_OFFLINE=%s", os.environ.get("HF_HUB_OFFLINE", "0"))
    raw, dropped = load_table(spec["load"], what, spec.get("on_bad_rows", "skip"))
    normalise = NORMALISERS[args.kind]
    table, stats = normalise(raw, spec, args.name, seed=args.seed)
    stats["bad_lines_dropped"] = len(dropped)
    stats["bad_lines"] = dropped[:1000]  # file, line and reason of each (the first 1,000)
    if stats.get("malformed_no_question") or stats.get("malformed_no_problem"):
        log.warning("%s: dropped malformed rows: %s", what, stats)
    if table.empty:
        raise DeepmathError(f"{what}: no usable rows after filtering ({stats})")
    write_parquet(table, args.out)
    write_json(stats, args.stats)
    log.info("%s: wrote %d rows to %s", what, len(table), args.out)


if __name__ == "__main__":
    run_cli(main)
