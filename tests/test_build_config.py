"""The NPU_OPS_WITH_NPU switch of setup.py: auto skips with a reason, 1 fails loudly, 0 skips."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def resolve(monkeypatch):
    for var in ("NPU_OPS_WITH_NPU", "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        monkeypatch.delenv(var, raising=False)
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup_config")["resolve_npu_build"]


def test_auto_without_cann_skips_with_reason(resolve):
    enabled, reason = resolve()
    assert not enabled
    assert "CANN" in reason


def test_forced_on_without_cann_fails(resolve, monkeypatch):
    monkeypatch.setenv("NPU_OPS_WITH_NPU", "1")
    with pytest.raises(SystemExit, match="NPU_OPS_WITH_NPU=1 but no CANN toolkit"):
        resolve()


def test_off_skips(resolve, monkeypatch):
    monkeypatch.setenv("NPU_OPS_WITH_NPU", "0")
    assert resolve() == (False, "NPU_OPS_WITH_NPU=0")


def test_cann_dir_without_torch_npu_still_skips(resolve, monkeypatch, tmp_path):
    monkeypatch.setenv("ASCEND_HOME_PATH", str(tmp_path))
    enabled, reason = resolve()
    assert not enabled
    assert "torch_npu" in reason and "CANN" not in reason


def test_bad_value_is_rejected(resolve, monkeypatch):
    monkeypatch.setenv("NPU_OPS_WITH_NPU", "yes")
    with pytest.raises(SystemExit, match="auto, 0, 1"):
        resolve()


def test_build_info_records_the_decision():
    from npu_ops import _build_info

    assert _build_info.WITH_NPU is False
    assert _build_info.NPU_REASON
    assert _build_info.TORCH_VERSION
