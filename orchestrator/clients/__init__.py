"""Clients of the servers the orchestrator talks to: Triton (gRPC aio) and Redis."""
