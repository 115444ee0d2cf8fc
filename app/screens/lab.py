"""Lab page: the FO-B-MAML paper's quadratic study run live, stored, reopened and compared; the bilevel bench results.

Computing lives in ``core.lab`` (the study, its claims, the bench files' readers); storing in ``core.store``
(``lab_studies``); the figures in ``app.charts``. This page only arranges widgets.
"""

from __future__ import annotations

import streamlit as st

from app import charts
from app.auth import owned_store
from core.bilevel.quadratic import ESTIMATORS
from core.lab import STUDY_KIND, QuadraticStudy, QuadraticStudySettings, load_study, run_quadratic_study, save_study
from core.lab.bench_results import BENCH_FILES, load_bench_file
from core.lab.study import CLIP_FRACTION, SNGDM_MOMENTUM
from core.settings import demo_mode
from core.store import StudyTable

STUDY = "lab_study"  # session state: the study shown, (name, QuadraticStudy)
MESSAGE = "lab_message"  # session state: (kind, text) to show once
CG_CHOICES = (1, 2, 3, 5, 10, 20, 50)
DEFAULTS = QuadraticStudySettings()

studies = StudyTable(owned_store())  # saved studies record who saved them


def _settings_widgets() -> dict:
    """The study's settings as the widgets give them (not yet checked: core checks them)."""
    first, second, third = st.columns(3)
    values = {
        "kappa": first.number_input("κ (inner condition number)", value=DEFAULTS.kappa, format="%g", key="lab_kappa"),
        "lam": first.number_input("λ (proximal strength)", value=DEFAULTS.lam, format="%g", key="lab_lam"),
        "n": first.number_input("n (dimensions)", value=DEFAULTS.n, step=1, key="lab_n"),
        "tasks": first.number_input("tasks", value=DEFAULTS.tasks, step=1, key="lab_tasks"),
        "inner_rate_fraction": second.number_input(
            "inner rate × (L + λ)",
            value=DEFAULTS.inner_rate_fraction,
            format="%g",
            key="lab_rate",
            help="The inner rate as a fraction of 1/(L + λ), L = 1 the largest inner eigenvalue: 1 is the classic "
            "rate, and the inner loop contracts for fractions between 0 and 2.",
        ),
        "delta": second.number_input("δ (FO-B-MAML)", value=DEFAULTS.delta, format="%g", key="lab_delta"),
        "cg_steps": tuple(
            second.multiselect("iMAML CG steps", CG_CHOICES, default=list(DEFAULTS.cg_steps), key="lab_cg")
        ),
        "seed": second.number_input("seed", value=DEFAULTS.seed, step=1, key="lab_seed"),
        "max_inner_steps": third.number_input(
            "inner steps, left figure (1 to …)", value=DEFAULTS.max_inner_steps, step=1, key="lab_max_steps"
        ),
        "outer_inner_steps": third.number_input(
            "inner steps T, right figure", value=DEFAULTS.outer_inner_steps, step=1, key="lab_outer_steps"
        ),
        "outer_iterations": third.number_input(
            "outer iterations", value=DEFAULTS.outer_iterations, step=1, key="lab_outer_iterations"
        ),
    }
    values["estimators"] = tuple(
        st.multiselect("Estimators", list(ESTIMATORS), default=list(DEFAULTS.estimators), key="lab_estimators")
    )
    left, right = st.columns(2)
    values["sngdm"] = left.checkbox(f"Also SNGDM (momentum {SNGDM_MOMENTUM:g})", value=DEFAULTS.sngdm, key="lab_sngdm")
    values["clipped"] = right.checkbox(
        f"Also clipped GD (threshold {CLIP_FRACTION:g}·||∇F(x0)||)", value=DEFAULTS.clipped, key="lab_clipped"
    )
    return values


def _run(values: dict) -> None:
    try:
        settings = QuadraticStudySettings(**values)
    except (TypeError, ValueError) as error:
        st.session_state[MESSAGE] = ("error", f"Not run: {error}.")
        return
    with st.spinner("Computing the study…"):
        study = run_quadratic_study(settings)
    st.session_state[STUDY] = ("new study", study)


def _save(study: QuadraticStudy) -> None:
    if demo_mode():  # the form is not shown in the demo; a stale one is refused too
        st.session_state[MESSAGE] = ("error", "Not saved: this is a read-only demo.")
        return
    name = st.session_state.get("lab_save_name", "")
    try:
        study_id = save_study(studies, study, name)
    except (TypeError, ValueError) as error:
        st.session_state[MESSAGE] = ("error", f"Not saved: {error}.")
        return
    st.session_state[STUDY] = (name.strip(), study)
    st.session_state[MESSAGE] = ("success", f"Saved as study #{study_id} “{name.strip()}”.")


def _open_chosen() -> None:
    # the selection is read when the button is pressed, not when it was drawn
    study_id = st.session_state["lab_stored"]
    try:
        st.session_state[STUDY] = (studies.get(study_id).name, load_study(studies, study_id))
    except (KeyError, ValueError) as error:
        st.session_state[MESSAGE] = ("error", f"Cannot open study #{study_id}: {error}")


