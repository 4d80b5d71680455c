"""The demo CLI in CI mode: valid JSON lines with the documented keys, a summary and a PNG."""

from __future__ import annotations

import json

import pytest
import torch
from npu_ops.chorus import demo
from npu_ops.chorus.trace import load_prompt_file

KEYS = {"request", "prompt", "tenant", "hit", "source_prompt", "similarity", "steps_skipped", "nfe", "wall_s"}


def test_demo_quick(tmp_path, capsys, minilm, num_threads):
    png = tmp_path / "sweep.png"
    num_threads(torch.get_num_threads())  # restore torch's thread count after the demo sets it
    assert demo.main(["--quick", "--baseline", "--no-progress", "--plot", str(png)], encoder=minilm) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    reqs, summary = lines[:-1], lines[-1]["summary"]
    assert len(reqs) == 6 and all(KEYS <= set(r) for r in reqs)
    assert all(isinstance(r["hit"], bool) for r in reqs)
    assert [r["request"] for r in reqs] == list(range(6))
    hits = [r for r in reqs if r["hit"]]
    assert hits and all(r["nfe"] < 4 and r["source_prompt"] for r in hits)
    assert not reqs[0]["hit"] and not reqs[4]["hit"]  # cold start; same prompt, other tenant
    assert summary["requests"] == 6 and summary["hits"] == len(hits) and "speedup" in summary
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(summary["sweep"]["tau"]) == len(summary["sweep"]["hit_rate"])


def test_prompt_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\na cat\nacme\ta dog\n\n", encoding="utf-8")
    assert load_prompt_file(str(f)) == [("default", "a cat"), ("acme", "a dog")]
    f.write_text("acme\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match="tenant<TAB>prompt"):
        load_prompt_file(str(f))
