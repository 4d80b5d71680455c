// AscendC kernels of the multi-scale deformable attention forward (issue 5), mmcv semantics:
//   out[b, q, h*C + c] = sum_{l, p} A[b, q, h, l, p] * bilinear(value[b, level l, :, h, c],
//                                                            x = loc_x * W_l - 0.5, y = loc_y * H_l - 0.5)
// A point contributes only if -1 < x < W_l and -1 < y < H_l (NaN/Inf fail the tests); each of its
// four corners only if it lies on the map (zero padding); fp32 accumulation for every dtype.
//
// Two designs, one class each, selected by the kernel entry (msda_forward.cpp); the tiling
// (../host/tiling/msda_forward_tiling_data.h) describes the data layout and the UB plan.
//  * MsdaForwardNaive: the baseline. One (batch, query) row at a time, scalar coordinate maths,
//    one DMA per valid corner row (C elements), multiply-add per corner.
//  * MsdaForwardCodesign: the design for the NPU memory system. For each head, tiles of rows of one
//    batch: the points' (x, y, A) arrive in two strided DMAs, are de-interleaved by Gather and all
//    coordinate maths (scale, validity incl. NaN/Inf, floor with correction, corner weights times
//    A, corner masks) is vectorised over the tile. Corners are fetched per (level, point group)
//    into a [points, 4 corners, tileQ, cPad] chunk: by vector Gather from a UB-resident copy of
//    the level (small levels, loaded once per block, batch and head; invalid corners read a zero
//    row) or of a per-tile window of a large level (the box of the tile's corners: one DMA per
//    row, or one for a band of whole rows where that is cheaper), else by DMA with both
//    horizontal corners of a row in one instruction (blockCount 2, GM stride H*C). Per-row
//    weights and UB offsets are gathered as one 32-byte block a row and applied with repeat-form
//    Mul / Add (src1 block stride 0), so only the corner rows themselves are gathered at full
//    width. A chunk is folded over its 4 * points slabs with log2 Adds into the tile's fp32
//    accumulator. Chunks go through a
//    two-buffer queue, so the DMA (or gather) of the next chunk overlaps the current one's maths.
//
// Value layout: both kernels read mmcv's value [B, S, H, C] as it is. A pixel-last or head-major
// copy ([B, H, S, C]) would cost a full extra read and write of value in GM on every call (plus
// a workspace), while what it buys is already available in the native layout: a corner's C
// channels are contiguous, the (x0, x1) pair of a row is one DMA with two blocks H*C apart, and
// a level's per-head slice arrives in UB as [h*w, cPad] rows with one strided DataCopyPad
// (blockCount = pixels, GM gap (H-1)*C), so the UB gather sees a pixel-major slice anyway.
#pragma once

#include "../host/tiling/msda_forward_tiling_data.h"
#include "chorus_kernel_common.h"

namespace npu_ops_kernels {

using npu_ops::ascend::MsdaForwardTiling;

// Tiling fields both designs read, and the block's row range.
class MsdaPlan {
 public:
  __aicore__ inline void Init(GM_ADDR tiling) {
    TilingReader rd;
    rd.Init(tiling, sizeof(MsdaForwardTiling));
    batch = NPU_OPS_TILING_U64(rd, MsdaForwardTiling, batch);
    numKeys = NPU_OPS_TILING_U64(rd, MsdaForwardTiling, numKeys);
    numQueries = NPU_OPS_TILING_U64(rd, MsdaForwardTiling, numQueries);
    totalRows = NPU_OPS_TILING_U64(rd, MsdaForwardTiling, totalRows);
    heads = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, heads);
    channels = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, channels);
    levels = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, levels);
    points = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, points);
    cPad = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, cPad);
    tileQ = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, tileQ);
    pointGroup = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, pointGroup);
    tileN = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, tileN);
    chunkElems = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, chunkElems);
    locRowBytes = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, locRowBytes);
    attnRowBytes = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, attnRowBytes);
    residentBytes = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, residentBytes);
    numResident = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, numResident);
    hasDmaLevels = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, hasDmaLevels);
    bufferNum = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, bufferNum);
    windowPixels = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, windowPixels);
    windowUbOffset = NPU_OPS_TILING_U32(rd, MsdaForwardTiling, windowUbOffset);
    for (uint32_t l = 0; l < levels; ++l) {
      levelStart[l] = rd.U64(__builtin_offsetof(MsdaForwardTiling, levelStart) + 8 * l);
      levelH[l] = rd.U32(__builtin_offsetof(MsdaForwardTiling, levelH) + 4 * l);
      levelW[l] = rd.U32(__builtin_offsetof(MsdaForwardTiling, levelW) + 4 * l);
      levelUbOffset[l] = rd.U32(__builtin_offsetof(MsdaForwardTiling, levelUbOffset) + 4 * l);
    }
    const uint64_t blockIdx = static_cast<uint64_t>(AscendC::GetBlockIdx());
    const uint64_t blockNum = static_cast<uint64_t>(AscendC::GetBlockNum());
    rowBegin = totalRows * blockIdx / blockNum;
    rowEnd = totalRows * (blockIdx + 1) / blockNum;
    lp = levels * points;
  }

  uint64_t batch = 0, numKeys = 0, numQueries = 0, totalRows = 0, rowBegin = 0, rowEnd = 0;
  uint64_t levelStart[npu_ops::ascend::kMsdaMaxLevels];
  uint32_t levelH[npu_ops::ascend::kMsdaMaxLevels];
  uint32_t levelW[npu_ops::ascend::kMsdaMaxLevels];
  uint32_t levelUbOffset[npu_ops::ascend::kMsdaMaxLevels];
  uint32_t heads = 0, channels = 0, levels = 0, points = 0, lp = 0, cPad = 0, tileQ = 1, pointGroup = 1;
  uint32_t tileN = 0, chunkElems = 0, locRowBytes = 0, attnRowBytes = 0, residentBytes = 0, numResident = 0;
  uint32_t hasDmaLevels = 0, bufferNum = 2, windowPixels = 0, windowUbOffset = 0;
};

