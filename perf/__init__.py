"""Performance tooling: perf_analyzer runs against Triton, our own load generator, results."""
