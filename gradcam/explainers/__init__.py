"""Explaining: the Explainer (one GradientTape per batch), the methods' formulas, perturbation methods, heatmap normalising and upsampling, batch results.

Importing this package imports nothing heavy; see docs/architecture.md for the map of the house."""
