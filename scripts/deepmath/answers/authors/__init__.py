"""The DeepMath authors' own scorer, reproduced verdict for verdict, in its own environment.

The project's checker (:mod:`deepmath.answers`) is one policy; this package is the authors'
(eval script and RL reward functions), kept apart so that their numbers can be reproduced
exactly. It runs under ``.venv-authors`` (``make venv-authors``: math-verify 0.7.0,
antlr4-python3-runtime 4.11.0, sympy 1.13.1), because their grader's LaTeX parsing needs
antlr 4.11 and math-verify's verdicts changed after 0.7.0; :mod:`.pool` runs it in worker
processes started with that interpreter.

==========  =====================================================================================
rule        correct when any of these accepts (in this order)
==========  =====================================================================================
general     (A) ``math_equal`` on the last ``\\boxed{…}``; (B) ``math_equal`` on
            "The answer is: X" ending the response; (C) math-verify on the whole response
            against ``\\boxed{$gold}$``
olympiad    (A), (B), (C), and (D) the OlympiadBench judge (precision 1e-8) on the text after
            ``</think>``
polymath    (A), (B), (C), and (D) PolyMath's judge (first box, its own equality)
==========  =====================================================================================

==========  =====================================================================================
gate        reward +1 when correct, else -1
==========  =====================================================================================
think       needs ``</think>``; the text after the last one: (A) or (C) against
            ``\\boxed{$gold$}``, each bounded to 10 s (DeepMath-Zero-7B, -1.5B, -Omn-1.5B)
one_box     the whole response must hold exactly one ``\\boxed``; then the same check
            (DeepMath-Zero-Math-7B)
none        no format condition: the same check on the whole response (not the authors':
            the CPU demo's small model writes neither ``</think>`` nor one box reliably)
==========  =====================================================================================

``math_equal`` (:mod:`.grader`): tolerance 1e-4 relative, gold x 100 and gold / 100 accepted,
units / ``\\text{}`` / money / percent / thousands commas normalised away, numbers never reach
sympy, lists and brackets item by item, then sympy ``simplify`` or a numeric comparison.

Importing this package needs only the standard library; sympy and math-verify are imported when
a pair is scored.
"""

from deepmath.answers.authors.env import environment, is_exact
from deepmath.answers.authors.rules import (
    GATES,
    RULES,
    Verdict,
    eval_verdict,
    gold_text,
    reward_verdict,
)

__all__ = [
    "GATES",
    "RULES",
    "Verdict",
    "environment",
    "eval_verdict",
    "gold_text",
    "is_exact",
    "reward_verdict",
]
