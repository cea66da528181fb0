"""Triton glue: config rendering, request batching helpers and the Python-backend adapters."""
