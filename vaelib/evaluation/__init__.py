"""Evaluation of a trained model: metrics, sample quality in a domain classifier's features, plots."""
