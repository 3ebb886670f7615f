"""The `traitrl` entry point: a static table of commands, each imported only when it runs.

Every command is one typed, frozen config tree parsed by tyro (`python -m engine.commands CMD --help`).
Presets (`traitrl train --preset tiny`) pick the default config the other flags override. Every user
mistake - an unknown command or option, a value of the wrong type, a bad file - is printed as one line
on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import io
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal

from engine.errors import UserError

# name -> (module, attribute holding its `Command`, one-line help). Two-word names are groups ("data preview").
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("engine.commands.train", "COMMAND", "GRPO on the trait-mix data, with in-loop evals, checkpoints, export"),
    "experiment": ("engine.commands.experiment", "COMMAND", "the paper's arms, each trained, probed and compared"),
    "sft": ("engine.commands.sft", "COMMAND", "supervised fine-tuning on a JSONL file of chats"),
    "eval": ("engine.commands.eval", "COMMAND", "the benchmark suite on a run, an HF directory, a GGUF or a name"),
    "compare": ("engine.commands.compare", "COMMAND", "deltas, 'improved on X of N', cross-domain and persistence"),
    "attack": ("engine.commands.attack", "COMMAND", "harmful fine-tuning probe: k SFT steps, then the evals"),
    "serve": ("engine.commands.serve", "COMMAND", "an OpenAI-compatible chat endpoint, batched on the mesh"),
    "generate": ("engine.commands.generate", "COMMAND", "greedy or sampled completions of prompts"),
    "pull": ("engine.commands.models", "PULL", "download and convert a known model into the cache"),
    "export": ("engine.commands.models", "EXPORT", "write a model as a Hugging Face directory"),
    "grader audit": ("engine.commands.grader", "COMMAND", "trait reward vs hand labels, and what gaming earns"),
    "data preview": ("engine.commands.data", "PREVIEW", "sample records and the realised mixture"),
    "data export": ("engine.commands.data", "EXPORT", "the bundled records of a split as JSONL"),
    "data calibrate": ("engine.commands.data", "CALIBRATE", "success rate per regular-task level (GRPO spread)"),
    "persona data": ("engine.commands.persona", "DATA", "contrastive chats for persona directions"),
    "persona capture": ("engine.commands.persona", "CAPTURE", "residual activations into a chunk store"),
    "persona direction": ("engine.commands.persona", "DIRECTION", "difference-of-means direction and probe"),
    "persona sae": ("engine.commands.persona", "SAE", "a TopK sparse autoencoder on stored activations"),
    "persona diff": ("engine.commands.persona", "DIFF", "model diffing of SAE latents and directions"),
    "persona steer": ("engine.commands.persona", "STEER", "steering sweep along a direction"),
    "persona experiment": ("engine.commands.persona", "EXPERIMENT", "the emergent-misalignment experiment"),
}


@dataclasses.dataclass(frozen=True)
class Command:
    """One CLI command: the config tree tyro parses, what runs it, and its named presets."""

    config: type  # frozen dataclass; every flag is one of its (nested) fields
    run: Callable[[Any], None]
    presets: Mapping[str, Any] | None = None  # name -> default config (the first is the default preset)
    spec: Callable[[Any], Any] = lambda cfg: cfg  # a preset as tyro's default (derived fields unset)


_BOX = re.compile(r"[\u2500-\u257f]")  # the box-drawing characters of tyro's error panels
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def one_line(panel: str) -> str:
    """tyro's error panel as one line: its title and message, plus the closest valid option when it names one."""
    lines = [_BOX.sub("", _ANSI.sub("", x)).strip() for x in panel.splitlines()]
    lines = [x for x in lines if x.strip("-")]  # rules: box characters on a terminal, dashes when piped
    title, body, hint, i = (lines[0] if lines else "invalid arguments"), [], None, 1
    while i < len(lines):
        x = lines[i]
        if x.startswith(("For full helptext", "Argument helptext")):
            break
        if x.startswith(("Perhaps you meant", "Arguments similar to")):
            if i + 1 < len(lines):
                hint = lines[i + 1].split()[0].rstrip(",")
            break
        body.append(x)
        i += 1
    msg = " ".join(body) or title
    if not msg.lower().startswith(title.lower().rstrip(".")):
        msg = f"{title.lower()}: {msg}"
    return msg + (f" (did you mean {hint}?)" if hint else "")


