"""A real Hugging Face hub cache on disk, for tests that must run offline.

The layout huggingface_hub writes: ``<cache>/<type>s--owner--name/`` with ``refs/<revision>``
holding a commit id, ``snapshots/<commit>/<path>`` as relative symlinks into ``blobs/<sha256>``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pandas as pd

COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


def repo_dir(cache: Path, repo_type: str, repo_id: str) -> Path:
    return cache / f"{repo_type}s--{repo_id.replace('/', '--')}"


def add_snapshot(
    cache: Path, repo_type: str, repo_id: str, commit: str, files: dict[str, bytes]
) -> Path:
    """Files of one commit: blobs by content hash, the snapshot's symlinks pointing at them."""
    repo = repo_dir(cache, repo_type, repo_id)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for rel, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def set_ref(cache: Path, repo_type: str, repo_id: str, revision: str, commit: str) -> None:
    """Point ``revision`` at ``commit``, as a download of that revision would."""
    refs = repo_dir(cache, repo_type, repo_id) / "refs"
    (refs / revision).parent.mkdir(parents=True, exist_ok=True)
    (refs / revision).write_text(commit)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def problems(tag: str, n: int = 2) -> pd.DataFrame:
    """A tiny benchmark whose rows say which commit they came from."""
    return pd.DataFrame(
        {
            "problem": [f"{tag}: what is {i} + {i}?" for i in range(n)],
            "answer": [str(2 * i) for i in range(n)],
        }
    )


def add_dataset(cache: Path, repo_id: str, commits: dict[str, str], main: str) -> None:
    """A dataset repo with one test split per commit (rows tagged with the given tag), and
    ``refs/main`` at ``main``."""
    for commit, tag in commits.items():
        data = parquet_bytes(problems(tag))
        add_snapshot(cache, "dataset", repo_id, commit, {"data/test-00000-of-00001.parquet": data})
    set_ref(cache, "dataset", repo_id, "main", main)
