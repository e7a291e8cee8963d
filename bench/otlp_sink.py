"""A local OTLP/HTTP traces receiver for benchmarks and tests: accepts ``POST /v1/traces``
(protobuf, gzip or not), counts requests, bytes and spans, keeps the trace ids seen and
answers 200 like a collector. ``GET /stats`` returns the counts as JSON.

    python -m bench.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
from dataclasses import dataclass, field

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


@dataclass(frozen=True)
class KeptSpan:
    """One received span: its trace, name, start and end (Unix epoch seconds) and its
    string, integer and boolean attributes."""

    trace_id: str
    name: str
    start: float
    end: float
    attributes: dict[str, str | int | bool]


def _attributes(span: Span) -> dict[str, str | int | bool]:
    found: dict[str, str | int | bool] = {}
    for item in span.attributes:
        kind = item.value.WhichOneof("value")
        if kind in ("string_value", "int_value", "bool_value"):
            found[item.key] = getattr(item.value, kind)
    return found


@dataclass
class OtlpSink:
    """The receiver, in the caller's event loop (``start`` / ``stop``)."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: int = 0
    bytes: int = 0
    spans: int = 0
    trace_ids: set[str] = field(default_factory=set)
    span_names: list[str] = field(default_factory=list)
    keep_names: bool = False  # tests: the name of every span, in arrival order
    keep_spans: bool = False  # benchmarks: every span, for timing the steps of a trace
    kept: list[KeptSpan] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests += 1
        self.bytes += len(body)
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.spans += len(scope.spans)
                for span in scope.spans:
                    self.trace_ids.add(span.trace_id.hex())
                    if self.keep_names:
                        self.span_names.append(span.name)
                    if self.keep_spans:
                        self.kept.append(
                            KeptSpan(
                                span.trace_id.hex(),
                                span.name,
                                span.start_time_unix_nano / 1e9,
                                span.end_time_unix_nano / 1e9,
                                _attributes(span),
                            )
                        )
        return web.Response(body=_EMPTY_RESPONSE, content_type="application/x-protobuf")

    async def stats(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"requests": self.requests, "bytes": self.bytes, "spans": self.spans}
        )

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self.traces)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/readyz", self.stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def _serve(port: int) -> None:
    sink = OtlpSink(port=port)
    await sink.start()
    print(f"OTLP sink on {sink.url}/v1/traces", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sink.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    asyncio.run(_serve(parser.parse_args().port))
