from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def omniglot_root() -> Path | None:
    from core import settings
    from core.data.omniglot import list_alphabets

    root = settings.omniglot_root()
    try:
        return root if list_alphabets(root) else None
    except (FileNotFoundError, ValueError):
        return None


@pytest.fixture(scope="session")
def real_omniglot() -> Path:
    root = omniglot_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have the real Omniglot data at ../shared/datasets/omniglot (or $FEWSHOT_OMNIGLOT_ROOT)")
        pytest.skip("real Omniglot data not found")
    return root


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (CI runs it)")
    config.addinivalue_line("markers", "browser: drives a real headless Chromium (CI runs it)")
