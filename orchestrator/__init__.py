"""The async FastAPI service that runs the funnel: recall -> exposure filter -> pre-rank -> rank -> rerank."""
