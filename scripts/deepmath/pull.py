"""pull_source / pull_benchmark / pull_published: load a dataset with `datasets` and normalise it.

``published`` reads a dataset in DeepMath-103K's published schema (the released
``zwhe99/DeepMath-103K``, or a local parquet folder with the same columns) so that training or
an audit can start from it without curating anything.

Both scales use the same loader: a hub id at a pinned revision (paper) or local json/parquet
files inside an installed package (demo). A floating hub revision (``main``) loads the commit
the run's hub lock holds, locking it on the first pull (:mod:`deepmath.hublock`); the stats and
the table's ``attrs["hub"]`` name that commit. Rows that do not make it are counted under one
reason each (``DROP_REASONS``: rows read = rows kept + the sum of those), never fatal.
"""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from deepmath import hublock
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


BOM = codecs.BOM_UTF8


@dataclass
class JsonLinesScan:
    """What one read of a JSON-lines file found, line by line (see :func:`scan_json_lines`)."""

    blank: int = 0  # whitespace-only lines: not rows at all
    bad: list[dict[str, Any]] = field(default_factory=list)  # {file, line, reason} of each
    # a BOM, a CR line ending, a blank or bad line: the loader gets a clean copy instead
    needs_copy: bool = False


@dataclass
class Loaded:
    """How a load went, beside its table: rows read, unreadable lines dropped, blank lines."""

    read: int
    bad_lines: list[dict[str, Any]]
    blank_lines: int = 0


def _line_text(raw: bytes, number: int) -> bytes:
    """A line without its line ending and, on the first line, without a UTF-8 BOM."""
    if number == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    return raw.rstrip(b"\r\n")


def _line_problem(text: bytes) -> str | None:
    """Why a non-blank line cannot become a row (None when it can)."""
    try:
        value = json.loads(text.decode("utf-8"))
        if not isinstance(value, dict):
            return f"not a JSON object ({type(value).__name__})"
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeDecodeError as err:
        return f"invalid UTF-8 (byte 0x{text[err.start]:02x} at column {err.start + 1})"
    except UnicodeEncodeError:
        return "a lone surrogate (\\ud800-\\udfff) in a string"
    except ValueError as err:
        return f"broken JSON ({str(err)[:80]})"
    return None


def scan_json_lines(path: str | os.PathLike[str]) -> JsonLinesScan:
    """Read a JSON-lines file as bytes, one line at a time: its rows, blank lines and bad lines.

    A bad line is invalid UTF-8, a lone surrogate (valid JSON that no UTF-8 writer, pyarrow
    included, can take), broken JSON, or a value that is not an object; one such line would
    otherwise fail the whole source with a pyarrow traceback. A blank line is no row; left in,
    it fails the pandas reader that `datasets` falls back to when a column mixes types
    ("Expected object or value", no file, no line).
    """
    scan = JsonLinesScan()
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            text = _line_text(raw, number)
            if text != raw.rstrip(b"\n"):
                scan.needs_copy = True  # a BOM or a CR line ending
            if not text.strip():
                scan.blank += 1
                scan.needs_copy = True
                continue
            reason = _line_problem(text)
            if reason:
                scan.bad.append({"file": str(path), "line": number, "reason": reason})
                scan.needs_copy = True
    return scan


