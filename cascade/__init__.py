"""Cascade: the pure core (schema, features, models, recall, rerank, exposure, Triton specs)."""
