"""The dual-system latent-reasoning VLA: reasoning tower, acting tower, latent CoT, action tokens, Q heads,
LoRA adapters, warm-up. Knows nothing of robots or sockets (design §2, §4; the API is in policy/model.py).

Heavy imports (torch, transformers) happen when these names are first used, so `import policy` stays cheap.
"""

from __future__ import annotations

_EXPORTS = {
    "Policy": "lastr1.policy.model", "Prefix": "lastr1.policy.model", "ActOutput": "lastr1.policy.model", "TrainBatch": "lastr1.policy.model",
    "TrainOut": "lastr1.policy.model", "AdapterBlob": "lastr1.policy.adapter", "ActionTokenizer": "lastr1.policy.action_tokenizer",
    "Stats": "lastr1.policy.action_tokenizer", "PolicyError": "lastr1.policy.errors", "AdapterError": "lastr1.policy.errors",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'policy' has no attribute {name!r}")
