"""The API's routers: /v1/jobs, /v1/models, and /healthz + /metrics."""
