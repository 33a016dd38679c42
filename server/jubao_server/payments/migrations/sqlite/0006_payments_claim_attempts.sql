-- Each claim keeps the attempt number of the call that wrote it (platform/idempotency.py ATTEMPT).

ALTER TABLE payments_claims ADD COLUMN attempt INTEGER;
