"""The Bird API simulator: connectors, channels, webhook subscriptions and signed deliveries.

A product feature (``bridge dev``, integration tests, demos); see docs/simulator.md.
"""

from birdsim.app import create_app
from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    FaultSettings,
    ScriptedResponse,
    ScriptRule,
    SimulatorSettings,
)

__all__ = [
    "DEFAULT_ORGANIZATION_ID",
    "DEFAULT_WORKSPACE_ID",
    "DEV_ACCESS_KEY",
    "FaultSettings",
    "ScriptRule",
    "ScriptedResponse",
    "SimulatorServer",
    "SimulatorSettings",
    "create_app",
]
