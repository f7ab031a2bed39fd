"""The config schema (config/schema.yaml) and the one way its violations are worded.

Every block a job reads (an LLM role, a serve block, sampling params, the evaluation engine)
has its rules in the schema's ``$defs``. The workflow checks the whole config against the
schema before the first job; a job that reads one block checks that block against the same
``$defs`` entry with :func:`check`. One set of rules, so the two can never disagree, and no
module keeps hand-written type and range checks of its own.

Why our own error text: jsonschema's messages name schema internals; a user who mistyped a key
needs the dotted key, the value they gave, and what is allowed, in one line each. A schema
node may carry ``x-message`` (what to say when it fails, for rules between keys) and
``x-hint`` (a sentence added to any message about it).
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.safe_load(fh)


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


def definition(name: str) -> dict[str, Any]:
    """The schema's ``$defs/<name>`` (read-only by convention)."""
    return _schema()["$defs"][name]


def _resolve(ref: str) -> dict[str, Any]:
    """The schema node a local ``$ref`` (``#/$defs/...``) points to; {} for none."""
    node: Any = _schema()
    for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
        node = node[part]
    return node if isinstance(node, dict) else {}


def descriptions(name: str) -> dict[str, str]:
    """``{key: description}`` of an object in ``$defs``: the documentation of its keys."""
    props = definition(name).get("properties", {})
    out = {}
    for key, sub in props.items():
        text = sub.get("description") or _resolve(sub.get("$ref", "")).get("description", "")
        out[key] = " ".join(str(text).split())
    return out


def with_defaults(validator_class: type) -> type:
    """A validator that also fills in `default:` values from the schema."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # type: ignore[no-untyped-def]
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


_NAMES = "names may hold letters, digits, '.', '_' and '-' and start with a letter or digit"
_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


def _show(value: Any) -> str:
    """The value as the user wrote it, short, and without credentials in a URL."""
    text = repr(value)
    if isinstance(value, str):
        text = repr(_USERINFO.sub("***@", value))
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_keys(schema: Mapping[str, Any]) -> list[str]:
    return sorted(schema.get("properties", {}))


def _hinted(text: str, schema: Mapping[str, Any]) -> str:
    hint = schema.get("x-hint")
    return f"{text} ({hint})" if hint else text


def describe_error(error: jsonschema.ValidationError, prefix: Sequence[Any] = ()) -> str:
    """One readable line for a schema violation: key, value, what is allowed.

    ``prefix`` is where the checked value sits in the config (e.g. ``llm.judge.serve``).
    """
    path = [*prefix, *error.absolute_path]
    key = _key(path)
    kind, schema, value = error.validator, error.schema, error.instance
    if "x-message" in schema:
        if isinstance(value, Mapping):
            return f"{key} {schema['x-message']}"
        return f"{key} = {_show(value)} {schema['x-message']}"
    if kind == "additionalProperties" and isinstance(value, dict):
        extra = sorted(set(value) - set(schema.get("properties", {})))
        allowed = ", ".join(_allowed_keys(schema)) or "(none)"
        where = f" under '{key}'" if path else ""
        bad = _key([*path, extra[0]])
        return _hinted(f"unknown key '{bad}'; allowed keys{where}: {allowed}", schema)
    if "propertyNames" in error.schema_path:
        if "pattern" in schema:  # a name that becomes part of paths, wildcards or variables
            return (
                f"{key}: name {value!r} is not allowed; {schema.get('x-names', _NAMES)} "
                f"(pattern {schema['pattern']})"
            )
        allowed = ", ".join(map(str, schema.get("enum", [])))
        return f"unknown key '{key}.{value}'; allowed keys under '{key}': {allowed}"
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        desc = schema.get("properties", {}).get(missing, {}).get("description", "")
        desc = " ".join(str(desc).split())
        return f"missing key '{_key([*path, missing])}' (required). {desc}".strip()
    desc = " ".join(str(schema.get("description", "")).split())
    if kind == "pattern":
        hint = schema.get("x-hint")
        rule = f"must be {hint}" if hint else f"does not match the pattern {schema['pattern']}"
        return f"{key} = {_show(value)} {rule}"
    if kind in _BOUNDS:
        bound = f"{_BOUNDS[kind]} {error.validator_value}"
        return f"{key} = {_show(value)} must be {bound}. {desc}".strip()
    if kind == "enum":
        allowed = ", ".join("null" if v is None else str(v) for v in error.validator_value)
        return f"{key} = {_show(value)} is not allowed; allowed values: {allowed}"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"{key} = {_show(value)} has the wrong type; expected {expected}. {desc}".strip()
    return _hinted(f"{key} = {_show(value)}: {error.message}. {desc}".strip(), schema)


def _by_path(error: jsonschema.ValidationError) -> list[str]:
    return list(map(str, error.path))


def _expand(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """An ``anyOf`` failure as the errors of the one alternative the value was meant for.

    ``serve: {$ref: serve} or null`` fails as a whole when the block has a typo; the user
    needs the typo, not "not valid under any of the given schemas". Alternatives that fail
    only on the value's type (the null one) are set aside; if every alternative does, the
    error is a type error listing all the types allowed.
    """
    if error.validator not in ("anyOf", "oneOf") or "x-message" in error.schema:
        return [error]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.schema_path[0], []).append(sub)
    meant = [
        subs
        for subs in branches.values()
        if not all(e.validator == "type" and not e.relative_path for e in subs)
    ]
    if len(meant) == 1:
        return [deeper for sub in meant[0] for deeper in _expand(sub)]
    types = [sub.validator_value for subs in branches.values() for sub in subs]
    if types and len(meant) == 0:
        flat = [t for v in types for t in (v if isinstance(v, list) else [v])]
        error.validator, error.validator_value = "type", list(dict.fromkeys(flat))
    return [error]


def problems(
    instance: Any, schema: Mapping[str, Any], prefix: Sequence[Any] = (), *, defaults: bool = False
) -> list[str]:
    """Every violation of ``schema`` by ``instance``, one line each, sorted by key.

    ``defaults`` fills in the schema's ``default:`` values (in place) while checking.
    """
    cls = jsonschema.validators.validator_for(schema)
    validator = (with_defaults(cls) if defaults else cls)(schema)
    errors = sorted(
        (e for top in validator.iter_errors(instance) for e in _expand(top)), key=_by_path
    )
    return [describe_error(e, prefix) for e in errors]


def check(value: Any, name: str, where: str) -> list[str]:
    """The problems of one config block against ``$defs/<name>``; ``where`` is its dotted key.

    Nothing is filled in: a job reads the block exactly as the workflow handed it over.
    """
    root = _schema()
    schema = {"$schema": root.get("$schema"), "$defs": root["$defs"], "$ref": f"#/$defs/{name}"}
    return problems(value, schema, where.split(".") if where else ())
