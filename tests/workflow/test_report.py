"""`snakemake --report` on a finished demo run: every section is there, with the run's numbers.

The report needs the whole demo DAG (dataset, evaluation, results table) under the run name
`pytest-demo`, the run test_demo.py makes earlier in the same session. The fixture asks
Snakemake for the report rules' outputs, forcing those three rules to run, and lets it bring
the rest up to date: after test_demo.py that is the report jobs plus what test_demo's
journal-replay test left outdated (a changed usage file: dataset, GRPO and eval re-run from
their journals, ~40 s); run alone on a fresh clone it is the whole demo (~10-15 min on 2 CPU
cores). It never skips for want of a run. Modification times alone do not trigger reruns
(`--rerun-triggers` without `mtime`): test_demo's partial rebuilds leave newer files with the
same contents upstream.
"""

import base64
import json
import re
import shutil
import time

import pandas as pd
import pytest
from PIL import Image

from tests.apt import apt_install, can_install
from tests.workflow.helpers import DEMO_CONFIGS, REPO, job_counts, snakemake

pytestmark = pytest.mark.slow

RESULTS = REPO / "results" / "pytest-demo"
REPORT_RULES = ("report_dataset", "report_cost", "report_results")
# Every result the report must show: (category, subcategory, file name).
EXPECTED = [
    ("Dataset", "Funnel", "funnel.png"),
    ("Dataset", "Funnel", "funnel.html"),
    ("Dataset", "Difficulty", "difficulty.png"),
    ("Dataset", "Difficulty", "difficulty.html"),
    ("Dataset", "Topics", "topics.png"),
    ("Dataset", "Topics", "topics.html"),
    ("Dataset", "Contamination", "contamination.html"),
    ("Cost", None, "cost.html"),
    ("Evaluation", None, "main_results.html"),
    ("Evaluation", None, "main_results.csv"),
    ("Evaluation", None, "scorer_sensitivity.csv"),
    ("Evaluation", None, "scorer_disagreements.md"),
]
# results_table's outputs (under tables/, upstream of report_results)
TABLES = ("main_results.csv", "scorer_sensitivity.csv", "scorer_disagreements.md")
# The analyses and the audit of the release: (category, subcategory, path under the run).
ANALYSES = [
    ("Analyses", "Answer types", "analysis/answer_types.png"),
    ("Analyses", "Answer types", "report/analysis/answer_types.html"),
    ("Analyses", "Embedding map", "analysis/map.png"),
    ("Analyses", "Contamination rates", "analysis/contamination.png"),
    ("Analyses", "Contamination rates", "report/analysis/contamination_rates.html"),
    ("Analyses", "Novelty", "report/analysis/novelty.html"),
    ("Analyses", "String check", "report/analysis/string_check.html"),
    ("Analyses", "Difficulty", "analysis/difficulty_comparison.png"),
    ("Audits", "release", "report/audit/release.html"),
]
EXPECTED += [(c, s, path.rsplit("/", 1)[1]) for c, s, path in ANALYSES]
TARGETS = [
    f"results/pytest-demo/report/{name}"
    for category, _, name in EXPECTED
    # results_table's outputs, upstream of report_results; the analyses lie elsewhere
    if name not in TABLES and category not in ("Analyses", "Audits")
] + [f"results/pytest-demo/{path}" for *_, path in ANALYSES]


@pytest.fixture(scope="module")
def built(venv_env, tmp_path_factory):
    """The finished demo run (made or completed here) and its report, as a self-contained HTML."""
    start = time.perf_counter()
    # targets first: --configfile takes every argument after it
    run = snakemake(
        *TARGETS,
        "--forcerun", *REPORT_RULES,
        "--rerun-triggers", "code", "input", "params", "software-env",
        "--profile", "profiles/demo",
        "--configfile", *DEMO_CONFIGS,
        env=venv_env, timeout=3600,
    )  # fmt: skip
    run_s = time.perf_counter() - start
    counts = job_counts(run.stdout + run.stderr)
    for rule in REPORT_RULES:
        assert counts.get(rule) == 1, counts
    out = tmp_path_factory.mktemp("report") / "report.html"
    start = time.perf_counter()
    snakemake("--report", str(out), "--configfile", *DEMO_CONFIGS, env=venv_env, timeout=600)
    report_s = time.perf_counter() - start
    print(f"demo/report jobs {run_s:.0f} s ({counts}), --report {report_s:.1f} s")
    return {"html": out, "text": out.read_text(), "counts": counts}


def script_json(text: str, name: str):
    """The JSON a Snakemake report keeps in `<script id="NAME"> var NAME = ...; </script>`."""
    match = re.search(rf'<script id="{name}">\s*var {name} = (.*?);\s*</script>', text, re.S)
    assert match, f"no {name} block in the report"
    return json.loads(match.group(1))


def decoded(entry: dict) -> bytes:
    """The embedded file of a result (a base64 data URI)."""
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1])


@pytest.fixture(scope="module")
def results(built):
    by_name = {}
    for path, entry in script_json(built["text"], "results").items():
        by_name[entry["name"]] = {**entry, "path": path}
    return by_name


def test_report_rules_are_cheap(built):
    """Why `rule all` builds them: seconds, against minutes for any LLM stage of the demo."""
    for rule in REPORT_RULES:
        timing = (RESULTS / "timings" / f"{rule}.tsv").read_text().splitlines()
        seconds = float(timing[1].split("\t")[0])
        assert seconds < 120, (rule, seconds)


