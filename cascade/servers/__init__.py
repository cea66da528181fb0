"""Start, wait for and stop the real servers Cascade runs on: tritonserver and redis-server."""
