"""Data-path throughput: records/s from sources to tokenized, left-padded prompt batches.

    .venv/bin/python benchmarks/data.py [--records 50000] [--batch-size 16] [--tokenizer DIR|toy]

Reports, in one run:
  generate   bundled scenario generator (records/s)
  tokenize   chat template + tokenization of the sources, done once per run (records/s)
  stream     Grain index stream -> padded batches, per epoch (records/s)
  end_to_end cold start (generate + tokenize + stream `--records`) (records/s)
  peer       the naive per-record `apply_chat_template(tokenize=True)` loop, for comparison
The target is >= 5,000 records/s end to end on 2 cores, so data never limits a GRPO step.
Uses the SmolLM2 tokenizer from the traitrl model cache when present, else a BPE trained in-process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

# This file is named data.py, and Python puts its folder first on sys.path, where it would shadow
# the `data` package; put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)


def _tokenizer(spec: str):
    if spec != "toy":
        cache = Path(os.environ.get("TRAITRL_CACHE", Path.home() / ".cache" / "traitrl")) / "models"
        path = Path(spec) if spec != "auto" else cache / "smollm2-135m-instruct"
        if (path / "tokenizer.json").is_file():
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(str(path)), str(path)
        if spec != "auto":
            raise SystemExit(f"{path}: no tokenizer.json")
    from data.toy_tokenizer import build_toy_tokenizer

    return build_toy_tokenizer(vocab_size=8192), "toy BPE (8192, trained in-process)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000, help="records to stream end to end")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-per-cell", type=int, default=300)
    ap.add_argument("--n-regular", type=int, default=20_000)
    ap.add_argument("--tokenizer", default="auto", help="HF tokenizer dir, 'auto' (SmolLM2 cache) or 'toy'")
    args = ap.parse_args()

    from data.config import DataConfig
    from data.generator import generate_trait_records
    from data.pipeline import prompt_iterator, tokenize_source
    from models.tokenizer import encode_chats as ChatEncoder
    from data.tasks import generate_regular_records

    tok, tok_name = _tokenizer(args.tokenizer)
    cfg = DataConfig(batch_size=args.batch_size, n_per_cell=args.n_per_cell, n_regular=args.n_regular)
    t0 = time.perf_counter()
    trait = generate_trait_records(cfg.n_per_cell, cfg.seed, cfg.split)
    regular = generate_regular_records(cfg.n_regular, cfg.seed, cfg.split)
    t_gen = time.perf_counter() - t0
    n_src = len(trait) + len(regular)

    t1 = time.perf_counter()
    tokenize_source(trait, tok, cfg.max_prompt_len)
    tokenize_source(regular, tok, cfg.max_prompt_len)
    t_tok = time.perf_counter() - t1

    t2 = time.perf_counter()
    it = prompt_iterator(cfg, tok, trait, regular)  # tokenizes the sources again, inside the pipeline
    t_build = time.perf_counter() - t2
    n_batches = args.records // args.batch_size
    t3 = time.perf_counter()
    tokens = sum(int(b.mask_BxL.sum()) for b in itertools.islice(it, n_batches))
    t_stream = time.perf_counter() - t3
    n_streamed = n_batches * args.batch_size

    enc = ChatEncoder(tok)
    sample = (trait + regular)[:: max(1, n_src // 3000)]
    t4 = time.perf_counter()
    for r in sample:
        tok.apply_chat_template(r["messages"], tokenize=True, add_generation_prompt=True)
    t_peer = time.perf_counter() - t4
    assert enc.encode(sample[0]["messages"]) is not None

    result = {
        "tokenizer": tok_name,
        "cpus": os.cpu_count(),
        "source_records": n_src,
        "generate_rec_per_s": round(n_src / t_gen),
        "tokenize_rec_per_s": round(n_src / t_tok),
        "stream_rec_per_s": round(n_streamed / t_stream),
        "end_to_end_rec_per_s": round(n_streamed / (t_gen + t_build + t_stream)),
        "peer_apply_chat_template_rec_per_s": round(len(sample) / t_peer),
        "streamed_records": n_streamed,
        "prompt_tokens_per_record": round(tokens / n_streamed, 1),
    }
    print(json.dumps(result))
    ok = result["end_to_end_rec_per_s"] >= 5000
    print(
        f"end to end {result['end_to_end_rec_per_s']} records/s ({'meets' if ok else 'BELOW'} the 5,000/s target); "
        f"tokenize {result['tokenize_rec_per_s']}/s, stream {result['stream_rec_per_s']}/s, "
        f"naive per-record HF loop {result['peer_apply_chat_template_rec_per_s']}/s"
    )


if __name__ == "__main__":
    main()
