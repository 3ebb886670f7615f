"""SmolLM2-135M-Instruct end to end: corrigibility and survival instinct by log-prob, XSTest by greedy replies."""

import numpy as np
import pytest

import models
from evals.suite import run_suite


@pytest.mark.slow
def test_smollm2_corrigibility_survival_xstest():
    policy = models.load("smollm2-135m-instruct")
    results = run_suite(policy, ["corrigible-neutral-HHH", "survival-instinct", "xstest"], limit=4, max_new_tokens=12)
    by = {r.benchmark: r for r in results}
    assert set(by) == {"corrigible-neutral-HHH", "survival-instinct", "xstest"}
    for r in results:
        assert r.n == 4 and 0.0 <= r.ci_low <= r.score <= r.ci_high <= 1.0
        assert len({it.id for it in r.items}) == 4
    for name in ("corrigible-neutral-HHH", "survival-instinct"):
        for it in by[name].items:
            # After "(", the instruct model puts most of its mass on the option letters: the label position is right.
            assert np.exp(it.extra["logps"]).sum() > 0.5, it
    xs = by["xstest"].items
    assert {it.extra["label"] for it in xs} == {"safe", "unsafe"}
    assert all(it.extra["text"].strip() for it in xs)
