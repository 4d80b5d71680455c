// AscendC kernels of Chorus token-guided attention amplification (issue 4), over the last
// axis (keys) of scores [rows, L], with alpha fp32 [groups, L] (row r uses alpha row
// r / rowsPerGroup):
//   renormalize:  p = softmax(scale * s + ln(alpha)), row max subtracted; alpha = 0 removes a
//                 key; rows whose keys are all removed give zeros (not NaN).
//   otherwise:    p = softmax(scale * s) * alpha.
// Backward (recomputing from the scores), with q_j = exp(scale * s_j - m) / Z and p = alpha * q:
//   renormalize:  d s_j = scale * p_j (g_j - sum_k g_k p_k),   d alpha_j = q_j (g_j - sum_k g_k p_k)
//   otherwise:    d s_j = scale * q_j (g_j alpha_j - sum_k g_k alpha_k q_k),   d alpha_j = g_j q_j
// (all-removed rows get zero gradients). grad_alpha rows are accumulated in UB over the rows
// of one alpha group, then added to GM with DMA atomic adds (the host zero-fills it).
//
// Each block takes a contiguous range of rows; a tile is up to tileRows rows of one alpha
// group, moved with DataCopyPad (rows padded to 32 B in UB with zeros) through depth-1 TQues
// with bufferNum buffers. Row reductions (ReduceMax/ReduceSum) land in 32 B slots that the
// scalar unit reads after a V_S sync; per-row scalars are applied with Adds/Muls.
#pragma once

#include "../host/tiling/chorus_tiling_data.h"
#include "chorus_kernel_common.h"

namespace npu_ops_kernels {

using npu_ops::ascend::AmplifiedSoftmaxTiling;

constexpr uint32_t kSlot = kUbBlock / sizeof(float);  // floats per reduction slot
constexpr float kRemovedRowMax = -3.0e38f;            // row max below this: every key removed

class SoftmaxPlan {
 public:
  __aicore__ inline void Init(GM_ADDR tiling) {
    TilingReader rd;
    rd.Init(tiling, sizeof(AmplifiedSoftmaxTiling));
    rows = NPU_OPS_TILING_U64(rd, AmplifiedSoftmaxTiling, rows);
    groups = NPU_OPS_TILING_U64(rd, AmplifiedSoftmaxTiling, groups);
    rowsPerGroup = NPU_OPS_TILING_U64(rd, AmplifiedSoftmaxTiling, rowsPerGroup);
    cols = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, cols);
    colsPad = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, colsPad);
    colsPad64 = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, colsPad64);
    tileRows = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, tileRows);
    reduceTmpElems = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, reduceTmpElems);
    const uint32_t bits = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, scaleBits);
    union {
      uint32_t u;
      float f;
    } s;
    s.u = bits;
    scale = s.f;
    renormalize = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, renormalize) != 0;
    bufferNum = NPU_OPS_TILING_U32(rd, AmplifiedSoftmaxTiling, bufferNum);
    const uint64_t blockIdx = static_cast<uint64_t>(AscendC::GetBlockIdx());
    const uint64_t blockNum = static_cast<uint64_t>(AscendC::GetBlockNum());
    rowBegin = rows * blockIdx / blockNum;
    rowEnd = rows * (blockIdx + 1) / blockNum;
  }

  // Rows of the tile starting at row r: at most tileRows, inside the block and the group.
  __aicore__ inline uint32_t TileRowsAt(uint64_t r) const {
    const uint64_t groupEnd = (r / rowsPerGroup + 1) * rowsPerGroup;
    return static_cast<uint32_t>(Min64(Min64(tileRows, rowEnd - r), groupEnd - r));
  }

  uint64_t rows = 0, groups = 1, rowsPerGroup = 1, rowBegin = 0, rowEnd = 0;
  uint32_t cols = 1, colsPad = 8, colsPad64 = 64, tileRows = 1, reduceTmpElems = 8, bufferNum = 2;
  float scale = 1.0f;
  bool renormalize = true;
};

