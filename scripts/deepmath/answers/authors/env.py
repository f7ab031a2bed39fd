"""Which versions the authors' scorer runs with, and whether they are the authors' own.

Verdicts depend on them: sympy's ``parse_latex`` only works with antlr4-python3-runtime 4.11.x
(the grader's symbolic step silently loses LaTeX parsing under any other antlr), and
math-verify 0.7.0 gives other verdicts than later releases on some answers. Stdlib only: the
versions are read from the installed distributions' metadata, nothing is imported.
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

# The authors' evaluation env: math-verify[antlr4_11_0]==0.7.0 and what torch 2.5.1 pins.
EXACT = {
    "math-verify": "0.7.0",
    "latex2sympy2_extended": "1.10.1",
    "antlr4-python3-runtime": "4.11.0",
    "sympy": "1.13.1",
    # PolyMath's judge: the LaTeX parser the authors bundled (see requirements/authors.txt)
    "latex2sympy2-llmmath": "1.9.1",
}


def _installed(name: str) -> str | None:
    """The installed version of a distribution, None when it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def environment() -> dict[str, str | None]:
    """Versions of the scorer's dependencies and of Python, for logs and result metadata."""
    versions: dict[str, str | None] = {name: _installed(name) for name in EXACT}
    versions["python"] = platform.python_version()
    return versions


def is_exact() -> bool:
    """True when every dependency is at the authors' version (their verdicts are reproducible)."""
    return all(_installed(name) == pinned for name, pinned in EXACT.items())
