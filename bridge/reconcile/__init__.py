"""Reconciliation with Bird: heal what webhooks missed (contract section 10)."""
