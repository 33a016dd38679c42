"""The Cassandra backend: `backend.CassandraBackend` (design notes in README.md of this folder)."""
