"""Recall: merging the candidate channels (ANN, popular, item-to-item, cold start) into one set."""
