"""Starts the channel-state fold and periodic reconciliation in the commands role (I/O)."""

from __future__ import annotations

from bridge.bird.client import BirdClient
from bridge.config import Config
from bridge.kafka.publisher import Publisher
from bridge.metrics import Metrics
from bridge.reconcile.runner import ReconcileLoop, Reconciler
from bridge.state.folder import StateFolder


class Recovery:
    """The commands role's recovery side: the state fold, and (``BRIDGE_RECONCILE_INTERVAL_S``
    > 0) reconciliation with Bird by whichever replica owns the fold's partition 0."""

    def __init__(
        self, config: Config, bird: BirdClient, publisher: Publisher, metrics: Metrics
    ) -> None:
        self.loop: ReconcileLoop | None = None
        interval = config.commands.reconcile_interval_s
        # Every configured workspace (contract 12): the file's, else the one of the
        # single-workspace variables.
        workspaces = [workspace.id for workspace in config.workspaces]
        if interval > 0 and workspaces:
            reconciler = Reconciler(config, bird, publisher, metrics)
            self.loop = ReconcileLoop(reconciler, interval, workspaces)
        self.folder = StateFolder(
            config,
            publisher,
            metrics,
            on_leader=self.loop.leadership if self.loop is not None else None,
        )

    async def start(self) -> None:
        await self.folder.start()

    async def stop(self) -> None:
        await self.folder.stop()
        if self.loop is not None:
            await self.loop.stop()
