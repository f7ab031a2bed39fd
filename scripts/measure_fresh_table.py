"""Measure answer checkers against the independently written table of graded responses.

The table (tests/data/answer_cases_fresh.jsonl) was written by a grader who did not read
the checker, so its verdicts are an outside yardstick: each row is a full model response,
a gold answer as a dataset stores it, and what a careful human grader decides. This script
scores every row with two checkers and prints, per category, how often each agrees:

* ``deepmath``: ``python -m deepmath.answers score --policy eval`` run from the checkout
  given by ``--scripts`` (so an old commit's code can be measured from a git worktree);
* ``math-verify``: plain ``verify(parse("$gold$"), parse(response))`` from the installed
  math-verify package, the baseline the project's checker is meant to improve on.

Usage::

    python scripts/measure_fresh_table.py --scripts /path/to/checkout/scripts --examples 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TABLE = REPO / "tests" / "data" / "answer_cases_fresh.jsonl"
CHECKERS = ("deepmath", "math-verify")


@dataclass
class Counts:
    """Confusion counts of one checker on one category; accepted rows are positives."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, expected: bool, accepted: bool) -> None:
        """Count one row under the cell its (expected, accepted) pair falls in."""
        if accepted:
            self.tp += expected
            self.fp += not expected
        else:
            self.fn += expected
            self.tn += not expected

    @property
    def n(self) -> int:
        """Rows counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def accuracy(self) -> float:
        """Share of rows where the checker agrees with the human verdict."""
        return (self.tp + self.tn) / self.n if self.n else 0.0


@dataclass
class Errors:
    """Rows one checker got wrong, kept for examples: accepted-but-wrong and rejected-but-right."""

    false_pos: list[dict] = field(default_factory=list)
    false_neg: list[dict] = field(default_factory=list)


def load_table(path: Path) -> list[dict]:
    """Read the table and fail loudly on a row that cannot be measured, naming its line."""
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = {"id", "category", "gold", "response", "expected"} - row.keys()
        if missing or not isinstance(row["expected"], bool):
            raise SystemExit(
                f"{path}:{lineno}: row needs id, category, gold, response and a boolean "
                f"expected; missing {sorted(missing)}, expected={row.get('expected')!r}"
            )
        rows.append(row)
    return rows


def score_deepmath(rows: list[dict], scripts: Path, python: str, timeout: float) -> dict[str, dict]:
    """Run the project's CLI over the rows from the given checkout; verdict rows keyed by id.

    The CLI runs as a subprocess with PYTHONPATH set to ``scripts`` so that the code measured
    is that checkout's, not whatever this interpreter would import.
    """
    with tempfile.TemporaryDirectory(prefix="fresh-table-") as tmp:
        src, dst = Path(tmp) / "pairs.jsonl", Path(tmp) / "verdicts.jsonl"
        with src.open("w", encoding="utf-8") as fh:
            for row in rows:
                pair = {"id": row["id"], "gold": row["gold"], "response": row["response"]}
                fh.write(json.dumps(pair) + "\n")
        env = {**os.environ, "PYTHONPATH": str(scripts)}
        cmd = [python, "-m", "deepmath.answers", "score", "--in", str(src), "--out", str(dst)]
        cmd += ["--policy", "eval", "--no-progress", "--timeout", str(timeout)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"deepmath.answers score failed ({done.returncode}):\n{done.stderr}")
        out = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines() if line]
    return {v["id"]: v for v in out}


def score_math_verify(rows: Iterable[dict]) -> dict[str, dict]:
    """Plain math-verify on each row, gold wrapped in $...$ as a dataset's bare LaTeX needs.

    An exception counts as a rejection: that is what a caller of verify() would record.
    """
    from math_verify import parse, verify

    out = {}
    for row in rows:
        try:
            gold, pred = parse(f"${row['gold']}$"), parse(row["response"])
            accepted = bool(verify(gold, pred))
            shown = str(pred[1]) if len(pred) > 1 else str(pred)
        except Exception as exc:  # noqa: BLE001 - any failure is a rejection here
            accepted, shown = False, f"error: {type(exc).__name__}"
        out[row["id"]] = {"equivalent": accepted, "pred": shown}
    return out


def tally(
    rows: list[dict], verdicts: dict[str, dict[str, dict]]
) -> tuple[dict[str, dict[str, Counts]], dict[str, Errors]]:
    """Per checker and category, confusion counts; per checker, the rows it got wrong."""
    counts: dict[str, dict[str, Counts]] = {name: {} for name in verdicts}
    errors = {name: Errors() for name in verdicts}
    for row in rows:
        for name, by_id in verdicts.items():
            verdict = by_id.get(row["id"], {})
            accepted = verdict.get("equivalent") is True
            counts[name].setdefault(row["category"], Counts()).add(row["expected"], accepted)
            if accepted != row["expected"]:
                bucket = errors[name].false_pos if accepted else errors[name].false_neg
                bucket.append({**row, "pred": verdict.get("pred"), "reason": verdict.get("reason")})
    return counts, errors


def cell(c: Counts) -> str:
    """One checker's columns of a table row."""
    return f"{c.tp} | {c.fp} | {c.fn} | {c.accuracy:.2f}"


