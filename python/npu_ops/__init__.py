"""npu_ops: Ascend NPU custom operators with an exact, fast CPU backend.

Ops go through the PyTorch dispatcher (``torch.ops.npu_ops.*``), so autograd,
``torch.compile``, fake tensors and ``torch.library.opcheck`` work on every
backend.

Example::

    import npu_ops
    out = npu_ops.msda(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    latents = npu_ops.masked_blend(fresh, cached, mask)  # Chorus ops: see npu_ops.chorus
"""

from __future__ import annotations

from . import _loader

_loader.load()

from . import chorus, msda, msda_v2  # noqa: E402  (after the library is loaded)
from ._callable_package import CallablePackage  # noqa: E402
from ._loader import cpu_capability, has_npu_backend  # noqa: E402
from .chorus import amplified_softmax, masked_blend  # noqa: E402

# npu_ops.msda(...) is the op; npu_ops.msda.<name> reaches the subpackage.
msda = CallablePackage(msda, msda.msda)  # type: ignore[assignment]
msda_v2 = CallablePackage(msda_v2, msda_v2.msda_v2)  # type: ignore[assignment]

__version__ = "0.1.0"
__all__ = [
    "msda",
    "msda_v2",
    "masked_blend",
    "amplified_softmax",
    "chorus",
    "has_npu_backend",
    "cpu_capability",
    "__version__",
]
