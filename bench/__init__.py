"""Latency benchmark harness: not built yet. Nothing here runs."""
