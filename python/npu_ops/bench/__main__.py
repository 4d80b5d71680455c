"""``python -m npu_ops.bench``: the MSDA benchmark (see :mod:`npu_ops.bench.cli`)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
