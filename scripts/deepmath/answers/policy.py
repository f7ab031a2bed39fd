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

Some benchmarks are judged by more than the shared check, because the authors' evaluation ORs
in each benchmark's own judge: ``judges`` names them (OlympiadBench's official judge, PolyMath's
first-box check), ``precision`` is OlympiadBench's absolute tolerance (a per-problem value can
be passed with each pair, see :meth:`~deepmath.answers.pool.CheckerPool.map`), and ``choice``
lets the committed letter of a multiple-choice response decide. The three consumers above use
none of them; a benchmark's policy is one of these with them set (``EVAL.but(judges=...)``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from deepmath.answers.check import THINK_MODES, scored_text
from deepmath.answers.extract import extract_answer
from deepmath.answers.judges import JUDGES, choice_letter


@dataclass(frozen=True)
class Policy:
    """How one consumer extracts and checks: the options of :func:`check_answer`."""

    name: str
    extract: bool = True  # the response is a full text (False: an already-extracted answer)
    think: str = "whole"  # scored part: "whole", "prefer" or "require" (see scored_text)
    stated: bool = False  # take answers stated without a box as a last resort
    math_verify_text: bool = False  # OR math-verify on the whole scored text
    rescue: bool = False  # OR the "The answer is X" sentence when the last box is wrong
    judges: tuple[str, ...] = ()  # benchmark judges OR-ed in, in order ("olympiad", "polymath")
    choice: bool = False  # a committed choice letter decides (multiple-choice benchmarks)
    precision: float | None = None  # the olympiad judge's absolute tolerance (None: 1e-8)

    def __post_init__(self) -> None:
        if self.think not in THINK_MODES:
            raise ValueError(f"think={self.think!r}; allowed: {', '.join(THINK_MODES)}")
        if isinstance(self.judges, str):
            raise ValueError(f"judges={self.judges!r} must be a sequence of names")
        object.__setattr__(self, "judges", tuple(self.judges))  # a list from a config is fine
        unknown = [j for j in self.judges if j not in JUDGES]
        if unknown:
            raise ValueError(f"judges={unknown!r}; allowed: {', '.join(JUDGES)}")
        if self.precision is not None and not self.precision > 0:
            raise ValueError(f"precision={self.precision!r} must be positive")

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
        text = scored_text(response, self.think)
        letter = choice_letter(text) if self.choice else None
        return letter or extract_answer(text, stated=self.stated)

    def but(self, **changes: Any) -> Policy:
        """This policy with some options changed (e.g. the reward's Zero-Math gate)."""
        return replace(self, **changes)


VERIFY = Policy("verify", think="prefer")
REWARD = Policy("reward", think="require", stated=True, math_verify_text=True)
EVAL = Policy("eval", think="whole", stated=True, math_verify_text=True, rescue=True)
POLICIES = {p.name: p for p in (VERIFY, REWARD, EVAL)}
