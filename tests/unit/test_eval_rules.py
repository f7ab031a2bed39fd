"""Each benchmark's scoring rule (deepmath.evaluate), the disagreement report and the two-family
results tables; multiple-choice benchmarks as the pull stage poses them."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from deepmath.evaluate import (
    eval_spec,
    metrics_from_scored,
    results_table,
    score_samples,
    scoring_policy,
    scoring_rule,
)
from deepmath.io import DeepmathError
from deepmath.pull import choice_prompt, normalise_benchmark, shuffled_choices
from tests.paths import REPO

PAPER_RULES = {
    "policy": "eval",
    "text": "whole",
    "rules": {
        "olympiadbench": {"judges": ["olympiad"], "precision": 1e-8},
        "polymath_en": {"judges": ["polymath"]},
        "gpqa_diamond": {"choice": True},
    },
}


def spec_for(**over):
    base = {"model_name": "m", "sampling": {"n": 1}, "scoring": PAPER_RULES}
    base.update(over)
    return eval_spec(base, need_engine=False)


def frame(bench, rows, precision=None):
    """Samples of one benchmark from (id, response, gold); one sample per problem."""
    data = {
        "bench": bench,
        "id": [r[0] for r in rows],
        "problem": "p",
        "answer": [r[2] for r in rows],
        "category": None,
        "sample": 0,
        "response": [r[1] for r in rows],
        "finish_reason": "stop",
        "tokens": 10,
        "model_name": "m",
        "engine": "server",
        "vllm_version": None,
        "sampling_params": json.dumps({"n": 1, "seed": 42}),
        "system_prompt": False,
        "finished_at": 1.7e9,
    }
    if precision is not None:
        data["precision"] = precision
    return pd.DataFrame(data)


def verdicts(bench, rows, precision=None, scoring=PAPER_RULES):
    spec = spec_for(scoring=scoring)
    scored, _ = score_samples(frame(bench, rows, precision), {**spec.scoring, "workers": 1})
    return scored


# --------------------------------------------------------------------------- rules in config


def test_rule_of_a_benchmark_merges_the_defaults_with_its_override():
    scoring = spec_for().scoring
    assert scoring_rule(scoring, "math500") == {
        "text": "whole",
        "judges": (),
        "choice": False,
        "precision": None,
    }
    assert scoring_rule(scoring, "olympiadbench")["judges"] == ("olympiad",)
    assert scoring_rule(scoring, "gpqa_diamond")["choice"] is True
    policy = scoring_policy(scoring, "olympiadbench")
    assert (policy.name, policy.think, policy.judges, policy.precision) == (
        "eval",
        "whole",
        ("olympiad",),
        1e-8,
    )
    # after_think reads after the last </think>, the whole response when there is none
    assert scoring_policy(scoring, "math500", "after_think").think == "prefer"


@pytest.mark.parametrize(
    "scoring, needle",
    [
        (
            {"policy": "lenient"},
            "scoring.policy = 'lenient' is not allowed; allowed values: verify, reward, eval",
        ),
        ({"text": "answer_only"}, "scoring.text = 'answer_only' is not allowed"),
        (
            {"rules": {"x": {"judges": ["olympiadbench"]}}},
            "rules.x.judges.0 = 'olympiadbench' is not allowed; allowed values: olympiad, polymath",
        ),
        (
            {"rules": {"x": {"judge": ["olympiad"]}}},
            "unknown key 'evaluation.scoring.rules.x.judge'",
        ),
        (
            {"rules": {"x": {"choice": "yes"}}},
            "rules.x.choice = 'yes' has the wrong type; expected boolean",
        ),
        ({"rules": {"x": {"precision": -1}}}, "rules.x.precision = -1 must be > 0"),
        ({"rules": ["x"]}, "scoring.rules = ['x'] has the wrong type; expected object"),
    ],
)
def test_scoring_mistakes_name_the_key(scoring, needle):
    with pytest.raises(DeepmathError) as err:
        eval_spec({"model_name": "m", "scoring": scoring}, need_engine=False)
    assert needle in str(err.value)


def test_table_keys_are_checked():
    with pytest.raises(DeepmathError, match="family = 'zer0' is not a family"):
        eval_spec(
            {"model_name": "m", "families": {"zero": "Zero"}, "family": "zer0"}, need_engine=False
        )
    with pytest.raises(
        DeepmathError, match="paper.math500 = '85.5' has the wrong type; expected number"
    ):
        eval_spec({"model_name": "m", "paper": {"math500": "85.5"}}, need_engine=False)


# --------------------------------------------------------------------------- scoring per benchmark


def test_default_rule_is_the_authors_or_over_the_whole_response():
    scored = verdicts(
        "math500",
        [
            ("box-in-thinking", "<think>so \\boxed{18}</think>", "18"),
            ("answer-is", "We add. The answer is: 12", "12"),
            ("wrong", "\\boxed{5}", "6"),
            ("math-verify", "Therefore $x = \\frac{1}{2}$ is the value we want", "0.5"),
        ],
    )
    assert scored["correct_ours"].tolist() == [True, True, False, True]
    assert set(scored.columns) >= {"pred", "reason", "method", "correct_whole"}


def test_olympiad_judge_adds_what_the_official_judge_accepts():
    # two answers in another order; a value the problem lets within its own tolerance
    rows = [
        ("tuple", "<think>hmm</think> So $\\boxed{3}$ and $\\boxed{1}$.", "1, 3"),
        ("tolerance", "<think>hmm</think> \\boxed{3.14}", "3.14159"),
        ("wrong", "<think>hmm</think> \\boxed{7}", "5"),
    ]
    with_judge = verdicts("olympiadbench", rows, precision=[None, 1e-2, None])
    assert with_judge["correct_ours"].tolist() == [True, True, False]
    assert with_judge["method"].iloc[1] == "olympiad"
    # the same tolerance case under the default 1e-8 (no per-problem value) is wrong
    strict = verdicts("olympiadbench", rows[1:2])
    assert strict["correct_ours"].tolist() == [False]
    # and MATH500, which has no judge, stays strict as well
    assert verdicts("math500", rows[1:2], precision=[1e-2])["correct_ours"].tolist() == [False]


def test_polymath_first_box_is_ored_in():
    # the first box right, a later one wrong: only PolyMath's own extraction accepts it
    rows = [("first", "\\boxed{42} is my answer. Check: \\boxed{41}", "42")]
    assert verdicts("polymath_en", rows)["correct_ours"].tolist() == [True]
    assert verdicts("polymath_en", rows)["method"].iloc[0] == "polymath"
    assert verdicts("math500", rows)["correct_ours"].tolist() == [False]


@pytest.mark.parametrize(
    "response, gold, right",
    [
        ("The energy spread gives \\boxed{D}", "D", True),
        ("<think>A or B? Not A.</think> \\boxed{(B)}", "B", True),
        ("\\boxed{\\text{C}}", "\\boxed{C}", True),
        ("So the answer is (A).", "A", True),
        ("Answer: B", "B", True),
        ("\\boxed{A}", "D", False),
        ("I think (A) is tempting but \\boxed{C}", "A", False),
        ("the options are close", "B", False),
    ],
)
def test_multiple_choice_is_scored_on_the_letter(response, gold, right):
    scored = verdicts("gpqa_diamond", [("q", response, gold)])
    assert bool(scored["correct_ours"].iloc[0]) == right


# --------------------------------------------------------------------------- disagreement


def test_metrics_report_how_many_samples_the_two_readings_score_differently():
    rows = [
        # only in the thinking: the whole-response rule scores it, after </think> nothing
        ("a", "<think>it is \\boxed{3}</think>", "3"),
        # the final box disagrees with the thinking's: both readings take the final one
        ("b", "<think>\\boxed{2}</think> so \\boxed{4}", "4"),
        # no </think>: one reading
        ("c", "\\boxed{9}", "9"),
        # the part after </think> is right, the thinking's last box is not the last box
        ("d", "<think>try \\boxed{1}</think> The answer is: 5", "5"),
    ]
    spec = spec_for()
    scored, links = score_samples(frame("math500", rows), {**spec.scoring, "workers": 1})
    assert scored["correct_whole"].tolist() == [True, True, True, True]
    assert scored["correct_after_think"].tolist() == [False, True, True, True]
    assert scored["correct_ours"].tolist() == scored["correct_whole"].tolist()  # configured: whole
    metrics = metrics_from_scored(scored, links, spec)
    assert metrics["text_rules"] == {
        "whole": 100.0,
        "after_think": 75.0,
        "samples_differ": 1,
        "only_whole": 1,
        "only_after_think": 0,
        "samples": 4,
    }
    assert metrics["scoring"]["text"] == "whole" and metrics["scoring"]["policy"] == "eval"
    # configured the other way round, the verdicts follow the after-think reading
    other = spec_for(scoring={**PAPER_RULES, "text": "after_think"})
    scored, _ = score_samples(frame("math500", rows), {**other.scoring, "workers": 1})
    assert scored["correct_ours"].tolist() == [False, True, True, True]


# --------------------------------------------------------------------------- tables


def fake(model, bench, p1, differ=0):
    scored = {"pass@1": p1, "pass@1_std": 1.0, "pass@k": {"1": p1}}
    return {
        "model_name": model,
        "bench": bench,
        "scorers": {"authors": scored, "ours": scored},
        "n": 16,
        "problems": 500,
        "generated_at": "2026-11-30T10:00:00+00:00",
        "text_rules": {"whole": p1, "after_think": p1 - 1, "samples_differ": differ},
    }


def test_two_families_print_as_two_tables_with_ours_minus_paper():
    spec = {
        "benchmarks": ["math500", "gpqa_diamond"],
        "average": ["math500"],
        "families": {"zero": "Zero RL", "reasoning": "RL from reasoning models"},
        "labels": {"math500": "MATH500", "gpqa_diamond": "GPQA-Diamond"},
        "models": {
            "base": {"model": "b", "label": "Qwen2.5-7B-Base", "family": "zero",
                     "paper": {"math500": 54.8}},
            "zero-ours": {"checkpoint": "z", "label": "DeepMath-Zero-7B (ours)",
                          "family": "zero", "paper": {"math500": 85.5, "gpqa_diamond": 41.7}},
            "r1": {"model": "r1", "label": "R1-Distill-Qwen-1.5B", "family": "reasoning"},
        },
    }  # fmt: skip
    md, csv = results_table(
        [fake("zero-ours", "math500", 86.0, differ=12), fake("r1", "math500", 84.7)], spec
    )
    blocks = md.split("\n\n")
    assert blocks[0] == "**Zero RL**"
    zero = blocks[1].splitlines()
    assert zero[0] == "| Model | n | Run date | MATH500 | GPQA-Diamond | Avg. |"
    assert zero[2] == "| Qwen2.5-7B-Base | – | – | – / 54.8 | – | – / 54.8 |"
    assert zero[3] == (
        "| DeepMath-Zero-7B (ours) | 16 | 2026-11-30 | 86.0 ± 1.0 / 85.5 (+0.5) | – / 41.7 "
        "| 86.0 / 85.5 |"
    )
    assert blocks[2] == "**RL from reasoning models**"
    assert blocks[3].splitlines()[2] == (
        "| R1-Distill-Qwen-1.5B | 16 | 2026-11-30 | 84.7 ± 1.0 | – | 84.7 |"
    )
    assert "mean over MATH500" in md
    row = csv[(csv["model"] == "zero-ours") & (csv["bench"] == "math500")].iloc[0]
    assert (row["delta"], row["family"], row["samples_differ"]) == (0.5, "zero", 12)
    assert row["pass@1_after_think"] == 85.0
    # a published number nobody reproduced yet is still a row of the CSV
    assert len(csv[(csv["model"] == "zero-ours") & (csv["bench"] == "gpqa_diamond")]) == 1


# --------------------------------------------------------------------------- multiple choice


def test_choice_prompt_and_seeded_shuffle():
    options, letter = shuffled_choices("Q?", "right", ["w1", "w2", "w3"], seed=42)
    assert sorted(options) == ["right", "w1", "w2", "w3"]
    assert options["ABCD".index(letter)] == "right"
    assert shuffled_choices("Q?", "right", ["w1", "w2", "w3"], seed=42) == (options, letter)
    text = choice_prompt("Q?", ["x", "y"])
    assert text == (
        "Q?\n\n\n(A) x\n(B) y\n\nPlease write your final answer in the form of "
        "\\boxed{A}, or \\boxed{B}"
    )


def test_multiple_choice_benchmark_rows():
    raw = pd.DataFrame(
        {
            "Question": [f"Question {i}?" for i in range(40)] + ["Broken?"],
            "Correct Answer": ["yes"] * 41,
            "Incorrect Answer 1": ["no"] * 41,
            "Incorrect Answer 2": ["maybe"] * 41,
            "Incorrect Answer 3": ["never"] * 40 + [None],
            "High-level domain": ["Physics"] * 41,
        }
    )
    spec = {
        "fields": {
            "problem": "Question",
            "answer": "Correct Answer",
            "distractors": ["Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"],
            "category": "High-level domain",
        },
        "answer": "multiple_choice",
    }
    table, stats = normalise_benchmark(raw, spec, "gpqa_diamond", seed=42)
    assert stats["malformed_no_problem"] == 1 and stats["rows"] == 40  # an option is missing
    assert set(table["answer"]) == {"A", "B", "C", "D"}  # the right answer moves around
    for problem, letter in zip(table["problem"], table["answer"], strict=True):
        assert f"({letter}) yes" in problem
        assert problem.endswith("\\boxed{C}, or \\boxed{D}")
    assert set(table["category"]) == {"Physics"}
    with pytest.raises(DeepmathError, match="needs fields.distractors"):
        normalise_benchmark(raw, {**spec, "fields": {"problem": "Question"}}, "x")


def test_per_problem_precision_column_is_optional():
    raw = pd.DataFrame(
        {"question": ["a", "b"], "final_answer": [["1"], ["2"]], "error": [None, "1e-1"]}
    )
    spec = {"fields": {"problem": "question", "answer": "final_answer", "precision": "error"},
            "answer": "column"}  # fmt: skip
    table, _ = normalise_benchmark(raw, spec, "olympiadbench")
    assert pd.isna(table["precision"].iloc[0]) and table["precision"].iloc[1] == 0.1
    table, _ = normalise_benchmark(raw.drop(columns="error"), spec, "olympiadbench")
    assert table["precision"].isna().all()


# --------------------------------------------------------------------------- layout


def test_evaluate_package_imports_no_stage_module():
    """The evaluation reuses the shared pieces (checker, LLM client, server, metrics), never a
    curation stage: each stage module is a CLI with its own job."""
    import ast
    from pathlib import Path

    import deepmath.evaluate

    # (models: a model folder's own context length, read where the model is prepared)
    shared = {"answers", "dtypes", "evaluate", "fingerprint", "io", "llm", "llmstage", "metrics",
              "models", "schema", "serve", "workflow"}  # fmt: skip
    package = Path(deepmath.evaluate.__file__).parent
    used = set()
    for file in package.glob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deepmath."):
                used.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                used |= {a.name.split(".")[1] for a in node.names if a.name.startswith("deepmath.")}
    assert used <= shared, sorted(used - shared)
    assert len((package / "score.py").read_text().splitlines()) < 600


def test_an_evaluation_job_depends_only_on_what_it_reads():
    """Labels, families and published numbers reach the table only: editing them must not
    rerun a GPU generation (Snakemake reruns a job whose params changed)."""
    from deepmath.workflow import eval_job_spec

    ev = {
        "benchmarks": ["math500", "gpqa_diamond"],
        "sampling": {"n": 16, "temperature": 0.6},
        "engine": {"kind": "offline", "gpus": 1},
        "scoring": PAPER_RULES,
        "families": {"zero": "Zero RL"},
        "models": {"m": {"model": "x", "label": "M", "family": "zero", "system_prompt": True,
                         "paper": {"math500": 85.5}}},
    }  # fmt: skip
    gen = eval_job_spec(ev, "m", "generate")
    # (the engine's placement and concurrency reach the job apart from its params)
    assert gen == {
        "sampling": {"n": 16, "temperature": 0.6},
        "engine": {"kind": "offline"},
        "system_prompt": True,
        "model_name": "m",
    }
    tuned = {**ev, "engine": {"kind": "offline", "gpus": 2, "max_concurrency": 4, "timeout_s": 9}}
    assert eval_job_spec(tuned, "m", "generate") == gen
    relabelled = {**ev, "models": {"m": {**ev["models"]["m"], "label": "M2", "paper": {}}}}
    assert eval_job_spec(relabelled, "m", "generate") == gen
    score = eval_job_spec(ev, "m", "score", "gpqa_diamond")
    assert score["scoring"]["rules"] == {"gpqa_diamond": {"choice": True}}
    other_rule = {**ev, "scoring": {**PAPER_RULES, "rules": {"gpqa_diamond": {"choice": True}}}}
    assert eval_job_spec(other_rule, "m", "score", "gpqa_diamond") == score
    assert eval_job_spec(ev, "m", "score", "math500")["scoring"]["rules"] == {}
    eval_spec(gen)  # each job's spec is a valid spec on its own
    eval_spec(score, need_engine=False)


# --------------------------------------------------------------------------- two scorers

# Samples the two scorers judge differently, one per known cause (found by running both):
# the authors' math_equal accepts the gold times or over 100 (a percentage either way); it
# reads a digit-space-digit as a sum (`1 000` is 1 + 000); our checker reads a stated
# "the answer is (A)" where the authors need a box or "The answer is: " on the last line.
AUTHORS_ONLY = [
    ("pct", "The rate is \\boxed{50}", "0.5"),
    ("per-cent", "so \\boxed{0.05}", "5"),
]
OURS_ONLY = [
    ("stated", "So the answer is (A).", "A"),
    ("spaced", "In all \\boxed{1 000}", "1000"),
]
AGREE = [
    ("both-right", "\\boxed{\\frac{1}{2}}", "0.5"),
    ("both-wrong", "\\boxed{7}", "8"),
    # a percent sign on the right number: both accept it
    ("pct-sign", "The rate is \\boxed{50\\%}", "0.5"),
]


def test_authors_rule_comes_from_the_judge_unless_set():
    from deepmath.evaluate import authors_rule

    scoring = spec_for().scoring
    assert authors_rule(scoring_rule(scoring, "olympiadbench")) == "olympiad"
    assert authors_rule(scoring_rule(scoring, "polymath_en")) == "polymath"
    # GPQA-Diamond: the authors score the boxed letter with their general rule
    assert authors_rule(scoring_rule(scoring, "gpqa_diamond")) == "general"
    assert authors_rule(scoring_rule(scoring, "math500")) == "general"
    explicit = {**PAPER_RULES, "rules": {"x": {"judges": ["olympiad"], "authors_rule": "general"}}}
    assert authors_rule(scoring_rule(spec_for(scoring=explicit).scoring, "x")) == "general"


@pytest.mark.parametrize(
    "scoring, needle",
    [
        (
            {"scorer": "theirs"},
            "evaluation.scoring.scorer = 'theirs' is not allowed; allowed values: authors, ours",
        ),
        (
            {"rules": {"x": {"authors_rule": "olympic"}}},
            "rules.x.authors_rule = 'olympic' is not allowed; allowed values: general, olympiad, "
            "polymath",
        ),
    ],
)
def test_scorer_mistakes_name_the_key(scoring, needle):
    with pytest.raises(DeepmathError) as err:
        eval_spec({"model_name": "m", "scoring": scoring}, need_engine=False)
    assert needle in str(err.value)


def test_a_bad_scorer_stops_the_config_check_and_the_table():
    from deepmath.config import load_config, validate_config
    from deepmath.evaluate import table_scorer

    with pytest.raises(DeepmathError, match="scoring.scorer = 'best'"):
        table_scorer({"scoring": {"scorer": "best"}})
    assert table_scorer({}) == "authors" and table_scorer({"scoring": {"scorer": "ours"}}) == "ours"
    config = load_config([REPO / "config" / "demo.yaml"])
    config["evaluation"]["scoring"]["scorer"] = "best"
    with pytest.raises(DeepmathError, match="evaluation.scoring.scorer = 'best' is not allowed"):
        validate_config(config)


def test_both_verdicts_are_each_scorers_own(tmp_path):
    """The two columns are what each scorer answers when run by itself on the same rows."""
    from deepmath.answers import check_answer
    from deepmath.answers.authors.pool import AuthorsPool

    rows = AUTHORS_ONLY + OURS_ONLY + AGREE
    for bench in ("math500", "gpqa_diamond"):
        scored = verdicts(bench, rows)
        with AuthorsPool(workers=1) as pool:
            direct = pool.eval_verdicts([(r, g, "general", None) for _, r, g in rows])
        assert scored["correct_authors"].tolist() == [v.correct for v in direct]
        assert scored["authors_via"].tolist() == [v.via for v in direct]
        policy = scoring_policy(spec_for().scoring, bench)
        ours = [check_answer(r, g, **policy.options()).equivalent for _, r, g in rows]
        assert scored["correct_ours"].tolist() == ours
    scored = verdicts("math500", rows)
    assert scored["correct_authors"].tolist() == [True, True, False, False, True, False, True]
    assert scored["correct_ours"].tolist() == [False, False, True, True, True, False, True]


def test_olympiad_tolerance_of_a_problem_is_ours_alone():
    """The authors pass 1e-8 to OlympiadBench's judge for every problem; our checker uses the
    problem's own tolerance where the benchmark gives one."""
    rows = [("tolerance", "<think>hmm</think> \\boxed{3.14}", "3.14159")]
    scored = verdicts("olympiadbench", rows, precision=[1e-2])
    assert scored["correct_ours"].tolist() == [True] and scored["method"].iloc[0] == "olympiad"
    assert scored["correct_authors"].tolist() == [False]
    # and both accept answers in another order (OlympiadBench's judge pairs them up)
    rows = [("tuple", "<think>hmm</think> So $\\boxed{3}$ and $\\boxed{1}$.", "1, 3")]
    scored = verdicts("olympiadbench", rows)
    assert scored["correct_authors"].tolist() == scored["correct_ours"].tolist() == [True]