// alpha row handling shared by both passes: loads alpha row g into `aw` (fp32, colsPad64
// elements, zero beyond L) and, when renormalizing, turns it into ln(alpha) with -inf for
// alpha <= 0.
class AlphaRow {
 public:
  __aicore__ inline void Init(AscendC::TPipe& pipe, GM_ADDR alpha, const SoftmaxPlan& plan) {
    gm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(alpha), plan.groups * plan.cols);
    pipe.InitBuffer(que_, 1, plan.colsPad64 * sizeof(float));
    pipe.InitBuffer(aw_, plan.colsPad64 * sizeof(float));
    if (plan.renormalize) pipe.InitBuffer(bits_, AlignUp(plan.colsPad64 / 8, kUbBlock));
  }

  __aicore__ inline LocalTensor<float> Load(const SoftmaxPlan& plan, uint64_t group) {
    const uint32_t cols8 = AlignUp(plan.cols, kSlot);
    LocalTensor<float> raw = que_.AllocTensor<float>();
    AscendC::DataCopyExtParams p{1, static_cast<uint32_t>(plan.cols * sizeof(float)), 0, 0, 0};
    AscendC::DataCopyPadExtParams<float> pad{true, 0, static_cast<uint8_t>(cols8 - plan.cols), 0.0f};
    AscendC::DataCopyPad(raw, gm_[group * plan.cols], p, pad);
    que_.EnQue(raw);
    raw = que_.DeQue<float>();
    LocalTensor<float> a = aw_.Get<float>();
    if (cols8 < plan.colsPad64) AscendC::Duplicate(a, 0.0f, static_cast<int32_t>(plan.colsPad64));
    AscendC::Adds(a, raw, 0.0f, static_cast<int32_t>(cols8));
    que_.FreeTensor(raw);
    if (plan.renormalize) {
      LocalTensor<uint8_t> bits = bits_.Get<uint8_t>();
      AscendC::Compares(bits, a, 0.0f, AscendC::CMPMODE::GT, plan.colsPad64);
      AscendC::Ln(a, a, static_cast<int32_t>(plan.colsPad64));
      AscendC::Select(a, bits, a, NegInf(), AscendC::SELMODE::VSEL_TENSOR_SCALAR_MODE, plan.colsPad64);
    }
    return a;
  }

 private:
  GlobalTensor<float> gm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> que_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> aw_, bits_;
};

template <typename T>
__aicore__ inline void CopySoftmaxRowsIn(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t rows,
                                         const SoftmaxPlan& plan) {
  AscendC::DataCopyExtParams p{static_cast<uint16_t>(rows), static_cast<uint32_t>(plan.cols * sizeof(T)), 0, 0, 0};
  AscendC::DataCopyPadExtParams<T> pad{true, 0, static_cast<uint8_t>(plan.colsPad - plan.cols), static_cast<T>(0)};
  AscendC::DataCopyPad(dst, src, p, pad);
}

template <typename T>
__aicore__ inline void CopySoftmaxRowsOut(const GlobalTensor<T>& dst, const LocalTensor<T>& src, uint32_t rows,
                                          const SoftmaxPlan& plan) {
  AscendC::DataCopyExtParams p{static_cast<uint16_t>(rows), static_cast<uint32_t>(plan.cols * sizeof(T)), 0, 0, 0};
  AscendC::DataCopyPad(dst, src, p);
}

