"""Grain sources and transforms, the trait-mix sampler, scenario generator, record schema."""