def scored_metrics(model, bench, rows):
    spec = spec_for(model_name=model)
    samples = frame(bench, rows).assign(model_name=model)
    scored, links = score_samples(samples, {**spec.scoring, "workers": 1})
    return metrics_from_scored(scored, links, spec)


@pytest.fixture(scope="module")
def two_models():
    """metrics of two models on two benchmarks, with disagreements both ways."""
    return [
        scored_metrics("m1", "math500", AUTHORS_ONLY + OURS_ONLY + AGREE),
        scored_metrics("m2", "math500", AGREE + AUTHORS_ONLY[:1]),
        scored_metrics(
            "m1",
            "gpqa_diamond",
            [
                ("g1", "\\boxed{D}", "D"),
                ("stated", "So the answer is (A).", "A"),
                ("answer-colon", "Answer: B", "B"),
            ],
        ),  # fmt: skip
    ]


def test_disagreements_are_counted_and_kept_as_examples(two_models):
    m1 = two_models[0]
    differ = m1["scorer_disagreement"]
    assert (differ["authors_only"], differ["ours_only"], differ["samples"]) == (2, 2, 7)
    assert (differ["both"], differ["neither"]) == (2, 1)
    assert [e["id"] for e in differ["examples"]["authors_only"]] == ["pct", "per-cent"]
    pct = next(e for e in differ["examples"]["authors_only"] if e["id"] == "pct")
    assert (pct["gold"], pct["authors_pred"], pct["authors_via"]) == ("0.5", "50", "boxed")
    assert pct["ours_reason"] == "mismatch" and pct["response_tail"].endswith("\\boxed{50}")
    stated = next(e for e in differ["examples"]["ours_only"] if e["id"] == "stated")
    assert stated["authors_pred"] is None and stated["authors_via"] is None
    assert (stated["ours_pred"], stated["ours_reason"]) == ("(A)", "match")
    # each scorer's metrics from its own column: 4 of 7 right for each, not the same 4
    assert m1["scorers"]["authors"]["pass@1"] == m1["scorers"]["ours"]["pass@1"] == 57.1
    assert m1["scorers"]["authors"]["counts"]["accepted_by"] == {"boxed": 4}
    assert m1["authors_env"]["versions"] and "is_exact" in m1["authors_env"]


