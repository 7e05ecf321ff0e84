"""The weights the learner ships to the actor: LoRA tensors + the small trainable heads, as safetensors bytes.

safetensors holds only named tensors and a string header, so peer bytes are parsed, never executed
(never torch.load). The hash covers the bytes; the version rides both beside them and inside the header so
a blob cannot be relabelled without the receiver noticing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from lastr1.policy.errors import AdapterError


@dataclass(frozen=True)
class AdapterBlob:
    data: bytes  # safetensors
    version: int
    sha256: str

    def __repr__(self) -> str:
        return f"AdapterBlob(version={self.version}, {len(self.data)} bytes, sha256={self.sha256[:12]}…)"


def pack(tensors: dict[str, torch.Tensor], version: int) -> AdapterBlob:
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={"version": str(version)})
    return AdapterBlob(data=data, version=int(version), sha256=hashlib.sha256(data).hexdigest())


def unpack(blob: AdapterBlob) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not isinstance(blob.data, (bytes, bytearray, memoryview)):
        raise AdapterError(f"adapter data must be bytes, got {type(blob.data).__name__}")
    digest = hashlib.sha256(blob.data).hexdigest()
    if digest != blob.sha256:
        raise AdapterError(f"adapter v{blob.version}: sha256 {digest[:12]}… does not match {blob.sha256[:12]}…")
    try:
        tensors = load(bytes(blob.data))
        header_version = _header_version(bytes(blob.data))
    except (SafetensorError, ValueError) as e:
        raise AdapterError(f"adapter v{blob.version}: not a safetensors file ({e})") from None
    if header_version != blob.version:
        raise AdapterError(f"adapter labelled v{blob.version} carries version {header_version} in its header")
    return tensors


def _header_version(data: bytes) -> int:
    import json
    import struct

    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    if "version" not in meta:
        raise ValueError("no version in the safetensors header")
    return int(meta["version"])


def verify(blob: AdapterBlob, own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`blob`'s tensors, checked against `own` (a policy's `trainable_state()`): hash and header version
    (`unpack`), the same names, the same shapes, finite values; each moved to its parameter's device and
    dtype, so what is left to do with them is a bare copy (`Policy.swap`). AdapterError on any mismatch."""
    tensors = unpack(blob)
    if set(tensors) != set(own):
        extra, missing = sorted(set(tensors) - set(own)), sorted(set(own) - set(tensors))
        raise AdapterError(f"adapter v{blob.version} does not fit this policy: {len(missing)} missing "
                           f"(e.g. {missing[:2]}), {len(extra)} unknown (e.g. {extra[:2]})",
                           hint="actor and learner must use the same policy config (acting, lora_*, sizes)")
    ready = {}
    for k, t in tensors.items():
        p = own[k]
        if t.shape != p.shape:
            raise AdapterError(f"adapter v{blob.version}: {k} has shape {tuple(t.shape)}, expected {tuple(p.shape)}")
        if not torch.isfinite(t).all():
            raise AdapterError(f"adapter v{blob.version}: {k} holds NaN/inf; not applied")
        ready[k] = t.to(device=p.device, dtype=p.dtype)
    if any(t.is_cuda for t in ready.values()):
        torch.cuda.synchronize()  # the copies above have landed before anyone reads them
    return ready
