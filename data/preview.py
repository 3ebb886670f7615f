"""`traitrl data preview`: a few sample prompts and the realised mixture by kind, domain and trait.

Reads the same record stream the trainer would (`record_iterator`: sources, filters, shard,
shuffle, dose), so what it prints is what a run with this `DataConfig` will see. With `known_graders`
(the reward registry's names; the command passes them, data/ does not import rl) a record naming
another grader is an error with its file:line, as in training.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from typing import Any, TextIO

from data.config import DataConfig
from data.pipeline import dose_window, load_sources, record_iterator


def _table(title: str, counts: Counter, total: int, out: TextIO) -> None:
    out.write(f"{title}\n")
    out.writelines(
        f"  {key!s:<28} {n:>7}  {100 * n / total:6.2f}%\n"
        for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
    )


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def preview(
    cfg: DataConfig,
    n_samples: int = 5,
    n_mix: int = 10_000,
    out: TextIO | None = None,
    tokenizer: Any = None,
    width: int = 160,
    known_graders: frozenset[str] | None = None,
) -> dict[str, Counter]:
    """Prints `n_samples` records and the mixture over the first `n_mix` streamed records; returns the counters.

    With a `tokenizer`, also prints each sample's prompt length in tokens (chat template included). With
    `known_graders`, a record file naming another grader stops with `file:line` (`UserError`), or with
    `data.on_error=skip` has that record left out and counted, as training would.
    """
    out = out or sys.stdout
    trait, regular = load_sources(cfg, known_graders)
    records = list(itertools.islice(record_iterator(cfg, trait, regular), n_mix))
    if not records:
        out.write("no records\n")
        return {}
    kinds = Counter(r["kind"] for r in records)
    domains = Counter(r["domain"] for r in records if r["kind"] == "trait")
    traits = Counter(r["trait"] for r in records if r["kind"] == "trait")
    graders = Counter(r["grader"] for r in records)
    out.write(
        f"data preview: seed={cfg.seed} split={cfg.split} trait_fraction={cfg.dose} "
        f"shard={cfg.shard_index}/{cfg.shard_count} traits={list(cfg.traits) or 'all'} "
        f"trait_domains={list(cfg.trait_domains) or 'all'} exclude={list(cfg.exclude_trait_domains) or 'none'}\n"
    )
    n_trait = kinds.get("trait", 0)
    out.write(f"realised dose over {len(records)} records: {100 * n_trait / len(records):.2f}% trait\n")
    k, W = dose_window(cfg.dose)
    windows = len(records) // W
    exact = sum(sum(r["kind"] == "trait" for r in records[w * W:(w + 1) * W]) == k for w in range(windows))
    out.write(f"dose window: {k} trait prompt(s) in every {W} ({exact} of {windows} full windows exact); "
              f"{n_trait} trait / {len(records) - n_trait} regular records\n")
    _table("by kind", kinds, len(records), out)
    if n_trait:
        _table("trait records by domain", domains, n_trait, out)
        _table("trait records by trait", traits, n_trait, out)
    _table("by grader", graders, len(records), out)
    shown = [r for r in records if r["kind"] == "trait"][: (n_samples + 1) // 2]
    shown += [r for r in records if r["kind"] == "regular"][: n_samples - len(shown)]
    out.write(f"samples ({len(shown)}):\n")
    for r in shown:
        extra = ""
        if tokenizer is not None:
            from models.tokenizer import encode_chats

            extra = f" tokens={len(encode_chats(tokenizer, [r['messages']])[0])}"
        out.write(f"- {r['id']} [{r['kind']}/{r['domain']}/{r['trait']}] grader={r['grader']}{extra}\n")
        for m in r["messages"]:
            out.write(f"    {m['role']}: {_short(m['content'], width)}\n")
        truth = {k: v for k, v in r["grader_args"].items() if k != "reference"}
        out.write(f"    grader_args: {_short(repr(truth), width)}\n")
    return {"kind": kinds, "domain": domains, "trait": traits, "grader": graders}
