"""Tokens, requests, failures and cost per role: what every LLM job writes next to its output."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deepmath.io import DeepmathError, write_json

MAX_REASONS = 20  # distinct refusal reasons a usage file names; the rest count as "other"


def cost_usd(prompt_tokens: int, completion_tokens: int, prices: Mapping[str, float]) -> float:
    """Dollars for a token count; ``prices`` are USD per 1M prompt / completion tokens."""
    return (prompt_tokens * prices["prompt"] + completion_tokens * prices["completion"]) / 1e6


@dataclass
class RoleUsage:
    """What one role cost in one job: sent now vs replayed from the journal (paid earlier)."""

    role: str
    model: str
    requests: int = 0  # as asked by the caller, duplicates included
    unique_requests: int = 0
    replayed_requests: int = 0
    replayed_prompt_tokens: int = 0
    replayed_completion_tokens: int = 0
    sent_requests: int = 0  # finished now (and journaled)
    sent_prompt_tokens: int = 0
    sent_completion_tokens: int = 0
    attempts: int = 0  # HTTP attempts made now, retries included
    retries: int = 0
    failed_requests: int = 0
    rejected_requests: int = 0  # refused for their content (400/413/422), dropped under on_rejected
    budget_retries: int = 0  # retries past a request's own max_retries (the job's budget)
    elapsed_s: float = 0.0
    prices: Mapping[str, float] | None = None
    # why requests were refused and dropped (the server's words, numbers blanked) -> how many
    rejected_reasons: dict[str, int] = field(default_factory=dict)

    def count_rejection(self, reason: str) -> None:
        """One more request refused for its content and dropped; a job's first ``MAX_REASONS``
        distinct reasons are kept by name, later ones count as "other"."""
        self.rejected_requests += 1
        if reason not in self.rejected_reasons and len(self.rejected_reasons) >= MAX_REASONS:
            reason = "other"
        self.rejected_reasons[reason] = self.rejected_reasons.get(reason, 0) + 1

    def __add__(self, other: RoleUsage) -> RoleUsage:
        if (self.role, self.model) != (other.role, other.model):
            raise DeepmathError(
                f"cannot add usage of role {other.role} ({other.model}) to {self.role} "
                f"({self.model})"
            )
        total = replace(self, rejected_reasons=dict(self.rejected_reasons))
        for name in self.__dataclass_fields__:
            value = getattr(other, name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                setattr(total, name, getattr(self, name) + value)
        for reason, count in other.rejected_reasons.items():
            total.rejected_reasons[reason] = total.rejected_reasons.get(reason, 0) + count
        total.prices = self.prices or other.prices
        return total

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "requests": self.requests,
            "unique_requests": self.unique_requests,
            "replayed": {
                "requests": self.replayed_requests,
                "prompt_tokens": self.replayed_prompt_tokens,
                "completion_tokens": self.replayed_completion_tokens,
            },
            "sent": {
                "requests": self.sent_requests,
                "prompt_tokens": self.sent_prompt_tokens,
                "completion_tokens": self.sent_completion_tokens,
                "attempts": self.attempts,
                "retries": self.retries,
                "failed_requests": self.failed_requests,
                "rejected_requests": self.rejected_requests,
                "rejected_reasons": dict(self.rejected_reasons),
                "budget_retries": self.budget_retries,
            },
            "elapsed_s": round(self.elapsed_s, 3),
            "prices_usd_per_1m": dict(self.prices) if self.prices else None,
            "cost_usd": None,
        }
        if self.prices:
            sent = cost_usd(self.sent_prompt_tokens, self.sent_completion_tokens, self.prices)
            replayed = cost_usd(
                self.replayed_prompt_tokens, self.replayed_completion_tokens, self.prices
            )
            out["cost_usd"] = {"sent": round(sent, 6), "total": round(sent + replayed, 6)}
        return out


def usage_summary(usages: Iterable[RoleUsage]) -> dict[str, Any]:
    """The `<output>.usage.json` document: per role, plus the priced total.

    ``cost_usd.sent`` is what this job paid; ``cost_usd.total`` adds what earlier (killed) runs
    paid for the journal entries replayed here, i.e. the cost of the artifact.
    """
    by_role: dict[str, RoleUsage] = {}
    for usage in usages:
        by_role[usage.role] = by_role[usage.role] + usage if usage.role in by_role else usage
    roles = {name: u.to_dict() for name, u in sorted(by_role.items())}
    priced = [r["cost_usd"] for r in roles.values() if r["cost_usd"]]
    total = None
    if priced:
        total = {k: round(sum(c[k] for c in priced), 6) for k in ("sent", "total")}
    return {"roles": roles, "cost_usd": total}


def write_usage(path: str | os.PathLike[str], usages: Iterable[RoleUsage]) -> dict[str, Any]:
    """Write the usage document atomically (the caller names it `<output>.usage.json`)."""
    doc = usage_summary(usages)
    write_json(doc, path)
    return doc
