"""The dashboard's Lab: the FO-B-MAML paper's quadratic study live (:mod:`core.lab.study`) and the bench results of
the bilevel issue read into typed records (:mod:`core.lab.bench_results`). The Lab page (``app/screens/lab.py``)
only arranges what these compute."""

from core.lab.storage import load_study, save_study
from core.lab.study import (
    STUDY_KIND,
    Claim,
    DeltaSweep,
    ErrorCurve,
    OuterCurve,
    OuterPanel,
    QuadraticStudy,
    QuadraticStudySettings,
    check_claims,
    rate_score,
    run_quadratic_study,
)

__all__ = [
    "STUDY_KIND",
    "Claim",
    "DeltaSweep",
    "ErrorCurve",
    "OuterCurve",
    "OuterPanel",
    "QuadraticStudy",
    "QuadraticStudySettings",
    "check_claims",
    "load_study",
    "rate_score",
    "run_quadratic_study",
    "save_study",
]