def bad_json_lines(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file that cannot become a row, each ``{file, line, reason}``."""
    return scan_json_lines(path).bad


def _clean_copy(path: str, drop: set[int], out_dir: str) -> str:
    """A copy of a JSON-lines file with only its readable rows: no blank line, no line in
    ``drop``, no BOM, LF line endings, a newline after the last row."""
    out = os.path.join(out_dir, f"{len(os.listdir(out_dir))}-{os.path.basename(path)}")
    with open(path, "rb") as src, open(out, "wb") as dst:
        for number, raw in enumerate(src, 1):
            text = _line_text(raw, number)
            if text.strip() and number not in drop:
                dst.write(text + b"\n")
    return out


def clean_local_json(
    files: str | list[str], policy: str, what: str, tmp_dir: str
) -> tuple[str | list[str], Loaded]:
    """Local JSON-lines files with their blank lines skipped and their unreadable lines dropped
    (``skip``) or refused (``fail``: one line naming the first bad file and line); returns the
    files to load, the lines dropped and the blank lines skipped."""
    paths = [files] if isinstance(files, str) else list(files)
    loaded = Loaded(read=0, bad_lines=[])
    out = []
    for path in paths:
        if not os.path.isfile(path):
            out.append(path)  # a pattern or a missing file: datasets reports it
            continue
        scan = scan_json_lines(path)
        if scan.bad and policy == "fail":
            first = scan.bad[0]
            raise DeepmathError(
                f"{what}: {first['file']}:{first['line']}: {first['reason']} ({len(scan.bad)} "
                "bad line(s) in this file; on_bad_rows: skip drops them and lists them in the "
                "stats)"
            )
        loaded.bad_lines += scan.bad
        loaded.blank_lines += scan.blank
        drop = {b["line"] for b in scan.bad}
        out.append(_clean_copy(path, drop, tmp_dir) if scan.needs_copy else path)
    for b in loaded.bad_lines[:10]:
        log.warning("%s: dropped %s:%d: %s", what, b["file"], b["line"], b["reason"])
    if len(loaded.bad_lines) > 10:
        log.warning("%s: ... %d bad lines dropped in all", what, len(loaded.bad_lines))
    if loaded.blank_lines:
        log.info("%s: skipped %d blank line(s)", what, loaded.blank_lines)
    return (out[0] if isinstance(files, str) else out), loaded


def load_table(
    load: Mapping[str, Any], what: str, on_bad_rows: str = "skip"
) -> tuple[pd.DataFrame, Loaded]:
    """datasets.load_dataset(**load) as a flat DataFrame (struct columns become a.b), and how
    the load went: rows read, the unreadable lines of local JSON-lines files that were dropped
    and the blank lines skipped (see :func:`clean_local_json`)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="deepmath-pull-") as tmp:
        files = _resolve_files(load.get("data_files"))
        loaded = Loaded(read=0, bad_lines=[])
        if load["path"] == "json" and files:
            files, loaded = clean_local_json(files, on_bad_rows, what, tmp)
        table = _load_dataset(load, files, what)
    loaded.read = len(table) + len(loaded.bad_lines)  # every row but the unreadable is loaded
    return table, loaded


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
    is_hub = hublock.is_hub_dataset(load)
    snapshot = _offline_snapshot(load) if is_hub else None
    if snapshot is not None:
        try:
            local = {k: v for k, v in kwargs.items() if k != "revision"}
            table = datasets.load_dataset(str(snapshot), **local).flatten().to_pandas()
            log.info("%s: read the HF cache's snapshot %s (offline)", what, snapshot)
            return table
        except Exception as err:  # e.g. a snapshot holding only some splits' files
            log.info("%s: the snapshot %s does not load as a folder (%s: %s); asking datasets",
                     what, snapshot, type(err).__name__, err)  # fmt: skip
    try:
        ds = datasets.load_dataset(path, **kwargs)
    except FileNotFoundError as err:
        if is_hub:
            raise DeepmathError(offline_hint(load, what) + f" ({err})") from err
        raise DeepmathError(f"{what}: data files not found: {err}") from err
    except (ConnectionError, OSError) as err:
        raise DeepmathError(offline_hint(load, what) + f" ({type(err).__name__}: {err})") from err
    except ValueError as err:
        original = load.get("data_files")  # not the cleaned copies in a temporary folder
        where = f" on {path}" + (f" ({_shown(original)})" if original else "")
        raise DeepmathError(f"{what}: datasets.load_dataset failed{where}: {err}") from err
    return ds.flatten().to_pandas()


def _offline_snapshot(load: Mapping[str, Any]) -> Any:
    """Offline, the HF cache's snapshot folder of the commit a hub load asks for.

    Offline, `datasets` only finds a dataset it prepared before (and then the latest one it
    prepared, whatever its revision); a snapshot that `hf download` or an earlier online pull left
    in the HF cache is exactly that commit's files, so it is read as a local folder instead.
    """
    revision = str(load.get("revision") or "")
    if not hublock.COMMIT.match(revision) or not hublock.offline():
        return None
    return hublock.cached_snapshot("dataset", str(load["path"]), revision)


def hub_pin(load: Mapping[str, Any]) -> dict[str, Any] | None:
    """The commit a hub load reads and how it was chosen (see :mod:`deepmath.hublock`): the
    config's own commit, the run's lock (``DEEPMATH_HUB_LOCK``), or resolved now and locked.
    None for local files."""
    ref = hublock.dataset_ref(load)
    return hublock.pin(ref, os.environ.get(hublock.LOCK_ENV) or None) if ref else None


def _shown(files: str | list[str]) -> str:
    """Data files for a message: the first three and how many more."""
    names = [files] if isinstance(files, str) else list(files)
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


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


