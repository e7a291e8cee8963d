"""A bounded log of the Bird API requests the simulator saw, for tests and demos (pure)."""

from __future__ import annotations

import fnmatch
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from birdsim.model import format_time


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    workspace_id: str | None
    status: int | None  # None: the connection was closed without an answer
    at: datetime
    duration_ms: float
    fault: str | None
    processed: bool
    # W3C Trace Context the caller sent, as received (tests follow a trace through Bird).
    traceparent: str | None = None
    tracestate: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "workspaceId": self.workspace_id,
            "status": self.status,
            "time": format_time(self.at),
            "timestamp": self.at.timestamp(),
            "durationMs": round(self.duration_ms, 2),
            "fault": self.fault,
            "processed": self.processed,
            "traceparent": self.traceparent,
            "tracestate": self.tracestate,
        }


class RequestJournal:
    def __init__(self, size: int) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=size)

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def clear(self) -> None:
        self._records.clear()

    def query(self, filters: Mapping[str, str]) -> list[RequestRecord]:
        """Filter by ``method``, ``path`` (a glob), ``workspaceId``, ``status`` and
        ``traceId`` (the trace id of the request's ``traceparent``)."""
        method = filters.get("method", "").upper()
        path = filters.get("path")
        workspace = filters.get("workspaceId")
        status = filters.get("status")
        trace_id = filters.get("traceId")
        return [
            r
            for r in self._records
            if (not method or r.method == method)
            and (path is None or fnmatch.fnmatchcase(r.path, path))
            and (workspace is None or r.workspace_id == workspace)
            and (status is None or str(r.status) == status)
            and (trace_id is None or (r.traceparent or "")[3:35] == trace_id)
        ]
