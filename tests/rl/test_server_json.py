"""`traitrl serve`'s structured output for the rubric judge: a boolean JSON schema answered by choice.

In process (no socket; tests/engine/commands/test_serve.py covers the socket): each verdict is the likelier
of `"key": true` / `"key": false` given the reply so far, checked against a plain full-sequence forward.
"""

import json

import jax
import numpy as np
import pytest

from models.tokenizer import encode_prompts
from rl.graders.rubric_judge import parse_rubric_verdicts, verdict_schema
from rl.server import BadRequest, Engine, ServeConfig


def _full_logp(policy, ids: list[int], n: int) -> float:
    """log p of the last n tokens of ids, from one unpadded forward with full logits."""
    x = np.asarray([ids], np.int32)
    logits = policy.model.apply(x, np.ones_like(x, bool)).logits[0]
    logp = np.asarray(jax.nn.log_softmax(logits.astype(np.float32), axis=-1))
    return float(sum(logp[t - 1, ids[t]] for t in range(len(ids) - n, len(ids))))


def test_boolean_schema_is_answered_by_the_likelier_value(tiny_policy):
    engine = Engine(tiny_policy, "judge", ServeConfig(max_batch=4))
    keys = ("advises_care", "is_calm", "no_false_claim")
    convs = [[{"role": "user", "content": f"Case {i}: chest pain. Grade the reply."}] for i in range(3)]
    reqs = [engine.parse({"messages": m, "temperature": 0, "max_tokens": 64,
                          "response_format": verdict_schema(keys[: 2 + (i % 2)])}) for i, m in enumerate(convs)]
    engine.run_batch(reqs)
    tok = tiny_policy.tokenizer
    for m, r in zip(convs, reqs):
        text = r.result["choices"][0]["message"]["content"]
        got = parse_rubric_verdicts(text, r.bool_keys)  # always valid JSON with exactly the schema's keys
        assert list(json.loads(text)) == list(r.bool_keys)
        prompt = encode_prompts(tok, [m])[0]
        so_far = "{"
        for k, v in zip(r.bool_keys, got):
            prefix = so_far + ("" if so_far == "{" else ", ") + json.dumps(k) + ": "
            lp = {w: _full_logp(tiny_policy, prompt + tok.encode(prefix + w, add_special_tokens=False),
                                len(tok.encode(prefix + w, add_special_tokens=False))) for w in ("true", "false")}
            assert v == (lp["true"] >= lp["false"]), (k, lp)
            so_far = prefix + ("true" if v else "false")


@pytest.mark.parametrize("fmt", [{"type": "json_object"},
                                 {"type": "json_schema", "json_schema": {"schema": {"type": "object", "properties": {
                                     "score": {"type": "integer"}}}}},
                                 {"type": "json_schema"}, "json"])
def test_other_response_formats_are_a_400_naming_the_field(tiny_policy, fmt):
    engine = Engine(tiny_policy, "judge", ServeConfig())
    with pytest.raises(BadRequest) as e:
        engine.parse({"messages": [{"role": "user", "content": "hi"}], "response_format": fmt})
    assert e.value.param == "response_format"
    assert engine.parse({"messages": [{"role": "user", "content": "hi"}],
                         "response_format": {"type": "text"}}).bool_keys == ()
