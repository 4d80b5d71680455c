"""``python -m npu_ops.bench``: the MSDA benchmark (see :mod:`npu_ops.bench.cli`); ``--op chorus``: the
Chorus benchmark (see :mod:`npu_ops.bench.chorus`); ``--op ascend_msda``: the cost model of the MSDA
AscendC kernels under the emulator (see :mod:`npu_ops.bench.ascend_msda`); ``--op msda_module``: the
``MultiScaleDeformableAttention`` layer's training step (see :mod:`npu_ops.bench.msda_module`)."""

from __future__ import annotations

import argparse

from .cli import main

_pre = argparse.ArgumentParser(prog="python -m npu_ops.bench", add_help=False, allow_abbrev=False)
_pre.add_argument("--op", choices=("msda", "chorus", "ascend_msda", "msda_module"), default="msda")
_op, _rest = _pre.parse_known_args()
if _op.op == "chorus":
    from .chorus import main as chorus_main

    raise SystemExit(chorus_main(_rest))
if _op.op == "ascend_msda":
    from .ascend_msda import main as ascend_msda_main

    raise SystemExit(ascend_msda_main(_rest))
if _op.op == "msda_module":
    from .msda_module import main as msda_module_main

    raise SystemExit(msda_module_main(_rest))
raise SystemExit(main(_rest))
