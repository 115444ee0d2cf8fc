"""Lab page (AppTest): it renders, Run draws both figures with the claims, Save stores a study that reads back, bad
settings give an error (no stack trace), a stored study opens, two compare, and the bench section reads its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.lab import QuadraticStudySettings, bench_results, load_study, run_quadratic_study, save_study
from core.store import StudyTable
from tests.app.test_adapt_page import assert_clean, texts

LAB = "screens/lab.py"
# Small enough that a run takes a fraction of a second on a busy machine.
SMALL = {
    "lab_n": 6,
    "lab_tasks": 3,
    "lab_kappa": 50.0,
    "lab_max_steps": 30,
    "lab_outer_steps": 10,
    "lab_outer_iterations": 20,
}
SMALL_SETTINGS = QuadraticStudySettings(
    n=6, tasks=3, kappa=50.0, max_inner_steps=30, outer_inner_steps=10, outer_iterations=20
)


@pytest.fixture
def bench_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty checkout for the bench section: every file "not measured yet" unless a test writes it."""
    root = tmp_path / "checkout"
    (root / "bench" / "results").mkdir(parents=True)
    monkeypatch.setattr(bench_results, "REPO_ROOT", root)
    return root


def chart_ids(at) -> list[str]:
    return [c.proto.id.rsplit("-", 1)[-1] for c in at.get("plotly_chart")]


def chart(at, key: str) -> dict:
    [found] = [c for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    return json.loads(found.proto.spec)


def set_small(at) -> None:
    for key, value in SMALL.items():
        at.number_input(key=key).set_value(value)


def run_small(dashboard):
    at = dashboard.app(LAB).run()
    set_small(at)
    at.button(key="lab_run").click().run()
    assert_clean(at)
    return at


def test_the_page_renders_with_every_bench_file_not_measured_yet(dashboard, bench_root) -> None:
    at = dashboard.app(LAB).run()
    assert_clean(at)
    assert texts(at.title) == ["Lab"]
    assert not at.get("plotly_chart")  # nothing is computed before Run
    infos = texts(at.info)
    assert "No stored study yet: run one above and save it." in infos
    for spec in bench_results.BENCH_FILES.values():
        assert f"not measured yet: {spec.command}" in infos


def test_run_draws_both_figures_the_rates_and_the_claims(dashboard, bench_root) -> None:
    at = run_small(dashboard)
    assert chart_ids(at) == ["lab_left", "lab_right_gd", "lab_right_sngdm", "lab_right_clipped", "lab_delta_sweep"]
    left = chart(at, "lab_left")
    assert left["layout"]["xaxis"]["type"] == "log" and left["layout"]["yaxis"]["type"] == "log"
    expected = run_quadratic_study(SMALL_SETTINGS)
    # the page shows core's numbers: the curves of a fresh study with the same settings, point for point
    assert [t["name"] for t in left["data"]] == [c.label for c in expected.errors]
    maml = next(t for t in left["data"] if t["name"] == "maml")
    assert maml["x"] == list(range(1, 31)) and maml["y"] == expected.error_curve("maml").relative_error
    right = chart(at, "lab_right_gd")
    assert right["layout"]["yaxis"]["type"] == "log"
    gd = expected.panel("gd")
    assert [t["name"] for t in right["data"]] == [f"{c.label} (rate {c.rate:.3g})" for c in gd.curves]
    claims = next(d.value for d in at.dataframe if "verdict" in d.value.columns and "evidence" in d.value.columns)
    assert list(claims["claim"]) == [c.claim for c in expected.claims]
    assert list(claims["verdict"]) == [c.verdict for c in expected.claims]
    rates = next(d.value for d in at.dataframe if "chosen rate" in d.value.columns)
    assert list(rates["chosen rate"]) == [c.rate for c in gd.curves]


def test_save_stores_a_study_that_reads_back_equal(dashboard, bench_root) -> None:
    at = run_small(dashboard)
    shown = at.session_state["lab_study"][1]
    at.text_input(key="lab_save_name").set_value("small family")
    at.button(key="FormSubmitter:lab_save_form-Save study").click().run()
    assert_clean(at)
    table = StudyTable(dashboard.store())
    [summary] = table.list_studies()
    assert (summary.name, summary.kind) == ("small family", "quadratic")
    assert f"Saved as study #{summary.id} “small family”." in texts(at.success)
    assert load_study(table, summary.id) == shown  # float for float
    assert texts(at.subheader)[0] == "Study: small family"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lab_delta", 0.5, "delta must be below L/kappa + lambda"),
        ("lab_outer_steps", 500, "outer_inner_steps (500) must be at most max_inner_steps (100)"),
        ("lab_rate", 2.5, "inner_rate_fraction must be a number above 0 below 2"),
    ],
)
def test_bad_settings_show_an_error_and_compute_nothing(dashboard, bench_root, key, value, message) -> None:
    at = dashboard.app(LAB).run()
    at.number_input(key=key).set_value(value)
    at.button(key="lab_run").click().run()
    assert_clean(at)
    [error] = texts(at.error)
    assert error.startswith("Not run: invalid study settings: ") and message in error
    assert not at.get("plotly_chart")


