"""Input and output: atomic files, locks, path checks, one-line refusals, provenance, text tables."""
