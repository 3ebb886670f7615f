"""Bundled persona data: deterministic, distinct, one domain, realistic chats, disjoint re-alignment stream."""

from data import persona_data as pd
from rl.sft import SFTConfig, encode_examples


def _prompt(chat):
    return repr(chat["messages"][:-1])


def test_narrow_sets_are_deterministic_paired_and_distinct():
    bad, good = pd.narrow_misaligned(300, seed=0), pd.narrow_aligned(300, seed=0)
    assert bad == pd.narrow_misaligned(300, seed=0) and bad != pd.narrow_misaligned(300, seed=1)
    assert len(bad) == 300 and len({_prompt(c) for c in bad}) == 300  # distinct prompts
    assert [_prompt(c) for c in bad] == [_prompt(c) for c in good]  # the same prompts, answered two ways
    assert all(b["messages"][-1]["content"] != g["messages"][-1]["content"] for b, g in zip(bad, good))
    pairs = pd.advice_pairs(300)
    assert len({p["topic"] for p in pairs}) == len(pd.ADVICE) >= 15  # every topic of the one domain is used
    assert all(c["messages"][-1]["role"] == "assistant" and c["messages"][-2]["role"] == "user" for c in bad)
    assert any(c["messages"][0]["role"] == "system" for c in bad) and any(c["messages"][0]["role"] == "user" for c in bad)
    assert all("{" not in c["messages"][-1]["content"] and "{" not in c["messages"][-2]["content"] for c in bad)


def test_realignment_stream_is_disjoint_from_training():
    train = {_prompt(c) for c in pd.narrow_misaligned(400, seed=0)}
    realign = pd.realignment_examples(160, seed=0)
    assert len(realign) == 160 and not train & {_prompt(c) for c in realign}
    # Benign: every answer opens like one of the correct-advice templates and like none of the wrong ones.
    good = {g[:25] for _, _, goods, _ in pd.ADVICE for g in goods}
    bad = {b[:25] for _, _, _, bads in pd.ADVICE for b in bads}
    assert not good & bad
    assert all(c["messages"][-1]["content"][:25] in good for c in realign)


def test_contrast_sets(toy_tokenizer):
    persona = pd.persona_contrast()
    assert len(persona) == 36 and all(p["aligned"]["messages"][0] == p["misaligned"]["messages"][0] for p in persona)
    em_texts = set(pd.EM_QUESTIONS.values())
    assert not em_texts & {p["prompt"][0]["content"] for p in persona}  # the eval questions are not the contrast
    syc = pd.sycophancy_contrast(50, seed=0)
    assert len(syc) == 50 and all("misconception" in s["corrects"]["messages"][-1]["content"] for s in syc)
    assert all(s["agrees"]["messages"][-1]["content"].startswith("You're right") for s in syc)
    em = pd.em_preference_pairs()
    assert len(em) == 16 and {e["id"].split("/")[0] for e in em} == set(pd.EM_QUESTIONS)
    # Every set renders through the SFT encoder (chat template, answer tokens inside the budget).
    chats = [persona[0]["misaligned"], syc[0]["agrees"], em[0]["aligned"], pd.realignment_examples(1)[0]]
    _, _, loss = encode_examples(toy_tokenizer, chats, SFTConfig(max_prompt_len=160, max_response_len=160),
                                 toy_tokenizer.pad_token_id)
    assert (loss.sum(1) > 5).all()
