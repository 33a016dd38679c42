"""Storage: the Cassandra-shaped contract (`contract`), its backends (`sqlite/`, `cassandra/`) and the
settings that choose one (`config`, `factory`)."""