def test_sensitivity_table_and_examples_page(two_models):
    from deepmath.evaluate import examples_page, sensitivity_table

    spec = {"benchmarks": ["math500", "gpqa_diamond"], "labels": {"math500": "MATH-500"},
            "models": {"m1": {"label": "Model One"}, "m2": {}}}  # fmt: skip
    md, frame = sensitivity_table(two_models, spec)
    # largest |ours − authors| first: m1 on GPQA (+66.7), m2 on MATH-500 (−25.0), m1 there (0)
    assert frame[["model", "bench"]].values.tolist() == [
        ["m1", "gpqa_diamond"],
        ["m2", "math500"],
        ["m1", "math500"],
    ]
    row = frame.iloc[1]
    assert (row["pass@1_authors"], row["pass@1_ours"], row["ours_minus_authors"]) == (
        75.0,
        50.0,
        -25.0,
    )
    assert (row["authors_only"], row["ours_only"]) == (1, 0)
    lines = md.splitlines()
    assert "| MATH-500 | m2 | 1 | 4 | 75.0 | 50.0 | −25.0 | 1 | 0 |" in lines
    assert "| MATH-500 | Model One | 1 | 7 | 57.1 | 57.1 | +0.0 | 2 | 2 |" in lines
    assert "| gpqa_diamond | Model One | 1 | 3 | 33.3 | 100.0 | +66.7 | 0 | 2 |" in lines
    # per benchmark: pass@1 averaged over the models, counts summed; then all of them
    assert "| MATH-500 | 2 | 11 | 66.1 | 53.6 | −12.5 | 3 | 2 |" in lines
    assert "| All benchmarks | 2 | 14 | 55.1 | 69.0 | +13.9 | 3 | 4 |" in lines
    assert "pure scoring" in md and "(scorer_disagreements.md)" in md
    assert "the authors' pinned versions" in md or "NOT the authors' pinned" in md

    page = examples_page(two_models, spec)
    assert "## MATH-500" in page and "## gpqa_diamond" in page
    assert "### Only the authors' scorer judges these correct (3 samples over 2 models)" in page
    assert "### Only our checker judges these correct (2 samples over 2 models)" in page
    assert "**m2**, problem `pct`, sample 0: gold `0.5`" in page
    assert "- the authors' scorer: extracted `50`, accepted by `boxed`" in page
    assert "- our checker: extracted `(A)`, `match` (by `string`)" in page
    assert "```text\nThe rate is \\boxed{50}\n```" in page
    # gpqa: no sample only the authors accept
    gpqa = page.split("## gpqa_diamond")[1]
    assert "(0 samples over 1 models)\n\nNone." in gpqa


