"""Per-domain fact banks: real, checkable content the scenario generator turns into chats.

One module per domain (health, education, science, law, engineering, economics, business); each
exports `DOMAIN`, a `data.facts.types.Domain`. Ground truth is copied from here into each record's
`grader_args`, so graders never import this package.
"""

from data.facts import business, economics, education, engineering, health, law, science
from data.facts.types import Domain

DOMAINS: dict[str, Domain] = {
    m.DOMAIN.name: m.DOMAIN for m in (health, education, science, law, engineering, economics, business)
}
