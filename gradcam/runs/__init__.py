"""Runs: the folder pipeline, resume decisions, shards and status, Ray.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""