def test_the_scorer_switch_changes_the_main_table_and_only_it(two_models, tmp_path):
    from deepmath.evaluate import write_table

    paths = []
    for i, m in enumerate(two_models):
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(json.dumps(m))
    spec = {"benchmarks": ["math500", "gpqa_diamond"],
            "paper_results": {"m2": {"math500": 70.0}}}  # fmt: skip
    out = {}
    for scorer in ("authors", "ours"):
        d = tmp_path / scorer
        d.mkdir()
        write_table(paths, {**spec, "scoring": {"scorer": scorer}}, out_md=d / "main.md",
                    out_csv=d / "main.csv", out_sensitivity_md=d / "s.md",
                    out_sensitivity_csv=d / "s.csv", out_examples=d / "e.md")  # fmt: skip
        out[scorer] = {f.name: f.read_text() for f in d.iterdir()}
    a, o = out["authors"], out["ours"]
    assert a["s.csv"] == o["s.csv"] and a["e.md"] == o["e.md"]
    # the sensitivity page names the scorer the main table uses, nothing else changes
    named = re.compile(r"The results table prints [^)]*\)\.")
    assert named.sub("", a["s.md"]) == named.sub("", o["s.md"]) and a["s.md"] != o["s.md"]
    assert "| m2 | 1 | 2023-11-14 | 75.0 / 70.0 (+5.0) |" in a["main.md"]
    assert "| m2 | 1 | 2023-11-14 | 50.0 / 70.0 (−20.0) |" in o["main.md"]
    assert "Verdicts: the authors' scorer (evaluation.scoring.scorer: authors)" in a["main.md"]
    main_a = pd.read_csv(tmp_path / "authors" / "main.csv")
    main_o = pd.read_csv(tmp_path / "ours" / "main.csv")
    assert set(main_a["scorer"].dropna()) == {"authors"} and set(main_o["scorer"].dropna()) == {
        "ours"
    }
    assert main_a["pass@1"].tolist() != main_o["pass@1"].tolist()


