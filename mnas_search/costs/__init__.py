"""Cost models beyond the analytic FLOPs: the per-block latency lookup table."""
