#!/usr/bin/env python
"""The answer checker on other projects' answer-equivalence test cases, against math-verify.

Other graders' own test suites are answers the checker was not written on: math-verify's
(``tests/test_*.py``: pytest parametrize tables of gold, prediction, verdict), NeMo-Skills'
``math_equal`` tests (pairs that must be equal, or unequal, both ways round) and the original
MATH ``is_equiv`` unit tests. This script reads them from local git mirrors (nothing of theirs is
copied into this repository), turns each case into (gold, response, expected) and prints per
suite: cases, and agreement / false positives / false negatives for the checker (``--policy
eval``) and for plain math-verify, ``verify(parse(gold), parse(response))``, with the gold bare
and in ``$...$``.

Cases whose verdict depends on a non-default option of the suite's own grader (math-verify's
``precision=5``, ``strict=False``, ``allow_set_relation_comp=True``) are left out: they test
that option, not answer equivalence. An already-extracted prediction (NeMo-Skills, MATH) is
handed over boxed, so every grader reads it as the answer.

Usage: ``python scripts/measure_peer_suites.py MIRRORS [--show 30] [--json out.json]`` where
``MIRRORS`` holds ``<owner>+<name>/repo`` git directories (or checkouts) of
huggingface/Math-Verify, NVIDIA/NeMo-Skills and hendrycks/math; a missing one is skipped.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from deepmath.answers import POLICIES, CheckerPool  # noqa: E402

Case = dict  # {"suite", "id", "gold", "response", "expected"}

MATH_VERIFY_FILES = (
    "tests/test_all.py",
    "tests/test_numina_cases.py",
    "tests/test_open_thoughts.py",
    "tests/test_yujianll.py",
    "tests/test_boxed.py",
)
# math-verify test functions whose verdicts assume a rounding precision other than its default
MATH_VERIFY_OPTION_TESTS = {"test_float_precision", "test_sqrt_precision", "test_symbols"}


def read_source(root: Path, path: str) -> str | None:
    """A file of a mirror: a checkout's file, else the file at HEAD of a bare git directory."""
    if (root / path).is_file():
        return (root / path).read_text(encoding="utf-8")
    try:
        out = subprocess.run(
            ["git", "--git-dir", str(root), "show", f"HEAD:{path}"],
            capture_output=True,
            check=True,
            text=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    return out.stdout


def find_mirror(mirrors: Path, name: str) -> Path | None:
    """A mirror's folder: ``owner+name/repo`` (the fetch layout), ``owner+name`` or ``name``."""
    owner_name = name.replace("/", "+")
    for cand in (
        mirrors / owner_name / "repo",
        mirrors / owner_name,
        mirrors / name.split("/")[1],
    ):
        if cand.exists():
            return cand
    return None


def _literal(node: ast.AST) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def _parametrize_tables(source: str) -> Iterator[tuple[str, list[str], list[tuple]]]:
    """(test name, argument names, rows) of each ``@pytest.mark.parametrize`` with literal rows."""
    tree = ast.parse(source)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for dec in fn.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "parametrize"):
                continue
            names = _literal(dec.args[0])
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",")]
            rows = []
            for elt in getattr(dec.args[1], "elts", []):
                row = _literal(elt)
                if isinstance(row, tuple):
                    rows.append(row)
            yield fn.name, list(names or []), rows


def math_verify_cases(root: Path) -> Iterator[Case]:
    """math-verify's own regression tables, one suite per test file, default options only."""
    for path in MATH_VERIFY_FILES:
        source = read_source(root, path)
        if source is None:
            continue
        suite = "math-verify/" + Path(path).stem.removeprefix("test_")
        for test, names, rows in _parametrize_tables(source):
            if test in MATH_VERIFY_OPTION_TESTS or "gold" not in names or "pred" not in names:
                continue
            verdict = "expected" if "expected" in names else "result"
            for i, row in enumerate(rows):
                args = dict(zip(names, row, strict=False))
                if args.get("strict", True) is not True or args.get("allow_set_relation_comp"):
                    continue
                if args.get("precision", 6) != 6:
                    continue
                yield {
                    "suite": suite,
                    "id": f"{test}[{i}]",
                    "gold": str(args["gold"]),
                    "response": str(args["pred"]),
                    "expected": bool(args[verdict]),
                }


def _boxed(answer: str) -> str:
    """An extracted answer as a response; a trailing backslash (``185\\``) would escape the
    closing brace, so a space goes before it."""
    return f"\\boxed{{{answer}{' ' if answer.endswith(chr(92)) else ''}}}"


def nemo_skills_cases(root: Path) -> Iterator[Case]:
    """NeMo-Skills' ``math_equal`` tests: each pair is checked both ways round."""
    source = read_source(root, "tests/test_math_equal.py")
    if source is None:
        return
    for test, _names, rows in _parametrize_tables(source):
        expected = test == "test_correct_examples"
        for i, row in enumerate(rows):
            pair = row[0] if len(row) == 1 and isinstance(row[0], tuple) else row
            a, b = pair
            if a is None or b is None:
                continue
            for j, (gold, pred) in enumerate(((a, b), (b, a))):
                yield {
                    "suite": "nemo-skills/math_equal",
                    "id": f"{test}[{i}]{'ab'[j]}",
                    "gold": str(gold),
                    "response": _boxed(str(pred)),
                    "expected": expected,
                }


