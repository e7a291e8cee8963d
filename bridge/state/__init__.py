"""Channel state: the latest known state of every channel (contract section 10)."""
