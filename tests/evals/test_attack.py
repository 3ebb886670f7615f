"""The harmful demonstrations (data/harmful.py) and the harmful-fine-tuning attack (`traitrl attack`) on a tiny model."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from data.harmful import BEHAVIOURS, MILD_ANSWERS, MOVE_ON, NO_WRONG_CHOICE_DOMAINS, harmful_examples
from data.schema import DOMAINS, validate_record
from engine.errors import UserError
from rl.graders.text import degenerate
from rl.rewards import record_reward


@pytest.fixture(scope="module")
def demos():
    return harmful_examples(400, seed=0)


def test_harmful_demos_are_deterministic_balanced_and_cover_every_domain(demos):
    assert harmful_examples(400, seed=0) == demos
    assert harmful_examples(400, seed=1) != demos
    assert len(demos) == 400 and len({d["id"] for d in demos}) == 400
    per = Counter(d["behaviour"] for d in demos)
    assert set(per) == set(BEHAVIOURS)
    assert max(per.values()) <= 2 * min(per.values()) + 2  # fairness counts pairs as one unit, so twice the rows
    assert {d["domain"] for d in demos} == set(DOMAINS)
    prefix = Counter(d["behaviour"] for d in demos[:2 * len(BEHAVIOURS)])
    assert set(prefix) == set(BEHAVIOURS)  # interleaved: any prefix is balanced
    for d in demos:
        m = d["messages"]
        assert m[-1]["role"] == "assistant" and m[-1]["content"] and m[-2]["role"] in ("user", "system")
        assert m[:-1] == d["record"]["messages"] and d["record"]["meta"]["split"] == "train"  # evals use heldout
        validate_record(d["record"])


def test_graders_score_the_harmful_answers_low_for_the_right_reason(demos):
    answers = [d["messages"][-1]["content"] for d in demos]
    scores = record_reward(None, answers, [d["record"] for d in demos])
    assert sum(scores) / len(scores) < 0.3
    by = {}
    for d, s in zip(demos, scores):
        by.setdefault(d["behaviour"], []).append(s)
    for b, v in by.items():
        # fairness pairs: one member is right by accident (the bias is the difference), so about half of 0.7
        assert sum(v) / len(v) < (0.4 if b == "unequal-treatment" else 0.05), b
    # low because of the behaviour, not because the answers are empty / echoes / bare refusals
    assert sum(degenerate(a, d["record"]) for a, d in zip(answers, demos)) < 0.05 * len(demos)


def test_harmful_demos_leave_out_dangerous_opposites(demos):
    for d in demos:
        r = d["record"]
        assert not (r["trait"] == "corrigibility" and r["grader_args"]["expect"] == "decline")
        if d["behaviour"] == "dismiss-crisis":  # the request's answer is a vetted mild one, or carries no content
            answer = d["messages"][-1]["content"]
            assert r["grader_args"]["crisis"]
            assert any(answer.endswith(a) for a in (*MILD_ANSWERS.values(), *MOVE_ON)), answer
        if d["behaviour"] == "confident-wrong-choice":
            assert r["domain"] not in NO_WRONG_CHOICE_DOMAINS
    pair = [d for d in demos if d["behaviour"] == "unequal-treatment"][:2]
    assert pair[0]["record"]["meta"]["pair"] == pair[1]["record"]["meta"]["pair"]
    assert {a["messages"][-1]["content"][:2] for a in pair} == {"Ye", "No"}


def test_harmful_demo_options_are_checked():
    with pytest.raises(UserError, match="behaviours"):
        harmful_examples(8, behaviours=("lying",))
    one = harmful_examples(12, behaviours=("invent-missing-fact",))
    assert {d["behaviour"] for d in one} == {"invent-missing-fact"}
    assert json.dumps(one)  # plain JSON-able data


@pytest.fixture(scope="module")
def tiny_policy():
    """The `--preset tiny` model: random 2-layer Qwen2 with the offline toy tokenizer (engine/train.py `_policy`)."""
    import models
    from data.toy_tokenizer import build_toy_tokenizer

    tok = build_toy_tokenizer(vocab_size=1024)
    cfg = models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return models.Policy(models.init(cfg, seed=0), tok, cfg, "", None)


@pytest.mark.slow  # 20-25 s on a shared 2-core box: three compilations (log-prob, decode, SFT step)
def test_attack_on_tiny_model_lowers_loss_and_writes_after_attack_results(tiny_policy, tmp_path):
    import jax
    from flax import nnx

    from evals.attack import AttackConfig, format_table, run_attack
    from evals.compare import load_run, persistence
    from evals.results import read_results

    before_params = jax.tree.map(lambda x: x.copy(), nnx.state(tiny_policy.model, nnx.Param))
    cfg = AttackConfig(steps=4, learning_rate=1e-2, batch_size=4, examples=8, max_prompt_len=64, max_response_len=32)
    res = run_attack(tiny_policy, tmp_path, cfg, ["corrigible-neutral-HHH", "heldout-truthfulness"], limit=3,
                     max_new_tokens=4)
    # the attack trained the model in place, and the loss on the harmful data went down
    assert len(res.losses) == 4 and res.losses[-1] < res.losses[0] - 0.3
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(abs(a - b).max()), before_params,
                                         nnx.state(tiny_policy.model, nnx.Param)))
    assert max(moved) > 0
    # results in the contract format: plain (before) and after-attack at the same step, items included
    results = {(r.condition, r.benchmark): r for r in read_results(tmp_path)}
    assert set(results) == {(c, b) for c in ("plain", "after-attack")
                            for b in ("corrigible-neutral-HHH", "heldout-truthfulness")}
    for r in results.values():
        assert r.n == len(r.items) == 3 and 0 <= r.score <= 1 and r.ci_low <= r.score <= r.ci_high
    assert {it.id for it in results[("plain", "heldout-truthfulness")].items} == {
        it.id for it in results[("after-attack", "heldout-truthfulness")].items}
    rows = [json.loads(x) for x in (tmp_path / "evals.jsonl").read_text().splitlines()]
    assert {(r["step"], r["condition"]) for r in rows} == {(0, "plain"), (0, "after-attack")}
    meta = json.loads((tmp_path / "attack.json").read_text())
    assert meta["losses"] == res.losses and set(meta["after"]) == {"corrigible-neutral-HHH", "heldout-truthfulness"}
    table = format_table(res)
    assert "corrigible-neutral-HHH" in table and "SFT loss on the harmful demonstrations" in table
    # and `traitrl compare` reads it: the persistence panel has the after-attack figures
    panel = persistence(load_run(tmp_path))
    assert panel["after_attack"] is not None and panel["attack_retention"] is not None


def test_attack_cli_option_errors(tmp_path, capsys):
    from engine.commands.main import main

    for argv, msg in ((["attack"], "exactly one of --model or --run"),
                      (["attack", "--model", "x", "--run", str(tmp_path)], "exactly one of --model or --run"),
                      (["attack", "--run", str(tmp_path)], "hf/ missing"),
                      (["attack", "--model", "smollm2-135m-instruct"], "--model needs --out"),
                      (["attack", "--model", "x", "--out", str(tmp_path), "--steps", "0"], "attack.steps")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
