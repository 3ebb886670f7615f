"""Mesh and sharding rules, errors, the CLI."""
