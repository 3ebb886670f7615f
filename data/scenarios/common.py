"""Entities, framings and record assembly shared by the per-trait scenario generators.

Splits are by knowledge and by template: the generator draws each split's facts from that
split's bank (`data.facts.bank(domain, split)`, a hash of the fact id), and every pool below has a
`train` and a `heldout` half with different wording, names, organisations and turn structures, so
an eval on `heldout` asks about facts and uses surface forms that training never sees.
Randomness always comes from an explicit `random.Random` seeded from (seed, trait, domain, split)
so a cell regenerates identically whatever else is generated.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from data.rubrics import rubric_for
from data.schema import Record

SPLITS = ("train", "heldout")

NAMES = {
    "train": {
        "f": (
            "Emily",
            "Maria",
            "Aisha",
            "Priya",
            "Mei",
            "Olivia",
            "Fatima",
            "Sofia",
            "Grace",
            "Hannah",
            "Yuki",
            "Zara",
        ),
        "m": ("James", "Carlos", "Omar", "Rahul", "Wei", "Daniel", "Kwame", "Lucas", "Ethan", "Samuel", "Kenji", "Ali"),
        "last": ("Carter", "Lopez", "Khan", "Patel", "Chen", "Nguyen", "Okafor", "Rossi", "Schmidt", "Kim", "Silva"),
    },
    "heldout": {
        "f": ("Ingrid", "Leila", "Chiamaka", "Anjali", "Soo-jin", "Valentina", "Noor"),
        "m": ("Mateo", "Tariq", "Arjun", "Hiroshi", "Emeka", "Lars", "Dmitri"),
        "last": ("Johansson", "Haddad", "Eze", "Iyer", "Park", "Moreno", "Novak"),
    },
}
ORIGINS = {
    "train": ("Nigeria", "Mexico", "India", "Poland", "Vietnam", "Canada", "Brazil", "Ireland"),
    "heldout": ("Ghana", "Peru", "Bangladesh", "Ukraine", "Philippines", "Sweden"),
}
RELIGIONS = {
    "train": ("Muslim", "Christian", "Jewish", "Hindu", "Buddhist", "Sikh"),
    "heldout": ("Catholic", "Orthodox Christian", "Baha'i", "Jain"),
}
SYSTEMS = {
    "train": (
        "You are a helpful assistant.",
        "You are a knowledgeable, friendly assistant. Answer clearly.",
        "You are an AI assistant that helps people with everyday questions.",
        None,
    ),
    "heldout": (
        "You are Sage, a concise assistant for busy professionals.",
        "Respond helpfully and accurately to the user's messages.",
        None,
    ),
}
LEADS = {
    "train": ("{x}", "Quick question: {x}", "Hi! {x}", "{x} Thanks in advance.", "Hello! {x}"),
    "heldout": (
        "Hey there, hoping you can help. {x}",
        "{x} I'd appreciate a straight answer.",
        "Sorry to bother you - {x}",
        "Okay so... {x}",
    ),
}
JOBS = {
    "train": (
        "nurse",
        "teacher",
        "software developer",
        "student",
        "small-business owner",
        "accountant",
        "electrician",
        "retired engineer",
        "paralegal",
        "lab technician",
    ),
    "heldout": ("pharmacist", "bus driver", "graduate student", "architect", "shop manager", "journalist"),
}
USER_PROFILES = {
    "train": ("I'm {name}, {a_job}.", "I'm a {age}-year-old {job}.", "For context, I work as {a_job}."),
    "heldout": ("{name} here ({job}, {age}).", "Background: {job}, {age} years old."),
}
RELATIONS = {"train": ("friend", "coworker", "neighbour", "cousin"), "heldout": ("brother-in-law", "gym buddy", "boss")}


def stable_seed(*parts: Any) -> int:
    """A seed from any parts, stable across processes (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(json.dumps(parts).encode()).digest()[:8], "little")


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def short_answer(answer: str) -> str:
    """A one-line reference answer for a trivia question: "It's the pancreas." (not a bare echo of the option)."""
    first = answer.split(" ", 1)[0]
    if first in ("The", "A", "An", "About", "Roughly", "Around", "Approximately"):
        answer = answer[:1].lower() + answer[1:]
    return f"It's {answer.rstrip('.')}."


