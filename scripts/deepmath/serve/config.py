"""A role's ``serve:`` block, validated: what server to start and how (the rules are in the config
schema, ``$defs/serve``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepmath import dtypes, schema
from deepmath.io import (
    DeepmathError,
)

# Keys of a `serve:` block, with their text: the rules live in config/schema.yaml ($defs/serve).
SERVE_KEYS: dict[str, str] = schema.descriptions("serve")


SERVE_DEFAULTS: dict[str, Any] = {
    "engine": "vllm",
    "served_name": None,
    "tensor_parallel": 1,
    "pipeline_parallel": 1,
    "nodes": 1,
    "gpus": None,
    "port": None,
    "host": "127.0.0.1",
    "dtype": dtypes.AUTO,
    "max_model_len": None,
    "gpu_memory_utilization": None,
    "extra_args": [],
    "env": {},
    "startup_timeout_s": 1200.0,
    "share": "job",
}


# vLLM flags the server manager sets itself: in extra_args they would fight the config keys.
MANAGED_FLAGS = {
    "--model": "model",
    "--served-model-name": "served_name",
    "--host": "host",
    "--port": "port",
    "--tensor-parallel-size": "tensor_parallel",
    "-tp": "tensor_parallel",
    "--pipeline-parallel-size": "pipeline_parallel",
    "-pp": "pipeline_parallel",
    "--dtype": "dtype",
    "--max-model-len": "max_model_len",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--device-memory-utilization": "gpu_memory_utilization",
    "--distributed-executor-backend": "nodes",
}


class ServerError(DeepmathError):
    """The server could not be started, did not become ready, or died."""


@dataclass(frozen=True)
class ServeConfig:
    """A validated ``serve:`` block; ``served_name`` is resolved."""

    model: str
    served_name: str
    engine: str = "vllm"
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    nodes: int = 1
    gpus: int | None = None
    port: int | None = None
    host: str = "127.0.0.1"
    dtype: str = dtypes.AUTO
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    extra_args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 1200.0
    share: str = "job"

    @property
    def world_size(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def gpus_per_node(self) -> int:
        """GPUs per node: ``gpus`` if set, else the parallel sizes spread over the nodes."""
        return self.gpus if self.gpus is not None else self.world_size // self.nodes


def serve_config(
    serve: Any,
    *,
    where: str = "serve",
    role_model: str | None = None,
    models: Mapping[str, Any] | None = None,
) -> ServeConfig:
    """Validate a ``serve:`` block; every problem is reported, each naming the dotted key.

    ``role_model`` is the role's ``model`` (the default served name); ``models`` the config's
    ``models:`` mapping, to check that ``serve.model`` names one of its entries.
    """
    problems = schema.check(serve, "serve", where)
    if problems:
        raise DeepmathError(f"invalid {where}:\n  - " + "\n  - ".join(problems))
    values = {**SERVE_DEFAULTS, **{k: v for k, v in serve.items() if v is not None}}
    model = serve.get("model")
    if not model:
        problems.append(f"missing key '{where}.model' (required): {SERVE_KEYS['model']}")
    elif models is not None and model not in models:
        known = ", ".join(sorted(models)) or "(none)"
        problems.append(f"{where}.model = {model!r} is not an entry of models:; known: {known}")
    served_name = values["served_name"] or role_model or model
    extra = [str(arg) for arg in values["extra_args"]]
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            problems.append(
                f"{where}.extra_args sets {flag}, which the server manager sets itself; "
                f"use {where}.{MANAGED_FLAGS[flag]} instead"
            )
    env_out = {
        name: ("1" if value else "0") if isinstance(value, bool) else str(value)
        for name, value in values["env"].items()
    }
    tp, pp, nodes = values["tensor_parallel"], values["pipeline_parallel"], values["nodes"]
    if nodes > 1 and (tp * pp) % nodes:
        problems.append(
            f"{where}: tensor_parallel x pipeline_parallel = {tp * pp} must be a multiple of "
            f"nodes = {nodes} (each node runs the same number of GPU workers)"
        )
    if problems:
        raise DeepmathError(f"invalid {where}:\n  - " + "\n  - ".join(problems))
    gmu = values["gpu_memory_utilization"]
    return ServeConfig(
        model=model,
        served_name=served_name,
        engine=values["engine"],
        tensor_parallel=tp,
        pipeline_parallel=pp,
        nodes=nodes,
        gpus=values["gpus"],
        port=values["port"],
        host=values["host"],
        dtype=values["dtype"],
        max_model_len=values["max_model_len"],
        gpu_memory_utilization=None if gmu is None else float(gmu),
        extra_args=tuple(extra),
        env=env_out,
        startup_timeout_s=float(values["startup_timeout_s"]),
        share=values["share"],
    )


def with_resolved_dtype(cfg: ServeConfig) -> ServeConfig:
    """``cfg`` with ``dtype: auto`` replaced by what this machine runs natively (logged once).

    Called in the job that starts the server, never at config validation: the login node's
    CPU says nothing about a compute node's. A CPU server (``gpus: 0``) always gets an explicit
    dtype, because vLLM's own auto runs a float32 checkpoint in bfloat16 on any x86 CPU.
    """
    device = "cpu" if cfg.gpus_per_node == 0 else "cuda"
    dtype = dtypes.resolve(cfg.dtype, device, what=f"vLLM server {cfg.served_name}")
    return replace(cfg, dtype=dtype)


def role_serve_config(
    name: str, role: Mapping[str, Any], *, models: Mapping[str, Any] | None = None
) -> ServeConfig:
    """The validated ``llm.<name>.serve`` block; the served name defaults to the role's model."""
    if not isinstance(role, Mapping) or role.get("serve") is None:
        raise DeepmathError(f"llm.{name} has no serve: block (it uses an external base_url)")
    model = role.get("model") if isinstance(role.get("model"), str) else None
    return serve_config(role["serve"], where=f"llm.{name}.serve", role_model=model, models=models)


def model_dir_for(config: Mapping[str, Any], cfg: ServeConfig) -> Path:
    """Folder of the served model: ``<models_dir>/<serve.model>`` (built by prepare_model)."""
    return Path(config.get("models_dir", "results/models")) / cfg.model
