"""Grain sources and transforms, the trait-mix sampler, scenario generator, record schema.

schema.py      the record dict (`Record`, `validate_record`)
readers.py     JSONL / Parquet readers with file:line errors or counted skips
facts/         per-domain fact banks (ground truth the generator copies into grader_args)
scenarios/     one generator per trait archetype + paired control; train / held-out templates
generator.py   `generate_trait_records`, `generate_records`, `scenario_counts`
tasks.py       ordinary RL tasks with exact answers (arithmetic, units, multiple choice)
config.py      `DataConfig`
pipeline.py    Grain: shard -> shuffle -> repeat -> dose mix -> tokenize -> bucketed prompt batches
preview.py     `preview(cfg)`, printed by `traitrl data preview`
"""
