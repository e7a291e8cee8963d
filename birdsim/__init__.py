"""The Bird API simulator: connectors, channels, webhook subscriptions and signed deliveries.

A development tool (``bridge dev``, integration tests, demos), independent of the bridge: its
own model of Bird's rules and signatures, so a mistake in the bridge is not mirrored here. Not
in the production image. See docs/simulator.md.
"""

from birdsim.app import create_app
from birdsim.server import SimulatorServer
from birdsim.settings import (
    DEFAULT_ORGANIZATION_ID,
    DEFAULT_WORKSPACE_ID,
    DEV_ACCESS_KEY,
    FaultSettings,
    InvalidSettings,
    Organization,
    ScriptedResponse,
    ScriptRule,
    SimulatorSettings,
)

__all__ = [
    "DEFAULT_ORGANIZATION_ID",
    "DEFAULT_WORKSPACE_ID",
    "DEV_ACCESS_KEY",
    "FaultSettings",
    "InvalidSettings",
    "Organization",
    "ScriptRule",
    "ScriptedResponse",
    "SimulatorServer",
    "SimulatorSettings",
    "create_app",
]
