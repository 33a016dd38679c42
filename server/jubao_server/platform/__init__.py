"""The gRPC host: server assembly, the per-call pipeline (telemetry, authentication, quotas, deadlines,
errors), health and reflection, idempotent request replay, and the MetaService."""
