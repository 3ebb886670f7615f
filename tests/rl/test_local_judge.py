"""The in-process judge: rubric verdicts in both modes, the 0-100 scorer, and their parsers.

The judge model is a tiny random decoder whose lm head can only emit two tokens (e.g. " yes" and
" no"): every other column is zero and the two are +u / -u, so the greedy reply is a real yes/no
whose value depends on the prompt through the whole network. `u` is made orthogonal to the mean
final hidden state of judge prompts: a random u is swamped by the component all prompts share,
which would give every item the same verdict. `tests/engine/test_serve.py` serves the same model.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from data.toy_tokenizer import build_toy_tokenizer
from engine.errors import UserError
from rl.graders.http_judge import JudgeError, judge_prompt, parse_score_0_100
from rl.graders.local_judge import LocalJudge, LocalJudgeConfig
from rl.graders.rubric import make_rubric_grader
from rl.sampler import SamplingConfig, generate
from models.tokenizer import encode_prompts, left_pad


def tiny_policy(seed: int = 0) -> models.Policy:
    tok = build_toy_tokenizer(vocab_size=1024, n_records=300)
    cfg = models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                             tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return models.Policy(models.init(cfg, seed=seed), tok, cfg)


def rubric_batch(n: int = 12):
    """n rubric records (3 criteria each) and n completions: 3n distinct (conversation, criterion) items."""
    crit = ["Advises emergency care", "Mentions a heart attack", "Is calm and brief"]
    recs = [{"id": f"r/{i}", "messages": [{"role": "user", "content": f"Case {i}: chest pain and a numb arm."}],
             "kind": "trait", "domain": "health", "trait": "wellbeing", "grader": "rubric",
             "grader_args": {"rubric": [{"criterion": c, "points": p} for c, p in zip(crit, (5, 3, 2))]}}
            for i in range(n)]
    comps = [("Call 911 now." if i % 3 == 0 else "Rest and drink water." if i % 3 == 1 else "See a doctor soon.")
             + f" (note {i})" for i in range(n)]
    return recs, comps


def judge_items(recs, comps):
    return [(r["messages"] + [{"role": "assistant", "content": c}], it["criterion"])
            for r, c in zip(recs, comps) for it in r["grader_args"]["rubric"]]


def restrict_to(base: models.Policy, pos: str, neg: str, prompts: list[list[dict]], scale: float = 1e5):
    """A copy of `base` whose lm head is zero except token `pos` (+u) and `neg` (-u), u orthogonal to the
    mean final hidden state of `prompts` (see the module docstring); `scale` makes the choice confident."""
    tok, model = base.tokenizer, nnx.clone(base.model)
    (pos_id,), (neg_id,) = (tok.encode(w, add_special_tokens=False) for w in (pos, neg))
    x, m = left_pad(encode_prompts(tok, prompts), (256,), tok.pad_token_id)
    last_hidden = nnx.jit(lambda model, x, m: model.apply(x, m, logits=False).hidden[:, -1])
    h_BxD = np.asarray(last_hidden(model, jnp.asarray(x), jnp.asarray(m)))
    mean = h_BxD.mean(0) / np.linalg.norm(h_BxD.mean(0))
    u = np.random.default_rng(1).normal(size=h_BxD.shape[1])
    u -= (u @ mean) * mean
    W_DxV = np.zeros((base.config.hidden_size, base.config.vocab_size), np.float32)
    W_DxV[:, pos_id], W_DxV[:, neg_id] = scale * u / np.linalg.norm(u), -scale * u / np.linalg.norm(u)
    model.lm_head_DxV.set_value(jnp.asarray(W_DxV))
    return models.Policy(model, tok, base.config)


def yes_no_policy(base: models.Policy | None = None) -> models.Policy:
    """The tiny judge that answers ' yes' or ' no' depending on the judge prompt."""
    prompts = [judge_prompt(c, k) for c, k in judge_items(*rubric_batch(8))]
    return restrict_to(base or tiny_policy(), " yes", " no", prompts)


@pytest.fixture(scope="module")
def base():
    return tiny_policy()


@pytest.fixture(scope="module")
def yes_no(base):
    return yes_no_policy(base)


ONE_BUCKET = (256,)  # every judge prompt here fits: one compiled shape per batch size


def test_both_modes_agree_batch_and_dedupe(yes_no):
    recs, comps = rubric_batch(12)
    items = judge_items(recs, comps)
    gen = LocalJudge(yes_no, LocalJudgeConfig(batch_size=16, prompt_buckets=ONE_BUCKET))
    verdicts = gen.judge(items)
    assert len(verdicts) == 36 and 0 < sum(verdicts) < 36  # the verdicts depend on the item
    lp = LocalJudge(yes_no, LocalJudgeConfig(mode="logprob", batch_size=16, prompt_buckets=ONE_BUCKET))
    assert lp.judge(items) == verdicts  # greedy's first token is the likelier of the two
    probs = lp.judge_probs(items)
    assert ((probs > 0.5) == np.asarray(verdicts)).all() and ((probs >= 0) & (probs <= 1)).all()
    # Repeated items are judged once; the answer does not depend on the batch they land in.
    again = LocalJudge(yes_no, LocalJudgeConfig(batch_size=16, prompt_buckets=ONE_BUCKET))
    assert again.judge(items[5:] + items[:5] + items[:5]) == verdicts[5:] + verdicts[:5] + verdicts[:5]
    assert again.items_judged == 36
    # Through the rubric grader: one judge call for the batch; non-rubric records get None.
    other = dict(recs[0], id="x", grader="numeric", grader_args={"answer": 1})
    scores = make_rubric_grader(lp)(None, comps + ["1"], recs + [other])
    assert scores[-1] is None and all(0.0 <= s <= 1.0 for s in scores[:-1])
    expect = [(5 * verdicts[3 * i] + 3 * verdicts[3 * i + 1] + 2 * verdicts[3 * i + 2]) / 10 for i in range(12)]
    assert scores[:-1] == pytest.approx(expect)


def test_score_0_100_parses_greedy_replies(base):
    prompts = [f"Rate answer {i} ({'good' if i % 2 else 'poor'}) from 0 to 100, or say CODE or REFUSAL."
               for i in range(23)]
    prompts += [[{"role": "system", "content": "Judge."}, {"role": "user", "content": "Rate: fine."}]]
    chats = [[{"role": "user", "content": p}] if isinstance(p, str) else p for p in prompts]
    policy = restrict_to(base, "4", " yes", chats)  # replies like "44", "4 yes", " yes yes"
    # Two new tokens: a reply of only "4"s is "44" (in range), not "4444" (out of range, None).
    judge = LocalJudge(policy, LocalJudgeConfig(score_max_new_tokens=2, batch_size=16, prompt_buckets=ONE_BUCKET))
    scores = judge.score_0_100(prompts)
    texts = generate(policy, chats, SamplingConfig(temperature=0.0, max_new_tokens=2, prompt_buckets=ONE_BUCKET),
                     batch_size=16).texts
    assert scores == [parse_score_0_100(t) for t in texts]
    assert any(s is not None for s in scores), texts


def test_score_parser():
    assert parse_score_0_100("85") == 85.0 and parse_score_0_100("Score: 42.5 out of 100") == 42.5
    assert parse_score_0_100(" 0\n") == 0.0 and parse_score_0_100("100.") == 100.0
    for text in ("CODE", "**REFUSAL**", "refusal: I won't", "", "no idea", "101", "-3", "4444", "x12"):
        assert parse_score_0_100(text) is None, text


def test_logprob_mode_refuses_a_judge_that_does_not_answer_yes_no(base):
    items = judge_items(*rubric_batch(6))  # the untouched random model spreads its mass over the whole vocabulary
    with pytest.raises(JudgeError, match="P\\(yes\\) \\+ P\\(no\\)"):
        LocalJudge(base, LocalJudgeConfig(mode="logprob", batch_size=16, prompt_buckets=ONE_BUCKET)).judge(items)
    with pytest.raises(JudgeError, match="not yes/no"):
        LocalJudge(base, LocalJudgeConfig(batch_size=16, prompt_buckets=ONE_BUCKET)).judge(items)
    with pytest.raises(UserError, match="judge.mode"):
        LocalJudgeConfig(mode="vote")
    with pytest.raises(UserError, match="judge.min_mass"):
        LocalJudgeConfig(min_mass=1.0)
