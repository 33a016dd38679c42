-- A refused transfer is kept with why it was refused (payments/tables.py TRANSFERS "failure").

ALTER TABLE payments_transfers ADD COLUMN failure TEXT;
