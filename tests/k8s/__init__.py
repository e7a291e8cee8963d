"""Offline checks of the Helm chart and the Dockerfile (render, schema, lint, scan)."""
