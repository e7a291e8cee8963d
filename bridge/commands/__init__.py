"""Connector commands: Kafka commands executed against Bird, results back to Kafka."""
