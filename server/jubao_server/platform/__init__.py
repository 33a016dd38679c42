"""The gRPC host: the server that serves what the composition root gives it (health, reflection, TLS,
draining), the per-call pipeline (telemetry, authentication, quotas, deadlines, errors), forwarding,
idempotent request replay, paging, and the MetaService. It knows no product."""