def test_the_switch_reruns_the_table_not_the_scoring():
    from deepmath.workflow import eval_job_spec, eval_table_spec

    ev = {"benchmarks": ["math500"], "scoring": {**PAPER_RULES, "scorer": "authors"},
          "models": {"m": {"model": "x"}}}  # fmt: skip
    flipped = {**ev, "scoring": {**PAPER_RULES, "scorer": "ours"}}
    assert eval_job_spec(ev, "m", "score", "math500") == eval_job_spec(
        flipped, "m", "score", "math500"
    )
    assert "scorer" not in eval_job_spec(ev, "m", "score", "math500")["scoring"]
    assert eval_table_spec(ev)["scoring"] == {"scorer": "authors"}
    assert eval_table_spec(flipped)["scoring"] == {"scorer": "ours"}


def test_metrics_from_before_the_two_scorers_say_how_to_rescore():
    old = {"model_name": "m", "bench": "math500", "pass@1": 50.0, "n": 1}
    with pytest.raises(DeepmathError, match="no 'authors' scorer's metrics.*forcerun score_eval"):
        results_table([old], {"benchmarks": ["math500"]})


def test_a_models_own_scorer_is_refused():
    """The table prints one scorer for every model: a model's own choice would be ignored."""
    from deepmath.config import load_config, validate_config

    config = load_config([REPO / "config" / "demo.yaml"])
    config["evaluation"]["models"]["smollm2"]["scoring"] = {"scorer": "ours"}
    with pytest.raises(DeepmathError, match="smollm2.scoring.scorer: one scorer's verdicts"):
        validate_config(config)


