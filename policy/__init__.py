"""The dual-system latent-reasoning VLA: reasoning tower, acting tower, latent CoT, action tokens, Q heads,
LoRA adapters, warm-up. Knows nothing of robots or sockets (design §2, §4; the API is in policy/model.py).

policy/build.py makes a fresh policy, policy/checkpoint.py saves, loads and opens one, policy/adapter.py packs
and verifies the adapters the learner ships. Heavy imports (torch, transformers) happen when these names are
first used, so `import lastr1.policy` stays cheap.
"""

from __future__ import annotations

_EXPORTS = {
    **dict.fromkeys(("Policy", "Prefix", "ActOutput", "TrainBatch", "TrainOut"), "lastr1.policy.model"),
    "build_policy": "lastr1.policy.build",
    **dict.fromkeys(("open_policy", "load_policy", "save_policy"), "lastr1.policy.checkpoint"),
    "AdapterBlob": "lastr1.policy.adapter",
    **dict.fromkeys(("ActionTokenizer", "NormStats"), "lastr1.policy.action_tokenizer"),
    **dict.fromkeys(("PolicyError", "AdapterError"), "lastr1.policy.errors"),
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lastr1.policy' has no attribute {name!r}")
