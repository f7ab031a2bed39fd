"""Evaluation metrics: pass@1 (mean ± std), unbiased pass@k, majority vote, per category.

Pure functions over a correctness matrix (problems × samples) so tests can check them against
hand-computed cases; ``deepmath.evaluate`` feeds them from the shared answer checker.

Definitions (uni_eval.py of the DeepMath repo, plus the std and maj@n it does not report):

- **pass@1**: the fraction of correct samples of each problem, averaged over problems, × 100.
  The same number as the unbiased pass@1 estimate.
- **pass@1 std**: the population standard deviation (ddof = 0) over the n "runs" obtained by
  taking sample column j of every problem (sample j has seed ``seed + j``), × 100; the n
  per-column accuracies are reported as well so other conventions can be recomputed.
- **pass@k** (unbiased, Chen et al. 2021): per problem with c correct of n samples,
  ``1 - C(n-c, k) / C(n, k)``, averaged over problems, × 100; only for k ≤ n.
- **maj@n**: per problem, a vote over the answers extracted from the n samples (samples with no
  answer do not vote); answers are grouped by their normalised spelling and, where the caller
  passes equivalence links, groups judged equivalent are merged. The winning group has the most
  votes; a tie goes to the group whose first sample comes first. A problem counts as solved when
  the winning group's representative (its most common spelling, first sample with it) was judged
  correct. No answer at all: not solved.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

PASS_K = (1, 2, 4, 8)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with ``c`` correct out of ``n`` samples (a fraction)."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def as_matrix(correct: Sequence[Sequence[bool]] | np.ndarray) -> np.ndarray:
    """A problems × samples boolean matrix; every problem must have the same n ≥ 1."""
    arr = np.asarray(correct, dtype=bool)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"correctness must be problems x samples with n >= 1, got {arr.shape}")
    return arr


def pass_at_1(correct: Sequence[Sequence[bool]] | np.ndarray) -> dict[str, Any]:
    """Mean over samples then problems, the std over sample columns, the column accuracies.

    All values are fractions (not percent). An empty matrix gives NaN.
    """
    arr = as_matrix(correct) if len(correct) else np.zeros((0, 1), dtype=bool)
    if arr.shape[0] == 0:
        return {"mean": math.nan, "std": math.nan, "per_sample": []}
    per_sample = arr.mean(axis=0)
    return {
        "mean": float(arr.mean(axis=1).mean()),
        "std": float(per_sample.std(ddof=0)),
        "per_sample": [float(x) for x in per_sample],
    }


def pass_at_ks(
    correct: Sequence[Sequence[bool]] | np.ndarray, ks: Iterable[int] = PASS_K
) -> dict[int, float]:
    """Unbiased pass@k averaged over problems, for every k ≤ n (fractions)."""
    arr = as_matrix(correct)
    n = arr.shape[1]
    counts = arr.sum(axis=1)
    out: dict[int, float] = {}
    for k in sorted(set(ks)):
        if 1 <= k <= n:
            out[k] = float(np.mean([pass_at_k(n, int(c), k) for c in counts]))
    return out


def _missing(value: Any) -> bool:
    """None, or a float NaN (how pandas stores a missing string)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, x: Hashable) -> Hashable:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def majority_vote(
    keys: Sequence[Hashable | None], links: Iterable[tuple[Hashable, Hashable]] = ()
) -> int | None:
    """Index of the representative sample of the winning answer group, or None.

    ``keys[i]`` is sample i's normalised answer (None or NaN: no answer, no vote). ``links``
    are pairs of keys judged equivalent; their groups merge (transitively). The group with the
    most votes wins, ties going to the group seen first; the representative is the group's most
    common key (ties: the key seen first), at its first sample.
    """
    first: dict[Hashable, int] = {}
    count: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        if _missing(key):
            continue
        first.setdefault(key, i)
        count[key] = count.get(key, 0) + 1
    if not first:
        return None
    uf = _UnionFind()
    for key in first:
        uf.find(key)
    for a, b in links:
        if a in first and b in first:
            uf.union(a, b)
    votes: dict[Hashable, int] = {}
    seen: dict[Hashable, int] = {}
    for key in first:
        root = uf.find(key)
        votes[root] = votes.get(root, 0) + count[key]
        seen[root] = min(seen.get(root, first[key]), first[key])
    winner = min(votes, key=lambda r: (-votes[r], seen[r]))
    members = [k for k in first if uf.find(k) == winner]
    best = min(members, key=lambda k: (-count[k], first[k]))
    return first[best]


def percent(value: float, digits: int = 1) -> float | None:
    """A fraction as a percentage rounded to ``digits`` (None for NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(100.0 * value, digits)


def summarize(
    correct: Sequence[Sequence[bool]] | np.ndarray,
    *,
    ks: Iterable[int] = PASS_K,
    maj_correct: Sequence[bool] | None = None,
    categories: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The headline metrics in percent (1 decimal): pass@1 ± std, pass@k, maj@n, per category.

    ``maj_correct[p]``: whether problem p's majority answer is correct. ``categories[p]``: the
    problem's category (None / NaN: no category); per-category pass@1 is given when any problem
    has one.
    """
    arr = as_matrix(correct)
    p1 = pass_at_1(arr)
    out: dict[str, Any] = {
        "n": int(arr.shape[1]),
        "problems": int(arr.shape[0]),
        "samples": int(arr.size),
        "correct_samples": int(arr.sum()),
        "pass@1": percent(p1["mean"]),
        "pass@1_std": percent(p1["std"]),
        "pass@1_per_sample": [percent(x) for x in p1["per_sample"]],
        "pass@k": {str(k): percent(v) for k, v in pass_at_ks(arr, ks).items()},
    }
    if maj_correct is not None:
        if len(maj_correct) != arr.shape[0]:
            raise ValueError("maj_correct needs one entry per problem")
        out["maj@n"] = percent(float(np.mean(np.asarray(maj_correct, dtype=bool))))
    out["per_category"] = per_category(arr, categories) if categories is not None else None
    return out


def _category(value: Any) -> str | None:
    if _missing(value):
        return None
    text = str(value).strip()
    return text or None


def per_category(
    correct: Sequence[Sequence[bool]] | np.ndarray, categories: Sequence[Any]
) -> dict[str, dict[str, Any]] | None:
    """pass@1 (percent) and problem count per category, sorted by name; None without categories.

    Problems without a category are grouped under ``"(none)"`` when others have one.
    """
    arr = as_matrix(correct)
    cats = [_category(c) for c in categories]
    if len(cats) != arr.shape[0]:
        raise ValueError("categories needs one entry per problem")
    if all(c is None for c in cats):
        return None
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cats):
        groups.setdefault(c if c is not None else "(none)", []).append(i)
    return {
        name: {"problems": len(idx), "pass@1": percent(pass_at_1(arr[idx])["mean"])}
        for name, idx in sorted(groups.items())
    }


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of 1-decimal values, rounded half up to 1 decimal; None if any is missing.

    Computed in exact tenths, so (84.7 + 29.4) / 2 is 57.1 on every machine.
    """
    vals = list(values)
    if not vals or any(v is None for v in vals):
        return None
    tenths = Fraction(sum(round(float(v) * 10) for v in vals), len(vals))  # type: ignore[arg-type]
    return math.floor(tenths + Fraction(1, 2)) / 10
