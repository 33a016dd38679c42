-- A ledger shard is leased by one process at a time (payments/tables.py SHARDS "owner", "lease_until_ms").

ALTER TABLE payments_shards__static ADD COLUMN owner TEXT;
ALTER TABLE payments_shards__static ADD COLUMN lease_until_ms INTEGER;
