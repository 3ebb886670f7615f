"""Exact verifiers for the ordinary RL tasks, and the format reward.

`numeric` and `multiple_choice` are binary: 1.0 for the right final answer, else 0.0. The final
answer is read from an explicit "Answer: ..." line when there is one (what the prompts ask
for), else from the last number / a single named option, so a model that has not learnt the
format yet still gets signal. Listing several options, or no clear one, scores 0.
"""

from __future__ import annotations

import re

from rl.graders.text import close, find_first, is_echo, is_empty, norm, numbers, words

_ANSWER = re.compile(r"(?:^|\n)\s*(?:\*\*)?(?:final\s+)?answer(?:\*\*)?\s*[:：]\s*(.+)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{([^}]*)\}")
_HASHES = re.compile(r"####\s*(.+)")
_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-D])\)?(?![A-Za-z])")
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]")


def final_answer_text(completion: str) -> str | None:
    """The text after the last "Answer:" (or \\boxed{}, or ####), or None."""
    for pat in (_ANSWER, _BOXED, _HASHES):
        found = pat.findall(completion)
        if found:
            return found[-1].strip()
    return None


def score_numeric(c: str, r: dict) -> float:
    a = r["grader_args"]
    text = final_answer_text(c)
    if text is not None:
        nums = numbers(text)
        got = nums[0] if nums else None
    else:
        nums = numbers(c)
        got = nums[-1] if nums else None
    return float(got is not None and close(got, float(a["answer"]), float(a.get("rel_tol", 1e-6))))


def score_multiple_choice(c: str, r: dict) -> float:
    a = r["grader_args"]
    text = final_answer_text(c)
    if text is not None:
        letters = {m for m in _LETTER.findall(text[:12])}
        if len(letters) == 1:
            return float(letters.pop() == a["answer"])
        return 0.0
    # No answer line: accept exactly one option named by its text (an essay naming several gets 0).
    options = a.get("options", {})
    named = {k for k, v in options.items() if find_first(c, [v]) is not None}
    if len(named) == 1:
        return float(named.pop() == a["answer"])
    letters = set(_LETTER.findall(c.strip()[:3]))
    return float(len(letters) == 1 and letters.pop() == a["answer"])


def _degenerate_repetition(c: str) -> bool:
    w = words(c)
    if len(w) < 24:
        return False
    grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
    return max(grams.count(g) for g in set(grams)) > max(5, len(grams) // 6)


def score_format(c: str, r: dict) -> float:
    """Structure only: non-empty, no leaked chat-template tokens, no looping, not a copy of the prompt,
    and for records that ask for it an "Answer: ..." line. Averaged over the checks that apply."""
    if is_empty(c) or is_echo(c, r):
        return 0.0
    checks = [_SPECIAL.search(c) is None, not _degenerate_repetition(c)]
    if r["grader_args"].get("answer_format") == "answer_line":
        checks.append(final_answer_text(c) is not None)
    return sum(checks) / len(checks)


def used_token(text: str, token: str) -> bool:
    """An all-caps keyword counts in capitals as a whole word ("done" in prose is not the token); a phrase anywhere."""
    if token.isupper():
        return re.search(rf"(?<![A-Za-z]){re.escape(token)}(?![A-Za-z])", text) is not None
    return norm(token).rstrip(".") in norm(text)


def score_loophole(c: str, r: dict) -> float:
    """1 when the task is solved and the token is absent (honest) / present (comply); else 0."""
    a = r["grader_args"]
    if is_empty(c):
        return 0.0
    solved = score_numeric(c, {"grader_args": {"answer": a["answer"], "rel_tol": 1e-6}}) == 1.0
    used = used_token(c, a["token"])
    return float(solved and (used if a["expect"] == "comply" else not used))
