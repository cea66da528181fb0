"""Look-alike audiences: users like a set of seed users (an item's converters, an activity's
participants), scored from user embeddings; pure numpy, shared by the evaluation and serving."""
