"""Spec, state, models and the graph builder."""
