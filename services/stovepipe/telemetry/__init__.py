"""Operability: traces (OpenTelemetry), metrics (Prometheus) and the staleness objective."""
