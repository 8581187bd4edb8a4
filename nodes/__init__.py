"""Node functions: layer entry, proposer call, layer reducer, fallback and review."""
