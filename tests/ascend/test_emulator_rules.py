"""Every hardware rule the emulator enforces fires on a kernel that breaks it, with a message that
names the API, the block and the offending value; kernels that follow the rules pass."""

from __future__ import annotations

import os
import subprocess

import pytest

# kernel in csrc/ascend/tests/rule_kernels.cpp -> fragments the error message must contain
RULES = {
    "ub_capacity": ["TPipe::InitBuffer", "UB capacity exceeded", "204800", "188160"],
    "ub_align": ["Adds", "UB byte 4", "not 32-byte aligned"],
    "copy_len": ["DataCopy(GM->UB)", "28 bytes is not a multiple of 32", "silently drops"],
    "gm_bounds": ["DataCopy(GM->UB)", "[0, 256)", "outside the 128 elements given to SetGlobalBuffer"],
    "gm_unknown": ["SetGlobalBuffer", "not inside any GM buffer"],
    "deque_empty": ["TQue::DeQue", "empty queue"],
    "double_free": ["TQue::FreeTensor", "double free"],
    "alloc_leak": ["kernel end", "still allocated (missing FreeTensor)"],
    "queue_depth": ["TQue::EnQue", "queue depth 1 exceeded"],
    "alloc_too_many": ["TQue::AllocTensor", "at most 8 per TPosition"],
    "buffers_64": ["TPipe::InitBuffer", "more than 64 buffers", "(65)"],
    "repeat_limit": ["Add", "repeatTime 300 is outside [0, 255]"],
    "block_count": ["DataCopy(GM->UB, DataCopyParams)", "blockCount 5000 exceeds 4095"],
    "compare_align": ["Compare", "count 8 x 4 B is not a multiple of 256 bytes"],
    "gather_align": ["Gather", "byte 6", "not a multiple of sizeof(T) = 4"],
    "atomic_left_on": ["kernel end", "SetAtomicAdd<float>", "still active"],
    "atomic_type": ["DataCopy(UB->GM)", "atomic add mode is half but the copy moves float"],
    "pad_too_wide": ["DataCopyPad(GM->UB)", "36 bytes", "<= 32 bytes"],
    "race_write": ["multi-core race", "writes bytes also written by block"],
    "race_read": ["multi-core race", "reads bytes written by block"],
    "hazard_raw": ["Adds", "pipeline hazard", "pipe V reads", "DataCopy(GM->UB) on pipe MTE2", "MTE2_V"],
    "hazard_war": ["DataCopy(GM->UB)", "pipeline hazard", "pipe MTE2 overwrites", "Adds on pipe V", "V_MTE2"],
    "hazard_scalar": ["LocalTensor::GetValue", "pipeline hazard", "pipe S reads", "Duplicate on pipe V", "V_S"],
    "flag_unpaired": ["kernel end", "SetFlag<HardEvent::MTE2_V>(1) has no matching WaitFlag"],
    "flag_double_set": ["SetFlag<HardEvent::V_MTE3>(2) set twice"],
    "wait_without_set": ["WaitFlag<HardEvent::MTE3_MTE2>(0) without a preceding SetFlag"],
    "event_id_range": ["SetFlag<HardEvent::S_V>(9)", "event id must be in [0, 7]"],
    "sync_all_deadlock": ["SyncAll", "finished without reaching it", "deadlock"],
    "partial_overlap": ["Add", "partially overlaps"],
    "two_pipes": ["TPipe", "a second TPipe"],
    # event ids the queues hold (asc-devkit impl/basic_api/kernel_tquebind_impl.h, kernel_tpipe_impl.h)
    "flag_held_by_queue": [
        "SetFlag<HardEvent::V_MTE2>(0)",
        "held by TQue<VECIN,1>#0 buffer 0",
        "FreeTensor",
        "FetchEventID",
    ],
    "flag_held_enque": ["SetFlag<HardEvent::V_MTE3>(0)", "held by TQue<VECOUT,1>#0 buffer 0", "EnQue"],
    "queue_takes_set_flag": ["TQue::FreeTensor", "HardEvent::V_MTE2 id 0", "already set"],
    "event_ids_exhausted": ["TQue::FreeTensor", "no free event id of HardEvent::V_MTE2", "8 per HardEvent"],
    # cross-repeat overlap (docs/zh/api/SIMD-API/通用说明和约束.md, 通用地址重叠约束)
    "repeat_overlap": ["Adds", "repeat 1 reads src", "repeat 0 wrote"],
    "accumulate_src0": ["Add", "repeat 1 reads src0", "only dst overlapping src1"],
    "cast_widen_inplace": ["Cast", "in place", "half -> float"],
    # same-pipe DMA overlap (docs .../同步控制/核内同步/PipeBarrier(ISASI).md)
    "dma_overlap_mte2": ["DataCopy(GM->UB)", "pipe MTE2", "PipeBarrier<PIPE_MTE2>"],
    "dma_overlap_mte3": ["DataCopy(UB->GM)", "GM bytes", "PipeBarrier<PIPE_MTE3>"],
    # A2 semantics (impl/basic_api/dav_c220/*.h)
    "gather_repeat_8bit": ["Gather", "16384", "256 repeats", "8 bits"],
    "compares_tail": ["Compares", "280 bytes", "whole 256-byte repeats"],
    "compare_int32_mode": ["Compare", "int32_t", "only CMPMODE::EQ"],
    "cast_s16_rint": ["Cast", "no int16_t -> float conversion with CAST_RINT"],
    "sync_all_kernel_type": ["SyncAll", "KERNEL_TYPE_MIX_AIV_1_0"],
    "sync_all_cores": ["SyncAll", "49 blocks", "48 vector cores"],
}