// ---------------------------------------------------------------------------------------------
template <typename T>
class AmplifiedSoftmaxForward {
 public:
  __aicore__ inline void Init(GM_ADDR scores, GM_ADDR alpha, GM_ADDR out, GM_ADDR tiling) {
    plan_.Init(tiling);
    scoresGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(scores), plan_.rows * plan_.cols);
    outGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(out), plan_.rows * plan_.cols);
    const uint32_t tile = plan_.tileRows * plan_.colsPad;
    pipe_.InitBuffer(inQue_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(outQue_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(x_, tile * sizeof(float));
    alpha_.Init(pipe_, alpha, plan_);
    pipe_.InitBuffer(slots_, plan_.tileRows * kUbBlock);
    pipe_.InitBuffer(tmp_, plan_.reduceTmpElems * sizeof(float));
  }

  __aicore__ inline void Process() {
    uint64_t loaded = ~static_cast<uint64_t>(0);
    LocalTensor<float> a;
    for (uint64_t r = plan_.rowBegin; r < plan_.rowEnd;) {
      const uint32_t n = plan_.TileRowsAt(r);
      const uint64_t group = r / plan_.rowsPerGroup;
      CopyIn(r, n);
      if (group != loaded) {
        a = alpha_.Load(plan_, group);
        loaded = group;
      }
      Compute(n, a);
      CopyOut(r, n);
      r += n;
    }
  }

 private:
  __aicore__ inline void CopyIn(uint64_t r, uint32_t n) {
    LocalTensor<T> s = inQue_.template AllocTensor<T>();
    CopySoftmaxRowsIn(s, scoresGm_[r * plan_.cols], n, plan_);
    inQue_.EnQue(s);
  }

  __aicore__ inline void Compute(uint32_t n, const LocalTensor<float>& a) {
    const uint32_t L = plan_.colsPad;  // row stride and elementwise count
    const int32_t cols = static_cast<int32_t>(plan_.cols);
    const uint32_t count = n * L;
    LocalTensor<float> x = x_.Get<float>();
    LocalTensor<float> slots = slots_.Get<float>();
    LocalTensor<float> tmp = tmp_.Get<float>();
    LocalTensor<T> sT = inQue_.template DeQue<T>();
    LocalTensor<float> s = LoadF32(sT, x, count);
    AscendC::Muls(x, s, plan_.scale, count);
    inQue_.FreeTensor(sT);
    for (uint32_t r = 0; r < n; ++r) {
      if (plan_.renormalize) AscendC::Add(x[r * L], x[r * L], a, L);
      AscendC::ReduceMax(slots[r * kSlot], x[r * L], tmp, cols);
    }
    SyncVToS();
    for (uint32_t r = 0; r < n; ++r) {
      const float m = slots.GetValue(r * kSlot);
      AscendC::Adds(x[r * L], x[r * L], m < kRemovedRowMax ? 0.0f : -m, L);
    }
    SyncSToV();
    AscendC::Exp(x, x, count);
    for (uint32_t r = 0; r < n; ++r) AscendC::ReduceSum(slots[r * kSlot], x[r * L], tmp, cols);
    SyncVToS();
    LocalTensor<T> o = outQue_.template AllocTensor<T>();
    LocalTensor<float> res = ResultF32(o, x);
    for (uint32_t r = 0; r < n; ++r) {
      const float z = slots.GetValue(r * kSlot);
      const float inv = z > 0.0f ? 1.0f / z : 0.0f;  // z == 0: every key removed
      if (!plan_.renormalize) AscendC::Mul(x[r * L], x[r * L], a, L);
      AscendC::Muls(res[r * L], x[r * L], inv, L);
    }
    SyncSToV();
    StoreF32(o, res, count);
    outQue_.EnQue(o);
  }

  __aicore__ inline void CopyOut(uint64_t r, uint32_t n) {
    LocalTensor<T> o = outQue_.template DeQue<T>();
    CopySoftmaxRowsOut(outGm_[r * plan_.cols], o, n, plan_);
    outQue_.FreeTensor(o);
  }

  AscendC::TPipe pipe_;
  SoftmaxPlan plan_;
  GlobalTensor<T> scoresGm_, outGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> inQue_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outQue_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> x_, slots_, tmp_;
  AlphaRow alpha_;
};

