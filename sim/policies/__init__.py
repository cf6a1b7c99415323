"""Scripted policies shipped with sim, for the offline scenarios and benchmarks."""
