"""Baseline webhook receivers for ``bench.ingest``, each run as its own process.

``bare``: answers 204 and does nothing else (no Kafka). ``naive``: verifies nothing and
calls aiokafka ``send_and_wait`` once per request with the bridge's producer settings
(acks=all, no idempotence, ``--linger-ms`` = the bridge's ``BRIDGE_KAFKA_LINGER_MS``).
Both serve ``GET /readyz`` once they can take requests.

    python -m bench.servers bare --port 8090
    python -m bench.servers naive --port 8090 --bootstrap 127.0.0.1:9092 --topic t
    python -m bench.servers bare --port 8090 --loop uvloop
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

from aiohttp import web
from aiokafka import AIOKafkaProducer

from bridge.loops import loop_factory

PATH = "/webhooks/bird"
PRODUCER = web.AppKey("producer", AIOKafkaProducer)


async def ready(_request: web.Request) -> web.Response:
    return web.Response(status=200)


async def bare(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def naive_app(bootstrap: str, topic: str, linger_ms: int) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        await request.app[PRODUCER].send_and_wait(topic, body)
        return web.Response(status=204)

    async def producer_ctx(app: web.Application) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=linger_ms
        )
        await producer.start()
        app[PRODUCER] = producer
        yield
        await producer.stop()

    app = web.Application()
    app.cleanup_ctx.append(producer_ctx)
    app.router.add_post(PATH, handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["bare", "naive"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--topic", default="")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.mode == "naive":
        app = naive_app(args.bootstrap, args.topic, args.linger_ms)
    else:
        app = web.Application()
        app.router.add_post(PATH, bare)
    app.router.add_get("/readyz", ready)
    factory = loop_factory(args.loop)
    web.run_app(
        app,
        host="127.0.0.1",
        port=args.port,
        access_log=None,
        print=None,
        loop=factory() if factory is not None else None,
    )


if __name__ == "__main__":
    main()