def _show_study(name: str, study: QuadraticStudy) -> None:
    st.subheader(f"Study: {name}")
    cells = st.columns(5)
    cells[0].metric("inner rate", f"{study.inner_rate:.4g}")
    cells[1].metric("contraction q", f"{study.contraction_factor:.4f}")
    cells[2].metric("F(x0)", f"{study.f_x0:.4g}")
    cells[3].metric("F*", f"{study.f_star:.4g}")
    cells[4].metric("computed in", f"{study.wall_seconds:.2f} s")
    st.markdown("**The paper's claims on this study**")
    st.dataframe(
        [
            {"claim": c.claim, "verdict": c.verdict, "criterion": c.criterion, "evidence": c.evidence}
            for c in study.claims
        ],
        hide_index=True,
        key="lab_claims",
    )
    st.plotly_chart(charts.lab_error_figure([(name, study)]), key="lab_left")
    for panel in study.outer:
        st.plotly_chart(charts.lab_outer_figure([(name, study)], panel.method), key=f"lab_right_{panel.method}")
        st.caption(
            f"{panel.label}: rate grid "
            + ", ".join(f"{r:.3g}" for r in panel.grid)
            + "; each estimator's rate is the one with the lowest mean log10(F − F*) over the iterations."
        )
        st.dataframe(
            [
                {
                    "estimator": c.label,
                    "chosen rate": c.rate,
                    "at the grid's edge": c.at_grid_edge,
                    "final F − F*": c.final_suboptimality,
                }
                for c in panel.curves
            ],
            hide_index=True,
            key=f"lab_rates_{panel.method}",
        )
    st.plotly_chart(charts.lab_delta_figure(study), key="lab_delta_sweep")
    if demo_mode():  # running a study is compute only; storing one is off in the read-only demo
        st.caption("Saving studies is off in this read-only demo; the stored ones below can be opened.")
        return
    with st.form("lab_save_form", border=False):
        st.text_input(
            "Name",
            value=f"κ={study.settings.kappa:g} λ={study.settings.lam:g} n={study.settings.n}",
            max_chars=100,
            key="lab_save_name",
        )
        if st.form_submit_button("Save study"):
            _save(study)
            st.rerun()


def _stored_studies() -> None:
    st.header("Stored studies")
    search = st.text_input("Name contains", key="lab_search")
    listed = studies.list_studies(kind=STUDY_KIND, name_contains=search or None, limit=200)
    if not listed:
        st.info("No stored study" + (" matches this name." if search else " yet: run one above and save it."))
        return
    names = {s.id: f"#{s.id} {s.name} ({s.created_at:%Y-%m-%d %H:%M} UTC, {s.wall_seconds:.1f} s)" for s in listed}
    st.selectbox("Study", list(names), format_func=names.get, key="lab_stored")
    st.button("Open", key="lab_open", on_click=_open_chosen)
    compared = st.multiselect(
        "Compare two stored studies", list(names), format_func=names.get, max_selections=2, key="lab_compare"
    )
    if len(compared) == 2:
        pairs = []
        for study_id in compared:
            try:
                pairs.append((f"#{study_id}", load_study(studies, study_id)))
            except (KeyError, ValueError) as error:
                st.error(f"Cannot open study #{study_id}: {error}")
                return
        st.plotly_chart(charts.lab_error_figure(pairs), key="lab_compare_left")
        for method in dict.fromkeys(p.method for _, s in pairs for p in s.outer):
            st.plotly_chart(charts.lab_outer_figure(pairs, method), key=f"lab_compare_right_{method}")


def _bench_results() -> None:
    st.header("Bench results")
    for key, spec in BENCH_FILES.items():
        st.subheader(spec.title)
        loaded = load_bench_file(key)
        if loaded.result is None:
            st.info(loaded.problem)
            continue
        result = loaded.result
        if key == "quadratic":
            st.caption(f"`{result.command}`")
            st.plotly_chart(charts.bench_quadratic_figure(result), key="bench_quadratic")
            st.dataframe(
                [{"claim": c.claim, "verdict": c.verdict, "numbers": c.summary} for c in result.claims],
                hide_index=True,
                key="bench_quadratic_claims",
            )
        elif key == "smoothness":
            st.caption(f"`{result.command}`")
            st.plotly_chart(charts.bench_smoothness_figure(result), key="bench_smoothness")
        elif key == "mnist1d":
            st.caption(f"{result.protocol} — `{result.command}`")
            st.dataframe([vars(r) for r in result.rows], hide_index=True, key="bench_mnist1d_rows")
            st.plotly_chart(charts.bench_mnist1d_figure(result), key="bench_mnist1d")
        elif key == "memory":
            st.caption(f"`{result.command}`")
            st.dataframe([vars(r) for r in result.rows], hide_index=True, key="bench_memory_rows")
            st.plotly_chart(charts.bench_memory_figure(result), key="bench_memory")
        else:
            st.dataframe([vars(r) for r in result.rows], hide_index=True, key="bench_omniglot_rows")
            st.dataframe([vars(r) for r in result.cost], hide_index=True, key="bench_omniglot_cost")


st.title("Lab")
st.caption(
    "The FO-B-MAML paper's Figure 1 on quadratic tasks (Chayti and Jaggi): every meta-gradient estimator "
    "against the exact one, and outer optimisation with each. Set the problem, press Run (a few seconds)."
)
values = _settings_widgets()
if st.button("Run", type="primary", key="lab_run"):
    _run(values)
message = st.session_state.pop(MESSAGE, None)
if message:
    (st.success if message[0] == "success" else st.error)(message[1])
if STUDY in st.session_state:
    _show_study(*st.session_state[STUDY])
_stored_studies()
_bench_results()
