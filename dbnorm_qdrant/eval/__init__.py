"""Evaluation: retrieval and hubness metrics, and the hubness report."""
