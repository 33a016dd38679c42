-- Each claim keeps the attempt number of the call that wrote it (platform/idempotency.py ATTEMPT).

ALTER TABLE fundta_requests ADD COLUMN attempt INTEGER;