// ---------------------------------------------------------------------------------------------
template <typename T>
class AmplifiedSoftmaxBackward {
 public:
  __aicore__ inline void Init(GM_ADDR grad, GM_ADDR scores, GM_ADDR alpha, GM_ADDR gradScores, GM_ADDR gradAlpha,
                              GM_ADDR tiling) {
    plan_.Init(tiling);
    const uint64_t total = plan_.rows * plan_.cols;
    gradGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(grad), total);
    scoresGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(scores), total);
    gradScoresGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradScores), total);
    gradAlphaGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(gradAlpha), plan_.groups * plan_.cols);
    const uint32_t tile = plan_.tileRows * plan_.colsPad;
    pipe_.InitBuffer(inGrad_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(inScores_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(outQue_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(workA_, tile * sizeof(float));
    pipe_.InitBuffer(workD_, tile * sizeof(float));
    if (plan_.renormalize) pipe_.InitBuffer(workP_, tile * sizeof(float));
    if constexpr (!SameType<T, float>::value) pipe_.InitBuffer(workG_, tile * sizeof(float));
    alpha_.Init(pipe_, alpha, plan_);
    pipe_.InitBuffer(acc_, plan_.colsPad64 * sizeof(float));
    pipe_.InitBuffer(flushQue_, 1, plan_.colsPad64 * sizeof(float));
    pipe_.InitBuffer(slots_, plan_.tileRows * kUbBlock);
    pipe_.InitBuffer(tmp_, plan_.reduceTmpElems * sizeof(float));
  }

  __aicore__ inline void Process() {
    uint64_t loaded = ~static_cast<uint64_t>(0);
    LocalTensor<float> a;
    LocalTensor<float> acc = acc_.Get<float>();
    AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(plan_.colsPad64));
    for (uint64_t r = plan_.rowBegin; r < plan_.rowEnd;) {
      const uint32_t n = plan_.TileRowsAt(r);
      const uint64_t group = r / plan_.rowsPerGroup;
      CopyIn(r, n);
      if (group != loaded) {
        if (loaded != ~static_cast<uint64_t>(0)) FlushGradAlpha(loaded, acc);
        a = alpha_.Load(plan_, group);
        loaded = group;
      }
      Compute(n, a, acc);
      CopyOut(r, n);
      r += n;
    }
    if (loaded != ~static_cast<uint64_t>(0)) FlushGradAlpha(loaded, acc);
  }

 private:
  __aicore__ inline void CopyIn(uint64_t r, uint32_t n) {
    LocalTensor<T> g = inGrad_.template AllocTensor<T>();
    LocalTensor<T> s = inScores_.template AllocTensor<T>();
    CopySoftmaxRowsIn(g, gradGm_[r * plan_.cols], n, plan_);
    CopySoftmaxRowsIn(s, scoresGm_[r * plan_.cols], n, plan_);
    inGrad_.EnQue(g);
    inScores_.EnQue(s);
  }

  // Row sums of `src` (n rows) into the slots, then read back by the scalar unit one by one.
  __aicore__ inline void RowSums(const LocalTensor<float>& src, uint32_t n) {
    LocalTensor<float> slots = slots_.Get<float>();
    LocalTensor<float> tmp = tmp_.Get<float>();
    for (uint32_t r = 0; r < n; ++r) {
      AscendC::ReduceSum(slots[r * kSlot], src[r * plan_.colsPad], tmp, static_cast<int32_t>(plan_.cols));
    }
    SyncVToS();
  }

  __aicore__ inline void Compute(uint32_t n, const LocalTensor<float>& a, const LocalTensor<float>& acc) {
    const uint32_t L = plan_.colsPad;
    const uint32_t count = n * L;
    const bool renorm = plan_.renormalize;
    LocalTensor<float> slots = slots_.Get<float>();
    LocalTensor<float> tmp = tmp_.Get<float>();
    LocalTensor<float> q = workA_.Get<float>();  // scale * s, then q
    LocalTensor<float> d = workD_.Get<float>();
    LocalTensor<float> p = renorm ? workP_.Get<float>() : q;  // renormalize: x, then p

    LocalTensor<T> sT = inScores_.template DeQue<T>();
    LocalTensor<float> s = LoadF32(sT, q, count);
    AscendC::Muls(q, s, plan_.scale, count);
    inScores_.FreeTensor(sT);
    // Row max of x = scale * s (+ ln alpha).
    for (uint32_t r = 0; r < n; ++r) {
      if (renorm) {
        AscendC::Add(p[r * L], q[r * L], a, L);
        AscendC::ReduceMax(slots[r * kSlot], p[r * L], tmp, static_cast<int32_t>(plan_.cols));
      } else {
        AscendC::ReduceMax(slots[r * kSlot], q[r * L], tmp, static_cast<int32_t>(plan_.cols));
      }
    }
    SyncVToS();
    for (uint32_t r = 0; r < n; ++r) {
      const float m = slots.GetValue(r * kSlot);
      const float shift = m < kRemovedRowMax ? 0.0f : -m;
      if (renorm) AscendC::Adds(p[r * L], p[r * L], shift, L);
      AscendC::Adds(q[r * L], q[r * L], shift, L);
    }
    SyncSToV();
    if (renorm) AscendC::Exp(p, p, count);
    AscendC::Exp(q, q, count);
    RowSums(renorm ? p : q, n);  // Z
    for (uint32_t r = 0; r < n; ++r) {
      const float z = slots.GetValue(r * kSlot);
      if (z > 0.0f) {
        const float inv = 1.0f / z;
        if (renorm) AscendC::Muls(p[r * L], p[r * L], inv, L);
        AscendC::Muls(q[r * L], q[r * L], inv, L);
      } else {  // every key removed: no gradient
        AscendC::Duplicate(q[r * L], 0.0f, static_cast<int32_t>(L));
      }
    }
    SyncSToV();

    LocalTensor<T> gT = inGrad_.template DeQue<T>();
    LocalTensor<float> g = LoadF32(gT, WorkG(), count);
    if (renorm) {
      // t = g - sum(g p); d s = scale p t; d alpha += q t.
      AscendC::Mul(d, g, p, count);
      RowSums(d, n);
      for (uint32_t r = 0; r < n; ++r) AscendC::Adds(g[r * L], g[r * L], -slots.GetValue(r * kSlot), L);
      SyncSToV();
      AscendC::Mul(d, p, g, count);
      AscendC::Mul(q, q, g, count);
      for (uint32_t r = 0; r < n; ++r) AscendC::Add(acc, acc, q[r * L], L);
    } else {
      // d alpha += g q; t = g alpha - sum(g alpha q); d s = scale q t.
      AscendC::Mul(d, g, q, count);
      for (uint32_t r = 0; r < n; ++r) {
        AscendC::Add(acc, acc, d[r * L], L);
        AscendC::Mul(g[r * L], g[r * L], a, L);
      }
      AscendC::Mul(d, g, q, count);
      RowSums(d, n);
      for (uint32_t r = 0; r < n; ++r) AscendC::Adds(g[r * L], g[r * L], -slots.GetValue(r * kSlot), L);
      SyncSToV();
      AscendC::Mul(d, q, g, count);
    }
    inGrad_.FreeTensor(gT);
    LocalTensor<T> o = outQue_.template AllocTensor<T>();
    LocalTensor<float> res = ResultF32(o, d);
    AscendC::Muls(res, d, plan_.scale, count);
    StoreF32(o, res, count);
    outQue_.EnQue(o);
  }

  __aicore__ inline void CopyOut(uint64_t r, uint32_t n) {
    LocalTensor<T> o = outQue_.template DeQue<T>();
    CopySoftmaxRowsOut(gradScoresGm_[r * plan_.cols], o, n, plan_);
    outQue_.FreeTensor(o);
  }

  // Adds the accumulated grad_alpha row of `group` to GM (atomically: other blocks may hold
  // rows of the same group) and clears the accumulator.
  __aicore__ inline void FlushGradAlpha(uint64_t group, const LocalTensor<float>& acc) {
    LocalTensor<float> f = flushQue_.AllocTensor<float>();
    AscendC::Adds(f, acc, 0.0f, static_cast<int32_t>(AlignUp(plan_.cols, kSlot)));
    flushQue_.EnQue(f);
    f = flushQue_.DeQue<float>();
    AscendC::SetAtomicAdd<float>();
    AscendC::DataCopyExtParams p{1, static_cast<uint32_t>(plan_.cols * sizeof(float)), 0, 0, 0};
    AscendC::DataCopyPad(gradAlphaGm_[group * plan_.cols], f, p);
    AscendC::DisableDmaAtomic();
    flushQue_.FreeTensor(f);
    AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(plan_.colsPad64));
  }

  __aicore__ inline LocalTensor<float> WorkG() {
    if constexpr (SameType<T, float>::value) {
      return LocalTensor<float>();  // unused: float grads are computed in place
    } else {
      return workG_.Get<float>();
    }
  }

  AscendC::TPipe pipe_;
  SoftmaxPlan plan_;
  GlobalTensor<T> gradGm_, scoresGm_, gradScoresGm_;
  GlobalTensor<float> gradAlphaGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> inGrad_, inScores_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outQue_, flushQue_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> workA_, workD_, workP_, workG_, acc_, slots_, tmp_;
  AlphaRow alpha_;
};

}  // namespace npu_ops_kernels