def hendrycks_cases(root: Path) -> Iterator[Case]:
    """The MATH benchmark's ``is_equiv`` unit tests (``test_in`` gold, ``test_out`` prediction)."""
    source = read_source(root, "modeling/math_equivalence_test.py")
    if source is None:
        return
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef):
            continue
        values: dict[str, object] = {}
        for stmt in fn.body:
            if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                values[stmt.targets[0].id] = _literal(stmt.value)
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(call, ast.Call) and getattr(call.func, "attr", "") in (
                "assertTrue",
                "assertFalse",
            ):
                yield {
                    "suite": "hendrycks/math_equivalence",
                    "id": fn.name,
                    "gold": str(values.get("test_in")),
                    "response": _boxed(str(values.get("test_out"))),
                    "expected": call.func.attr == "assertTrue",
                }


SUITES = (
    ("huggingface/Math-Verify", math_verify_cases),
    ("NVIDIA/NeMo-Skills", nemo_skills_cases),
    ("hendrycks/math", hendrycks_cases),
)


def load_cases(mirrors: Path) -> list[Case]:
    cases: list[Case] = []
    for name, reader in SUITES:
        root = find_mirror(mirrors, name)
        if root is None:
            print(f"skipped {name}: no mirror under {mirrors}", file=sys.stderr)
            continue
        cases += list(reader(root))
    return cases


def plain_math_verify(cases: list[Case], delimit: bool) -> list[bool]:
    """math-verify as a user calls it; ``delimit`` hands it the gold as ``$gold$``."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    out = []
    for c in cases:
        gold = f"${c['gold']}$" if delimit else c["gold"]
        try:
            out.append(bool(verify(parse(gold), parse(c["response"]))))
        except Exception:  # its own failures count as "not equal"
            out.append(False)
    return out


def checker(cases: list[Case], policy: str, workers: int) -> list[bool]:
    with CheckerPool(workers) as pool:
        results = pool.map([(c["response"], c["gold"]) for c in cases], policy=POLICIES[policy])
    return [r.equivalent for r in results]


def tally(cases: list[Case], verdicts: list[bool]) -> dict[str, dict[str, int]]:
    by: dict[str, dict[str, int]] = {}
    for case, got in zip(cases, verdicts, strict=True):
        for key in (case["suite"], "TOTAL"):
            c = by.setdefault(key, {"n": 0, "agree": 0, "fp": 0, "fn": 0})
            c["n"] += 1
            c["agree"] += got == case["expected"]
            c["fp"] += got and not case["expected"]
            c["fn"] += not got and case["expected"]
    return by


def table(cases: list[Case], columns: dict[str, list[bool]]) -> str:
    tallies = {name: tally(cases, v) for name, v in columns.items()}
    first = next(iter(tallies.values()))
    keys = sorted(k for k in first if k != "TOTAL") + ["TOTAL"]
    head = "| suite | cases | " + " | ".join(f"{n} agree | FP | FN" for n in columns) + " |"
    lines = [head, "|---|---:|" + "---:|---:|---:|" * len(columns)]
    for k in keys:
        cells = []
        for t in tallies.values():
            x = t[k]
            cells.append(f"{x['agree']} ({100 * x['agree'] / x['n']:.1f}%) | {x['fp']} | {x['fn']}")
        name = f"**{k}**" if k == "TOTAL" else k
        lines.append(f"| {name} | {first[k]['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("mirrors", type=Path, help="folder holding <owner>+<name>/repo mirrors")
    ap.add_argument("--policy", default="eval", choices=sorted(POLICIES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--show", type=int, default=30, help="list up to N wrong checker verdicts")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    cases = load_cases(args.mirrors)
    if not cases:
        print(f"no peer suite found under {args.mirrors}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    ours = checker(cases, args.policy, args.workers)
    t1 = time.perf_counter()
    columns = {
        "checker": ours,
        "math-verify": plain_math_verify(cases, delimit=False),
        "math-verify $gold$": plain_math_verify(cases, delimit=True),
    }
    print(f"{len(cases)} cases; checker ({args.policy} policy) {t1 - t0:.1f} s\n")
    print(table(cases, columns))
    wrong = [(c, o) for c, o in zip(cases, ours, strict=True) if o != c["expected"]]
    print(f"\nchecker wrong on {len(wrong)}:")
    for c, o in wrong[: args.show]:
        print(
            f"  {c['suite']} {c['id']}: expected {c['expected']} got {o} "
            f"gold={c['gold'][:80]!r} response={c['response'][-100:]!r}"
        )
    if args.json:
        args.json.write_text(json.dumps({n: tally(cases, v) for n, v in columns.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