// fp32 view of `src` in `work` (a copy for float data, so the scalar unit reads vector results).
template <typename T>
__aicore__ inline void ToF32(const LocalTensor<float>& dst, const LocalTensor<T>& src, uint32_t count) {
  if constexpr (SameType<T, float>::value) {
    AscendC::Adds(dst, src, 0.0f, count);
  } else {
    AscendC::Cast(dst, src, AscendC::RoundMode::CAST_NONE, count);
  }
}

// `dst` (the output dtype) from the fp32 accumulator, round-to-nearest-even.
template <typename T>
__aicore__ inline void FromF32(const LocalTensor<T>& dst, const LocalTensor<float>& src, uint32_t count) {
  if constexpr (SameType<T, float>::value) {
    AscendC::Adds(dst, src, 0.0f, count);
  } else {
    AscendC::Cast(dst, src, AscendC::RoundMode::CAST_RINT, count);
  }
}

// GM -> UB copy of `rows` value rows of C elements (GM stride `stride` elements), each padded
// with zeros to cPad in UB; `dstGapBlocks` 32-byte blocks between UB rows.
template <typename T>
__aicore__ inline void CopyValueRows(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t rows,
                                     uint32_t channels, uint32_t cPad, uint64_t stride, uint32_t dstGapBlocks) {
  AscendC::DataCopyExtParams p{static_cast<uint16_t>(rows), static_cast<uint32_t>(channels * sizeof(T)),
                               static_cast<uint32_t>((stride - channels) * sizeof(T)), dstGapBlocks, 0};
  AscendC::DataCopyPadExtParams<T> pad{true, 0, static_cast<uint8_t>(cPad - channels), static_cast<T>(0)};
  AscendC::DataCopyPad(dst, src, p, pad);
}

