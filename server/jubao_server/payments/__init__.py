"""Payments: a double-entry ledger sharded by account, with exactly-once transfers."""
