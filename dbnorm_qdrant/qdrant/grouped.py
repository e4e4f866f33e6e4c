"""``query_points_groups``, normalised: Qdrant's grouping over the normalised ranking.

The request (any form :mod:`.query` takes: a dense query, hybrid, ...) runs normalised
with a window of ``W`` points (at first ``max(4 * limit * group_size, 100)``; an MMR query:
its ``candidates_limit``); the points
are grouped in that order by :func:`~.groups.group_points` (Qdrant's rules: nested keys,
array values, ids of a group as Qdrant takes them), so each group's head is the first
point of that group in the normalised ``query_points`` order. While fewer than ``limit``
groups are full and the window came back full, it grows fourfold and the query runs again.
``with_lookup`` fills each group's ``lookup`` from another collection, by group id. The
hits' payload is what ``with_payload`` selects (a list / include / exclude selector is
applied by Qdrant, with one ``retrieve`` of the hits).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from qdrant_client import models

from ..errors import InputError
from ._io import Call, Logic
from .core import Core
from .groups import group_points, groups_complete
from .planning import Overrides, Spec
from .query import query_logic
from .results import _vector

__all__ = ["groups_logic"]

#: the window never grows past this many points (Qdrant's own grouping also caps its search)
MAX_WINDOW = 100_000


def groups_logic(core: Core, collection: str, spec: Spec, group_by: Any, group_size: Any, with_lookup: Any,
                 ov: Overrides, extra: dict[str, Any]) -> Logic:
    """Logic: a ``GroupsResult`` whose groups and hits follow the normalised ranking."""
    if spec.offset:
        raise InputError("query_points_groups has no offset; drop it.")
    group_points((), group_by, spec.limit, group_size)  # checks the arguments (an InputError naming the fix)
    limit = int(spec.limit)
    window = max(4 * limit * int(group_size), 100)
    cap = MAX_WINDOW
    q = spec.query
    if isinstance(q, models.NearestQuery) and q.mmr is not None:  # MMR ranks its candidates_limit points only
        cap = window = q.mmr.candidates_limit if q.mmr.candidates_limit is not None else window
    while True:
        inner = replace(spec, limit=window, with_payload=True)
        res = yield from query_logic(core, collection, [inner], ov, extra)
        pts = res[0].points
        groups = group_points(pts, group_by, limit, int(group_size))
        if groups_complete(groups, limit, int(group_size)) or len(pts) < window or window >= cap:
            break
        window = min(4 * window, cap)
    # a point in several groups is one object in each (as in qdrant-client): shaped once
    hits = list({id(pt): pt for g in groups for pt in g.hits}.values())
    wp = spec.with_payload
    if hits and wp not in (True, False, None):  # a list / include / exclude selector: Qdrant's own selection
        got = yield Call("retrieve", dict(collection_name=collection, ids=[pt.id for pt in hits], with_payload=wp,
                                          with_vectors=False, **extra))
        by = {r.id: r.payload for r in got}
        for pt in hits:
            pt.payload = by.get(pt.id)
    for pt in hits:
        if wp is False or wp is None:
            pt.payload = None
        pt.vector = _vector(pt.vector, spec.with_vector)
    if with_lookup is not None and groups:
        yield from _lookup(groups, with_lookup, extra)
    return models.GroupsResult(groups=groups)


def _lookup(groups: list[models.PointGroup], with_lookup: Any, extra: dict[str, Any]) -> Logic:
    lk = models.WithLookup(collection=with_lookup) if isinstance(with_lookup, str) else with_lookup
    wp = True if lk.with_payload is None else lk.with_payload
    wv = False if lk.with_vectors is None else lk.with_vectors
    got = yield Call("retrieve", dict(collection_name=lk.collection, ids=[g.id for g in groups], with_payload=wp,
                                      with_vectors=wv, **extra))
    by = {str(r.id): r for r in got}
    for g in groups:
        g.lookup = by.get(str(g.id))
