"""Replaying a big judge journal: the old way (two full parses, every field kept) vs. the
stage's way now (one pass, line by line, only what a replay needs).

    python tests/benchmarks/bench_journal.py [--entries 445000]

Writes a journal shaped like ``judge_contamination``'s (one entry per pair and order, a
one-word answer, usage and timing fields), then, each in a fresh child process so the peak
memory (max RSS) is its own: (1) the alternative: ``read_journal`` to count what is missing,
then a second full parse keeping every field, as the stage did before; (2) ``Journal.open``,
as ``llmstage.run_stage_requests`` does now. Prints seconds and peak RSS for both; the README
quotes the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

OLD = """
import json, sys
from pathlib import Path
def parse(path):
    entries = {}
    for line in Path(path).read_bytes().split(b"\\n"):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict) and isinstance(e.get("key"), str):
            entries.setdefault(e["key"], e)
    return entries
first = parse(sys.argv[1])   # counting what is missing
second = parse(sys.argv[1])  # the client's own replay
print(len(first), len(second))
"""

NEW = """
import sys
sys.path.insert(0, sys.argv[2])
from deepmath.llm import Journal
with Journal(sys.argv[1]) as j:
    print(len(j.entries))
"""


def write_journal(path: Path, n: int) -> int:
    with path.open("w") as fh:
        for i in range(n):
            entry = {
                "v": 1,
                "key": f"{i:064x}",
                "role": "judge",
                "model": "meta-llama/Llama-3.3-70B-Instruct",
                "sample": i % 2,
                "texts": ["False"],
                "finish_reasons": ["stop"],
                "reasoning": None,
                "usage": {"prompt_tokens": 312, "completion_tokens": 2},
                "attempts": 1,
                "latency_s": 0.4123,
                "finished_at": 1764000000.123 + i,
            }
            fh.write(json.dumps(entry, separators=(",", ":")) + "\n")
    return path.stat().st_size


def measure(code: str, journal: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process running ``code``."""
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [sys.executable, "-c", code, str(journal), str(REPO / "scripts")],
        check=True,
        capture_output=True,
    )
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return took, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=445_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        journal = Path(tmp) / "judge.jsonl"
        size = write_journal(journal, args.entries)
        print(f"journal: {args.entries:,} entries, {size / 1e6:.0f} MB")
        # the new way first: RUSAGE_CHILDREN's max RSS only grows
        new_s, new_mb = measure(NEW, journal)
        old_s, old_mb = measure(OLD, journal)
        print(f"two full parses (before): {old_s:6.1f} s, peak RSS {old_mb:7.0f} MB")
        print(f"one pass, kept fields   : {new_s:6.1f} s, peak RSS {new_mb:7.0f} MB")


if __name__ == "__main__":
    main()
