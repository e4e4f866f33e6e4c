"""Qdrant's point grouping (``query_points_groups``) over a list of points already in rank order.

The wrapper ranks a window of points in the *normalised* order, then groups them here exactly
as qdrant-client's local mode groups its own ranking (``LocalCollection.query_groups`` and
``_group_ids``), so that the group heads and hits follow the normalised order:

- the group ids of a point are the values at ``group_by`` (qdrant-client's ``value_by_key``:
  nested keys ``a.b``, ``a[].b`` / ``a[0].b``, an array value unwrapped one level, so that a
  point joins one group per distinct value, in payload order);
- a value is a group id only if its type is exactly ``int`` or ``str`` (``bool`` is not an
  ``int`` here, so ``True`` and ``1`` never share a group); a point with *any* other value at
  ``group_by`` (a float, a bool, null, an object) joins no group at all, like the server, and so
  does a point without the key or without a payload;
- groups come in the order of their first appearance in the ranking, each keeps its first
  ``group_size`` hits, and the first ``limit`` groups are returned.

No I/O: the caller fetches the points (with the payload field ``group_by``), applies its own
``with_payload`` selection to the hits afterwards, and widens its window until
:func:`groups_complete` says the answer cannot change (or the window holds every point).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qdrant_client.conversions.common_types import get_args_subscribed
from qdrant_client.http import models
from qdrant_client.local.json_path_parser import parse_json_path
from qdrant_client.local.payload_value_extractor import value_by_key

from ..errors import InputError
from ..validation import check_int

__all__ = ["group_points", "group_ids", "groups_complete"]

#: the Python types a group id may have (``models.GroupId``: StrictInt | StrictStr)
_GROUP_ID_TYPES = get_args_subscribed(models.GroupId)


def _check_group_by(group_by: Any) -> str:
    """``group_by`` as a payload path Qdrant accepts, or an :class:`InputError` naming the fix."""
    if not isinstance(group_by, str) or not group_by:
        raise InputError(
            f"group_by must be a non-empty payload key (str), got {group_by!r}; pass the key whose "
            "values name the groups, e.g. group_by='document_id' or a nested key 'meta.source'."
        )
    try:
        parse_json_path(group_by)
    except ValueError as exc:
        raise InputError(
            f"group_by={group_by!r} is not a valid payload path ({exc}); write keys separated by dots, "
            "'a[]' for every element of an array, 'a[0]' for one, and quote a key with dots: '\"a.b\"'."
        ) from None
    return group_by


def group_ids(payload: Any, group_by: str) -> list[models.GroupId] | None:
    """The distinct group ids of one point, in payload order, or ``None`` if it joins no group.

    Qdrant's rule (qdrant-client local mode ``_group_ids``): ``None`` without a payload dict,
    without the key, or when any value at ``group_by`` is not exactly an ``int`` or a ``str``
    (the server drops the whole point, it does not skip the bad value).
    """
    if not isinstance(payload, dict):
        return None
    values = value_by_key(payload, group_by)
    if values is None or any(type(v) not in _GROUP_ID_TYPES for v in values):
        return None
    return list(dict.fromkeys(values))  # dedup, keeping the payload order


def group_points(
    points: Sequence[models.ScoredPoint],
    group_by: str,
    limit: int,
    group_size: int,
) -> list[models.PointGroup]:
    """Group ranked points the way Qdrant's ``query_points_groups`` groups its ranking.

    Parameters
    ----------
    points:
        Scored points, best first (here: the normalised order), each with a payload that holds
        ``group_by`` (other payload fields may be present; they are not read).
    group_by:
        The payload path whose values are the group ids (see :func:`group_ids`).
    limit, group_size:
        At most ``limit`` groups, each with at most ``group_size`` hits (both >= 1).

    Returns
    -------
    list of ``models.PointGroup``
        In order of each group's first hit; hits in rank order. The hits are the given
        ``ScoredPoint`` objects themselves (a point with several group ids is the same object in
        each of its groups, as in qdrant-client), so copy before editing one. ``lookup`` is unset.

    A ``group_by`` that no point has gives ``[]``, as Qdrant does.
    """
    group_by = _check_group_by(group_by)
    limit = check_int(limit, "limit", hint="it is the number of groups to return.")
    group_size = check_int(group_size, "group_size", hint="it is the number of hits per group.")
    groups: dict[models.GroupId, models.PointGroup] = {}
    for point in points:
        ids = group_ids(point.payload, group_by)
        if ids is None:
            continue
        for gid in ids:
            group = groups.get(gid)
            if group is None:
                group = groups[gid] = models.PointGroup(id=gid, hits=[])
            if len(group.hits) < group_size:
                group.hits.append(point)
    return list(groups.values())[:limit]


def groups_complete(groups: Sequence[models.PointGroup], limit: int, group_size: int) -> bool:
    """Whether grouping a longer ranking could not change ``groups``: ``limit`` groups, all full.

    ``groups`` is :func:`group_points` of a *prefix* of the full ranking. If it holds ``limit``
    groups with ``group_size`` hits each, those are the first ``limit`` groups of the full ranking
    with their first hits, so points further down cannot change them. Otherwise the window may
    be too short: widen it, unless it already holds every point (then the answer is final).
    """
    limit = check_int(limit, "limit", hint="it is the number of groups to return.")
    group_size = check_int(group_size, "group_size", hint="it is the number of hits per group.")
    return len(groups) >= limit and all(len(g.hits) >= group_size for g in groups[:limit])
