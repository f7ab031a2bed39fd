"""deepmath.report: the report's figures and tables agree with the dataset card, and read well."""

import html
import json
import re

import pandas as pd
from PIL import Image

from deepmath import dataset, report
from tests.unit.test_dataset import write_stage_stats


def labelled(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"i{i}" for i in range(offset, offset + n)],
            "question": [f"What is {i} + {i}?" for i in range(offset, offset + n)],
            "final_answer": [str(2 * i) for i in range(offset, offset + n)],
            "reference_answer": [str(2 * i) for i in range(offset, offset + n)],
            "difficulty": [1.0 + (i % 9) / 2 for i in range(n)],
            "topic": [
                "Mathematics -> Geometry -> Plane Geometry -> Triangles"
                if i % 3 == 0
                else "Mathematics -> Algebra -> Prealgebra -> Arithmetic"
                for i in range(offset, offset + n)
            ],
            "r1_solution_1": ["\\boxed{x}"] * n,
            "r1_solution_2": ["\\boxed{x}"] * n,
            "r1_solution_3": ["\\boxed{x}"] * n,
        }
    )


CONTAMINATED = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d"],
        "question": ["Is $x<3$ when $x=2$?", "Find 1+1.", "Compute 2+2.", "Solve x^2=4."],
        "bench": ["math500", "math500", "math500", "gsm8k"],
        "bench_id": ["m1", "m2", "m3", "g1"],
        "bench_problem": ["Is $x<3$ when $x=2$?", "Find 1+1.", "What is 2 plus 2?", "x^2=4?"],
        "score": [1.0, 0.99, 0.8, 0.9],
        "indel": [1.0, 1.0, 0.6, 0.7],
        "by": ["string", "string", "judge", "judge"],
        "verdict_ab": [None, None, True, True],
        "verdict_ba": [None, None, True, False],
    }
)


def run_dataset(tmp_path):
    """Assemble a dataset as assemble_dataset does, then build its report from the same files."""
    main_path, supp_path = tmp_path / "main.parquet", tmp_path / "supp.parquet"
    labelled(7).to_parquet(main_path)
    labelled(3, offset=5).drop(columns=["final_answer"]).to_parquet(supp_path)
    stats = write_stage_stats(tmp_path, {"math500": 3, "gsm8k": 1})
    contaminated = tmp_path / "shard.contaminated.parquet"
    CONTAMINATED.to_parquet(contaminated)
    out = tmp_path / "dataset"
    dataset.main(
        ["--main", str(main_path), "--supplement", str(supp_path), "--stats", json.dumps(stats),
         "--config", json.dumps({"run": "t"}), "--num-shards", "2", "--out-dir", str(out)]
    )  # fmt: skip
    shards = sorted(str(p) for p in (out / "data").glob("*.parquet"))
    report.main(
        ["dataset", "--stats", json.dumps(stats), "--main", str(main_path), "--supplement",
         str(supp_path), "--dataset", *shards, "--contaminated", str(contaminated),
         "--threshold", "2", "--out-dir", str(tmp_path / "report")]
    )  # fmt: skip
    return out / "README.md", tmp_path / "report"


def cells(html_text: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", html_text, flags=re.S)
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S) for r in rows]


