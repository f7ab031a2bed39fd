"""``python -m deepmath.answers score``: score anyone's generations with the project's checker,
or with the DeepMath authors' scorer.

For users, and for anyone auditing the published numbers: the same checker and the same
consumer policies as the pipeline, on a file of (response, gold) pairs. ``--policy authors``
runs the authors' own evaluation rule instead (``--rule general | olympiad | polymath``, one
per benchmark as their ``uni_eval`` chose it), in their pinned environment through
:class:`~deepmath.answers.authors.pool.AuthorsPool`: the verdict the evaluation records as
``correct_authors``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from deepmath.answers.check import DEFAULT_TIMEOUT_S, ERROR, THINK_MODES, Result
from deepmath.answers.policy import POLICIES, Policy
from deepmath.answers.pool import CheckerPool, default_workers

FIELDS = ("response", "gold")
AUTHORS = "authors"  # --policy authors: the authors' scorer, not a policy of our checker
AUTHORS_RULES = ("general", "olympiad", "polymath")
AUTHORS_TIMEOUT_S = 30.0  # the authors' own checks run up to 10 s per parse
OUT_FIELDS = ("equivalent", "reason", "method", "pred", "detail")
PROGRESS_FROM = 200  # pairs: shorter inputs finish before a bar would help


def read_rows(path: str) -> list[dict[str, Any]]:
    """Rows of a JSON-lines or parquet file.

    A line that is not a JSON object becomes a row holding only its line number, so it is
    reported in place instead of stopping the run.
    """
    from deepmath.io import DeepmathError

    if path != "-" and not Path(path).exists():
        raise DeepmathError(f"--in {path}: no such file")
    if path.endswith((".parquet", ".pq")):
        import pandas as pd

        frame = pd.read_parquet(path)
        return [_plain(r) for r in frame.to_dict(orient="records")]
    rows: list[dict[str, Any]] = []
    with sys.stdin if path == "-" else open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                row = None
                detail = f"line {n} is not JSON ({err.msg})"
            else:
                detail = f"line {n} is not a JSON object"
            if not isinstance(row, dict):
                rows.append({"line": n, "_bad": detail})
                continue
            rows.append(row)
    return rows


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Parquet nulls (NaN) as None, so they read as missing fields."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def pair_of(row: dict[str, Any]) -> tuple[tuple[str, str] | None, str | None]:
    """The (response, gold) of a row, or None and why the row cannot be scored.

    A gold given as a JSON number (GSM8K answers often are) is read as its decimal spelling;
    anything else that is not a string is a bad row.
    """
    if "_bad" in row:
        return None, row["_bad"]
    missing = [f for f in FIELDS if row.get(f) is None]
    if missing:
        return None, f"missing field(s): {', '.join(missing)}"
    response, gold = row["response"], row["gold"]
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    bad = [f for f, v in (("response", response), ("gold", gold)) if not isinstance(v, str)]
    if bad:
        kinds = ", ".join(f"{f} is {type(row[f]).__name__}" for f in bad)
        return None, f"not a string: {kinds}"
    return (response, gold), None


def choose_policy(args: argparse.Namespace) -> Policy:
    policy = POLICIES[args.policy]
    changes: dict[str, Any] = {}
    if args.no_extract:
        changes["extract"] = False
    if args.after_think:
        changes["think"] = "require"
    if args.think:
        changes["think"] = args.think
    return policy.but(**changes) if changes else policy


def split_rows(
    rows: list[dict[str, Any]],
) -> tuple[list[tuple[str, str]], list[int], list[dict[str, Any]]]:
    """The (response, gold) pairs to score, the row index of each, and the output rows so far:
    a bad row already carries ``reason: error`` with what is wrong, the others wait for their
    verdict (both scorers read rows this way)."""
    pairs: list[tuple[str, str]] = []
    where: list[int] = []
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        pair, problem = pair_of(row)
        base = {k: v for k, v in row.items() if k != "_bad"}
        if pair is None:
            out.append({**base, **_verdict(Result(False, ERROR, detail=f"bad row: {problem}"))})
            continue
        pairs.append(pair)
        where.append(i)
        out.append(base)
    return pairs, where, out


def score_rows(
    rows: list[dict[str, Any]],
    policy: Policy,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Each row with the verdict fields added; bad rows get ``reason: error`` and a detail."""
    pairs, where, out = split_rows(rows)
    if pairs:
        with CheckerPool(workers, timeout_s=timeout_s) as pool:
            results = pool.map(pairs, policy=policy, progress=progress)
        for i, res in zip(where, results, strict=True):
            out[i] = {**out[i], **_verdict(res)}
    return out


