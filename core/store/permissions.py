"""Who may delete a run or a lab study, or cancel a job: the one rule, and the refusal it gives.

A shared dashboard records who made each run, lab study and job (``runs.owner``, ``lab_studies.owner``,
``jobs.started_by``). Changing what others made is refused: only the owner or an admin may delete or cancel it.
A row stored before sign-in existed has owner ``""`` and belongs to nobody, so only an admin may remove it; the
single-user dashboard (no sign-in configured) and the command line act as :data:`LOCAL`, an admin, so for them
nothing changes.

The store (``Store.delete_runs``, ``StudyTable.delete``) and the jobs service (``core.jobs.cancel_job``) call
:func:`check_may_change` inside their own work, so a page cannot forget it; pages only turn
:class:`NotPermitted` into a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_IDENTITY_LENGTH = 100  # the owner columns are String(100), as jobs.started_by


@dataclass(frozen=True)
class Actor:
    """Who asks: ``identity`` is what is recorded as the owner of what they make (a signed-in user's e-mail, or
    "local" on a single-user dashboard; ``""`` for a visitor who has not signed in), ``is_admin`` whether they may
    change what anyone made."""

    identity: str
    is_admin: bool = False

    def __post_init__(self) -> None:
        if len(self.identity) > MAX_IDENTITY_LENGTH:
            raise ValueError(f"an identity has at most {MAX_IDENTITY_LENGTH} characters, not {len(self.identity)}")

    @property
    def anonymous(self) -> bool:
        """A visitor who has not signed in: they own nothing, so they may change nothing."""
        return not self.identity


LOCAL = Actor("local", is_admin=True)  # the single-user dashboard, the command line and scripts: may do everything


def may_change(actor: Actor, owner: str) -> bool:
    """Whether ``actor`` may delete or cancel something ``owner`` made: an admin always, anyone else only their
    own (``owner == identity``); nobody but an admin what has no owner (``""``: made before sign-in existed, or by a
    visitor who had not signed in)."""
    return actor.is_admin or (not actor.anonymous and owner == actor.identity)


class NotPermitted(PermissionError):
    """A request refused because some of its rows are not the actor's: ``refused`` maps each such id to its
    owner (``""`` when it has none). The whole request was refused: nothing was changed."""

    def __init__(self, actor: Actor, what: str, refused: Mapping[int, str]) -> None:
        self.actor = actor
        self.what = what
        self.refused = dict(sorted(refused.items()))
        listed = ", ".join(f"{what} #{row_id} ({_made_by(owner)})" for row_id, owner in self.refused.items())
        if actor.anonymous:
            reason = "sign in first: visitors who have not signed in own nothing"
        else:
            reason = f"not yours (you are {actor.identity}; only the owner or an admin may change it)"
        super().__init__(f"{listed}: {reason}. Nothing was changed.")


def _made_by(owner: str) -> str:
    return f"made by {owner}" if owner else "made before sign-in, no owner"


def check_may_change(actor: Actor, what: str, owners: Mapping[int, str]) -> None:
    """Raise :class:`NotPermitted` naming every row of ``owners`` (id -> owner) that ``actor`` may not change;
    return when they may change all of them. ``what`` names the rows in the message ("run", "job", ...)."""
    refused = {row_id: owner for row_id, owner in owners.items() if not may_change(actor, owner)}
    if refused:
        raise NotPermitted(actor, what, refused)