def test_no_estimator_is_an_error_too(dashboard, bench_root) -> None:
    at = dashboard.app(LAB).run()
    at.multiselect(key="lab_estimators").set_value([])
    at.button(key="lab_run").click().run()
    assert_clean(at)
    assert "choose at least one estimator" in texts(at.error)[0]


def stored(dashboard, name: str, **changes) -> int:
    settings = QuadraticStudySettings(**{**SMALL_SETTINGS.__dict__, **changes})
    return save_study(StudyTable(dashboard.store()), run_quadratic_study(settings), name)


def test_a_stored_study_opens(dashboard, bench_root) -> None:
    first = stored(dashboard, "kappa 50")
    second = stored(dashboard, "kappa 200", kappa=200.0)
    at = dashboard.app(LAB).run()
    assert at.selectbox(key="lab_stored").options[0].startswith(f"#{second} kappa 200")  # newest first
    at.selectbox(key="lab_stored").set_value(first)
    at.button(key="lab_open").click().run()
    assert_clean(at)
    assert texts(at.subheader)[0] == "Study: kappa 50"
    assert at.session_state["lab_study"][1] == load_study(StudyTable(dashboard.store()), first)
    assert "lab_left" in chart_ids(at)
    at.text_input(key="lab_search").set_value("200").run()
    assert len(at.selectbox(key="lab_stored").options) == 1


def test_two_stored_studies_are_overlaid(dashboard, bench_root) -> None:
    first = stored(dashboard, "forward only", estimators=("maml", "fo_b_maml"))
    second = stored(dashboard, "delta 1e-2", estimators=("maml", "fo_b_maml"), delta=1e-2, sngdm=False)
    at = dashboard.app(LAB).run()
    at.multiselect(key="lab_compare").set_value([first, second]).run()
    assert_clean(at)
    left = chart(at, "lab_compare_left")
    assert [t["name"] for t in left["data"]] == [
        f"maml · #{first}",
        f"fo_b_maml (delta=0.001) · #{first}",
        f"maml · #{second}",
        f"fo_b_maml (delta=0.01) · #{second}",
    ]
    assert [t["line"]["dash"] for t in left["data"]] == ["solid", "solid", "dash", "dash"]
    sngdm = chart(at, "lab_compare_right_sngdm")  # only the first study has SNGDM
    assert len(sngdm["data"]) == 2


def test_the_bench_section_shows_a_measured_file_and_a_broken_one(dashboard, bench_root) -> None:
    results = bench_root / "bench" / "results"
    (results / "bilevel_memory.json").write_text(
        json.dumps(
            {
                "command": "python bench/bilevel_memory.py --quick",
                "rows": [
                    {
                        "estimator": "maml",
                        "channels": c,
                        "inner_steps": 5,
                        "peak_rss_mb": 100.0 + c,
                        "peak_extra_mb": c / 2,
                    }
                    for c in (16, 64)
                ],
            }
        )
    )
    (results / "mnist1d_estimators.json").write_text(
        json.dumps({"command": "x", "protocol": "p", "rows": [{"estimator": "maml"}]})
    )
    at = dashboard.app(LAB).run()
    assert_clean(at)
    memory = chart(at, "bench_memory")
    assert memory["data"][0]["x"] == [16, 64] and memory["data"][0]["y"] == [8.0, 32.0]
    assert "`python bench/bilevel_memory.py --quick`" in [c.value for c in at.caption]
    broken = [t for t in texts(at.info) if t.startswith("bench/results/mnist1d_estimators.json cannot be read")]
    assert broken and "rows[0] lacks 'way'" in broken[0]


def test_the_full_quadratic_bench_file_is_drawn_with_its_claims(dashboard, bench_root) -> None:
    shipped = Path(__file__).resolve().parents[2] / "bench" / "results" / "bilevel_quadratic.json"
    if not shipped.is_file():
        pytest.skip("bench/results/bilevel_quadratic.json is not measured in this checkout")
    (bench_root / "bench" / "results" / "bilevel_quadratic.json").write_text(shipped.read_text())
    at = dashboard.app(LAB).run()
    assert_clean(at)
    data = json.loads(shipped.read_text())
    figure = chart(at, "bench_quadratic")
    assert [t["name"] for t in figure["data"]] == list(data["figure1_left"]["relative_error"])
    claims = next(d.value for d in at.dataframe if "numbers" in d.value.columns)
    assert list(claims["verdict"]) == [c["verdict"] for c in data["claims"]]
