"""Experiments: the budgets, the one way to run a config and its cache, sets of runs, evidence, statistics, claims."""
