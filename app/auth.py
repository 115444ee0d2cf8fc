"""Who the visitor is, and what this dashboard lets them do: optional sign-in and the read-only demo mode.

**Sign-in** is Streamlit's own OpenID Connect (``st.login``, ``st.logout``, ``st.user``), configured by an
``[auth]`` section in ``.streamlit/secrets.toml`` (see the README). With it, the sidebar shows Sign in / Sign out,
and the visitor is the signed-in user's e-mail address (lower-cased; the ``sub`` claim when the provider gives no
e-mail), an admin when that address is in ``FEWSHOT_ADMINS``; a visitor who has not signed in is anonymous (identity
``""``: they own nothing). Without an ``[auth]`` section the dashboard stays single-user: the visitor is
:data:`core.store.permissions.LOCAL`, who may do everything, as before sign-in existed.

What each identity may delete or cancel is decided in one place, ``core.store.permissions``, by the store and the
jobs service themselves; pages only show the refusal (:class:`~core.store.permissions.NotPermitted`).

**Demo mode** (``FEWSHOT_DEMO_MODE=1``) makes a public, read-only demo: adapting and browsing stay, deleting runs,
editing them, saving Lab studies, and the Jobs and Tune pages (training, tuning, evaluation jobs) are off, and one
session may add at most ``FEWSHOT_DEMO_UPLOAD_MB`` of images (``app.sources.own_images``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAPIException

from app.resources import get_store
from core.settings import admin_emails, demo_mode, demo_upload_bytes
from core.store import Store
from core.store.permissions import LOCAL, Actor

DEFAULT_PROVIDER = "default"  # st.login's name for the provider configured at the top of [auth]
SIGN_IN_PROBLEM = "auth_sign_in_problem"  # session state: why the last Sign in click failed, shown once
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")  # what st.login needs of a provider


def _auth_section() -> Mapping[str, Any] | None:
    """The ``[auth]`` section of the secrets (None without secrets or without the section)."""
    if not st.secrets.load_if_toml_exists():
        return None
    section = st.secrets.get("auth")
    return section if isinstance(section, Mapping) and section else None


def sign_in_providers() -> list[str]:
    """The providers configured in ``[auth]``: ``"default"`` when the section itself names one, then each
    ``[auth.NAME]`` subsection that does. Empty when sign-in is not configured (the single-user dashboard)."""
    section = _auth_section()
    if section is None:
        return []
    providers = [DEFAULT_PROVIDER] if all(key in section for key in _PROVIDER_KEYS) else []
    providers += [
        name
        for name, value in section.items()
        if isinstance(value, Mapping) and all(k in value for k in _PROVIDER_KEYS)
    ]
    return providers


def sign_in_configured() -> bool:
    """Whether the dashboard has sign-in (an ``[auth]`` section in the secrets), as ``st.user`` decides it."""
    return _auth_section() is not None


def current_actor() -> Actor:
    """Who this session is: :data:`LOCAL` without sign-in; with it, the signed-in user (an admin when their e-mail
    is in ``FEWSHOT_ADMINS``), or an anonymous visitor (identity ``""``) who has not signed in."""
    if not sign_in_configured():
        return LOCAL
    user = st.user
    if not user.get("is_logged_in", False):
        return Actor("")
    email = str(user.get("email") or "").strip().lower()
    identity = email or str(user.get("sub") or "").strip()
    if not identity:  # a provider that gives neither: nobody to record as an owner
        return Actor("")
    return Actor(identity, is_admin=bool(email) and email in admin_emails())


def owned_store() -> Store:
    """The run store recording this session's identity as the owner of the runs and Lab studies it saves."""
    return get_store().owned_by(current_actor().identity)


def render_sign_in() -> None:
    """Sidebar: who is signed in and Sign out, or Sign in (one button per provider); nothing without sign-in."""
    providers = sign_in_providers()
    if not sign_in_configured():
        return
    actor = current_actor()
    with st.sidebar:
        if not actor.anonymous:
            st.caption(f"Signed in as **{actor.identity}**" + (" (admin)" if actor.is_admin else ""))
            st.button("Sign out", key="auth_sign_out", on_click=st.logout)
            return
        st.caption("Not signed in: you can adapt and browse; sign in to delete your runs and run jobs.")
        problem = st.session_state.pop(SIGN_IN_PROBLEM, None)
        if problem:
            st.error(problem)
        if not providers:
            st.error("Sign-in is misconfigured: `[auth]` in secrets.toml names no provider (client_id, ...).")
        for provider in providers:
            label = "Sign in" if provider == DEFAULT_PROVIDER else f"Sign in with {provider}"
            st.button(label, key=f"auth_sign_in_{provider}", on_click=_sign_in, args=(provider,))


def _sign_in(provider: str) -> None:
    try:
        st.login(None if provider == DEFAULT_PROVIDER else provider)
    except StreamlitAPIException as error:  # Authlib missing, or [auth] incomplete: say why, in the sidebar
        st.session_state[SIGN_IN_PROBLEM] = f"Sign-in failed: {error}"


def require_signed_in(action: str) -> bool:
    """Whether this session may start ``action`` (e.g. "launch jobs"); when not (sign-in is configured and the
    visitor has not signed in), says so. Things started are recorded with the identity, so anonymous ones are
    refused rather than stored ownerless."""
    if current_actor().anonymous:
        st.info(f"Sign in (in the sidebar) to {action}.")
        return False
    return True


# ------------------------------------------------------------------------------------------------ demo mode


def demo_banner() -> None:
    """Every page's notice that this is the read-only demo (nothing in normal mode)."""
    if demo_mode():
        megabytes = demo_upload_bytes() / (1024 * 1024)
        st.info(
            "**Read-only demo.** Adapt episodes and browse the stored runs; deleting or editing runs, saving Lab "
            f"studies, training, tuning and jobs are off, and this session may add up to {megabytes:g} MB of images.",
            icon=":material/visibility:",
        )


def refuse_in_demo(what: str) -> None:
    """Stop a page that is off in demo mode (reached by its URL: it is not in the navigation), with a message."""
    if demo_mode():
        st.warning(f"{what} is off in this read-only demo.", icon=":material/block:")
        st.stop()
