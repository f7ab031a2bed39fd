"""Hub revisions that stay put: the commits that floating revisions resolved to, in a lock file.

Why: a config entry that says ``revision: main`` (or any branch or tag: anything that is not a
40-hex commit id) reads whatever the hub holds that day, so two runs a month apart could read
different data under the same config. The first job that downloads such an entry records the
commit the revision pointed to, from the hub's own metadata (``HfApi().dataset_info`` /
``model_info(repo, revision=...).sha``; offline, the HF cache's ``refs/<revision>``), in a lock
file beside the config (``hub_lock``, config/hub.lock.yaml by default; like requirements/lock.txt
for packages). Every later run loads that commit. A commit pinned in the config itself never
touches the lock. The lock file reads::

    datasets:
      zwhe99/MATH:
        main: 0123456789abcdef0123456789abcdef01234567
    models:
      zwhe99/DeepMath-1.5B:
        main: ...

How Snakemake sees it (the design):

- The job resolves and locks, at download time: a pull (``deepmath.pull``) or ``prepare_model``
  of a floating entry reads the lock when it runs; an entry not there yet is resolved, written to
  the lock (under a mutex: parallel jobs share the file) and loaded at that commit. Its stats and
  output (the parquet's ``attrs["hub"]``, the model folder's provenance) record the commit.
- Params never carry the locked commit: the first lock (unlocked -> commit) would change them and
  rerun that pull and everything downstream of it, the whole paper pipeline.
- Each floating entry has a stamp file, ``results/.hub-lock/<lock file>/<entry>``, that holds its
  locked commit or ``unlocked`` and is an input of every job that reads the entry, from the first
  parse on (so the set of inputs never changes with the lock). Parse-time code (rules/common.smk,
  :func:`sync_stamps`) keeps it equal to the lock, and its modification time is what Snakemake
  compares with the outputs:

  - a new stamp gets an old mtime (2000-01-01): it never makes existing outputs stale;
  - unlocked -> commit (the first lock: the job that pulled at that commit wrote it, or
    ``python -m deepmath.hublock lock``) keeps the stamp's mtime: nothing reruns;
  - commit -> another commit (an edited or refreshed entry), or commit -> unlocked (a deleted
    one), stamps the current time: the stamp is newer than the outputs of the jobs that read the
    entry, with a content Snakemake has not recorded for them, so those jobs rerun (and what
    depends on them), and no other. Changing an entry back before running reruns nothing
    (Snakemake compares the stamp's checksum with the one it recorded).

  The stamps are read and written under the same mutex as the lock, so a parse never writes a
  view of the lock older than the one another process already stamped.

CLI: ``python -m deepmath.hublock {status,lock,refresh} --config config/config.yaml``
(:mod:`deepmath.hublock.cli`; kept out of this module, which the pull jobs import, because
it loads and checks the whole config and so imports what every stage needs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from deepmath.configfile import ConfigError, read_yaml
from deepmath.io import DeepmathError, atomic_path

COMMIT = re.compile(r"^[0-9a-f]{40}$")
# `datasets` builders that read local files: a load with one of these as `path` is no hub repo
LOCAL_BUILDERS = frozenset({"json", "parquet", "csv", "text", "arrow"})
SECTIONS = {"dataset": "datasets", "model": "models"}  # repo type -> lock section
UNLOCKED = "unlocked"
OLD_MTIME = 946684800  # 2000-01-01: a new stamp is older than every output
STAMP_ROOT = "results/.hub-lock"
DEFAULT_LOCK = "config/hub.lock.yaml"
LOCK_ENV = "DEEPMATH_HUB_LOCK"  # the lock file of the run, set at parse time for every job
HEADER = """\
# Hub commits of the config's floating revisions (`revision: main`, a branch or a tag), written
# by the job that first downloads each one; every later run loads these commits. Commit this
# file with the config. Refresh one: python -m deepmath.hublock refresh --config <config>
# --entry <repo>[@<revision>]; edit or delete an entry and the jobs that read it run again.
"""
MUTEX_STALE_S = 120.0  # a mutex folder older than this was left by a killed process

log = logging.getLogger("deepmath.hublock")


@dataclass(frozen=True, order=True)
class HubRef:
    """One hub repo at one revision, as the config names it."""

    repo_type: str  # dataset | model
    repo_id: str
    revision: str

    @property
    def floating(self) -> bool:
        """A branch or tag name (anything but a full commit id) moves with the hub."""
        return not COMMIT.match(self.revision)

    @property
    def section(self) -> str:
        return SECTIONS[self.repo_type]

    @property
    def label(self) -> str:
        return f"{self.repo_type} {self.repo_id} at revision {self.revision!r}"

    @property
    def stamp_name(self) -> str:
        """A file name for the entry (HF cache style: datasets--owner--name@revision)."""
        return f"{self.section}--{self.repo_id.replace('/', '--')}@{quote(self.revision, safe='')}"


# --------------------------------------------------------------------------- the config's refs


def is_hub_dataset(load: Mapping[str, Any]) -> bool:
    """A ``load`` block that names a hub repo (not a local builder, folder or pkg:// path)."""
    path = str(load.get("path") or "")
    local = path in LOCAL_BUILDERS or path.startswith(("/", ".", "~", "pkg://"))
    return bool(path) and not local and not os.path.isdir(path)


def dataset_ref(load: Mapping[str, Any]) -> HubRef | None:
    """The hub dataset a ``load`` block reads (revision ``main`` when it gives none)."""
    if not is_hub_dataset(load):
        return None
    return HubRef("dataset", str(load["path"]), str(load.get("revision") or "main"))


def model_ref(spec: Mapping[str, Any]) -> HubRef | None:
    """The hub model a ``models:`` entry downloads (None for gguf and local models)."""
    hub = spec.get("hub")
    if not isinstance(hub, Mapping):
        return None
    return HubRef("model", str(hub["repo_id"]), str(hub.get("revision") or "main"))


def config_refs(config: Mapping[str, Any]) -> dict[str, HubRef]:
    """Every hub repo the config names, by the config key of its revision
    (``benchmarks.aime24.load.revision``, ``models.orz-7b.hub.revision``, ...)."""
    loads: list[tuple[str, Any]] = []
    for section in ("sources", "benchmarks"):
        loads += [(f"{section}.{n}", e) for n, e in (config.get(section) or {}).items()]
    compare = (config.get("analysis") or {}).get("compare") or {}
    loads += [(f"analysis.compare.{n}", e) for n, e in compare.items()]
    audits = (config.get("audit") or {}).get("datasets") or {}
    loads += [(f"audit.datasets.{n}", e) for n, e in audits.items()]
    loads.append(("rl.published", (config.get("rl") or {}).get("published")))
    refs: dict[str, HubRef] = {}
    for key, entry in loads:
        load = (entry or {}).get("load") if isinstance(entry, Mapping) else None
        ref = dataset_ref(load) if isinstance(load, Mapping) else None
        if ref:
            refs[f"{key}.load.revision"] = ref
    for name, spec in (config.get("models") or {}).items():
        ref = model_ref(spec) if isinstance(spec, Mapping) else None
        if ref:
            refs[f"models.{name}.hub.revision"] = ref
    return refs


# --------------------------------------------------------------------------- the lock file


def read_lock(path: str | os.PathLike[str]) -> dict[HubRef, str]:
    """The lock's entries (none when the file does not exist); a malformed file is one
    ConfigError line naming the file, the entry and what is allowed."""
    if not os.path.exists(path):
        return {}
    data = read_yaml(path) or {}
    if not isinstance(data, Mapping) or set(data) - set(SECTIONS.values()):
        found = ", ".join(map(str, data)) if isinstance(data, Mapping) else repr(data)
        raise ConfigError(
            f"{path}: a hub lock holds the sections {' and '.join(SECTIONS.values())} "
            f"(found: {found})"
        )
    out: dict[HubRef, str] = {}
    for repo_type, section in SECTIONS.items():
        repos = data.get(section) or {}
        if not isinstance(repos, Mapping):
            raise ConfigError(f"{path}: {section} is a mapping of repo: {{revision: commit}}")
        for repo, revisions in repos.items():
            if not isinstance(revisions, Mapping):
                raise ConfigError(f"{path}: {section}.{repo} is a mapping of revision: commit")
            for revision, commit in revisions.items():
                if not isinstance(commit, str) or not COMMIT.match(commit):
                    raise ConfigError(
                        f"{path}: {section}.{repo}.{revision} is {commit!r}; a locked revision "
                        "is a 40-hex commit id (delete the entry to resolve it again)"
                    )
                out[HubRef(repo_type, str(repo), str(revision))] = commit
    return out


def write_lock(path: str | os.PathLike[str], entries: Mapping[HubRef, str]) -> None:
    """The lock file, sorted, with its header; written atomically."""
    data: dict[str, dict[str, dict[str, str]]] = {}
    for ref in sorted(entries):
        data.setdefault(ref.section, {}).setdefault(ref.repo_id, {})[ref.revision] = entries[ref]
    with atomic_path(path) as tmp:
        tmp.write_text(HEADER + yaml.safe_dump(data, sort_keys=True), encoding="utf-8")


@contextlib.contextmanager
def mutex(path: str | os.PathLike[str], timeout_s: float = 300.0) -> Iterator[None]:
    """Hold the lock file's mutex: a folder beside it, created atomically (also on NFS) and
    removed on exit, so parallel jobs (and parse-time stamp updates) take turns.

    A mutex folder older than two minutes was left by a killed process and is taken over.
    """
    folder = Path(f"{os.fspath(path)}.mutex")
    folder.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if time.time() - folder.stat().st_mtime > MUTEX_STALE_S:
                    folder.rmdir()
                    continue
            if time.monotonic() > deadline:
                raise DeepmathError(
                    f"{folder} has been held for {timeout_s:.0f} s; if no job runs, remove it"
                ) from None
            time.sleep(0.05)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            folder.rmdir()


# --------------------------------------------------------------------------- resolution


def offline() -> bool:
    """HF_HUB_OFFLINE, read now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_cache() -> Path:
    """The HF hub cache folder, as huggingface_hub finds it (read now, not at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.environ[name]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def repo_folder(repo_type: str, repo_id: str) -> Path:
    """A repo's folder in the HF cache (datasets--owner--name)."""
    return hub_cache() / f"{SECTIONS[repo_type]}--{repo_id.replace('/', '--')}"


def cached_commit(ref: HubRef) -> str | None:
    """The commit the HF cache's ``refs/<revision>`` records (what the last download saw)."""
    path = repo_folder(ref.repo_type, ref.repo_id) / "refs" / ref.revision
    try:
        commit = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return commit if COMMIT.match(commit) else None


def cached_snapshot(repo_type: str, repo_id: str, commit: str) -> Path | None:
    """The HF cache's snapshot folder of a commit, if there is one."""
    folder = repo_folder(repo_type, repo_id) / "snapshots" / commit
    return folder if folder.is_dir() else None


def resolve_commit(ref: HubRef) -> tuple[str, str]:
    """The commit ``ref.revision`` points to now, and where that was read ("hub" or "HF cache").

    The hub's own metadata when it can be reached; offline (HF_HUB_OFFLINE, or no network) the
    HF cache's refs, which record what the last download of that revision saw.
    """
    reason = "HF_HUB_OFFLINE is set"
    if not offline():
        try:
            return _hub_commit(ref), "hub"
        except DeepmathError:
            raise
        except Exception as err:  # no network, a proxy, a timeout: fall back to the cache
            reason = f"the hub cannot be reached ({type(err).__name__})"
    commit = cached_commit(ref)
    if commit:
        return commit, "HF cache"
    raise DeepmathError(
        f"{ref.label}: cannot resolve the revision to a commit: {reason} and the HF cache "
        f"({hub_cache()}) has no refs/{ref.revision} for it. Run the job where the hub is "
        f"reachable, or `hf download {ref.repo_id} --revision {ref.revision}"
        f"{' --repo-type dataset' if ref.repo_type == 'dataset' else ''}` there and point "
        "HF_HOME at that cache, or pin a 40-hex commit in the config"
    )


def _hub_commit(ref: HubRef) -> str:
    """The hub's answer; a repo or revision that does not exist is the user's error."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = HfApi()
    info = api.dataset_info if ref.repo_type == "dataset" else api.model_info
    try:
        sha = info(ref.repo_id, revision=ref.revision, timeout=60).sha
    except OfflineModeIsEnabled:
        raise
    except (RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError) as err:
        raise DeepmathError(
            f"{ref.label}: {type(err).__name__} on the hub; check the repo id and revision in "
            "the config (a gated or private repo needs HF_TOKEN)"
        ) from err
    if not sha or not COMMIT.match(sha):
        raise ConnectionError(f"the hub gave no commit for {ref.label}")
    return sha


def lock_commit(lock_path: str | os.PathLike[str], ref: HubRef) -> tuple[str, str]:
    """The commit a floating ref loads, and where it came from ("lock", "hub", "HF cache").

    Locked: the lock's commit. Not yet: resolved now (outside the mutex: a slow hub holds no
    other job up) and written to the lock under the mutex, unless a parallel job locked the ref
    meanwhile: then its commit wins, so that every job reading the ref loads the same data.
    """
    entries = read_lock(lock_path)
    if ref in entries:
        return entries[ref], "lock"
    commit, where = resolve_commit(ref)
    with mutex(lock_path):
        entries = read_lock(lock_path)
        if ref in entries:
            return entries[ref], "lock"
        write_lock(lock_path, {**entries, ref: commit})
    return commit, where


def pin(ref: HubRef, lock_path: str | None) -> dict[str, Any]:
    """What a job loads for a hub ref, as its records name it: repo, revision, commit and how
    the commit was chosen (pinned in the config, read from the lock, or resolved and locked
    now; resolved without locking when the job has no lock file, as a CLI run by hand)."""
    record = {"type": ref.repo_type, "repo": ref.repo_id, "revision": ref.revision}
    if not ref.floating:
        return {**record, "commit": ref.revision, "pinned_by": "config", "lock": None}
    if lock_path:
        commit, where = lock_commit(lock_path, ref)
        if where != "lock":
            log.info("%s resolved to %s (%s); locked in %s", ref.label, commit, where, lock_path)
    else:
        commit, where = resolve_commit(ref)
        log.warning("%s resolved to %s (%s); no hub_lock: not locked", ref.label, commit, where)
    pinned_by = "lock" if where == "lock" else f"resolved from the {where}"
    return {**record, "commit": commit, "pinned_by": pinned_by, "lock": lock_path}


# --------------------------------------------------------------------------- stamps


def stamp_dir(lock_path: str, root: str = STAMP_ROOT) -> str:
    """The stamps of one lock file (two lock files never share a stamp)."""
    return os.path.join(root, os.path.normpath(lock_path).strip(os.sep).replace(os.sep, "--"))


def _write_stamp(path: Path, content: str, mtime: float | None) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(content + "\n", encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def sync_stamps(
    lock_path: str, refs: Iterable[HubRef], root: str = STAMP_ROOT, write: bool = True
) -> dict[HubRef, str]:
    """Bring the stamp of each floating ref in line with the lock (unless ``write`` is false:
    then only their paths); returns their paths.

    The mtime rules (module docstring) make a first lock no change and any other edit a change.
    """
    floating = sorted({r for r in refs if r.floating})
    if not floating:
        return {}
    folder = Path(stamp_dir(lock_path, root))
    paths = {ref: str(folder / ref.stamp_name) for ref in floating}
    if not write:
        return paths
    with mutex(lock_path):
        entries = read_lock(lock_path)
        for ref in floating:
            want = entries.get(ref, UNLOCKED)
            path = Path(paths[ref])
            try:
                have = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                _write_stamp(path, want, OLD_MTIME)
                continue
            if have == want:
                continue
            first_lock = have == UNLOCKED
            _write_stamp(path, want, path.stat().st_mtime if first_lock else None)
    return paths


def unlocked_warnings(lock_path: str, refs: Mapping[str, HubRef]) -> list[str]:
    """One line per config key whose floating revision the lock does not hold yet."""
    floating = {key: ref for key, ref in refs.items() if ref.floating}
    if not floating:
        return []
    entries = read_lock(lock_path)
    return [
        f"{key}: {ref.label} is not locked in {lock_path}; the job that downloads it will lock "
        "the commit it resolves to (or run `python -m deepmath.hublock lock` now)"
        for key, ref in sorted(floating.items())
        if ref not in entries
    ]