def render(counts: dict[str, dict[str, Counts]], categories: list[str]) -> str:
    """Markdown table: per category, TP / FP / FN / accuracy for each checker, then totals."""
    names = list(counts)
    head = "| category | n | " + " | ".join(f"{n} TP | FP | FN | acc" for n in names) + " |"
    rule = "|" + "---|" * (2 + 4 * len(names))
    lines = [head, rule]
    totals = {name: Counts() for name in names}
    for cat in categories:
        per = [counts[name][cat] for name in names]
        lines.append(f"| {cat} | {per[0].n} | " + " | ".join(cell(c) for c in per) + " |")
        for name, c in zip(names, per, strict=True):
            t = totals[name]
            t.tp, t.fp, t.fn, t.tn = t.tp + c.tp, t.fp + c.fp, t.fn + c.fn, t.tn + c.tn
    total_n = totals[names[0]].n
    lines.append(f"| **total** | {total_n} | " + " | ".join(cell(totals[n]) for n in names) + " |")
    return "\n".join(lines)


def show_examples(errors: dict[str, Errors], limit: int, write: Callable[[str], None]) -> None:
    """Print up to ``limit`` rows of each error kind per checker, with what it extracted."""
    for name, errs in errors.items():
        for kind, rows in (
            ("false positives", errs.false_pos),
            ("false negatives", errs.false_neg),
        ):
            write(f"\n{name} {kind} ({len(rows)}):")
            for row in rows[:limit]:
                tail = row["response"].replace("\n", " ")[-90:]
                write(
                    f"  {row['id']}: gold={row['gold']!r} pred={row['pred']!r} "
                    f"reason={row['reason']!r}\n      ...{tail!r}  [{row.get('note', '')}]"
                )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line: which checkout, which table, how many examples."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scripts",
        type=Path,
        default=REPO / "scripts",
        help="the scripts/ folder of the checkout whose deepmath is measured",
    )
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="graded cases (JSON lines)")
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs the deepmath CLI (default: this one)",
    )
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per pair for the CLI")
    ap.add_argument(
        "--examples",
        type=int,
        default=0,
        help="print this many rows of each error kind per checker",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Score the table with both checkers and print the per-category comparison."""
    args = parse_args(argv)
    if not (args.scripts / "deepmath" / "answers").is_dir():
        raise SystemExit(f"--scripts {args.scripts}: no deepmath/answers package there")
    rows = load_table(args.table)
    verdicts = {
        "deepmath": score_deepmath(rows, args.scripts, args.python, args.timeout),
        "math-verify": score_math_verify(rows),
    }
    missing = [r["id"] for r in rows if r["id"] not in verdicts["deepmath"]]
    if missing:
        raise SystemExit(f"deepmath returned no verdict for {len(missing)} rows: {missing[:5]}")
    categories = list(dict.fromkeys(r["category"] for r in rows))
    counts, errors = tally(rows, verdicts)
    print(f"table: {args.table} ({len(rows)} rows); deepmath from {args.scripts}")
    print("TP: accepted, expected true; FP: accepted, expected false; FN: rejected, expected true")
    print()
    print(render(counts, categories))
    if args.examples:
        show_examples(errors, args.examples, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
