"""Read and merge the workflow's YAML config files (no validation: see deepmath.config).

Kept apart from the validation so that a stage that only reads a config (deepmath.serve's CLI)
does not depend on what validation imports (the training recipes' checks).
"""

from __future__ import annotations

import copy
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
    """One YAML config file, refusing duplicate keys (ConfigError naming file and lines)."""
    with open(path) as fh:
        return yaml.load(fh, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(paths: Iterable[str | Path]) -> dict[str, Any]:
    """Read and merge YAML config files in order."""
    config: dict[str, Any] = {}
    for path in paths:
        config = deep_merge(config, read_yaml(path) or {})
    return config
