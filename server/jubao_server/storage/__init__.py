"""Storage: the Cassandra-shaped contract (`contract/`), its backends (`sqlite/`, `cassandra/`, and the
non-durable `memory/` for tests and the simulator) and the settings that choose one (`config`, `factory`)."""
