"""Reproducible speed and quality comparisons; results in benchmarks/RESULTS.md."""
