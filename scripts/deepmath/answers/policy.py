"""Each consumer's reading of a response, written down once.

Three consumers share the checker, and each reads a response its own way:

========  ====================  ===========================  ==================================
policy    scored part           extracted answer             OR-ed second checks
========  ====================  ===========================  ==================================
verify    after the last        last box (with the boxes     none: the answers are compared as
          ``</think>`` if any,  listed right before it),     extracted, each against the
          else all of it        else "The answer is X"       source's reference or each other
reward    after the last        as verify, then an answer    math-verify on the scored text
          ``</think>`` (none:   stated without a box         (the DeepMath reward's
          no answer; the        ("Answer: 12", "Hence $y     ``verify(parse(gt), parse(resp))``)
          Zero-Math gate uses   \\leq 2$ is ...")
          the whole response)
eval      the whole response,   as reward                    math-verify on the whole response;
          thinking included                                  a wrong last box rescued by a right
          (as the authors'                                   "The answer is X" sentence
          ``uni_eval``)
========  ====================  ===========================  ==================================

The verification policy demands a box (or the explicit "The answer is" of the source
solutions): a dataset answer must be one the solution committed to. Rewards and evaluation also
take an answer stated without a box, as math-verify on the whole response does anyway.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from deepmath.answers.check import THINK_MODES, scored_text
from deepmath.answers.extract import extract_answer


@dataclass(frozen=True)
class Policy:
    """How one consumer extracts and checks: the options of :func:`check_answer`."""

    name: str
    extract: bool = True  # the response is a full text (False: an already-extracted answer)
    think: str = "whole"  # scored part: "whole", "prefer" or "require" (see scored_text)
    stated: bool = False  # take answers stated without a box as a last resort
    math_verify_text: bool = False  # OR math-verify on the whole scored text
    rescue: bool = False  # OR the "The answer is X" sentence when the last box is wrong

    def __post_init__(self) -> None:
        if self.think not in THINK_MODES:
            raise ValueError(f"think={self.think!r}; allowed: {', '.join(THINK_MODES)}")

    def options(self) -> dict[str, Any]:
        """Keyword arguments of :func:`check_answer` / :meth:`CheckerPool.map`."""
        opts = asdict(self)
        opts.pop("name")
        opts["fallback_full_text"] = opts.pop("math_verify_text")
        return opts

    def answer(self, response: str | None) -> str | None:
        """The answer this policy extracts from a response (None: none)."""
        if not self.extract:
            return response.strip() if response else None
        return extract_answer(scored_text(response, self.think), stated=self.stated)

    def but(self, **changes: Any) -> Policy:
        """This policy with some options changed (e.g. the reward's Zero-Math gate)."""
        return replace(self, **changes)


VERIFY = Policy("verify", think="prefer")
REWARD = Policy("reward", think="require", stated=True, math_verify_text=True)
EVAL = Policy("eval", think="whole", stated=True, math_verify_text=True, rescue=True)
POLICIES = {p.name: p for p in (VERIFY, REWARD, EVAL)}
