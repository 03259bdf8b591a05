"""Experiment scripts and configs of snn-jax (run from the repository root)."""
