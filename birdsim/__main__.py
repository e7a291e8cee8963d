"""``python -m birdsim``: the same as ``bridge simulator``."""

from birdsim.cli import main

raise SystemExit(main())
