"""Optional sign-in (AppTest): who the visitor is, and the owner-or-admin rule on the Runs and Jobs pages.

The identity provider is the only thing replaced: AppTest's own ``secrets`` (an ``[auth]`` section, as in
``.streamlit/secrets.toml``) and ``user`` (what ``st.user`` reads after an OIDC sign-in). The rule itself is the
real ``core.store.permissions``, applied by the real store and jobs service; every check reads the store back.
"""

from __future__ import annotations

import pytest

from core.settings import SettingError, admin_emails
from tests.app.test_adapt_page import assert_clean, run_button, texts, upload_episode
from tests.app.test_runs_page import run_with_pictures, select, table_ids
from tests.core.store.builders import adaptation

RUNS = "screens/runs.py"
JOBS = "screens/jobs.py"
AUTH = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "a-test-cookie-secret-of-some-length",
        "client_id": "dashboard",
        "client_secret": "not-a-secret",
        "server_metadata_url": "https://id.example.org/.well-known/openid-configuration",
    }
}
ALICE = {"is_logged_in": True, "email": "Alice@Example.org", "name": "Alice"}
BOB = {"is_logged_in": True, "email": "bob@example.org"}
BOSS = {"is_logged_in": True, "email": "boss@example.org"}
NOBODY = {"is_logged_in": False}


def signed_in(at, user: dict):
    """The page as ``user`` sees it with sign-in configured."""
    at.secrets = dict(AUTH)
    at.user = dict(user)
    return at


@pytest.fixture
def owned(dashboard, monkeypatch) -> dict[str, int]:
    """Three runs: alice's, bob's and one stored before sign-in existed (no owner)."""
    monkeypatch.setenv("FEWSHOT_ADMINS", "boss@example.org, other-admin@example.org")
    store = dashboard.store()
    return {
        owner or "none": store.owned_by(owner).save_run(run_with_pictures(), [adaptation()], total_seconds=1.0)
        for owner in ("alice@example.org", "bob@example.org", "")
    }


def delete(at, ids: list[int]):
    select(at, ids)
    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    assert_clean(at)
    return at


def owners(dashboard) -> dict[int, str]:
    return {summary.id: summary.owner for summary in dashboard.store().list_runs()}


# ------------------------------------------------------------------------------------------- who it is


def test_without_a_provider_there_is_no_sign_in_and_the_local_user_deletes_anything(dashboard, owned) -> None:
    at = dashboard.app(RUNS).run()
    assert_clean(at)
    assert not [b for b in at.sidebar.button if b.key and b.key.startswith("auth_")]
    delete(at, [owned["bob@example.org"], owned["none"]])
    assert owners(dashboard) == {owned["alice@example.org"]: "alice@example.org"}
    assert any("Deleted 2 run(s)" in s for s in texts(at.success))


def test_signed_in_the_sidebar_names_the_user_and_signs_out(dashboard) -> None:
    at = signed_in(dashboard.app(RUNS), ALICE).run()
    assert_clean(at)
    assert "Signed in as **alice@example.org**" in texts(at.sidebar.caption)
    at.sidebar.button(key="auth_sign_out").click().run()
    assert_clean(at)
    assert at.user == {"is_logged_in": False}  # st.logout ran
    assert [b.label for b in at.sidebar.button] == ["Sign in"]


def test_an_admin_is_named_so(dashboard, owned) -> None:
    at = signed_in(dashboard.app(RUNS), BOSS).run()
    assert "Signed in as **boss@example.org** (admin)" in texts(at.sidebar.caption)


def test_not_signed_in_offers_sign_in_per_provider(dashboard) -> None:
    at = dashboard.app(RUNS)
    at.secrets = {"auth": {**AUTH["auth"], "google": {**AUTH["auth"]}}}
    at.user = dict(NOBODY)
    at.run()
    assert_clean(at)
    assert [b.label for b in at.sidebar.button] == ["Sign in", "Sign in with google"]


def test_a_sign_in_that_cannot_start_says_why(dashboard) -> None:
    # Streamlit refuses to start the OIDC flow (here Authlib is missing, or the real secrets lack [auth]): the
    # reason is a message in the sidebar, not a traceback.
    at = signed_in(dashboard.app(RUNS), NOBODY).run()
    at.sidebar.button(key="auth_sign_in_default").click().run()
    assert_clean(at)
    [problem] = texts(at.sidebar.error)
    assert problem.startswith("Sign-in failed: ")
    assert at.user == NOBODY


# ---------------------------------------------------------------------------------------------- deleting


def test_the_owner_deletes_their_run(dashboard, owned) -> None:
    at = delete(signed_in(dashboard.app(RUNS), ALICE).run(), [owned["alice@example.org"]])
    assert owners(dashboard) == {owned["bob@example.org"]: "bob@example.org", owned["none"]: ""}
    assert any(f"Deleted 1 run(s): #{owned['alice@example.org']}" in s for s in texts(at.success))


