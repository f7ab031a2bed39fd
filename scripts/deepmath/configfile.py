"""Read and merge the workflow's YAML config files (no validation: see deepmath.config).

Kept apart from the validation so that a stage that only reads a config (deepmath.serve's CLI)
does not depend on what validation imports (the training recipes' checks).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from deepmath.io import DeepmathError


class ConfigError(DeepmathError):
    """The config is invalid; the message lists every problem found."""


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (later files win), as Snakemake does for several --configfile."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping.

    Plain YAML loaders (Snakemake's included) keep the last one silently, so a second
    ``llm:`` block pasted into a config would quietly replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat keys
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"{key_node.start_mark.name}:{line}: key {key!r} is given twice in one "
                    f"mapping (first on line {seen[key]}); YAML would silently keep the last"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """One YAML config file, refusing duplicate keys.

    Every way a file can fail to read (missing, not UTF-8, a YAML syntax error) is one
    ConfigError line naming the file and, where YAML knows it, the line and column.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        line = text_line(err.object, err.start)
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); save the "
            "config as UTF-8"
        ) from None
    stream = io.StringIO(text)
    stream.name = str(path)  # type: ignore[misc]  # marks (and errors) name the file
    try:
        return yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(x for x in (err.context, err.problem) if x)
        raise ConfigError(f"{where}: YAML syntax error: {what}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: YAML error: {err}") from None


def text_line(data: bytes, offset: int) -> int:
    """The 1-based line of a byte offset."""
    return data.count(b"\n", 0, offset) + 1


def load_config(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Read and merge YAML config files in order; each must hold a mapping at the top."""
    config: dict[str, Any] = {}
    for path in paths:
        data = read_yaml(path)
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{path}: a config file holds a mapping of keys at the top level (run:, "
                f"sources:, ...), not a {type(data).__name__}"
            )
        config = deep_merge(config, data)
    return config
