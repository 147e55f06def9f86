"""Failed actions: what ``retry`` does with each, and what replaces or drops one.

A failed action stays failed until one of three things happens:

* ``retry`` makes it wait again (a ``retried`` record). A tree that failed
  because of its items waits again with them.
* ``retry`` or the user adds its request again. A tree that failed when it
  was listed (an unreadable directory, a name that cannot be copied) is
  listed again only by a new action of the same request, so ``retry`` adds
  one. The new action replaces the failed one, which is canceled with its
  failed items, because the new listing covers every path of the old.
* ``cancel`` drops it: a user gives up on a file that is gone for good.

These are internals of :class:`journalq.queue.StorageQueue`. They read the
state and return the records to journal; the queue journals them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

from journalq.effects import tree_end_record
from journalq.expansion import PARENTS
from journalq.plan import REJECTED, UNLISTED
from journalq.records import Canceled, Record
from journalq.replay import ActionState, CompactAction, QueueState, Status

__all__ = [
    "RetryPlan",
    "failed_at_listing",
    "replacement_cancels",
    "retry_plan",
    "tree_endings",
]


class RetryPlan(NamedTuple):
    """The failed actions of a queue, by what ``retry`` does with them."""

    #: Actions that wait again.
    reopen: list[ActionState]
    #: Trees with items that failed when they were listed: each is added
    #: again, and the new action replaces it.
    relist: list[ActionState]
    #: Top-level actions whose request was added again since they failed,
    #: with the id of the newest action of that request, which replaces them.
    replaced: list[tuple[ActionState, str]]

    def __bool__(self) -> bool:
        return bool(self.reopen or self.relist or self.replaced)


def failed_at_listing(action: ActionState) -> bool:
    """Tell whether ``action`` failed when its tree was listed.

    Its name cannot be copied, or it is a directory that could not be
    listed.
    """
    return action.error is not None and action.error.reason in (REJECTED, UNLISTED)


def retry_plan(state: QueueState) -> RetryPlan:
    """Return what ``retry`` does with each failed action of ``state``.

    An item that failed when its tree was listed waits again only through
    a new listing of its tree, so one whose tree did not fail stays failed.
    """
    failed = [
        action
        for action in state.actions.values()
        if action.status is Status.FAILED and type(action) is ActionState
    ]
    items: dict[str, list[ActionState]] = defaultdict(list)
    for action in failed:
        if action.added.parent is not None:
            items[action.added.parent].append(action)
    plan = RetryPlan([], [], [])
    # The trees whose failed items a new action replaces.
    replaced_trees: set[str] = set()
    for action in failed:
        added = action.added
        if added.parent is not None:
            continue
        latest = state.by_key.get(added.key)
        if latest is not None and latest != action.action_id:
            plan.replaced.append((action, latest))
            replaced_trees.add(action.action_id)
        elif action.kind not in PARENTS or action.children is None:
            plan.reopen.append(action)
        elif any(failed_at_listing(item) for item in items[action.action_id]):
            plan.relist.append(action)
            replaced_trees.add(action.action_id)
        elif not items[action.action_id]:
            # It failed on its own, as an empty tree whose destination
            # directory could not be made.
            plan.reopen.append(action)
    for action in failed:
        parent = action.added.parent
        if parent is None or parent in replaced_trees or failed_at_listing(action):
            continue
        plan.reopen.append(action)
    return plan


def replacement_cancels(
    state: QueueState, previous: str | None, replacement: str
) -> list[Canceled]:
    """Return the cancels that drop ``previous`` for ``replacement``, if it failed.

    ``replacement`` is a new action of the same request. A failed tree is
    dropped with its failed items.
    """
    action = state.actions.get(previous) if previous is not None else None
    if action is None or previous == replacement or action.status is not Status.FAILED:
        return []
    by = f"the same request added again as {replacement}"
    records = [Canceled(action.action_id, by)]
    if action.kind in PARENTS:
        records += [
            Canceled(item.action_id, by)
            for item in state.actions.values()
            if item.status is Status.FAILED and item.added.parent == previous
        ]
    return records


def tree_endings(
    state: QueueState, canceled: Iterable[str], queue: str | os.PathLike[str]
) -> list[Record]:
    """Return the records that end the trees a cancel of failed items reopened.

    Canceling a failed item makes its failed tree wait again. A tree whose
    items have all ended gets its end record now, without a run: it
    completes when none of them failed any more. ``queue`` is the queue's
    directory, which a failed tree's message names.
    """
    trees = {
        parent
        for action_id in canceled
        if (parent := state.actions[action_id].added.parent) is not None
    }
    waiting = [
        tree
        for tree_id in trees
        if type(tree := state.actions[tree_id]) is ActionState
        and tree.status is Status.WAITING
        and tree.children is not None
    ]
    if not waiting:
        return []
    items: dict[str, list[ActionState]] = defaultdict(list)
    for action in state.actions.values():
        # A compacted item has ended without failing, and its tree's
        # record does not count it (see Executor._finish_parents).
        if type(action) is CompactAction:
            continue
        parent = action.added.parent
        if parent in trees:
            items[parent].append(action)
    return [
        tree_end_record(tree, items[tree.action_id], queue)
        for tree in waiting
        if all(item.terminal for item in items[tree.action_id])
    ]