def select_rows(
    df: pd.DataFrame, spec: Mapping[str, Any], seed: int, what: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the config's filter, then limit (first rows, or a seeded sample); returns the rows
    and how many each step left out (``filtered_out``, ``over_limit``)."""
    counts = {"filtered_out": 0, "over_limit": 0}
    flt = spec.get("filter")
    if flt:
        col = _column(df, flt["column"], what)
        kept = df[col.isin(flt["in"])]
        counts["filtered_out"] = len(df) - len(kept)
        df = kept
        log.info("%s: %d rows after filter %s in %s", what, len(df), flt["column"], flt["in"])
    limit = spec.get("limit")
    if limit and len(df) > limit:
        counts["over_limit"] = len(df) - limit
        df = df.sample(n=limit, random_state=seed) if spec.get("sample") else df.head(limit)
    return df, counts


def _malformed(raw: pd.Series | None, texts: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Which rows have no question text: (a cell that is not text, nothing at all), disjoint.

    A number, list, object or boolean is ``not_text``; a missing, null or blank cell (or one a
    multiple-choice problem cannot be built from) is ``no_question``; a row is one or the other.
    """
    missing = texts.map(lambda q: not isinstance(q, str))
    if raw is None:
        not_text = pd.Series(False, index=texts.index)
    else:
        not_text = pd.Series(
            [not _is_blank(v) and not isinstance(v, str) for v in raw], index=texts.index
        )
    return not_text, missing & ~not_text


def normalise_source(
    df: pd.DataFrame, spec: Mapping[str, Any], name: str, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw rows -> id, source, question, reference_solution, reference_answer (+ stats)."""
    what = f"source '{name}'"
    n_read = len(df)
    df, selected = select_rows(df, spec, seed, what)
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
    not_text, no_question = _malformed(raw_questions, out["question"])
    out = out[~(not_text | no_question)].reset_index(drop=True)
    out.insert(0, "id", out["question"].map(stable_id))
    stats = {
        "source": name,
        "read": n_read,
        "bad_lines_dropped": 0,  # the load's (with_load_counts)
        **selected,
        "malformed_no_question": int(no_question.sum()),
        "malformed_not_text": int(not_text.sum()),
        "rows": int(len(out)),
        "with_reference_answer": int(out["reference_answer"].notna().sum()),
    }
    return out[SOURCE_COLUMNS], stats


def normalise_benchmark(
    df: pd.DataFrame, spec: Mapping[str, Any], name: str, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Raw rows -> bench, id, problem, answer, category (+ stats)."""
    what = f"benchmark '{name}'"
    n_read = len(df)
    df, selected = select_rows(df, spec, seed, what)
    df = df.reset_index(drop=True)
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
    not_text, no_problem = _malformed(raw_problems, out["problem"])
    out = out[~(not_text | no_problem)].reset_index(drop=True)
    stats = {
        "bench": name,
        "read": n_read,
        "bad_lines_dropped": 0,
        **selected,
        "malformed_no_problem": int(no_problem.sum()),
        "malformed_not_text": int(not_text.sum()),
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
        "read": len(raw),
        "bad_lines_dropped": 0,
        "rows": len(table),
        # kept, but flagged: a published row is never dropped here
        "empty_question": int(blank_q.sum()),
        "empty_answer": int((blank_a & ~blank_q).sum()),
        "extra_columns": sorted(set(raw.columns) - set(COLUMNS)),
    }
    return table, stats


# The counters of each kind's stats that say why a row read is not in the table: each row read
# is either kept (``rows``) or counted under exactly one of them.
KEYS = {"source": "source", "benchmark": "bench", "published": "name"}  # the name in its stats
DROP_REASONS = {
    "source": (
        "bad_lines_dropped",
        "filtered_out",
        "over_limit",
        "malformed_no_question",
        "malformed_not_text",
    ),
    "benchmark": (
        "bad_lines_dropped",
        "filtered_out",
        "over_limit",
        "malformed_no_problem",
        "malformed_not_text",
    ),
    "published": ("bad_lines_dropped",),
}


def with_load_counts(stats: dict[str, Any], loaded: Loaded, kind: str) -> dict[str, Any]:
    """The stats of a normalised table with the load's counts, checked to be a partition:
    rows read = rows kept + the rows dropped for each reason."""
    stats = {**stats, "read": loaded.read, "bad_lines_dropped": len(loaded.bad_lines)}
    stats["blank_lines_skipped"] = loaded.blank_lines  # not rows: no part of the sum
    stats["bad_lines"] = loaded.bad_lines[:1000]  # file, line and reason of each (first 1,000)
    dropped = sum(stats[k] for k in DROP_REASONS[kind])
    if stats["read"] != stats["rows"] + dropped:
        counts = {k: stats[k] for k in ("read", "rows", *DROP_REASONS[kind])}
        raise DeepmathError(f"{kind} '{stats.get(KEYS[kind])}': counts do not add up: {counts}")
    return stats


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
    load = dict(spec["load"])
    hub = hub_pin(load)
    if hub:  # the commit, whatever the config's revision says
        log.info("%s: %s at commit %s (%s)", what, hub["repo"], hub["commit"], hub["pinned_by"])
        load["revision"] = hub["commit"]
    raw, loaded = load_table(load, what, spec.get("on_bad_rows", "skip"))
    normalise = NORMALISERS[args.kind]
    table, stats = normalise(raw, spec, args.name, seed=args.seed)
    stats = with_load_counts(stats, loaded, args.kind)
    if hub:  # the records downstream name the commit: the stats, and the table itself (only
        # what the data is, so that the same commit always writes the same file)
        stats["hub"] = hub
        table.attrs["hub"] = {k: hub[k] for k in ("type", "repo", "revision", "commit")}
    malformed = {k: stats[k] for k in DROP_REASONS[args.kind] if k.startswith("malformed_")}
    if any(malformed.values()):
        log.warning("%s: dropped malformed rows: %s", what, malformed)
    if table.empty:
        raise DeepmathError(f"{what}: no usable rows after filtering ({stats})")
    write_parquet(table, args.out)
    write_json(stats, args.stats)
    log.info("%s: wrote %d rows to %s", what, len(table), args.out)


if __name__ == "__main__":
    run_cli(main)
