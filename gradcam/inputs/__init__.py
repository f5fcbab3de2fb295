"""Inputs: finding files, decoding photos, DICOM and NIfTI, volumes, masks, files known by content, the checks before a model loads.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""
