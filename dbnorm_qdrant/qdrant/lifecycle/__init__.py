"""The lifecycle of a collection served without a curated query bank (docs/lifecycle.md).

:mod:`.log` (the query log), :mod:`.state` (versions and the active pointer, kept in a
Qdrant collection), :mod:`.manager` (which banks serve a collection now: a version, the
given banks, or the cold start), :mod:`.rebuild` (a new version from the log, and the
atomic switch), :mod:`.hub` (a wrapper's logged collections and its background writer).
"""

from .hub import Lifecycles, Worker, flush_all_logic
from .log import POLICIES, QueryLog
from .manager import COLD_K, COLD_SAMPLE, Lifecycle, LifecycleStatus
from .rebuild import (GALLERY_SAMPLE, REBUILD_METHODS, RebuildReport, export_logic, import_logic, publish_logic,
                      rebuild_logic)

__all__ = ["Lifecycles", "Worker", "flush_all_logic", "QueryLog", "POLICIES", "Lifecycle", "LifecycleStatus", "COLD_K", "COLD_SAMPLE",
           "RebuildReport", "rebuild_logic", "publish_logic", "export_logic", "import_logic", "REBUILD_METHODS", "GALLERY_SAMPLE"]
