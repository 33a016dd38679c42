"""The loadtest end-to-end tests use the platform tests' real server on SQLite and the demo keys."""

from tests.platform.conftest import keys, running

__all__ = ["keys", "running"]
