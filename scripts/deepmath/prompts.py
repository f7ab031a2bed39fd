"""Prompt templates: plain text files with named {slots}.

Why not str.format: prompts contain LaTeX (``\\boxed{}``) and problem texts contain braces
everywhere. Only ``{name}`` where *name* is one of the slots the caller declares is replaced;
every other brace is left as it is, and a declared slot missing from the template is an error
at load time, not a silently different prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deepmath.io import DeepmathError

_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Prompt:
    """A loaded template and the slots it fills."""

    path: str
    text: str
    slots: tuple[str, ...]

    def render(self, values: Mapping[str, object]) -> str:
        missing = [s for s in self.slots if s not in values]
        if missing:
            raise DeepmathError(f"prompt {self.path}: no value for slot(s) {', '.join(missing)}")

        def fill(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.slots:
                return match.group(0)
            value = values[name]
            missing = value is None or (isinstance(value, float) and value != value)  # NaN
            return "" if missing else str(value)

        return _SLOT.sub(fill, self.text)


def load_prompt(path: str | Path, slots: Iterable[str]) -> Prompt:
    """Read a template and check that every declared slot appears in it."""
    slots = tuple(slots)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise DeepmathError(f"cannot read prompt file {path}: {err}") from err
    present = set(_SLOT.findall(text))
    absent = [s for s in slots if s not in present]
    if absent:
        raise DeepmathError(
            f"prompt {path} lacks slot(s) {', '.join('{' + s + '}' for s in absent)}; "
            f"this step fills: {', '.join('{' + s + '}' for s in slots)}"
        )
    return Prompt(str(path), text, slots)
