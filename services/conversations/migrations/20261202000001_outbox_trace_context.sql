-- The W3C trace context (`{"traceparent": ..., "tracestate": ...}`) of the request that
-- wrote the event, so that the relay publishes it as AMQP headers and the webhook worker
-- continues the request's trace. NULL for rows written outside any trace.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS trace_context JSONB;