def parse(config: type, default: Any, args: list[str], prog: str) -> Any:
    """tyro.cli on one config tree, its error panels turned into a one-line `UserError`; --help prints as usual."""
    import tyro

    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return tyro.cli(config, default=default, args=args, prog=prog)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UserError(rephrase(one_line(buf.getvalue()), args, lambda: _flags(config, default, prog))) from None


def rephrase(msg: str, args: list[str], flags: Callable[[], list[str]]) -> str:
    """tyro's one-line message in the project's words: "option '--x': expected ..., got ..." and the closest
    valid name for a typo (`flags()` lists the valid options; read only when needed)."""
    msg = re.sub(r"\[/?bold\]", "", msg)
    if m := re.match(r"unrecognized options: ([^\s,]+)", msg, re.IGNORECASE):
        got = m.group(1)
        if got.startswith("--"):
            close = closest_flag(got, flags())
            return f"unknown option {got!r}" + (f" (did you mean {close}?)" if close else "")
        i = args.index(got) if got in args else -1
        prev = args[i - 1] if i > 0 else ""
        neg = prev[:2] + (f"{prev[2:].rpartition('.')[0]}.no-{prev.rpartition('.')[2]}" if "." in prev
                          else f"no-{prev[2:]}")
        if prev.startswith("--") and neg in flags():
            return f"option {prev!r} is a flag and takes no value, got {got!r} (give {prev} or {neg})"
        return f"unexpected argument {got!r} (options start with --)"
    if m := re.search(r"error parsing (--[\w.-]+): (.*)", msg, re.IGNORECASE):
        name, why = m.groups()
        if g := re.search(r"invalid literal for int\(\) with base 10: ('.*?')", why):
            return f"option '{name}': expected an integer, got {g.group(1)}"
        if g := re.search(r"could not convert string to float: ('.*?')", why):
            return f"option '{name}': expected a number, got {g.group(1)}"
        if g := re.search(r"input length (\d+) did not match expected argument count (\d+)", why):
            return f"option '{name}': expected {g.group(2)} values, got {g.group(1)}"
        return f"option '{name}': {why}"
    if m := re.search(r"missing value for argument '(--[\w.-]+)'\. expected (\d+) value", msg, re.IGNORECASE):
        return f"option '{m.group(1)}': missing value (expected {m.group(2)})"
    if m := re.search(r"invalid choice '(.*?)' for argument '(--[\w.-]+)'\. expected one of \((.*)\)", msg,
                      re.IGNORECASE):
        got, name, choices = m.groups()
        names = [c.strip().strip("'\"") for c in choices.split(",") if c.strip()]
        close = difflib.get_close_matches(got, names, n=1)
        return (f"option '{name}': expected one of {', '.join(names)}, got {got!r}"
                + (f" (did you mean {close[0]}?)" if close else ""))
    if m := re.search(r"missing from [^:]*: (--[\w.-]+)(.*)", msg, re.IGNORECASE):
        name, rest = m.groups()
        metavar, _, helptext = rest.replace("(required)", "").strip().partition(" ")
        return f"missing required option '{name} {metavar}'" + (f" ({' '.join(helptext.split())})" if helptext else "")
    return msg


def closest_flag(flag: str, flags: list[str]) -> str | None:
    """The valid option nearest to a mistyped one, by its whole name or by its last part (--stepz ~ --learner.steps)."""
    leaf = lambda f: f.rsplit(".", 1)[-1].lstrip("-")
    scored = [(max(difflib.SequenceMatcher(None, flag, f).ratio(), difflib.SequenceMatcher(None, leaf(flag), leaf(f))
                   .ratio() - 0.05), f) for f in flags]
    best = max(scored, default=(0.0, None))
    return best[1] if best[0] >= 0.6 else None