def test_every_section_is_in_its_category(built, results):
    categories = script_json(built["text"], "categories")
    for category, subcategory, name in EXPECTED:
        assert name in results, f"{name} missing from the report: {sorted(results)}"
        path = results[name]["path"]
        subcats = categories[category]
        where = subcats[subcategory] if subcategory else [p for ps in subcats.values() for p in ps]
        assert path in where, (name, category, subcategory, subcats)
        assert len(results[name]["caption"]) > 100, f"{name} has no caption"
    assert {n for n in results} == {name for *_, name in EXPECTED}


def test_workflow_description_opens_the_report(built):
    desc = json.loads(re.search(r"var workflow_desc = (.*?);\s*</script>", built["text"], re.S)[1])
    assert "DeepMath-103K, rebuilt" in desc and "pytest-demo" in desc
    for link in ("Dataset", "Cost", "Evaluation", "Analyses", "Audits"):
        assert f"app.showCategory('{link}')" in desc


def test_funnel_matches_the_dataset_card(results):
    card = (RESULTS / "dataset" / "README.md").read_text()
    page = decoded(results["funnel.html"]).decode()
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([\d,]+)</td>", page)
    assert [r[0] for r in rows][:2] == ["raw pool (all sources)", "after exact + near-exact dedup"]
    assert len(rows) == 8
    for stage, count in rows:
        assert f"| {stage} | {count.replace(',', '')} |" in card, (stage, count)
    published = dict(rows)["published rows"]
    assert int(published.replace(",", "")) > 0


def test_figures_are_real_pngs(results, tmp_path):
    for name in ("funnel.png", "difficulty.png", "topics.png", "answer_types.png", "map.png",
                 "contamination.png", "difficulty_comparison.png"):  # fmt: skip
        path = tmp_path / name
        path.write_bytes(decoded(results[name]))
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 200
            colours = img.convert("RGB").getcolors(maxcolors=1 << 16) or []
            assert len(colours) > 20, f"{name} looks empty"


def test_tables_hold_the_run_s_numbers(results):
    contamination = decoded(results["contamination.html"]).decode()
    # the demo seeds MATH test rows into the pool; they are removed and shown with their match
    assert "<h3>math</h3>" in contamination or "<h3>math500</h3>" in contamination
    assert "string pre-check" in contamination
    topics = decoded(results["topics.html"]).decode()
    assert "Mathematics -&gt;" in topics
    difficulty = decoded(results["difficulty.html"]).decode()
    assert "rated rows" in difficulty
    cost = decoded(results["cost.html"]).decode()
    for role in ("judge", "rater", "rewriter", "solver", "topic", "eval"):
        assert f"<td>{role}</td>" in cost, role
    assert '<tr class="total">' in cost
    table = decoded(results["main_results.html"]).decode()
    assert "MATH-500" in table and "SmolLM2" in table
    # beside it, the same samples judged by both scorers; the examples attached
    sensitivity = table.split('<h3 id="scorer-sensitivity">')[1].split("</section>")[0]
    assert "Authors&#x27; scorer" in sensitivity and "Our checker" in sensitivity
    assert "All benchmarks" in sensitivity and "pinned versions" in sensitivity
    assert '<details id="scorer-disagreements">' in table and "<h4>MATH-500</h4>" in table


@pytest.fixture(scope="module")
def browser():
    """Chromium for the screenshots, installed with apt when missing (skip where impossible)."""
    import screenshot_report

    if screenshot_report.find_browser() is None:
        why = can_install()
        if why:
            pytest.skip(f"Chromium is not installed and apt cannot install it here ({why})")
        proc = apt_install(["chromium"])
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert screenshot_report.find_browser(), "apt installed chromium but it is not on PATH"
    return screenshot_report


def test_screenshot_renders_the_report(built, tmp_path, browser):
    """The report renders in a real browser (Chromium) and shows the funnel figure."""
    screenshot_report = browser
    png = tmp_path / "funnel.png"
    seen = screenshot_report.screenshot(built["html"], png, show="funnel.png")
    assert screenshot_report.rendered(seen["dom"]), "the report's app did not render"
    assert "screenshot: showing" in seen["dom"]
    assert seen["blank"] is None, seen["blank"]
    keep = REPO / "results" / "pytest-demo" / "report-screenshot.png"
    shutil.copyfile(png, keep)  # to look at after the run


def test_analysis_and_audit_pages_hold_the_run_s_numbers(results):
    """Each analysis page shows this run's numbers, and the audit page the audit's."""
    novelty = decoded(results["novelty.html"]).decode()
    for name in ("ours", "math_train", "math_test", "gsm8k_train", "mawps"):
        assert f"<td>{name}</td>" in novelty, name
    strings = decoded(results["string_check.html"]).decode()
    counts = pd.read_csv(RESULTS / "analysis" / "string_check.csv").set_index("dataset")
    assert int(counts.loc["math_test", "hits"]) > 0  # MATH test holds the MATH-500 problems
    assert f">{int(counts.loc['math_test', 'hits']):,}</td>" in strings
    rates = decoded(results["contamination_rates.html"]).decode()
    assert "<td>math500</td>" in rates and "final_found" in rates
    audit = json.loads((RESULTS / "audit" / "release" / "audit.json").read_text())
    page = decoded(results["release.html"]).decode()
    assert "Audit: " in page and "solutions checked" in page
    assert f">{audit['rows']:,}</td>" in page


@pytest.mark.parametrize("show", ["map.png", "release.html"])
def test_screenshot_shows_an_analysis_and_the_audit(built, tmp_path, browser, show):
    """The analyses and the audit open in a real browser as a click in the report opens them."""
    screenshot_report = browser
    png = tmp_path / "shown.png"
    seen = screenshot_report.screenshot(built["html"], png, show=show)
    assert screenshot_report.rendered(seen["dom"]), "the report's app did not render"
    assert "screenshot: showing" in seen["dom"] and show in seen["dom"], seen["dom"][-2000:]
    assert seen["blank"] is None, seen["blank"]
