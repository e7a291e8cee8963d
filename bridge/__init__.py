"""Channel Bridge: Bird's channel platform <-> Kafka."""

__version__ = "0.1.0"