def score_rows_authors(
    rows: list[dict[str, Any]],
    rule: str = "general",
    *,
    precision: float | None = None,
    python: str | None = None,
    timeout_s: float = AUTHORS_TIMEOUT_S,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each row with the authors' verdict added (``method``: the branch that accepted), and the
    hello of their environment (versions, ``exact``); bad rows as in :func:`score_rows`."""
    from deepmath.answers.authors.pool import AuthorsPool, authors_python

    pairs, where, out = split_rows(rows)
    items = [(response, gold, rule, precision) for response, gold in pairs]
    with AuthorsPool(authors_python(python), workers=workers, timeout_s=timeout_s) as pool:
        hello = pool.hello()
        verdicts = pool.eval_verdicts(items, progress=progress) if items else []
    for i, v in zip(where, verdicts, strict=True):
        out[i] = {**out[i], **_authors_verdict(v)}
    return out, hello


def _authors_verdict(verdict: Any) -> dict[str, Any]:
    """The authors' Verdict in this command's output fields."""
    if verdict.via in ("timeout", "error"):
        reason = verdict.via
    elif verdict.correct:
        reason = "match"
    else:
        reason = "mismatch" if verdict.pred is not None else "no_answer"
    return {
        "equivalent": bool(verdict.correct),
        "reason": reason,
        "method": verdict.via or None,
        "pred": verdict.pred,
        "detail": None,
    }


def _verdict(res: Result) -> dict[str, Any]:
    return {
        "equivalent": bool(res.equivalent),
        "reason": res.reason,
        "method": res.method,
        "pred": res.pred,
        "detail": res.detail,
    }


def write_rows(rows: list[dict[str, Any]], path: str) -> None:
    from deepmath.io import atomic_path

    if path.endswith((".parquet", ".pq")):
        import pandas as pd

        from deepmath.io import write_parquet

        write_parquet(pd.DataFrame(rows), path)
        return
    if path == "-":
        for row in rows:
            sys.stdout.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _is_bad(row: dict[str, Any]) -> bool:
    return str(row.get("detail") or "").startswith("bad row:")


def summary(rows: list[dict[str, Any]], seconds: float, policy: Policy | str) -> str:
    """Counts per reason, pairs per second and the bad rows, for stderr. ``policy``: ours, or a
    line that says which scorer ran (the authors')."""
    reasons = Counter(r["reason"] for r in rows)
    bad = [i for i, r in enumerate(rows) if _is_bad(r)]
    scored = len(rows) - len(bad)
    what = (
        policy
        if isinstance(policy, str)
        else f"{policy.name} policy: think={policy.think}, extract={policy.extract},"
        f" stated={policy.stated}, math-verify on the text={policy.math_verify_text}"
    )
    lines = [
        f"{len(rows)} rows ({what})",
        "reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())),
    ]
    if scored:
        right = sum(1 for r in rows if r["equivalent"])
        rate = scored / max(seconds, 1e-9)
        lines.append(f"equivalent: {right} of {scored} scored pairs; {rate:.0f} pairs/s")
    else:
        lines.append("no pair could be scored")
    if bad:
        first = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        lines.append(f"bad rows: {len(bad)} (rows {first}: reason error, detail says why)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m deepmath.answers",
        description="Score model responses against gold answers with the DeepMath checker.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    sc = sub.add_parser(
        "score",
        help="score a file of (response, gold) pairs",
        description=(
            "Score (response, gold) pairs. PAIRS is JSON lines (or .parquet) with the fields "
            "'response' (a model's full text, or a bare answer with --no-extract) and 'gold'; "
            "other fields are kept. Each output row is its input row plus equivalent, reason "
            "(match / mismatch / timeout / no_answer / error), method, pred (the extracted "
            "answer) and detail. Bad rows (missing fields, values that are not strings, lines "
            "that are not JSON) are kept with reason 'error' and counted; a gold given as a JSON "
            "number is read as its decimal spelling. A summary goes to stderr. --policy authors "
            "scores with the DeepMath authors' own rule (--rule) in their environment; method "
            "is then the branch that accepted (boxed, answer_is, math_verify, olympiad, "
            "polymath)."
        ),
    )
    sc.add_argument("--in", dest="inp", required=True, metavar="PAIRS", help="input, '-': stdin")
    sc.add_argument("--out", required=True, metavar="VERDICTS", help="output, '-': stdout")
    sc.add_argument(
        "--policy",
        default="eval",
        choices=[*sorted(POLICIES), AUTHORS],
        help="a consumer's reading of a response (default eval: see deepmath.answers.policy); "
        "authors: the DeepMath authors' scorer, in their environment (see --rule)",
    )
    sc.add_argument(
        "--rule",
        choices=AUTHORS_RULES,
        default=None,
        help="--policy authors: the benchmark's rule (general; olympiad: OlympiadBench, "
        "polymath: PolyMath)",
    )
    sc.add_argument(
        "--precision",
        type=float,
        default=None,
        help="--policy authors --rule olympiad: the judge's tolerance (default 1e-8)",
    )
    sc.add_argument(
        "--authors-python",
        default=None,
        help="--policy authors: the interpreter of the authors' environment (default "
        "$DEEPMATH_AUTHORS_PYTHON, else .venv-authors)",
    )
    sc.add_argument("--no-extract", action="store_true", help="responses are bare answers")
    sc.add_argument(
        "--after-think", action="store_true", help="score only text after the last </think>"
    )
    sc.add_argument("--think", choices=THINK_MODES, default=None, help="scored part, explicitly")
    sc.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds per pair (default {DEFAULT_TIMEOUT_S:g}; --policy authors: "
        f"{AUTHORS_TIMEOUT_S:g}, their own checks allowing 10 s per parse)",
    )
    sc.add_argument(
        "--workers", type=int, default=None, help=f"checker processes (default {default_workers()})"
    )
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def main(argv: list[str] | None = None) -> None:
    from deepmath.io import DeepmathError, setup_logging

    args = build_parser().parse_args(argv)
    setup_logging()
    if args.timeout is not None and args.timeout <= 0:
        raise DeepmathError(f"--timeout {args.timeout}: must be positive")
    authors = args.policy == AUTHORS
    ours_only = [f for f, on in (("--no-extract", args.no_extract),
                                  ("--after-think", args.after_think),
                                  ("--think", args.think)) if on]  # fmt: skip
    if authors and ours_only:
        raise DeepmathError(
            f"{', '.join(ours_only)}: options of our checker's policies; the authors' scorer "
            "reads a response only as its --rule says"
        )
    if not authors and (args.rule or args.precision is not None or args.authors_python):
        raise DeepmathError("--rule, --precision and --authors-python need --policy authors")
    if args.precision is not None and (args.precision <= 0 or args.rule != "olympiad"):
        raise DeepmathError(
            f"--precision {args.precision}: a positive number, with --rule olympiad"
        )
    rows = read_rows(args.inp)
    t0 = time.perf_counter()
    progress = not args.no_progress and len(rows) >= PROGRESS_FROM
    if authors:
        rule = args.rule or "general"
        out, hello = score_rows_authors(
            rows,
            rule,
            precision=args.precision,
            python=args.authors_python,
            timeout_s=args.timeout or AUTHORS_TIMEOUT_S,
            workers=args.workers,
            progress=progress,
        )
        versions = ", ".join(
            f"{k} {v}" for k, v in sorted((hello.get("environment") or {}).items())
        )
        exact = "their pinned versions" if hello.get("exact") else "NOT their pinned versions"
        what = f"the authors' scorer, rule {rule}: {versions}, {exact}"
    else:
        policy = choose_policy(args)
        timeout = args.timeout or DEFAULT_TIMEOUT_S
        out = score_rows(rows, policy, timeout_s=timeout, workers=args.workers, progress=progress)
    seconds = time.perf_counter() - t0
    write_rows(out, args.out)
    print(summary(out, seconds, what if authors else policy), file=sys.stderr)
