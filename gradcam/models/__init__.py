"""Models: loading, the built-in EfficientNet-Lite0 and its weights reader, class names, finding layers, graph surgery on the caller's model.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""
