-- The trace context of the request that received a delivery, so that applying it later (a trace
-- of its own) links back to its receipt.
ALTER TABLE webhook_deliveries ADD COLUMN traceparent text;
