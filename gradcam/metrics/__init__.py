"""Metrics: faithfulness (deletion, insertion, average drop) and the model-randomisation sanity check.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""
