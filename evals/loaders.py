"""Loaders for public benchmark files in their own formats -> `Item`s (file:line errors on bad rows).

Formats (see evals/public/README.md): Anthropic model-written-evals A/B JSONL, TruthfulQA CSV,
XSTest CSV, HealthBench JSONL, the emergent-misalignment question YAML, StrongREJECT CSV, HarmBench CSV,
meg-tong sycophancy-eval JSONL, and our own record JSONL / Parquet. Every loader reads the whole file
(so a bad row anywhere is reported, not only in the subset an eval happens to use) and returns items
in file order with ids that do not change while the file does not.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from engine.errors import UserError
from evals.items import Item

ENV_VAR = "TRAITRL_BENCHMARKS"
_CHOICE = re.compile(r"(?m)^\s*\(([A-Z])\)")
_LABEL = re.compile(r"^\s*\(([A-Z])\)\s*$")


def benchmarks_dir(override: str | Path | None = None) -> Path:
    """The folder of shipped public files: `override`, else $TRAITRL_BENCHMARKS, else the copy inside the package
    (evals/public: byte-for-byte slices of the public sets, with their licenses)."""
    if override is not None:
        path, origin = Path(override), "--benchmarks-dir"
    elif os.environ.get(ENV_VAR):
        path, origin = Path(os.environ[ENV_VAR]), f"${ENV_VAR}"
    else:
        path, origin = Path(__file__).resolve().parent / "public", "the default"
    if not path.is_dir():
        raise UserError(f"{path}: benchmark folder not found ({origin}); pass --benchmarks-dir DIR or set {ENV_VAR}")
    return path


def _need_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    return p


def _jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield where, row


def _csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[str, dict]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise UserError(f"{path}:1: header: missing column(s) {', '.join(missing)} (expected {', '.join(required)})")
        start = 2
        for row in reader:
            where = f"{path}:{start}"  # a quoted field may span lines: report where the row starts
            start = reader.line_num + 1
            if None in row or any(row.get(c) is None for c in reader.fieldnames):
                raise UserError(f"{where}: expected {len(reader.fieldnames)} fields ({', '.join(reader.fieldnames)})")
            if not row[required[0]].strip():  # the first required column is the prompt / question text
                raise UserError(f"{where}: field '{required[0]}': expected a non-empty value")
            yield where, row


def _text(row: dict, key: str, where: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise UserError(f"{where}: field '{key}': expected a non-empty string, got {v!r}"[:200])
    return v


# ---- Anthropic model-written evals (A/B) ---------------------------------------------------------


def load_anthropic_ab(path: str | Path, desired: str = "matching") -> list[Item]:
    """`question` with "(A) ... (B) ..." choices and `answer_(not_)matching_behavior` labels.

    Options are every choice letter of the question as "(X)"; `desired` says which label is the good
    answer ("matching" or "not_matching"). A label may also be a list (several undesired answers).
    """
    if desired not in ("matching", "not_matching"):
        raise UserError(f"desired: expected 'matching' or 'not_matching', got {desired!r}")
    p = _need_file(path)
    items = []
    for where, row in _jsonl(p):
        q = _text(row, "question", where)
        letters = list(dict.fromkeys(_CHOICE.findall(q.split("Choices:")[-1])))
        if len(letters) < 2:
            raise UserError(f"{where}: field 'question': expected at least two choices like ' (A) ...', got {len(letters)}")
        labels = {}
        for key in ("answer_matching_behavior", "answer_not_matching_behavior"):
            vals = row.get(key)
            vals = vals if isinstance(vals, list) else [vals]
            idx = []
            for v in vals:
                m = _LABEL.match(v) if isinstance(v, str) else None
                if m is None or m.group(1) not in letters:
                    raise UserError(f"{where}: field '{key}': expected one of the question's choices "
                                    f"{', '.join(f'({x})' for x in letters)}, got {v!r}")
                idx.append(letters.index(m.group(1)))
            labels[key] = tuple(idx)
        match, other = labels["answer_matching_behavior"], labels["answer_not_matching_behavior"]
        good, bad = (match, other) if desired == "matching" else (other, match)
        items.append(Item(f"{p.stem}/{where.rsplit(':', 1)[1]}", [{"role": "user", "content": q}],
                          options=tuple(f"({x})" for x in letters), good=good, bad=bad))
    return items


# ---- TruthfulQA -----------------------------------------------------------------------------------

TRUTHFULQA_COLUMNS = ("Question", "Type", "Category", "Best Answer", "Correct Answers", "Incorrect Answers", "Source")


def _answers(s: str) -> list[str]:
    return [a.strip() for a in s.split(";") if a.strip()]


def load_truthfulqa(path: str | Path, mode: str = "mc1") -> list[Item]:
    """TruthfulQA.csv. MC1: the best answer against the incorrect ones (one right option);
    MC2: every correct answer against the incorrect ones (score = normalised probability of the true set)."""
    if mode not in ("mc1", "mc2"):
        raise UserError(f"truthfulqa mode: expected mc1 or mc2, got {mode!r}")
    p = _need_file(path)
    items = []
    for i, (where, row) in enumerate(_csv(p, TRUTHFULQA_COLUMNS)):
        best = _text(row, "Best Answer", where)
        wrong = _answers(row["Incorrect Answers"])
        right = _answers(row["Correct Answers"])
        if not wrong:
            raise UserError(f"{where}: field 'Incorrect Answers': expected answers separated by '; '")
        if mode == "mc1":
            opts, good = [best, *wrong], (0,)
        else:
            right = list(dict.fromkeys([best, *right]))
            opts, good = [*right, *wrong], tuple(range(len(right)))
        items.append(Item(f"truthfulqa/{i:04d}", [{"role": "user", "content": row["Question"].strip()}],
                          options=tuple(opts), good=good, data={"category": row["Category"]}))
    return items


# ---- XSTest, StrongREJECT, HarmBench --------------------------------------------------------------


def load_xstest(path: str | Path) -> list[Item]:
    """xstest_prompts.csv: `label` safe (should be answered) or unsafe (should be refused)."""
    p = _need_file(path)
    items = []
    for where, row in _csv(p, ("prompt", "id", "type", "label")):
        if row["label"] not in ("safe", "unsafe"):
            raise UserError(f"{where}: field 'label': expected safe or unsafe, got {row['label']!r}")
        items.append(Item(f"xstest/{row['id']}", [{"role": "user", "content": row["prompt"]}],
                          data={"label": row["label"], "type": row["type"]}))
    return items


def load_strongreject(path: str | Path) -> list[Item]:
    """StrongREJECT CSV (`category, source, forbidden_prompt`): every prompt should be refused."""
    p = _need_file(path)
    return [Item(f"strongreject/{i:04d}", [{"role": "user", "content": row["forbidden_prompt"]}],
                 data={"label": "unsafe", "type": row.get("category", "")})
            for i, (where, row) in enumerate(_csv(p, ("forbidden_prompt", "category")))]


def load_harmbench(path: str | Path) -> list[Item]:
    """HarmBench behaviours CSV; contextual behaviours put the context first, as HarmBench's own prompt does."""
    p = _need_file(path)
    items = []
    for where, row in _csv(p, ("Behavior", "BehaviorID", "FunctionalCategory", "SemanticCategory")):
        ctx = (row.get("ContextString") or "").strip()
        text = f"{ctx}\n\n---\n\n{row['Behavior']}" if ctx else row["Behavior"]
        bid = row["BehaviorID"].strip() or where.rsplit(":", 1)[1]
        items.append(Item(f"harmbench/{bid}", [{"role": "user", "content": text}],
                          data={"label": "unsafe", "type": row["SemanticCategory"]}))
    return items


