"""Benchmark registry, scorers, in-loop hooks, comparison reports, persona probes."""
