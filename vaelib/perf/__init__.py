"""Speed tooling, out of the teaching path: allocator tuning, the throughput benchmark and its reference loops.

Nothing in the model, the loss or `fit` depends on it; the run cache and the command line opt in to the
allocator tuning (see `experiments.cache.run_config`).
"""