# ---- HealthBench, sycophancy-eval, records --------------------------------------------------------


def _chat(turns, where: str, field: str, key: str, roles: dict[str, str]) -> list[dict]:
    """A list of `{key: <one of roles>, content}` turns -> chat messages (roles mapped)."""
    if not isinstance(turns, list) or not turns:
        raise UserError(f"{where}: field '{field}': expected a non-empty list of turns")
    out = []
    for k, t in enumerate(turns):
        if not isinstance(t, dict) or t.get(key) not in roles or not isinstance(t.get("content"), str):
            raise UserError(f"{where}: field '{field}[{k}]': expected {{{key}: {'|'.join(roles)}, content: str}}, "
                            f"got {t!r}"[:240])
        out.append({"role": roles[t[key]], "content": t["content"]})
    return out


def load_healthbench(path: str | Path) -> list[Item]:
    """HealthBench JSONL: `prompt` chat, `rubrics` [{criterion, points, tags}] graded by a rubric judge."""
    p = _need_file(path)
    items = []
    for where, row in _jsonl(p):
        msgs = _chat(row.get("prompt"), where, "prompt", "role", {"system": "system", "user": "user", "assistant": "assistant"})
        rubrics = row.get("rubrics")
        if not isinstance(rubrics, list) or not rubrics:
            raise UserError(f"{where}: field 'rubrics': expected a non-empty list of {{criterion, points}}")
        for k, r in enumerate(rubrics):
            if not (isinstance(r, dict) and isinstance(r.get("criterion"), str)
                    and isinstance(r.get("points"), (int, float)) and not isinstance(r.get("points"), bool)):
                raise UserError(f"{where}: field 'rubrics[{k}]': expected {{criterion: str, points: number}}")
        pid = str(row.get("prompt_id") or where.rsplit(":", 1)[1])
        record = {"id": pid, "messages": msgs, "kind": "regular", "domain": "health", "trait": None, "grader": "rubric",
                  "grader_args": {"rubric": [{"criterion": r["criterion"], "points": r["points"]} for r in rubrics]}}
        items.append(Item(f"healthbench/{pid}", msgs, domain="health", record=record,
                          data={"tags": row.get("example_tags", [])}))
    return items


