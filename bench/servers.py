"""Baselines for the benchmarks, each run as its own process.

Webhook receivers for ``bench.ingest``: ``bare`` answers 204 and does nothing else (no
Kafka). ``naive`` verifies nothing and calls aiokafka ``send_and_wait`` once per request
with the bridge's producer settings (acks=all, no idempotence, ``--linger-ms`` = the
bridge's ``BRIDGE_KAFKA_LINGER_MS``). ``required`` does what the contract requires of
every webhook and nothing more, with the bridge's own pure functions: verifies the
signature (``--signing-key``, ``--url``), parses and normalizes the body into the
bridge's CloudEvent record (key = channel id, headers), and publishes it with
``send_and_wait`` (partitioned as the bridge does); no dedupe, no metrics, no log, no
error answers beyond aiohttp's 500. With ``--client rdkafka`` both publish with
librdkafka (``bench.rdkafka``) instead of aiokafka, the same settings: what another Kafka
client would change.

A command executor for ``bench.commands``: ``naive-commands`` reads creates from
``--topic`` and, for each one at once, makes the Bird calls the bridge makes (POST the
connector, GET it until it names its channel, GET the channel until it is active, polls
``--follow-interval`` apart) and produces one final result to ``--results-topic`` with
``send_and_wait``. Nothing else: no validation, no ledger, no accepted result, no
retries, offsets auto-committed. It is the floor for these calls in Python with aiohttp
and aiokafka, beside which the bridge's own latency and CPU per command are judged.

All serve ``GET /readyz`` once they can take work.

    python -m bench.servers bare --port 8090
    python -m bench.servers naive --port 8090 --bootstrap 127.0.0.1:9092 --topic t
    python -m bench.servers required --port 8090 --bootstrap 127.0.0.1:9092 --topic t \\
        --signing-key K --url https://bridge.example.com/webhooks/bird
    python -m bench.servers naive --port 8090 --bootstrap 127.0.0.1:9092 --topic t \\
        --client rdkafka
    python -m bench.servers bare --port 8090 --loop uvloop
    python -m bench.servers naive-commands --port 8090 --bootstrap 127.0.0.1:9092 \\
        --topic commands --results-topic results --bird-url http://127.0.0.1:8081 \\
        --workspace W --access-key K
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from bridge.commands.plan import channel_id_of
from bridge.ingest.normalize import bird_time, normalize_event, parse_body
from bridge.ingest.verify import (
    REQUEST_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from bridge.kafka.clients import CachedPartitioner
from bridge.loops import loop_factory

PATH = "/webhooks/bird"
CLIENTS = ("aiokafka", "rdkafka")


class Sends(Protocol):
    """What a webhook baseline needs of its Kafka client: aiokafka's producer or
    ``bench.rdkafka.RdkafkaProducer`` (librdkafka)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send_and_wait(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...


PRODUCER = web.AppKey("producer", Sends)


async def ready(_request: web.Request) -> web.Response:
    return web.Response(status=200)


async def bare(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def required_app(args: argparse.Namespace) -> web.Application:
    keys = [args.signing_key]

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        verify_signature(
            signatures=headers.getall(SIGNATURE_HEADER, []),
            timestamps=headers.getall(TIMESTAMP_HEADER, []),
            url=args.url,
            body=body,
            keys=keys,
        )
        parsed = parse_body(body)
        payload = parsed.get("payload")
        record = normalize_event(
            parsed,
            raw_body=body,
            request_id=headers.get(REQUEST_ID_HEADER),
            default_workspace_id=None,
            received_at=datetime.now(UTC),
            origin="webhook",
            stamp=bird_time(payload) if isinstance(payload, dict) else None,
        )
        await request.app[PRODUCER].send_and_wait(
            args.topic, record.value, key=record.key, headers=list(record.headers)
        )
        return web.Response(status=204)

    app = web.Application()
    app.cleanup_ctx.append(
        producer_context(args.bootstrap, args.linger_ms, client=args.client, keyed=True)
    )
    app.router.add_post(PATH, handle)
    return app


def baseline_producer(
    bootstrap: str, linger_ms: int, *, keyed: bool = False, **settings: Any
) -> AIOKafkaProducer:
    """A baseline's producer: acks=all, no idempotence, the bridge's linger; ``keyed``:
    records carry keys, partitioned as the bridge does (``CachedPartitioner``: each channel
    id's murmur2 computed once)."""
    if keyed:
        settings["partitioner"] = CachedPartitioner()
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        **settings,
    )


def producer_context(
    bootstrap: str, linger_ms: int, *, client: str = "aiokafka", keyed: bool = False
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's producer, started and stopped with the app: ``baseline_producer``, or
    with ``client="rdkafka"`` the same settings on librdkafka (``bench.rdkafka``)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        producer: Sends
        if client == "rdkafka":
            from bench.rdkafka import RdkafkaProducer  # confluent-kafka: only for these

            producer = RdkafkaProducer(bootstrap, linger_ms)
        else:
            producer = baseline_producer(bootstrap, linger_ms, keyed=keyed)
        await producer.start()
        app[PRODUCER] = producer
        yield
        await producer.stop()

    return context


def naive_app(bootstrap: str, topic: str, linger_ms: int, client: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        await request.app[PRODUCER].send_and_wait(topic, body)
        return web.Response(status=204)

    app = web.Application()
    app.cleanup_ctx.append(producer_context(bootstrap, linger_ms, client=client))
    app.router.add_post(PATH, handle)
    return app


class Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
    """Set once the consumer group gave this consumer its partitions."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: object) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


class NaiveCommands:
    """``naive-commands``: each create read is executed at once, in its own task."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = f"{args.bird_url.rstrip('/')}/workspaces/{args.workspace}"
        self.headers = {"Authorization": f"AccessKey {args.access_key}"}
        self.tasks: set[asyncio.Task[None]] = set()

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        args = self.args
        producer = baseline_producer(
            args.bootstrap, args.linger_ms, max_batch_size=args.max_batch_bytes
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=args.bootstrap,
            group_id=f"naive-commands-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=args.fetch_max_wait_ms,
        )
        session = aiohttp.ClientSession()
        await producer.start()
        await consumer.start()
        assigned = Assigned()
        consumer.subscribe([args.topic], listener=assigned)
        loop = asyncio.create_task(self.consume(consumer, producer, session))
        await assigned.wait()  # ready once it reads its partitions
        yield
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
        await consumer.stop()
        await producer.stop()
        await session.close()

    async def consume(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, session: aiohttp.ClientSession
    ) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    task = asyncio.create_task(self.execute(record.value, producer, session))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)

    async def execute(
        self, value: bytes, producer: AIOKafkaProducer, session: aiohttp.ClientSession
    ) -> None:
        command = orjson.loads(value)
        async with session.post(
            f"{self.base}/connectors", json=command["connector"], headers=self.headers
        ) as response:
            connector: dict[str, Any] = await response.json()
        channel: dict[str, Any] = {}
        while True:
            channel_id = channel_id_of(connector)
            if channel_id is None:
                connector = await self.get(session, f"/connectors/{connector['id']}")
                channel_id = channel_id_of(connector)
            if channel_id is not None:
                channel = await self.get(session, f"/channels/{channel_id}")
                if channel.get("status") == "active":
                    break
            await asyncio.sleep(self.args.follow_interval)
        result = {
            "subject": command["commandId"],
            "data": {"status": "succeeded", "connector": connector, "channel": channel},
        }
        await producer.send_and_wait(
            self.args.results_topic, orjson.dumps(result), key=command["commandId"].encode()
        )

    async def get(self, session: aiohttp.ClientSession, path: str) -> dict[str, Any]:
        async with session.get(self.base + path, headers=self.headers) as response:
            found: dict[str, Any] = await response.json()
            return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["bare", "naive", "required", "naive-commands"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--topic", default="")
    parser.add_argument("--linger-ms", type=int, default=5)
    parser.add_argument("--max-batch-bytes", type=int, default=16384)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=500)
    parser.add_argument("--signing-key", default="")
    parser.add_argument("--url", default="", help="the URL Bird signs (the public URL)")
    parser.add_argument("--results-topic", default="")
    parser.add_argument("--bird-url", default="")
    parser.add_argument("--workspace", default="")
    parser.add_argument("--access-key", default="")
    parser.add_argument("--follow-interval", type=float, default=0.25)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument(
        "--client",
        choices=CLIENTS,
        default="aiokafka",
        help="naive and required: the Kafka client (rdkafka: confluent-kafka's librdkafka)",
    )
    args = parser.parse_args()
    if args.mode == "naive":
        app = naive_app(args.bootstrap, args.topic, args.linger_ms, args.client)
    elif args.mode == "required":
        app = required_app(args)
    elif args.mode == "naive-commands":
        app = web.Application()
        app.cleanup_ctx.append(NaiveCommands(args).context)
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
