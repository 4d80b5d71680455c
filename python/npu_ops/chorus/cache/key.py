"""``CompatKey``: the exact-match reuse-compatibility class of a request.

Two requests may share latents only when everything that changes the denoising trajectory other
than the prompt is equal: model and revision, LoRA set, resolution, frame count, scheduler and its
sigma schedule, step count, guidance mode, dtype, and (unless sharing is switched on) the tenant.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = ["CompatKey"]

# Sigma schedules are compared after rounding: two schedules computed by different code paths
# (float32 vs float64 linspace, a shift applied in another order) must land in the same class.
_SIGMA_DECIMALS = 6


def _check_str(name: str, value: object, *, allow_empty: bool) -> None:
    if not isinstance(value, str):
        raise TypeError(f"CompatKey: {name} must be a str, got {type(value).__name__} ({value!r})")
    if not allow_empty and not value:
        raise ValueError(f"CompatKey: {name} must be a non-empty str, got ''")


def _check_pos_int(name: str, value: object) -> int:
    # numbers.Integral admits numpy integers (sizes often come out of numpy / torch shapes).
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"CompatKey: {name} must be an int, got {type(value).__name__} ({value!r})")
    if value <= 0:
        raise ValueError(f"CompatKey: {name} must be > 0, got {value}")
    return int(value)


@dataclass(frozen=True)
class CompatKey:
    """Exact-match reuse-compatibility class; the prompt embedding is searched within it.

    ``sigmas`` holds ``num_steps + 1`` finite values; ``lora`` is stored sorted by name.
    """

    model_id: str
    height: int
    width: int
    num_frames: int
    scheduler: str
    sigmas: tuple[float, ...]
    num_steps: int
    guidance: str = "none"
    dtype: str = "float32"
    model_revision: str = ""
    lora: tuple[tuple[str, float], ...] = ()
    tenant: str = "default"

    def __post_init__(self) -> None:
        _check_str("model_id", self.model_id, allow_empty=False)
        for name in ("height", "width", "num_frames", "num_steps"):
            object.__setattr__(self, name, _check_pos_int(name, getattr(self, name)))
        _check_str("scheduler", self.scheduler, allow_empty=False)
        _check_str("guidance", self.guidance, allow_empty=False)
        _check_str("dtype", self.dtype, allow_empty=False)
        _check_str("model_revision", self.model_revision, allow_empty=True)
        _check_str("tenant", self.tenant, allow_empty=False)
        try:
            sigmas = tuple(float(s) for s in self.sigmas)
        except (TypeError, ValueError) as e:
            raise TypeError(f"CompatKey: sigmas must be a sequence of numbers, got {self.sigmas!r}") from e
        if len(sigmas) != self.num_steps + 1:
            raise ValueError(
                f"CompatKey: sigmas must hold num_steps + 1 = {self.num_steps + 1} values, got {len(sigmas)}"
            )
        if not all(math.isfinite(s) for s in sigmas):
            raise ValueError(f"CompatKey: sigmas must be finite, got {sigmas}")
        object.__setattr__(self, "sigmas", sigmas)
        lora = []
        for item in self.lora:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise TypeError(f"CompatKey: lora must hold (name: str, weight: float) pairs, got {item!r}")
            weight = float(item[1])
            if not math.isfinite(weight):
                raise ValueError(f"CompatKey: lora weight of {item[0]!r} must be finite, got {weight}")
            lora.append((item[0], weight))
        names = [n for n, _ in lora]
        if len(set(names)) != len(names):
            raise ValueError(f"CompatKey: lora names must be unique, got {names}")
        object.__setattr__(self, "lora", tuple(sorted(lora)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (exact floats); inverse of :meth:`from_dict`."""
        return {
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "lora": [[n, w] for n, w in self.lora],
            "height": self.height,
            "width": self.width,
            "num_frames": self.num_frames,
            "scheduler": self.scheduler,
            "sigmas": list(self.sigmas),
            "num_steps": self.num_steps,
            "guidance": self.guidance,
            "dtype": self.dtype,
            "tenant": self.tenant,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompatKey:
        return cls(
            model_id=d["model_id"],
            height=d["height"],
            width=d["width"],
            num_frames=d["num_frames"],
            scheduler=d["scheduler"],
            sigmas=tuple(d["sigmas"]),
            num_steps=d["num_steps"],
            guidance=d["guidance"],
            dtype=d["dtype"],
            model_revision=d["model_revision"],
            lora=tuple((n, w) for n, w in d["lora"]),
            tenant=d["tenant"],
        )

    def class_digest(self, *, include_tenant: bool = True) -> str:
        """Stable hex digest (sha256 of canonical JSON) of the class; sigmas rounded to 1e-6."""
        d = self.to_dict()
        # round() then repr: -0.0 and 0.0 must agree, hence the + 0.0.
        d["sigmas"] = [round(s, _SIGMA_DECIMALS) + 0.0 for s in self.sigmas]
        if not include_tenant:
            del d["tenant"]
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()
