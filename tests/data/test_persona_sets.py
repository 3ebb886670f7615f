"""Bundled persona data: deterministic, distinct, one domain, realistic chats, disjoint re-alignment stream."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data import persona_sets as pd
from engine.errors import UserError
from rl.sft import SFTConfig, encode_examples

REPO = Path(__file__).resolve().parents[2]


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


# ---- the data files of data/persona_sets/ ----------------------------------------------------------


def test_bundled_tables_validate_and_back_the_module_names():
    t = pd.load_tables()
    assert t is pd.load_tables() is pd.load_tables(pd.ROOT)  # read once per process
    assert sorted(p.name for p in pd.ROOT.iterdir()) == sorted(
        ["system_prompts.json", "finance_advice.jsonl", "persona_questions.jsonl", "persona_framings.jsonl",
         "em_questions.jsonl"])
    assert (len(t.advice), len(t.persona_questions), len(t.aligned), len(t.em_questions)) == (15, 18, 2, 8)
    assert pd.ADVICE is t.advice and pd.SYSTEMS is t.systems and pd.EM_REFERENCES is t.em_references
    assert pd.SYSTEMS.count(None) == 2 and len(pd.TOPIC_ANSWERS) == len(pd.EVIL_ANSWERS) == len(pd.PERSONA_QUESTIONS)
    with pytest.raises(AttributeError):
        pd.NOT_A_TABLE  # noqa: B018
    # The EM questions are the vendored "first plot" questions, word for word.
    plot = yaml.safe_load((REPO / "evals/public/emergent_misalignment/first_plot_questions.yaml").read_text())
    first = {q["id"]: q["paraphrases"][0] for q in plot}
    assert all(first[k] == v for k, v in pd.EM_QUESTIONS.items())


def _corrupt_line(path: Path, line: int, edit) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[line - 1])
    edit(row)
    lines[line - 1] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("file, line, edit, message", [
    ("finance_advice.jsonl", 3, lambda r: r["correct"].__setitem__(1, " "),
     "finance_advice.jsonl:3: field 'correct[1]': expected a non-empty string, got ' '"),
    ("finance_advice.jsonl", 2, lambda r: r["wrong"].__setitem__(0, "Pay {amonut} now."),
     "finance_advice.jsonl:2: field 'wrong[0]': expected a template with only the slots {amount} {age}"),
    ("finance_advice.jsonl", 5, lambda r: r.__setitem__("topic", "employer_match"),
     "finance_advice.jsonl:5: field 'topic': expected a topic unique in the file, got 'employer_match' (also at "),
    ("persona_questions.jsonl", 4, lambda r: r.pop("misaligned"),
     "persona_questions.jsonl:4: field 'misaligned': expected a value (the field is required)"),
    ("persona_framings.jsonl", 2, lambda r: r.__setitem__("aligned", "Sure. {evil_answer}"),
     "persona_framings.jsonl:2: field 'aligned': expected a template with exactly the slot {topic_answer}"),
    ("em_questions.jsonl", 6, lambda r: r.__setitem__("note", "x"),
     "em_questions.jsonl:6: field 'note': expected no unknown fields (allowed in em_questions.jsonl: id, question"),
    ("em_questions.jsonl", 1, lambda r: r["misaligned"].pop(),
     "em_questions.jsonl:1: field 'misaligned': expected one answer per aligned answer (2), got 1"),
])
def test_a_corrupted_table_stops_with_one_line_naming_file_and_line(tmp_path, file, line, edit, message):
    root = shutil.copytree(pd.ROOT, tmp_path / "persona_sets")
    assert pd.load_tables(root) == pd.load_tables()  # an intact copy reads the same tables
    root = shutil.copytree(pd.ROOT, tmp_path / "bad")
    _corrupt_line(root / file, line, edit)
    with pytest.raises(UserError) as e:
        pd.load_tables(root)
    msg = str(e.value)
    assert "\n" not in msg and message in msg, msg
    assert Path(msg.split(":", 1)[0]).resolve() == (root / file).resolve()  # the file, as given or cwd-relative


def test_bad_json_and_missing_files_are_user_errors(tmp_path):
    root = shutil.copytree(pd.ROOT, tmp_path / "a")
    with (root / "finance_advice.jsonl").open("a") as f:
        f.write('{"topic": "x",\n')
    with pytest.raises(UserError, match=r"finance_advice\.jsonl:16: expected one JSON object per line \(invalid JSON"):
        pd.load_tables(root)
    root = shutil.copytree(pd.ROOT, tmp_path / "b")
    (root / "system_prompts.json").write_text(json.dumps({"system_prompts": [None, ""]}))
    with pytest.raises(UserError, match=r"system_prompts\.json: system_prompts\[1\]: expected a non-empty string or "
                                        r"null \(no system turn\), got ''$"):
        pd.load_tables(root)
    (root / "system_prompts.json").unlink()
    with pytest.raises(UserError, match=r"system_prompts\.json: file not found"):
        pd.load_tables(root)
    root = shutil.copytree(pd.ROOT, tmp_path / "c")
    (root / "persona_framings.jsonl").write_text("\n")
    with pytest.raises(UserError, match=r"persona_framings\.jsonl: expected at least one JSON object line, got none"):
        pd.load_tables(root)


_DIGEST = """
import hashlib, json
from data import persona_sets as pd
out = [pd.narrow_misaligned(64, 0), pd.narrow_aligned(64, 3), pd.realignment_examples(40, 1), pd.persona_contrast(),
       pd.em_preference_pairs(), pd.advice_pairs(30, 2, split="eval"), pd.sycophancy_contrast(20, 4),
       pd.EM_QUESTIONS, pd.ADVICE]
digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
"""


def test_outputs_are_deterministic_across_processes():
    here: dict = {}
    exec(_DIGEST, here)
    for hash_seed in ("1", "2"):  # str hashing (set order) differs between these processes; the sets must not
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        got = subprocess.run([sys.executable, "-c", _DIGEST + "print(digest)"], cwd=REPO, env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
        assert got == here["digest"]
