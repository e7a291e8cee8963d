"""``python -m bridge.simulator``: the same as ``bridge simulator``."""

from bridge.simulator.cli import main

raise SystemExit(main())
