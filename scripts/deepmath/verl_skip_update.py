"""Skip an optimizer update whose gradient norm is too large, inside verl 0.9's FSDP engine.

The authors' verl fork skips the update of a mini-batch whose gradient norm (measured before
clipping) exceeds ``max_grad_norm`` (5.0 in three of the four DeepMath runs); upstream verl 0.9
only skips non-finite norms. verl imports this module in every worker before it builds an
engine (``actor_rollout_ref.model.external_lib``, its documented hook for user code), and the
import wraps ``FSDPEngine.optimizer_step``: verl's own step runs unchanged (unscale, clip,
non-finite check), but the optimizer's ``step`` is held back until the norm it returned is
known, then either taken or dropped (gradients zeroed), as the fork does. The learning-rate
schedule advances either way, as in the fork.

The limit comes from ``DEEPMATH_SKIP_GRAD_NORM`` (set by deepmath.train_verl from the recipe's
``skip_grad_norm`` before Ray starts, so every worker inherits it); unset or empty: no limit.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

ENV = "DEEPMATH_SKIP_GRAD_NORM"
MODULE = __name__

log = logging.getLogger("deepmath.verl_skip_update")


def limit_from_env(env: Any = None) -> float | None:
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return None
    value = float(raw)
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{ENV} must be a number > 0, got {raw!r}")
    return value


class _HeldStep:
    """Stands in for the optimizer during verl's step: records ``step()`` instead of taking it."""

    def __init__(self, optimizer: Any) -> None:
        self._optimizer = optimizer
        self.called: tuple[tuple, dict] | None = None

    def step(self, *args: Any, **kwargs: Any) -> None:
        self.called = (args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)


def guarded(optimizer_step: Any, limit: float | None) -> Any:
    """``optimizer_step`` of verl's engine with the skip-above-``limit`` rule around it."""
    if limit is None:
        return optimizer_step

    def optimizer_step_with_limit(self: Any) -> float:
        real = self.optimizer
        held = _HeldStep(real)
        self.optimizer = held
        try:
            grad_norm = optimizer_step(self)
        finally:
            self.optimizer = real
        if held.called is None:  # verl skipped it already (a non-finite norm)
            return grad_norm
        if not math.isfinite(grad_norm) or grad_norm > limit:  # NaN > limit would be False
            print(f"WARN: grad_norm {grad_norm:.4g} > {limit:g} (skip_grad_norm): update skipped")
            self.deepmath_skipped_updates = getattr(self, "deepmath_skipped_updates", 0) + 1
            real.zero_grad()
        else:
            args, kwargs = held.called
            real.step(*args, **kwargs)
        return grad_norm

    optimizer_step_with_limit.deepmath_limit = limit  # type: ignore[attr-defined]
    return optimizer_step_with_limit


def install(limit: float | None = None) -> float | None:
    """Wrap verl's ``FSDPEngine.optimizer_step`` once (idempotent); returns the limit used."""
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

    limit = limit_from_env() if limit is None else limit
    current = FSDPEngine.optimizer_step
    original = getattr(current, "__wrapped_by_deepmath__", current)
    if limit is None:
        FSDPEngine.optimizer_step = original
        return None
    wrapped = guarded(original, limit)
    wrapped.__wrapped_by_deepmath__ = original  # type: ignore[attr-defined]
    FSDPEngine.optimizer_step = wrapped
    return limit


if os.environ.get(ENV, "").strip():
    install()
