"""Fingerprints of resumable state: state is reused only for the exact inputs that made it.

A job that resumes (a training work dir with checkpoints, an LLM or evaluation journal) keeps,
next to its state, a JSON record of everything that shapes that state: the spec values that
change outputs, a content digest of each input file, the identity of each model (hub repo and
pinned revision, or a digest of its config, tokenizer, chat template and weights, and the dtype
it was converted to), the reward code and the prompt. On the next attempt the job computes the
record again:

- equal: the state is resumed as before (no answered request is sent again, training resumes
  from its last checkpoint);
- different, or no record at all (state made by an older version): one log line names what
  changed, key by key (old -> new), the old state is moved aside (renamed
  ``<name>.stale-<UTC time>``, kept, never deleted) and the job starts fresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("deepmath.fingerprint")

FINGERPRINT_FILE = "fingerprint.json"  # inside a state folder
FINGERPRINT_SUFFIX = ".fingerprint.json"  # beside a state file
FORMAT = 1

# Files of a model folder that decide what it computes (weights, architecture, tokenizer, chat
# template, generation defaults). Provenance and README files do not.
_MODEL_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.gguf",
    "1_Pooling/config.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# provenance fields that say when or where a folder was made, not what it holds
_PROVENANCE_IGNORED = ("created", "resolved_path")
_DIGEST_CACHE_VERSION = 1


def canonical(value: Any) -> str:
    """One JSON text per value (sorted keys, no spaces), so equal records hash equally."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest(value: Any) -> str:
    """sha256 of a value's canonical JSON."""
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(paths: Iterable[str | os.PathLike[str]]) -> str:
    """One digest over several files' contents, in the given order (names do not count: the
    same data at another path is the same input)."""
    return digest([file_digest(p) for p in paths])


