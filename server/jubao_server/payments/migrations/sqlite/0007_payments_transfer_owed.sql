-- A debited transfer's row names the outbox entry owing its credits (payments/journal.py): reads see it
-- completed once the entry is gone, and settling the entry writes no row.

ALTER TABLE payments_transfers ADD COLUMN owed_shard INTEGER;
ALTER TABLE payments_transfers ADD COLUMN owed_entry TEXT;
