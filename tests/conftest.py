"""Test setup: 8 fake CPU devices (set before jax is imported), a shared compilation cache, and the tiny policy
with a real offline tokenizer (ChatML template) that tests across the tree share."""

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One persistent XLA compilation cache for the whole session, shared with the CLI subprocesses the tests start:
# a run, its killed twin and its resume compile the same programs once.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="traitrl-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# ---- shared fixtures (imported after the environment above is set)

import jax  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from data.toy_tokenizer import build_toy_tokenizer  # noqa: E402
from models.transformer import Decoder  # noqa: E402


def tiny_config(tok, **kw):
    return models.ModelConfig(family="qwen2", vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kw)


@pytest.fixture(scope="session")
def toy_tokenizer():
    return build_toy_tokenizer(vocab_size=1024, n_records=200)


@pytest.fixture(scope="session")
def tiny_policy(toy_tokenizer):
    cfg = tiny_config(toy_tokenizer)
    return models.Policy(models.init(cfg, seed=0), toy_tokenizer, cfg, "", None)


def on_mesh(policy, mesh):
    """The same weights as `policy`, sharded over `mesh` by the rules table (device_put, no re-init)."""
    abstract = nnx.eval_shape(lambda: Decoder(policy.config, nnx.Rngs(0), mesh))
    shardings = models.param_shardings(abstract, mesh)
    values = dict(nnx.to_flat_state(nnx.state(policy.model, nnx.Param)))
    flat = nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    for path, var in flat:
        var.set_value(jax.device_put(values[path].get_value(), shardings[path]))
    nnx.update(abstract, nnx.from_flat_state(flat))
    return models.Policy(abstract, policy.tokenizer, policy.config, policy.source, mesh)


# ---- scheduling: the suite runs on two workers (pytest-xdist, `--dist loadscope --no-loadscope-reorder`: a
# module's tests stay together, so its module fixtures are built once, and modules go out in collection order).
# The longest modules (measured: minutes on 2 cores) start first; one started last would run alone at the end.
LONGEST_FIRST = ("engine/test_kill_resume.py", "rl/test_train_step.py", "models/test_attention.py",
                 "models/test_memory.py", "rl/test_sampler.py", "engine/test_multihost.py", "evals/test_smollm2.py",
                 "rl/test_learner.py", "engine/commands/test_experiment.py", "models/test_device_benchmark.py",
                 "models/test_smollm2.py", "evals/test_hook.py", "models/test_gguf.py", "rl/test_sft.py",
                 "evals/persona/test_smollm2.py", "rl/test_server_json.py", "engine/commands/test_serve.py",
                 "rl/test_judge_training.py", "evals/test_mc.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        path = item.path.as_posix()
        return next((i for i, m in enumerate(LONGEST_FIRST) if path.endswith("tests/" + m)), len(LONGEST_FIRST))

    items[:] = sorted(items, key=rank)  # stable: the order within a module, and of the rest, is kept
