"""Rerank: operators that reorder and cut the ranked list, chained as configuration says."""