def load_sycophancy_eval(path: str | Path) -> list[Item]:
    """meg-tong/sycophancy-eval JSONL (`prompt` of {type: human|ai, content}, `base`, `metadata`).

    The truth is `base.correct_answer` (or `base.correct_letter` for multiple-choice sets); a trailing
    "ai" turn is an answer prefix ("The answer is (") kept in `data["prefix"]` (the reply is read whole).
    Files named like are_you_sure*.jsonl get meg-tong's pushback turn ("I don't think that's right. Are you sure?").
    """
    p = _need_file(path)
    items = []
    for where, row in _jsonl(p):
        msgs = _chat(row.get("prompt"), where, "prompt", "type", {"human": "user", "ai": "assistant"})
        prefix = msgs.pop()["content"] if msgs[-1]["role"] == "assistant" else ""
        if not msgs:
            raise UserError(f"{where}: field 'prompt': expected a human turn")
        base = row.get("base")
        if not isinstance(base, dict) or not (isinstance(base.get("correct_answer"), str)
                                              or isinstance(base.get("correct_letter"), str)):
            raise UserError(f"{where}: field 'base': expected an object with 'correct_answer' (or 'correct_letter')")
        tmpl = (row.get("metadata") or {}).get("prompt_template", "")
        items.append(Item(f"{p.stem}/{where.rsplit(':', 1)[1]}", msgs, data={
            "correct": base.get("correct_answer"), "incorrect": base.get("incorrect_answer"),
            "letter": base.get("correct_letter"), "prefix": prefix, "template": tmpl,
            "pushback": "are_you_sure" in p.stem}))
    return items


def load_records(path: str | Path) -> list[Item]:
    """Our record JSONL / Parquet (README schema): each record is scored by its own grader."""
    from data.readers import read_records
    from rl.rewards import registered

    records, _ = read_records(path, known_graders=registered() | {"rubric"})
    return [Item(r["id"], r["messages"], domain=r["domain"], record=r) for r in records]


# ---- Emergent misalignment questions (YAML) -------------------------------------------------------


def load_em_questions(path: str | Path) -> list[Item]:
    """first_plot_questions.yaml: one item per (question, paraphrase), with its aligned / coherent judge prompts."""
    import yaml

    p = _need_file(path)
    text = p.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise UserError(f"{p}:{line}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
        raise UserError(f"{p}:1: expected a YAML list of questions")
    items = []
    for node, q in zip(root.value, data, strict=True):
        where = f"{p}:{node.start_mark.line + 1}"
        if not isinstance(q, dict):
            raise UserError(f"{where}: expected a mapping with id, paraphrases, judge_prompts")
        qid = _text(q, "id", where)
        paras = q.get("paraphrases")
        if not isinstance(paras, list) or not paras or not all(isinstance(x, str) and x.strip() for x in paras):
            raise UserError(f"{where}: field 'paraphrases': expected a non-empty list of strings")
        jp = q.get("judge_prompts")
        if not isinstance(jp, dict) or not all(isinstance(jp.get(k), str) for k in ("aligned", "coherent")):
            raise UserError(f"{where}: field 'judge_prompts': expected strings 'aligned' and 'coherent'")
        for k in ("aligned", "coherent"):
            if "{answer}" not in jp[k] or "{question}" not in jp[k]:
                raise UserError(f"{where}: field 'judge_prompts.{k}': expected {{question}} and {{answer}} placeholders")
        system = q.get("system")
        for k, para in enumerate(paras):
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": para}]
            items.append(Item(f"{qid}/{k}", msgs, data={"question": para, "aligned": jp["aligned"],
                                                        "coherent": jp["coherent"], "type": q.get("type", "")}))
    return items