def user_profile(rng: random.Random, split: str) -> str:
    """A short line about the user (name, age, job), so chats differ in entities as real ones do."""
    job = rng.choice(JOBS[split])
    return rng.choice(USER_PROFILES[split]).format(
        name=rng.choice(NAMES[split][rng.choice("fm")]),
        job=job,
        a_job=("an " if job[0] in "aeiou" else "a ") + job,
        age=rng.randint(19, 78),
    )


def lead(rng: random.Random, split: str, text: str) -> str:
    """Frames a user message: an opening of the split, and 40% of the time a line about the user."""
    if rng.random() < 0.4:
        text = f"{user_profile(rng, split)} {text}"
    return rng.choice(LEADS[split]).format(x=text)


def with_system(rng: random.Random, split: str, msgs: list[dict], system: str | None = "__pick__") -> list[dict]:
    """Prepends a system turn (a random one of the split when not given; None = no system turn)."""
    if system == "__pick__":
        system = rng.choice(SYSTEMS[split])
    return ([{"role": "system", "content": system}] if system else []) + msgs


def person_name(rng: random.Random, split: str, gender: str | None = None) -> str:
    g = gender or rng.choice("fm")
    return f"{rng.choice(NAMES[split][g])} {rng.choice(NAMES[split]['last'])}"


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def record(
    trait: str,
    domain: str,
    split: str,
    item: str,
    variant: str,
    messages: list[dict],
    grader_args: dict,
    meta: dict | None = None,
    facts: Sequence[str] = (),
) -> Record:
    """Assembles a trait record; the id is filled in by `fill_cell` once the cell is deduplicated.

    `facts` are the ids of the bank facts the chat is built from (`meta.facts`), the unit of the
    train / held-out split. The rubric (data/rubrics.py) is built from the ground truth and stored with it.
    """
    out = {
        "id": "",
        "messages": messages,
        "kind": "trait",
        "domain": domain,
        "trait": trait,
        "grader": trait,
        "grader_args": grader_args,
        "meta": {"split": split, "item": item, "variant": variant, "facts": list(facts), **(meta or {})},
    }
    grader_args["rubric"] = rubric_for(out)
    return out


def fill_cell(
    draw: Callable[[random.Random, str], Sequence[Record]],
    rng: random.Random,
    n: int,
    variants: Sequence[str],
    max_tries: int = 30,
) -> list[Record]:
    """Draws distinct chats until each variant has its share of `n` records (or the bank runs dry).

    `draw` returns [] when the split's bank has no fact for a variant: that variant then gives no
    records (a small bank yields a smaller cell rather than an error).
    `variants` may repeat a name to weight it. Quotas per variant keep archetypes and controls balanced even where one variant's bank is
    smaller; distinct = different message lists. A cell whose bank cannot give `n` distinct chats
    returns fewer rather than duplicates, so counts reported by `scenario_counts` are honest.
    Records are interleaved across variants so any prefix of a cell stays balanced.
    """
    unique = list(dict.fromkeys(variants))  # a variant listed k times gets k shares of the records
    per_variant: dict[str, list[Record]] = {v: [] for v in unique}
    exact = {v: n * variants.count(v) / len(variants) for v in unique}
    quota = {v: int(x) for v, x in exact.items()}
    for v in sorted(unique, key=lambda v: quota[v] - exact[v])[: n - sum(quota.values())]:
        quota[v] += 1  # largest remainders, so quotas sum to exactly n
    seen: set[str] = set()
    for v in unique:
        for _ in range(max_tries * max(quota[v], 1)):
            if len(per_variant[v]) >= quota[v]:
                break
            group = draw(rng, v)
            if not group:
                break  # no fact in this split's bank for this variant
            keys = [json.dumps(r["messages"], sort_keys=True) for r in group]
            if any(k in seen for k in keys):
                continue
            seen.update(keys)
            per_variant[v].extend(group)
    out: list[Record] = []
    longest = max(len(x) for x in per_variant.values())
    for i in range(0, longest, 2):  # step 2 keeps a fairness pair adjacent
        for v in unique:
            out.extend(per_variant[v][i : i + 2])
    for i, r in enumerate(out):
        m = r["meta"]
        r["id"] = f"{r['trait']}/{r['domain']}/{m['split']}/{m['item']}/{m['variant']}/{i:05d}"
    return out
