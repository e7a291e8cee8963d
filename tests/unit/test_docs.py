"""The documentation lists every setting the code reads, and the example file loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bridge import config

ROOT = Path(__file__).parents[2]


def env_names() -> set[str]:
    sections = (
        config.KafkaConfig,
        config.TopicsConfig,
        config.BirdConfig,
        config.WebhookConfig,
        config.CommandsConfig,
        config.Config,
    )
    return {
        f.metadata["env"]
        for cls in sections
        for f in dataclasses.fields(cls)
        if "env" in f.metadata
    }


def test_every_variable_is_documented() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(name for name in env_names() if f"`{name}`" not in text)
    assert missing == []


def test_every_variable_with_a_default_is_in_the_example_file() -> None:
    text = (ROOT / "config" / "bridge.example.toml").read_text()
    missing = sorted(name for name in config.DEFAULTS if name not in text)
    assert missing == []