def test_a_visitors_delete_of_someone_elses_run_is_refused_and_deletes_nothing(dashboard, owned) -> None:
    before = owners(dashboard)
    alices = owned["alice@example.org"]
    at = delete(signed_in(dashboard.app(RUNS), BOB).run(), [alices])
    assert owners(dashboard) == before
    [message] = texts(at.error)
    assert message == (
        f"Nothing deleted: run #{alices} (made by alice@example.org): not yours (you are bob@example.org; only the "
        "owner or an admin may change it). Nothing was changed."
    )
    assert alices in table_ids(at)


def test_a_selection_with_one_run_not_yours_is_refused_whole(dashboard, owned) -> None:
    before = owners(dashboard)
    at = delete(signed_in(dashboard.app(RUNS), BOB).run(), [owned["bob@example.org"], owned["none"]])
    assert owners(dashboard) == before  # not even bob's own run went
    [message] = texts(at.error)
    assert f"run #{owned['none']} (made before sign-in, no owner)" in message
    assert f"#{owned['bob@example.org']} (" not in message


def test_an_admin_deletes_others_runs(dashboard, owned) -> None:
    delete(signed_in(dashboard.app(RUNS), BOSS).run(), [owned["alice@example.org"], owned["none"]])
    assert owners(dashboard) == {owned["bob@example.org"]: "bob@example.org"}


def test_a_visitor_who_has_not_signed_in_deletes_nothing(dashboard, owned) -> None:
    before = owners(dashboard)
    at = delete(signed_in(dashboard.app(RUNS), NOBODY).run(), [owned["none"]])
    assert owners(dashboard) == before
    assert any("sign in first" in e for e in texts(at.error))


def test_an_open_run_says_who_made_it(dashboard, owned) -> None:
    at = signed_in(dashboard.app(RUNS, run=str(owned["alice@example.org"])), BOB).run()
    assert_clean(at)
    assert "Made by alice@example.org." in texts(at.caption)
    at = signed_in(dashboard.app(RUNS, run=str(owned["none"])), BOB).run()
    assert any(c.startswith("No owner: stored before sign-in") for c in texts(at.caption))


def test_a_run_made_on_adapt_records_the_signed_in_user(dashboard, with_checkpoint) -> None:
    at = signed_in(dashboard.app(), ALICE).run()
    upload_episode(at, n_classes=2, query_labels=[0, 1])
    run_button(at).click().run()
    assert_clean(at)
    [summary] = dashboard.store().list_runs()
    assert summary.owner == "alice@example.org"


# ------------------------------------------------------------------------------------------------ jobs


def running_job(dashboard, started_by: str) -> int:
    store = dashboard.store()
    job_id = store.jobs.create("evaluate", {"checkpoint": "/c.safetensors"}, started_by=started_by)
    store.jobs.claim(job_id, "elsewhere:1")
    return job_id


@pytest.mark.parametrize(("user", "allowed"), [(ALICE, True), (BOB, False), (BOSS, True), (NOBODY, False)])
def test_a_job_is_cancelled_by_its_starter_or_an_admin_only(dashboard, monkeypatch, user, allowed) -> None:
    monkeypatch.setenv("FEWSHOT_ADMINS", "boss@example.org")
    job_id = running_job(dashboard, "alice@example.org")
    at = signed_in(dashboard.app(JOBS), user).run()
    assert_clean(at)
    [cancel] = [b for b in at.button if b.label == "Cancel"]
    cancel.click().run()
    assert_clean(at)
    assert dashboard.store().jobs.record(job_id).cancel_requested is allowed
    refusals = [e for e in texts(at.error) if e.startswith("Not cancelled")]
    assert len(refusals) == (0 if allowed else 1)
    if not allowed:
        assert f"job #{job_id} (made by alice@example.org)" in refusals[0]


def test_jobs_are_started_by_the_signed_in_user_and_need_a_sign_in(dashboard) -> None:
    at = signed_in(dashboard.app(JOBS), BOB).run()
    assert_clean(at)
    assert "Jobs you start are recorded as started by **bob@example.org**." in texts(at.caption)
    assert not [t for t in at.text_input if t.key == "jobs_started_by"]  # no free label with sign-in
    assert {b.label for b in at.button} >= {"Start the evaluation", "Start training"}
    at = signed_in(dashboard.app(JOBS), NOBODY).run()
    assert "Sign in (in the sidebar) to launch jobs." in texts(at.info)
    assert not {b.label for b in at.button} & {"Start the evaluation", "Start training"}


def test_the_admins_setting_is_a_list_of_addresses(monkeypatch) -> None:
    monkeypatch.delenv("FEWSHOT_ADMINS", raising=False)
    assert admin_emails() == frozenset()
    monkeypatch.setenv("FEWSHOT_ADMINS", " Boss@Example.org ,, other@example.org ")
    assert admin_emails() == {"boss@example.org", "other@example.org"}
    monkeypatch.setenv("FEWSHOT_ADMINS", "boss, other@example.org")
    with pytest.raises(SettingError, match="FEWSHOT_ADMINS must be e-mail addresses separated by commas, got boss$"):
        admin_emails()
