-- Each claim keeps the attempt number of the call that wrote it (platform/idempotency.py ATTEMPT).

ALTER TABLE request_log ADD COLUMN attempt INTEGER;