def test_dataset_report_matches_the_card(tmp_path):
    card, out = run_dataset(tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted(report.DATASET_OUTPUTS)
    card_text = card.read_text()
    funnel_rows = cells((out / "funnel.html").read_text())[1:]
    assert len(funnel_rows) == 8
    for stage, count, *_ in funnel_rows:
        assert f"| {stage} | {count} |" in card_text  # the same funnel, row for row
    published = dict((r[0], r[1]) for r in funnel_rows)
    assert published["published rows"] == "8"  # 7 + 3 supplement - 2 already in main
    assert published["+ supplement (SimpleRL-style set)"] == "1"
    kept = {r[0]: r[2] for r in funnel_rows}
    assert kept["after decontamination"] == "77.8"  # 14 of 18
    assert kept["+ supplement (SimpleRL-style set)"] == "–"  # adds, does not filter

    difficulty = cells((out / "difficulty.html").read_text())[1:]
    for value, rows, _share in difficulty:
        assert f"| {value} | {rows} |" in card_text
    for area, rows, _share in cells((out / "topics.html").read_text())[1:3]:
        assert f"| {html.unescape(area)} | {rows} |" in card_text

    for name in ("funnel.png", "difficulty.png", "topics.png"):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 400 and img.height > 200


def test_contamination_examples_escape_and_put_the_judge_first(tmp_path):
    _, out = run_dataset(tmp_path)
    text = (out / "contamination.html").read_text()
    rows = cells(text)
    assert rows[1] == ["math500", "3"] and rows[2] == ["gsm8k", "1"]
    # math500: the judge's catch first, then the string pre-check hits by score
    math500 = text.split("<h3>math500</h3>")[1].split("<h3>")[0]
    order = [math500.index(q) for q in ("Compute 2+2.", "Is $x&lt;3$", "Find 1+1.")]
    assert order == sorted(order)
    assert "<3$" not in text  # LaTeX is escaped, never markup
    assert "LLM judge" in math500 and "string pre-check" in math500


def test_contamination_examples_limit_per_benchmark():
    shown = report.contamination_examples(CONTAMINATED, per_benchmark=1)
    assert list(shown["id"]) == ["d", "c"]  # gsm8k, math500: one each, judge catches


def test_cost_table_sums_roles_and_names_models():
    usages = [
        {"roles": {"judge": {"model": "llama", "sent": {"requests": 3, "prompt_tokens": 30,
                   "completion_tokens": 3}, "replayed": {"requests": 1, "prompt_tokens": 10,
                   "completion_tokens": 1}, "cost_usd": None}}},
        {"roles": {"rater": {"model": "gpt-4o", "sent": {"requests": 2, "prompt_tokens": 200,
                   "completion_tokens": 20}, "cost_usd": {"total": 1.5}}}},
    ]  # fmt: skip
    table = report.cost_table(usages)
    assert table.to_dict("records") == [
        {"role": "judge", "model": "llama", "requests": 4, "prompt tokens": 40,
         "completion tokens": 4, "USD": "0.00"},
        {"role": "rater", "model": "gpt-4o", "requests": 2, "prompt tokens": 200,
         "completion tokens": 20, "USD": "1.50"},
        {"role": "total", "model": "", "requests": 6, "prompt tokens": 240,
         "completion tokens": 24, "USD": "1.50"},
    ]  # fmt: skip
    page = report.cost_html(usages)
    assert '<tr class="total">' in page and "No LLM requests" not in page
    assert "No LLM requests" in report.cost_html([])


def test_results_page_shows_the_markdown_table_and_the_tidy_rows():
    md = (
        "| Model | n | Run date | MATH-500 | Avg. |\n|---|--:|---|--:|--:|\n"
        "| SmolLM2 | 2 | 2026-11-22 | 8.3 ± 8.3 / 89.9 | 8.3 |\n\npass@1 (%) over n = 2.\n"
    )
    tidy = pd.DataFrame([{"model": "smollm2", "bench": "math500", "pass@1": 8.3, "n": 2}])
    rows = cells(report.results_html(md, tidy))
    assert rows[0] == ["Model", "n", "Run date", "MATH-500", "Avg."]
    assert rows[1] == ["SmolLM2", "2", "2026-11-22", "8.3 ± 8.3 / 89.9", "8.3"]
    assert rows[2] == ["model", "bench", "pass@1", "n"] and rows[3][2] == "8.3"


def test_results_page_has_one_table_per_family():
    table = "| Model | n | MATH500 |\n|---|--:|--:|\n| {} | 16 | {} |\n"
    md = (
        "**Zero RL**\n\n" + table.format("Zero-7B", "85.0 / 85.5 (−0.5)") + "\n"
        "**RL from reasoning models**\n\n"
        + table.format("DeepMath-1.5B", "89.0")
        + "\npass@1 (%) over n = 16.\n"
    )
    tables, notes = report.markdown_tables(md)
    assert [t for t, _ in tables] == ["Zero RL", "RL from reasoning models"]
    assert [rows[1][0] for _, rows in tables] == ["Zero-7B", "DeepMath-1.5B"]
    assert notes == ["pass@1 (%) over n = 16."]
    page = report.results_html(md, pd.DataFrame())
    assert "<h3>Zero RL</h3>" in page and "<h3>RL from reasoning models</h3>" in page
    assert page.index("Zero-7B") < page.index("RL from reasoning") < page.index("DeepMath-1.5B")


def scored_metrics(model: str, bench: str, authors: float, ours: float, flips=(0, 0)) -> dict:
    """A metrics.json of the score step: both scorers' metrics and where they differ."""
    example = {
        "id": f"{bench}-7",
        "sample": 1,
        "gold": "\\frac{1}{2}",
        "authors_pred": "0.5",
        "authors_via": "math_verify",
        "ours_pred": None,
        "ours_reason": "no_answer",
        "ours_method": None,
        "response_tail": "so x < 1 and the answer is 0.5 <script>alert(1)</script>",
        "response_chars": 900,
    }
    return {
        "model_name": model,
        "bench": bench,
        "label": model.upper(),
        "n": 4,
        "problems": 10,
        "samples": 40,
        "scorers": {
            "authors": {"pass@1": authors, "maj@n": authors},
            "ours": {"pass@1": ours, "maj@n": ours},
        },
        "scorer_disagreement": {
            "samples": 40,
            "authors_only": flips[0],
            "ours_only": flips[1],
            "both": 10,
            "neither": 40 - 10 - sum(flips),
            "examples": {"authors_only": [example] if flips[0] else [], "ours_only": []},
        },
        "authors_env": {"versions": {"sympy": "1.13.1"}, "is_exact": True},
    }


def sensitivity_pages(scorer: str = "authors") -> tuple[str, str]:
    """The scorer-sensitivity table and its examples page, as the results_table job writes them."""
    from deepmath.evaluate import table

    metrics = [
        scored_metrics("base", "math500", 30.0, 32.5, flips=(1, 2)),
        scored_metrics("rl", "math500", 50.0, 50.0),
        scored_metrics("base", "gsm8k", 20.0, 17.5, flips=(3, 2)),
    ]
    spec = {"scoring": {"scorer": scorer}, "labels": {"math500": "MATH-500", "gsm8k": "GSM8K"}}
    md, _ = table.sensitivity_table(metrics, spec)
    return md, table.examples_page(metrics, spec)


SECTION = '<h3 id="scorer-sensitivity">Scorer sensitivity'  # the section's heading
MAIN_MD = (
    "| Model | n | MATH-500 |\n|---|--:|--:|\n| BASE | 4 | 30.0 ± 1.0 |\n\n"
    "pass@1 (%) over n = 4. Verdicts: the authors' scorer (evaluation.scoring.scorer: authors).\n"
)


def test_results_page_shows_the_scorer_sensitivity_beside_the_main_table():
    sensitivity, examples = sensitivity_pages()
    tidy = pd.DataFrame([{"model": "base", "bench": "math500", "pass@1": 30.0}])
    page = report.results_html(MAIN_MD, tidy, sensitivity=sensitivity, examples=examples)
    # side by side: the main table, then the sensitivity section, in one row; the tidy rows after
    side = page.split('<div class="side">')[1].split("<h3>Per model and benchmark")[0]
    assert "</section>\n<section>" in side  # two columns of one row
    assert side.index("BASE") < side.index("</section>\n<section>") < side.index(SECTION)
    section = page.split(SECTION)[1].split("<h3>Per model and benchmark")[0]
    rows = cells(section)
    assert rows[0] == [
        "Benchmark", "Model", "n", "Samples", "Authors&#x27; scorer", "Our checker",
        "Ours − authors", "Only authors&#x27; correct", "Only ours correct",
    ]  # fmt: skip
    by_pair = {(r[0], r[1]): r[4:] for r in rows[1:4]}
    assert by_pair == {
        ("GSM8K", "BASE"): ["20.0", "17.5", "−2.5", "3", "2"],
        ("MATH-500", "BASE"): ["30.0", "32.5", "+2.5", "1", "2"],
        ("MATH-500", "RL"): ["50.0", "50.0", "+0.0", "0", "0"],
    }
    per_bench = {r[0]: r[1:] for r in rows if r[0] in ("MATH-500", "GSM8K", "All benchmarks")
                 and len(r) == 8}  # fmt: skip
    assert per_bench["All benchmarks"] == ["2", "120", "33.3", "33.3", "+0.0", "4", "4"]
    assert "sympy 1.13.1: the authors&#x27; pinned versions" in section


def test_the_sensitivity_caption_explains_both_scorers_and_names_the_printed_one():
    for scorer, printed in (("authors", "the authors&#x27; scorer"), ("ours", "our checker")):
        sensitivity, examples = sensitivity_pages(scorer)
        page = report.results_html(MAIN_MD, pd.DataFrame(), sensitivity=sensitivity,
                                   examples=examples)  # fmt: skip
        caption = page.split(SECTION)[1].split("<table>")[0]
        assert "uni_eval" in caption and "pinned environment" in caption  # the authors' scorer
        assert "evaluation.scoring.policy" in caption  # ours
        assert "same responses" in caption
        assert f"prints {printed}&#x27;s verdicts (evaluation.scoring.scorer: {scorer})" in caption
        assert "scorer_disagreements.md" in caption  # the download's name


def test_the_disagreement_examples_are_attached_escaped_and_readable():
    sensitivity, examples = sensitivity_pages()
    page = report.results_html(MAIN_MD, pd.DataFrame(), sensitivity=sensitivity,
                               examples=examples)  # fmt: skip
    attached = page.split('<details id="scorer-disagreements">')[1].split("</details>")[0]
    assert "<summary>The samples the two scorers judge differently" in attached
    assert "<h4>MATH-500</h4>" in attached and "<h4>GSM8K</h4>" in attached
    assert "<script>" not in page  # a response is text, never markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in attached
    assert "<pre>" in attached and "so x &lt; 1" in attached  # the response's end, verbatim
    assert "<code>\\frac{1}{2}</code>" in attached and "<code>math_verify</code>" in attached
    assert "<li>" in attached and "<strong>BASE</strong>" in attached
    assert "```" not in attached and "](" not in attached  # no raw Markdown left
    # its link back to the sensitivity table leads to the section on this page
    assert '<a href="#scorer-sensitivity">the scorer-sensitivity table</a>' in attached
    # the caption's link leads to the attachment on the same page
    assert 'href="#scorer-disagreements"' in page.split("<details")[0]


def test_results_page_without_the_sensitivity_table_is_the_main_table_alone():
    page = report.results_html(MAIN_MD, pd.DataFrame())
    assert "Scorer sensitivity" not in page and "<details" not in page
    assert cells(page)[1] == ["BASE", "4", "30.0 ± 1.0"]


def test_results_cli_reads_the_sensitivity_and_examples_pages(tmp_path):
    sensitivity, examples = sensitivity_pages()
    paths = {name: tmp_path / name for name in ("main.md", "main.csv", "sens.md", "ex.md")}
    paths["main.md"].write_text(MAIN_MD)
    pd.DataFrame([{"model": "base", "bench": "math500", "pass@1": 30.0}]).to_csv(
        paths["main.csv"], index=False
    )
    paths["sens.md"].write_text(sensitivity)
    paths["ex.md"].write_text(examples)
    out = tmp_path / "main_results.html"
    report.main(
        ["results", "--md", str(paths["main.md"]), "--csv", str(paths["main.csv"]),
         "--sensitivity", str(paths["sens.md"]), "--examples", str(paths["ex.md"]),
         "--out", str(out)]
    )  # fmt: skip
    page = out.read_text()
    assert SECTION in page and '<details id="scorer-disagreements">' in page