// ---------------------------------------------------------------------------------------------
template <typename T>
class MsdaForwardNaive {
 public:
  __aicore__ inline void Init(GM_ADDR value, GM_ADDR loc, GM_ADDR attn, GM_ADDR out, GM_ADDR tiling) {
    plan_.Init(tiling);
    const MsdaPlan& p = plan_;
    m_ = p.heads * p.lp;
    valueGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(value), p.batch * p.numKeys * p.heads * p.channels);
    locGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(loc), p.totalRows * m_ * 2);
    attnGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(attn), p.totalRows * m_);
    outGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(out), p.totalRows * p.heads * p.channels);
    const uint32_t cp = p.cPad;
    pipe_.InitBuffer(locQue_, p.bufferNum, AlignUp(2 * m_ * sizeof(T), kUbBlock));
    pipe_.InitBuffer(attnQue_, p.bufferNum, AlignUp(m_ * sizeof(T), kUbBlock));
    pipe_.InitBuffer(locF_, AlignUp(2 * m_, 8) * sizeof(float));
    pipe_.InitBuffer(attnF_, AlignUp(m_, 8) * sizeof(float));
    pipe_.InitBuffer(cornerQue_, p.bufferNum, cp * sizeof(T));
    if constexpr (!SameType<T, float>::value) pipe_.InitBuffer(cornerF_, cp * sizeof(float));
    pipe_.InitBuffer(acc_, p.heads * cp * sizeof(float));
    pipe_.InitBuffer(outQue_, p.bufferNum, p.heads * cp * sizeof(T));
  }

  __aicore__ inline void Process() {
    for (uint64_t r = plan_.rowBegin; r < plan_.rowEnd; ++r) Row(r);
  }

 private:
  __aicore__ inline void Row(uint64_t r) {
    const MsdaPlan& p = plan_;
    const uint64_t b = r / p.numQueries;
    LocalTensor<T> lt = locQue_.template AllocTensor<T>();
    LocalTensor<T> at = attnQue_.template AllocTensor<T>();
    AscendC::DataCopyExtParams lpar{1, static_cast<uint32_t>(2 * m_ * sizeof(T)), 0, 0, 0};
    AscendC::DataCopyExtParams apar{1, static_cast<uint32_t>(m_ * sizeof(T)), 0, 0, 0};
    AscendC::DataCopyPadExtParams<T> none{false, 0, 0, static_cast<T>(0)};
    AscendC::DataCopyPad(lt, locGm_[r * m_ * 2], lpar, none);
    AscendC::DataCopyPad(at, attnGm_[r * m_], apar, none);
    locQue_.EnQue(lt);
    attnQue_.EnQue(at);
    lt = locQue_.template DeQue<T>();
    at = attnQue_.template DeQue<T>();
    LocalTensor<float> lf = locF_.Get<float>();
    LocalTensor<float> af = attnF_.Get<float>();
    ToF32(lf, lt, 2 * m_);
    ToF32(af, at, m_);
    locQue_.FreeTensor(lt);
    attnQue_.FreeTensor(at);
    LocalTensor<float> acc = acc_.Get<float>();
    AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(p.heads * p.cPad));
    SyncVToS();  // the scalar unit reads the converted inputs
    for (uint32_t h = 0; h < p.heads; ++h) {
      for (uint32_t l = 0; l < p.levels; ++l) {
        const float wl = static_cast<float>(p.levelW[l]);
        const float hl = static_cast<float>(p.levelH[l]);
        const int64_t W = p.levelW[l], H = p.levelH[l];
        // Element offset of pixel 0 of this level, batch and head.
        const uint64_t base = ((b * p.numKeys + p.levelStart[l]) * p.heads + h) * p.channels;
        for (uint32_t pt = 0; pt < p.points; ++pt) {
          const uint32_t i = (h * p.levels + l) * p.points + pt;
          const float x = lf.GetValue(2 * i) * wl - 0.5f;
          const float y = lf.GetValue(2 * i + 1) * hl - 0.5f;
          if (!(x > -1.0f && y > -1.0f && x < wl && y < hl)) continue;  // also drops NaN / Inf
          const float a = af.GetValue(i);
          int64_t x0 = static_cast<int64_t>(x);  // truncation, then floor for (-1, 0)
          if (static_cast<float>(x0) > x) --x0;
          int64_t y0 = static_cast<int64_t>(y);
          if (static_cast<float>(y0) > y) --y0;
          const float lx = x - static_cast<float>(x0), ly = y - static_cast<float>(y0);
          const float hx = 1.0f - lx, hy = 1.0f - ly;
          const float wk[4] = {hy * hx, hy * lx, ly * hx, ly * lx};
          for (int k = 0; k < 4; ++k) {
            const int64_t yy = y0 + k / 2, xx = x0 + k % 2;
            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
            const uint64_t off = base + static_cast<uint64_t>(yy * W + xx) * p.heads * p.channels;
            AddCorner(acc[h * p.cPad], off, a * wk[k]);
          }
        }
      }
    }
    SyncSToV();  // the next row's conversions overwrite what the scalar unit read
    LocalTensor<T> o = outQue_.template AllocTensor<T>();
    FromF32(o, acc, p.heads * p.cPad);
    outQue_.EnQue(o);
    o = outQue_.template DeQue<T>();
    AscendC::DataCopyExtParams opar{static_cast<uint16_t>(p.heads), static_cast<uint32_t>(p.channels * sizeof(T)), 0, 0,
                                    0};
    AscendC::DataCopyPad(outGm_[r * p.heads * p.channels], o, opar);
    outQue_.FreeTensor(o);
  }

  // acc[0:cPad] += w * value[off : off + C] (one DMA, then fp32 maths).
  __aicore__ inline void AddCorner(const LocalTensor<float>& acc, uint64_t off, float w) {
    const MsdaPlan& p = plan_;
    LocalTensor<T> c = cornerQue_.template AllocTensor<T>();
    CopyValueRows(c, valueGm_[off], 1, p.channels, p.cPad, p.channels, 0);
    cornerQue_.EnQue(c);
    c = cornerQue_.template DeQue<T>();
    LocalTensor<float> cf;
    if constexpr (SameType<T, float>::value) {
      cf = c;
    } else {
      cf = cornerF_.Get<float>();
      AscendC::Cast(cf, c, AscendC::RoundMode::CAST_NONE, p.cPad);
    }
    AscendC::Muls(cf, cf, w, static_cast<int32_t>(p.cPad));
    AscendC::Add(acc, acc, cf, static_cast<int32_t>(p.cPad));
    cornerQue_.FreeTensor(c);
  }

  AscendC::TPipe pipe_;
  MsdaPlan plan_;
  uint32_t m_ = 0;  // points of one row: heads * levels * points
  GlobalTensor<T> valueGm_, locGm_, attnGm_, outGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> locQue_, attnQue_, cornerQue_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outQue_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> locF_, attnF_, cornerF_, acc_;
};

}  // namespace npu_ops_kernels

#include "msda_forward_codesign.h"
