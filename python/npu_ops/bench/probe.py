"""Child-process entry of the peak-memory probes: ``python -m npu_ops.bench.probe MODULE SPEC_JSON``.

Imports ``MODULE`` (e.g. ``npu_ops.bench.msda``), calls its ``probe(spec)`` and prints the returned
dict as one ``PROBE_RESULT {json}`` line on stdout. Started by :func:`harness.measure_in_subprocess`
so that every measurement begins in a fresh process.
"""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m npu_ops.bench.probe MODULE SPEC_JSON", file=sys.stderr)
        return 2
    module = importlib.import_module(args[0])
    result = module.probe(json.loads(args[1]))
    print("PROBE_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