# --------------------------------------------------------------------------- the job's share


@pytest.mark.parametrize(
    "configured, threads, expected",
    [
        (None, 3, 3),  # the rule's threads size both pools
        (8, 3, 3),  # never more than the job was given
        (2, 8, 2),  # the config may ask for fewer
        (4, None, 4),  # a hand-run command: the config's
        (None, None, None),  # neither: the pools use the cores this process may use
    ],
)
def test_workers_are_the_jobs_threads_at_most(configured, threads, expected):
    from deepmath.evaluate.score import job_workers

    assert job_workers({"workers": configured}, threads) == expected


def test_workers_below_one_are_refused():
    from deepmath.evaluate.score import job_workers

    with pytest.raises(DeepmathError, match="--workers 0: at least 1"):
        job_workers({"workers": None}, 0)


def test_score_cli_takes_the_jobs_threads_and_records_the_authors_bounds(tmp_path):
    """`--workers` (score_eval passes its threads) sizes the pools; metrics.json says how the
    authors' scorer ran: its hard deadline per pair, its hash seed and its worker count."""
    import subprocess
    import sys

    from deepmath.answers.authors.pool import DEFAULT_TIMEOUT_S
    from tests.paths import REPO as repo

    rows = AGREE + AUTHORS_ONLY
    gen = tmp_path / "responses.parquet"
    frame("math500", rows).to_parquet(gen, index=False)
    spec = json.dumps({"model_name": "m", "sampling": {"n": 1}, "scoring": PAPER_RULES})
    out = tmp_path / "metrics.json"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo / "scripts"), "HOME": str(tmp_path),
           "PYTHONHASHSEED": "random"}  # fmt: skip
    cmd = [sys.executable, "-m", "deepmath.evaluate", "score", "--in", str(gen),
           "--spec", spec, "--out", str(out), "--workers", "1"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(out.read_text())
    assert metrics["scoring"]["authors_timeout_s"] == DEFAULT_TIMEOUT_S == 30.0
    assert metrics["authors_env"]["workers"] == 1
    assert metrics["authors_env"]["hash_seed"] == "0"
    assert metrics["scorers"]["authors"]["counts"]["correct"] == 4
