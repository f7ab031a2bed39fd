"""Final-answer extraction and equivalence, shared by verification, rewards and evaluation.

One checker serves three consumers (the consistency filter of ``verify_answers``, the RL reward
and the eval scorer) so that "correct" means the same thing everywhere in the pipeline.

Modules, cheapest first:

* :mod:`~deepmath.answers.extract`: where the answer is (the last ``\\boxed{...}`` with brace
  matching, "The answer is: X", the text after ``</think>``);
* :mod:`~deepmath.answers.normalize`: a canonical spelling of an extracted answer;
* :mod:`~deepmath.answers.values`: reading a value (numbers, lists and brackets, inequalities
  as intervals, units) before any comparison;
* :mod:`~deepmath.answers.equivalence`: the normalising comparator, with math-verify and sympy for
  symbolic forms;
* :mod:`~deepmath.answers.judges`: benchmark judges OR-ed in by the authors' evaluation
  (OlympiadBench's, PolyMath's, a multiple-choice letter), on top of the comparator;
* :mod:`~deepmath.answers.check`: one check bounded in time, with its reason;
* :mod:`~deepmath.answers.pool`: many checks in worker processes that are killed and replaced
  when they overrun, so a pathological pair costs at most its timeout (``"timeout"``);
* :mod:`~deepmath.answers.policy`: what each consumer extracts, from which part of the text,
  and which second checks it ORs in;
* :mod:`~deepmath.answers.cli`: ``python -m deepmath.answers score`` for anyone's generations.

Import stays cheap: math-verify and sympy are imported lazily, because the data-pulling stages
import :func:`extract_boxed` and should not pay for a computer algebra system.
"""

from deepmath.answers.check import (
    DEFAULT_TIMEOUT_S,
    ERROR,
    MATCH,
    MISMATCH,
    NO_ANSWER,
    REASONS,
    TIMEOUT,
    CheckTimeout,
    Result,
    check_answer,
    gold_answer,
    is_equiv,
    scored_text,
)
from deepmath.answers.equivalence import DECISIVE, REL_TOL, compare
from deepmath.answers.extract import (
    after_think,
    extract_answer,
    extract_answer_is,
    extract_boxed,
    extract_final_boxes,
    extract_gsm8k,
    extract_stated,
    strip_math_delimiters,
)
from deepmath.answers.judges import (
    JUDGES,
    choice_letter,
    gold_letter,
    olympiad_judge,
    polymath_judge,
)
from deepmath.answers.normalize import normalize_answer
from deepmath.answers.policy import EVAL, POLICIES, REWARD, VERIFY, Policy
from deepmath.answers.pool import (
    CheckerPool,
    Pair,
    PairWithOptions,
    check_pairs,
    default_workers,
)

__all__ = [
    "CheckTimeout",
    "CheckerPool",
    "DECISIVE",
    "DEFAULT_TIMEOUT_S",
    "ERROR",
    "EVAL",
    "JUDGES",
    "MATCH",
    "MISMATCH",
    "NO_ANSWER",
    "POLICIES",
    "Pair",
    "PairWithOptions",
    "Policy",
    "REASONS",
    "REL_TOL",
    "REWARD",
    "Result",
    "TIMEOUT",
    "VERIFY",
    "after_think",
    "check_answer",
    "check_pairs",
    "choice_letter",
    "compare",
    "default_workers",
    "extract_answer",
    "extract_answer_is",
    "extract_boxed",
    "extract_final_boxes",
    "extract_gsm8k",
    "extract_stated",
    "gold_answer",
    "gold_letter",
    "is_equiv",
    "normalize_answer",
    "olympiad_judge",
    "polymath_judge",
    "scored_text",
    "strip_math_delimiters",
]
