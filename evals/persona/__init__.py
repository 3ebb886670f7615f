"""Persona features: activation capture, contrastive directions and probes, a TopK SAE, model diffing,
steering with a coherence guard, an in-loop monitor, and the narrow-misalignment experiment.

Modules (each small, importable on its own): `store` (chunked .npy activation stores), `capture`,
`directions`, `sae`, `latents`, `diffing`, `steering`, `behaviour`, `monitor`, `experiment` (+ `config`),
`report`, `cli` (the `traitrl persona ...` subcommands).
"""