def _flags(config: type, default: Any, prog: str) -> list[str]:
    """Every option of a config tree, read off tyro's own help text (so nesting and renames are tyro's)."""
    import tyro

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            tyro.cli(config, default=default, args=["--help"], prog=prog)
        except SystemExit:
            pass
    flags = re.findall(r"(--[a-z0-9][\w.-]*)", _ANSI.sub("", out.getvalue()))
    # A flag the matcher should prefer: the leaf name matters most ("--stepz" -> "--learner.steps").
    return list(dict.fromkeys(f for f in flags if f != "--help"))


def _pop_preset(args: list[str], presets: Mapping[str, Any], prog: str) -> tuple[str, list[str]]:
    """Takes `--preset NAME` out of args; tyro checks the name (a Literal of the preset names)."""
    got, rest = _split_preset(args)
    names = tuple(presets)
    if got is None:
        return names[0], rest
    cls = dataclasses.make_dataclass("Preset", [("preset", Literal[names], dataclasses.field(default=names[0]))],
                                     frozen=True)
    try:
        return parse(cls, None, ["--preset", got], prog).preset, rest
    except UserError as e:
        close = difflib.get_close_matches(got, names, n=1)
        hint = f" (did you mean {close[0]}?)" if close and "did you mean" not in str(e) else ""
        raise UserError(f"{e}{hint}") from None


def _split_preset(args: list[str]) -> tuple[str | None, list[str]]:
    got, rest, i = None, [], 0
    while i < len(args):
        a = args[i]
        if a == "--preset" or a.startswith("--preset="):
            if "=" in a:
                got = a.split("=", 1)[1]
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                got, i = args[i + 1], i + 1
            else:
                raise UserError("option '--preset': expected a preset name")
            i += 1
            continue
        rest.append(a)
        i += 1
    return got, rest


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items())
    return f"usage: traitrl COMMAND [OPTIONS]   (traitrl COMMAND --help for its options)\n\ncommands:\n{rows}"


def _resolve_name(argv: list[str]) -> tuple[str, list[str]]:
    if len(argv) >= 2 and f"{argv[0]} {argv[1]}" in COMMANDS:
        return f"{argv[0]} {argv[1]}", argv[2:]
    if argv and "-" in argv[0] and argv[0].replace("-", " ", 1) in COMMANDS:  # data-preview == data preview
        return argv[0].replace("-", " ", 1), argv[1:]
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    groups = sorted({n.split()[0] for n in COMMANDS if " " in n})
    if argv and argv[0] in groups:
        subs = [n.split()[1] for n in COMMANDS if n.startswith(argv[0] + " ")]
        got = argv[1] if len(argv) > 1 else ""
        close = difflib.get_close_matches(got, subs, n=1)
        raise UserError(f"{argv[0]}: unknown subcommand {got!r}; expected one of {', '.join(subs)}"
                        + (f" (did you mean {close[0]}?)" if close else ""))
    got = argv[0] if argv else ""
    close = difflib.get_close_matches(got, [*COMMANDS, *groups], n=1)
    raise UserError(f"unknown command {got!r}; expected one of {', '.join(n for n in COMMANDS if ' ' not in n)}, "
                    f"{', '.join(groups)} ..." + (f" (did you mean {close[0]}?)" if close else ""))


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax narrates every save at INFO
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # "Unable to initialize backend 'tpu'"
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    try:
        name, args = _resolve_name(argv)
        module, attr, _ = COMMANDS[name]
        command: Command = getattr(importlib.import_module(module), attr)
        prog = f"traitrl {name}"
        default = None
        if command.presets:
            preset, args = _pop_preset(args, command.presets, prog)
            default = command.spec(command.presets[preset])
        cfg = parse(command.config, default, args, prog)
        command.run(cfg)
    except UserError as e:
        print(f"traitrl: error: {e}", file=sys.stderr)
        sys.exit(2)