def run(exe, *args, seed: int = 0):
    env = dict(os.environ, NPU_OPS_EMU_SEED=str(seed))
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_fires(rule_driver, rule):
    res = run(rule_driver, rule)
    assert res.returncode == 1, f"{rule}: expected exit 1, got {res.returncode}\n{res.stdout}\n{res.stderr}"
    msg = res.stderr
    assert "AscendRuleError" in msg
    assert "block" in msg
    for fragment in RULES[rule]:
        assert fragment in msg, f"{rule}: {fragment!r} not in {msg!r}"


def test_every_rule_kernel_is_tested(rule_driver):
    usage = run(rule_driver).stderr
    names = set(usage.split("kernels:")[1].split())
    assert names - set(RULES) == {
        "ok_flags",
        "ok_atomic",
        "ok_sync_all",
        "uninit_read",
        "ok_event_ids",
        "ok_dma_barrier",
    }


@pytest.mark.parametrize("kernel", ["ok_flags", "ok_atomic", "ok_sync_all", "ok_event_ids", "ok_dma_barrier"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_rule_abiding_kernels_pass(rule_driver, kernel, seed):
    res = run(rule_driver, kernel, seed=seed)
    assert res.returncode == 0, res.stderr
    assert f"{kernel}: 0 wrong values" in res.stdout


def test_uninitialised_ub_reads_surface_as_nan(rule_driver):
    # A fresh allocation is poisoned (0xFF bytes = NaN): the driver checks every output is NaN.
    res = run(rule_driver, "uninit_read")
    assert res.returncode == 0, res.stderr
    assert "uninit_read: 0 wrong values" in res.stdout


def test_block_order_follows_the_seed(rule_driver):
    # race_write names the two blocks that collide first; which ones depends on the shuffled order.
    firsts = {run(rule_driver, "race_write", seed=s).stderr.split("(block ")[1].split(" ")[0] for s in range(8)}
    assert len(firsts) > 1


@pytest.mark.parametrize("seed", [0, 3])
def test_cann_cpu_debug_vector_add_builds_and_passes(vector_add_driver, seed):
    res = run(vector_add_driver, seed=seed)
    assert res.returncode == 0, res.stderr
    assert "vector add: 0 mismatches of 16384" in res.stdout
    stats = res.stdout.split("add_custom: ")[1].splitlines()[0]
    assert '"blocks": 8' in stats and '"dma_ops": 384' in stats


def test_emulated_instructions_compute_the_documented_results(api_semantics_driver):
    # Div/Max/Min/Maxs/Mins/Abs/Sqrt/Reciprocal/Exp/Ln/Sub, a masked repeat-form Mul, Gather,
    # Compare+Select, Cast with FLOOR/CEIL/ROUND, ReduceSum and strided DataCopyParams, each
    # checked element by element against the host.
    res = run(api_semantics_driver)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "api semantics: 0 wrong values" in res.stdout
