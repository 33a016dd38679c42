-- A holder shard's positions are chunks of Arrow columns with the CRC-32 of their bytes (fundta/segments.py).

ALTER TABLE fundta_holders ADD COLUMN checksum INTEGER;
