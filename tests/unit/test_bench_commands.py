"""bench.commands' arithmetic: a command's steps from its spans, and the sustained rate."""

from __future__ import annotations

import pytest

from bench.commands import Overhead, Sustained, command_steps, overhead_report
from bench.otlp_sink import KeptSpan


def span(name: str, start: float, end: float, **attributes: str) -> KeptSpan:
    return KeptSpan("t" * 32, name, start, end, dict(attributes))


def test_a_commands_steps_come_from_its_spans() -> None:
    spans = [
        span("process commands", 10.0, 10.1),
        span("ledger write", 10.001, 10.011, **{"bridge.ledger.state": "started"}),
        span("POST connectors.create", 10.011, 10.031),
        span("ledger write", 10.031, 10.041, **{"bridge.ledger.state": "accepted"}),
        span("publish results", 10.041, 10.051),
        span("GET connectors.get", 10.051, 10.056),
        span("GET channels.get", 10.056, 10.061),
        span("ledger write", 10.061, 10.071, **{"bridge.ledger.state": "final"}),
        span("publish results", 10.071, 10.091),
    ]
    steps = command_steps(spans, sent=9.95, arrived=10.102)
    assert steps is not None
    assert steps["consume"] == pytest.approx(0.05)
    assert steps["ledger started"] == pytest.approx(0.01)
    assert steps["POST"] == pytest.approx(0.02)
    assert steps["ledger accepted"] == pytest.approx(0.01)
    assert steps["result accepted"] == pytest.approx(0.01)
    assert steps["GETs"] == pytest.approx(0.01)
    assert steps["ledger final"] == pytest.approx(0.01)
    assert steps["result final"] == pytest.approx(0.02)
    assert steps["between steps"] == pytest.approx(0.1 - 0.09)
    assert steps["result read"] == pytest.approx(0.002)
    assert command_steps(spans[1:], sent=9.95, arrived=10.102) is None  # no process span


def test_the_sustained_rate_counts_from_the_first_result_to_the_last() -> None:
    # 5000 creates sent over 10 s, results from 0.05 s to 10.05 s: kept up with 500/s,
    # although the last result came 10.05 s after the first send.
    run = Sustained(
        rate=500,
        seconds=10,
        sent=5000,
        succeeded=5000,
        finished_s=10.05,
        results_s=10.0 - 0.002,
        latencies=[0.05] * 5000,
        cpu_s=6.5,
        rss_mb=80,
    )
    assert run.achieved == pytest.approx(4999 / 9.998)
    assert run.achieved >= 500


def test_the_overhead_report_sets_the_bridge_beside_the_naive_executor() -> None:
    def burst(own_s: float, cpu_s: float) -> Overhead:
        return Overhead(
            in_flight=100,
            end_to_end=[own_s + 0.01] * 100,
            bird=[0.01] * 100,
            succeeded=100,
            cpu_s=cpu_s,
        )

    def steady(cpu_s: float) -> Sustained:
        return Sustained(500, 10, 5000, 5000, 10.1, 10.0, [0.1] * 5000, cpu_s, 70)

    text, checks = overhead_report(
        burst(0.2, 0.2), steady(8.0), naive=(burst(0.08, 0.08), steady(5.0))
    )
    ratios = dict(line.rsplit(None, 1) for line in text.splitlines()[-3:])
    assert ratios == {
        "own latency p99, at once": "2.50",
        "CPU per command, at once": "2.50",
        "CPU per command, sustained": "1.60",
    }
    assert "naive executor" in text
    # The targets judge the bridge alone.
    assert [good for _, good in checks] == [False, True]
    assert "(200.0 ms)" in checks[0][0]


def test_the_overhead_report_of_several_replicas_names_them_and_skips_the_one_process_target() -> (
    None
):
    burst = Overhead(
        in_flight=100, end_to_end=[0.015] * 100, bird=[0.01] * 100, succeeded=100, cpu_s=0.1
    )
    steady = Sustained(500, 10, 5000, 5000, 10.1, 10.0, [0.1] * 5000, 6.0, 70)
    text, checks = overhead_report(burst, steady, replicas=2)
    assert "bridge x2" in text
    # The sustained target is one process's: not judged on two.
    assert len(checks) == 1
    label, good = checks[0]
    assert good
    assert "(5.0 ms, 2 replicas in one consumer group)" in label