def source_digest(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Digest of code files or folders of ``*.py`` files (e.g. a reward function and the
    checker it calls), by relative name and content."""
    parts: list[tuple[str, str]] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*.py")):
                if "__pycache__" not in f.parts:
                    parts.append((f"{p.name}/{f.relative_to(p).as_posix()}", file_digest(f)))
        else:
            parts.append((p.name, file_digest(p)))
    return digest(parts)


# --------------------------------------------------------------------------- models


def _model_files(folder: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in _MODEL_FILE_PATTERNS:
        found.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(found)


def _cache_path(folder: Path) -> Path:
    return folder.parent / f".{folder.name}.digests.json"


def _cached_digests(folder: Path, files: list[Path]) -> dict[str, str]:
    """Content digests of a model's files, reusing those recorded for the same (size, mtime).

    A 7B checkpoint is ~15 GB; hashing it again on every job of a shard chain would cost
    minutes, so the digests are kept in a small file beside the folder (never inside it: the
    folder is a rule's output).
    """
    cache_file = _cache_path(folder)
    try:
        cache = json.loads(cache_file.read_text())
        if cache.get("v") != _DIGEST_CACHE_VERSION:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    known = cache.get("files") or {}
    out: dict[str, str] = {}
    fresh: dict[str, Any] = {}
    for f in files:
        rel = f.relative_to(folder).as_posix()
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        hit = known.get(rel)
        if (
            isinstance(hit, dict)
            and hit.get("stamp") == stamp
            and isinstance(hit.get("sha256"), str)
        ):
            out[rel] = hit["sha256"]
        else:
            out[rel] = file_digest(f)
        fresh[rel] = {"stamp": stamp, "sha256": out[rel]}
    if fresh != known:
        try:
            tmp = cache_file.with_name(cache_file.name + f".{os.getpid()}.tmp")
            tmp.write_text(canonical({"v": _DIGEST_CACHE_VERSION, "files": fresh}))
            os.replace(tmp, cache_file)
        except OSError:  # a read-only model store: fine, hash again next time
            pass
    return out


def model_identity(
    folder: str | os.PathLike[str] | None, name: str | None = None
) -> dict[str, Any]:
    """What a model folder is, for fingerprints and request keys.

    The provenance record that prepare_model writes (hub repo and revision, GGUF digest and the
    dtype it was converted to) plus a content digest of every file that decides what the model
    computes (config, tokenizer, chat template, weights). Weights pinned by a hub commit are
    immutable, so their digests are skipped there (a 70B folder would take minutes to hash);
    everything else - a floating revision, a converted or copied folder, a trained checkpoint -
    is hashed (cached beside the folder by size and mtime).
    """
    if folder is None:
        return {"name": name}
    folder = Path(folder)
    record: dict[str, Any] = {"name": name} if name else {}
    prov_file = folder / "deepmath-model.json"
    provenance: dict[str, Any] = {}
    if prov_file.is_file():
        try:
            provenance = json.loads(prov_file.read_text())
        except ValueError:
            provenance = {}
    if provenance:
        record["provenance"] = {k: v for k, v in provenance.items() if k not in _PROVENANCE_IGNORED}
    pinned = provenance.get("kind") == "hub" and bool(
        _COMMIT.match(str(provenance.get("resolved_revision") or provenance.get("revision") or ""))
    )
    files = _model_files(folder)
    if pinned:
        files = [f for f in files if not f.name.endswith(_WEIGHT_SUFFIXES)]
    record["files"] = _cached_digests(folder, files)
    return record


def model_digest(folder: str | os.PathLike[str] | None, name: str | None = None) -> str:
    """A short digest of :func:`model_identity` (what request keys carry)."""
    return digest(model_identity(folder, name))[:16]


# --------------------------------------------------------------------------- state


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (lists stay values), for a key-by-key comparison."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for k in sorted(value, key=str):
            out.update(flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix or "(value)": value}


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else canonical(value)
    if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32,64}", value):
        return value[:12]
    return text if len(text) <= width else text[: width - 3] + "..."


_MISSING = object()


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` for every dotted key whose value differs (absent: ``(none)``)."""
    a, b = flatten(old), flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            before = _short(a[key]) if key in a else "(none)"
            after = _short(b[key]) if key in b else "(none)"
            out.append(f"{key}: {before} -> {after}")
    return out


def record_path(state: Path, folder: bool) -> Path:
    """Where a state's fingerprint lives: inside a folder, beside a file."""
    return state / FINGERPRINT_FILE if folder else state.with_name(state.name + FINGERPRINT_SUFFIX)


def read_record(state: str | os.PathLike[str], folder: bool) -> dict[str, Any] | None:
    """The fingerprint record of a state (None: none, or unreadable)."""
    try:
        record = json.loads(record_path(Path(state), folder).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(
    state: str | os.PathLike[str], fingerprint: Mapping[str, Any], folder: bool
) -> dict[str, Any]:
    """Write the fingerprint record of ``state`` (atomically); returns it."""
    path = record_path(Path(state), folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "v": FORMAT,
        "digest": digest(fingerprint),
        "fingerprint": dict(fingerprint),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return record


def _has_state(state: Path, folder: bool) -> bool:
    if folder:
        return state.is_dir() and any(p.name != FINGERPRINT_FILE for p in state.iterdir())
    return state.is_file() and state.stat().st_size > 0


def _aside_name(state: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = state.with_name(f"{state.name}.stale-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = state.with_name(f"{state.name}.stale-{stamp}-{n}")
    return target


def claim(
    state: str | os.PathLike[str],
    fingerprint: Mapping[str, Any],
    what: str,
    *,
    folder: bool,
    adopt_unrecorded: bool = False,
) -> dict[str, Any]:
    """Make ``state`` (a folder, or a file) belong to ``fingerprint`` before a job reuses it.

    Returns ``{"status": "new" | "match" | "moved" | "adopted", "digest", "moved_to",
    "changes"}``. State made under other inputs is renamed aside (with its record) and the job
    starts fresh; a match is resumed. State with no record at all (made before fingerprints
    existed) is moved aside too, unless ``adopt_unrecorded``: a journal's entries are keyed by
    everything that shapes their answer, so an old journal can only replay identical requests
    and is adopted (re-paying a month of API calls after an upgrade would be the wrong default).
    """
    state = Path(state)
    new_digest = digest(fingerprint)
    result: dict[str, Any] = {"digest": new_digest, "moved_to": None, "changes": []}
    if not _has_state(state, folder):
        if folder:
            state.mkdir(parents=True, exist_ok=True)
        write_record(state, fingerprint, folder)
        result["status"] = "new"
        return result
    old = read_record(state, folder)
    if old is not None and old.get("digest") == new_digest:
        log.info(
            "%s: %s matches its inputs (fingerprint %s); resuming", what, state, new_digest[:12]
        )
        result["status"] = "match"
        return result
    if old is None and adopt_unrecorded:
        log.info(
            "%s: %s has no fingerprint (made by an older version); adopting it: its entries are "
            "keyed by what shapes each answer, so only identical requests replay",
            what,
            state,
        )
        write_record(state, fingerprint, folder)
        result["status"] = "adopted"
        return result
    if old is None:
        changes = ["no fingerprint recorded (made by an older version, or by hand)"]
    else:
        changes = differences(old.get("fingerprint") or {}, fingerprint) or [
            f"fingerprint {str(old.get('digest'))[:12]} -> {new_digest[:12]}"
        ]
    target = _aside_name(state)
    os.rename(state, target)
    if not folder and record_path(state, folder).exists():
        os.rename(record_path(state, folder), record_path(target, folder))
    log.warning(
        "%s: %s was made under other inputs (%s); moved it aside to %s and starting fresh",
        what,
        state,
        "; ".join(changes),
        target,
    )
    if folder:
        state.mkdir(parents=True, exist_ok=True)
    write_record(state, fingerprint, folder)
    result.update(status="moved", moved_to=str(target), changes=changes)
    return result


# --------------------------------------------------------------------------- what shapes output

# Keys of an LLM role (config `llm.<role>`, and the evaluation's `engine`) that decide how a job
# runs but never what it answers. They are kept out of rule params, fingerprints and request
# keys, so editing one reruns nothing and replays everything; each with why:
ROLE_RUNTIME_KEYS: dict[str, str] = {
    "max_concurrency": "how many requests are in flight, not what they return",
    "timeout_s": "how long one attempt may take; a timed-out request is retried or fails",
    "progress_s": "how often progress is logged",
    "stall_s": "when a silent endpoint is reported",
    "max_retries": "how often a failed request is tried again",
    "retry_budget": "how many retries the job allows in all",
    "backoff_s": "the wait between retries",
    "backoff_max_s": "the longest wait between retries",
    "prices": "dollars per token: only the cost tables use them (their own small rules)",
    "api_key_env": "which variable holds the key, not which model answers",
}
# Keys of a `serve:` block that place or tune the server without changing its answers.
# (dtype, max_model_len, extra_args, env, model and served_name do change them: they stay.)
SERVE_RUNTIME_KEYS: dict[str, str] = {
    "port": "where the server listens",
    "host": "where the server listens",
    "startup_timeout_s": "how long the job waits for the server to come up",
    "gpu_memory_utilization": "KV-cache room: throughput, not answers",
    "share": "whether jobs of a local run share one server",
    "nodes": "placement (tensor/pipeline parallel split the same model)",
    "gpus": "placement",
    "tensor_parallel": "placement",
    "pipeline_parallel": "placement",
}
# Keys of the evaluation's offline engine settings that tune throughput only.
OFFLINE_RUNTIME_KEYS: dict[str, str] = {
    "gpu_memory_utilization": "KV-cache room: throughput, not answers",
    "batch_problems": "how many problems go to the engine per journaled batch",
    "tensor_parallel": "placement",
}
# The evaluation engine's own placement key.
ENGINE_RUNTIME_KEYS: dict[str, str] = {"gpus": "placement", **ROLE_RUNTIME_KEYS}


def _split(spec: Mapping[str, Any], runtime: Mapping[str, str]) -> tuple[dict, dict]:
    keep = {k: v for k, v in spec.items() if k not in runtime}
    rest = {k: v for k, v in spec.items() if k in runtime}
    return keep, rest


def split_role(spec: Mapping[str, Any], engine: bool = False) -> tuple[dict, dict]:
    """An LLM role (or the evaluation's ``engine``) as (what shapes answers, how it runs).

    ``deep_merge(shaping, runtime)`` gives the spec back.
    """
    shaping, runtime = _split(spec, ENGINE_RUNTIME_KEYS if engine else ROLE_RUNTIME_KEYS)
    for block, keys in (("serve", SERVE_RUNTIME_KEYS), ("offline", OFFLINE_RUNTIME_KEYS)):
        if isinstance(shaping.get(block), Mapping):
            keep, rest = _split(shaping[block], keys)
            shaping[block] = keep
            if rest:
                runtime[block] = rest
    return shaping, runtime


def shaping_role(spec: Mapping[str, Any], engine: bool = False) -> dict[str, Any]:
    return split_role(spec, engine)[0]


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, nested mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def served_identity(
    model_dir: str | os.PathLike[str] | None, serve: Mapping[str, Any] | None, name: str
) -> str:
    """The identity a served model's requests carry: its folder's identity plus the server
    settings that change answers (dtype, context length, extra engine flags)."""
    shaping = _split(serve or {}, SERVE_RUNTIME_KEYS)[0]
    return digest({"model": model_identity(model_dir), "serve": shaping, "name": name})[:16]
