"""An LLM role (config ``llm.<role>``) as the client uses it: endpoint, sampling params, limits;
checked against the config schema's ``$defs/role``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deepmath import schema
from deepmath.io import DeepmathError, timeout_scale

# Keys a role config may carry (config `llm.<role>`).
# Every key of a role, its type and range live in config/schema.yaml ($defs/role); the
# defaults here are those of keys the schema leaves unset.
ROLE_KEYS = schema.descriptions("role")


ROLE_DEFAULTS: dict[str, Any] = {
    "max_concurrency": 8,
    "timeout_s": 600.0,
    "max_retries": 5,
    "backoff_s": 1.0,
    "backoff_max_s": 60.0,
    "on_rejected": "drop",
    "progress_s": 60.0,
    "stall_s": 300.0,
}


FLOAT_PARAMS = {
    key
    for key, sub in schema.definition("sampling_params")["properties"].items()
    if "number" in sub.get("type", ())
}


# Keys never include the URL, so requests can be built (and checked against the journal)
# before any server exists. This stand-in URL is never contacted: a request that would go to
# it is a bug and fails at once.
NOT_STARTED_URL = "http://127.0.0.1:9/v1"


class LLMError(DeepmathError):
    """A request failed for good; the message names the role and endpoint, never a key."""

    def __init__(self, message: str, *, role: str = "", base_url: str = "", attempts: int = 0):
        super().__init__(message)
        self.role, self.base_url, self.attempts = role, base_url, attempts


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment (where keys sometimes hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass(frozen=True)
class RoleConfig:
    """A validated `llm.<role>` config; ``base_url`` is always set (served or external)."""

    name: str
    model: str
    base_url: str
    api_key_env: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    max_concurrency: int = 8
    timeout_s: float = 600.0
    max_retries: int = 5
    retry_budget: int | None = None  # None: one extra retry per request of the job
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    prices: Mapping[str, float] | None = None
    served: bool = False
    on_rejected: str = "drop"
    progress_s: float = 60.0
    stall_s: float = 300.0
    # What the served model is, beyond its name: a digest of its weights, tokenizer, template and
    # provenance (deepmath.fingerprint.model_digest). Part of every request key, so another
    # checkpoint served under the same name never replays this one's answers. None for an
    # external endpoint, whose model name is all the client can know.
    identity: str | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, safe to print."""
        return safe_url(self.base_url)

    def api_key(self) -> str:
        """The key from the environment variable the config names ("EMPTY" when none)."""
        if not self.api_key_env:
            return "EMPTY"
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise DeepmathError(
                f"LLM role '{self.name}': environment variable {self.api_key_env} is not set; "
                f"it must hold the API key for {self.endpoint} (llm.{self.name}.api_key_env)"
            )
        return value


def normalize_params(params: Mapping[str, Any] | None, where: str = "params") -> dict[str, Any]:
    """Check sampling params ($defs/sampling_params) and normalise their types, so that `1`
    and `1.0` hash alike, a single stop string is a list, and null means unset."""
    if params is None:
        return {}
    problems = schema.check(params, "sampling_params", where)
    if problems:
        raise DeepmathError("; ".join(problems))
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if key in FLOAT_PARAMS:
            value = float(value)
        elif key == "stop" and isinstance(value, str):
            value = [value]
        out[key] = value
    return out


def role_config(name: str, cfg: Mapping[str, Any], *, base_url: str | None = None) -> RoleConfig:
    """Validate config `llm.<name>`; ``base_url`` is the URL of the server a `serve:` role got.

    Raises DeepmathError listing every problem, each naming the dotted key.
    """
    where = f"llm.{name}"
    problems = schema.check(cfg, "role", where)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise DeepmathError(f"invalid LLM role config ({len(problems)} problem(s)):\n{lines}")
    served = cfg.get("serve") is not None
    if served and not base_url:
        raise DeepmathError(
            f"{where} uses serve: but no server URL was handed to the client (start the server "
            "first and pass its base_url)"
        )
    url = base_url if served else cfg["base_url"]
    params = normalize_params(cfg.get("params"), f"{where}.params")
    values = {**ROLE_DEFAULTS, **{k: cfg[k] for k in ROLE_DEFAULTS if cfg.get(k) is not None}}
    if "timeout_s" not in cfg:
        values["timeout_s"] = default_timeout_s(params)
    budget, prices = cfg.get("retry_budget"), cfg.get("prices")
    return RoleConfig(
        name=name,
        model=str(cfg["model"]),
        base_url=str(url),
        api_key_env=cfg.get("api_key_env"),
        params=params,
        max_concurrency=int(values["max_concurrency"]),
        timeout_s=float(values["timeout_s"]) * timeout_scale(),
        max_retries=int(values["max_retries"]),
        retry_budget=None if budget is None else int(budget),
        backoff_s=float(values["backoff_s"]),
        backoff_max_s=float(values["backoff_max_s"]),
        prices={k: float(v) for k, v in prices.items()} if prices else None,
        served=served,
        on_rejected=str(values["on_rejected"]),
        progress_s=float(values["progress_s"]),
        stall_s=float(values["stall_s"]),
    )


def default_timeout_s(params: Mapping[str, Any]) -> float:
    """A per-attempt timeout that fits the role: a 4-token judge answer is not a 32K-token
    solution. 120 s of queueing and prefill plus 0.1 s per output token (10 tokens/s, a busy
    server's pace per request), at most an hour; 600 s when max_tokens is not set."""
    tokens = params.get("max_tokens") or params.get("max_completion_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        return float(ROLE_DEFAULTS["timeout_s"])
    return float(min(3600.0, 120.0 + 0.1 * tokens))


def load_role(config: Mapping[str, Any], name: str, *, base_url: str | None = None) -> RoleConfig:
    """The role `name` from a full workflow config (`config["llm"][name]`)."""
    roles = config.get("llm") or {}
    if name not in roles:
        raise DeepmathError(
            f"missing key 'llm.{name}': no LLM role named '{name}'; defined roles: "
            f"{', '.join(sorted(roles)) or '(none)'}"
        )
    return role_config(name, roles[name], base_url=base_url)
