// AscendC kernels of Chorus masked latent blending (issue 4):
//   forward   out = mask * fresh + (1 - mask) * cached          (= cached + mask * (fresh - cached))
//   backward  grad_fresh = mask * g, grad_cached = g - mask * g,
//             grad_mask  = sum over the broadcast dims of (fresh - cached) * g   (float masks)
// The mask*fresh + (1 - mask)*cached form is exact for hard (0/1) masks, like torch.where.
//
// Data are viewed as [outer, mid, inner], the mask as [outer, 1, inner] (see
// ../host/tiling/chorus_tiling_data.h for the two modes and the tile order). Each block takes a
// contiguous range of tiles. Tiles of `rows x cols` elements move with DataCopyPad (any row
// length, rows padded to 32 B in UB with zeros), through depth-1 TQues with two buffers each
// (double buffering); fp16/bf16 are cast to fp32 for the arithmetic and back with
// round-to-nearest-even. grad_mask partial sums go to GM with DMA atomic adds.
#pragma once

#include "../host/tiling/chorus_tiling_data.h"
#include "chorus_kernel_common.h"

namespace npu_ops_kernels {

using npu_ops::ascend::MaskedBlendTiling;

struct BlendTile {
  uint64_t dataOffset;  // element offset of the tile's first row chunk in fresh/cached/out
  uint64_t rowStride;   // elements between consecutive tile rows in GM
  uint64_t maskOffset;  // first mask element of the tile
  uint64_t maskKey;     // column mode: (outer, chunk) id, the mask tile is reused while it holds
  uint32_t rows;        // rows in this tile
  uint32_t cols;        // valid elements per row
  uint32_t maskCount;   // mask elements to load
};

// Tiling fields, the block's tile range and the tile decoding shared by both passes.
class BlendPlan {
 public:
  __aicore__ inline void Init(GM_ADDR tiling) {
    TilingReader rd;
    rd.Init(tiling, sizeof(MaskedBlendTiling));
    outer = NPU_OPS_TILING_U64(rd, MaskedBlendTiling, outer);
    mid = NPU_OPS_TILING_U64(rd, MaskedBlendTiling, mid);
    inner = NPU_OPS_TILING_U64(rd, MaskedBlendTiling, inner);
    numTiles = NPU_OPS_TILING_U64(rd, MaskedBlendTiling, numTiles);
    numRowBlocks = NPU_OPS_TILING_U64(rd, MaskedBlendTiling, numRowBlocks);
    numColChunks = NPU_OPS_TILING_U32(rd, MaskedBlendTiling, numColChunks);
    tileRows = NPU_OPS_TILING_U32(rd, MaskedBlendTiling, tileRows);
    tileCols = NPU_OPS_TILING_U32(rd, MaskedBlendTiling, tileCols);
    rowMode = NPU_OPS_TILING_U32(rd, MaskedBlendTiling, mode) == npu_ops::ascend::kBlendRowMask;
    bufferNum = NPU_OPS_TILING_U32(rd, MaskedBlendTiling, bufferNum);
    const uint64_t blockIdx = static_cast<uint64_t>(AscendC::GetBlockIdx());
    const uint64_t blockNum = static_cast<uint64_t>(AscendC::GetBlockNum());
    tileBegin = numTiles * blockIdx / blockNum;
    tileEnd = numTiles * (blockIdx + 1) / blockNum;
    maskRows = rowMode ? tileRows : 1;
    maskCols = rowMode ? 1 : tileCols;
  }

  __aicore__ inline BlendTile Tile(uint64_t t) const {
    BlendTile b;
    if (rowMode) {  // rows = consecutive outer indices, each with one mask value
      const uint64_t chunk = t % numColChunks;
      const uint64_t o0 = (t / numColChunks) * tileRows;
      const uint64_t c0 = chunk * tileCols;
      b.rows = static_cast<uint32_t>(Min64(tileRows, outer - o0));
      b.cols = static_cast<uint32_t>(Min64(tileCols, mid - c0));
      b.dataOffset = o0 * mid + c0;
      b.rowStride = mid;
      b.maskOffset = o0;
      b.maskCount = b.rows;
      b.maskKey = t;
    } else {  // rows = consecutive mid indices of one outer index, sharing one mask chunk
      const uint64_t rb = t % numRowBlocks;
      const uint64_t rest = t / numRowBlocks;
      const uint64_t chunk = rest % numColChunks;
      const uint64_t o = rest / numColChunks;
      const uint64_t m0 = rb * tileRows;
      const uint64_t c0 = chunk * tileCols;
      b.rows = static_cast<uint32_t>(Min64(tileRows, mid - m0));
      b.cols = static_cast<uint32_t>(Min64(tileCols, inner - c0));
      b.dataOffset = (o * mid + m0) * inner + c0;
      b.rowStride = inner;
      b.maskOffset = o * inner + c0;
      b.maskCount = b.cols;
      b.maskKey = rest;
    }
    return b;
  }

  uint64_t outer = 0, mid = 0, inner = 0, numTiles = 0, numRowBlocks = 0;
  uint64_t tileBegin = 0, tileEnd = 0;
  uint32_t numColChunks = 1, tileRows = 1, tileCols = 1, bufferNum = 2;
  uint32_t maskRows = 1, maskCols = 1;
  bool rowMode = false;
};

// GM -> UB copy of `rows` rows of `cols` elements (GM row stride `rowStride`), each row padded
// with zeros to 32 B in UB.
template <typename T>
__aicore__ inline void CopyRowsIn(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t rows, uint32_t cols,
                                  uint64_t rowStride) {
  const uint32_t stride = AlignUp(cols, kUbBlock / sizeof(T));
  AscendC::DataCopyExtParams p{static_cast<uint16_t>(rows), static_cast<uint32_t>(cols * sizeof(T)),
                               static_cast<uint32_t>((rowStride - cols) * sizeof(T)), 0, 0};
  AscendC::DataCopyPadExtParams<T> pad{true, 0, static_cast<uint8_t>(stride - cols), static_cast<T>(0)};
  AscendC::DataCopyPad(dst, src, p, pad);
}

template <typename T>
__aicore__ inline void CopyRowsOut(const GlobalTensor<T>& dst, const LocalTensor<T>& src, uint32_t rows, uint32_t cols,
                                   uint64_t rowStride) {
  AscendC::DataCopyExtParams p{static_cast<uint16_t>(rows), static_cast<uint32_t>(cols * sizeof(T)), 0,
                               static_cast<uint32_t>((rowStride - cols) * sizeof(T)), 0};
  AscendC::DataCopyPad(dst, src, p);
}

// Loads `count` mask values into `m32` as fp32 (count rounded up to 32 B of the mask type;
// the padding is zero). M is the data type (float masks) or uint8_t.
template <typename M>
class BlendMaskLoader {
 public:
  __aicore__ inline void Init(AscendC::TPipe& pipe, GM_ADDR mask, uint64_t elems, uint32_t maxCount,
                              uint32_t bufferNum) {
    gm_.SetGlobalBuffer(reinterpret_cast<__gm__ M*>(mask), elems);
    const uint32_t max32 = AlignUp(maxCount, 32);
    pipe.InitBuffer(que_, bufferNum, AlignUp(maxCount * sizeof(M), kUbBlock));
    pipe.InitBuffer(m32_, max32 * sizeof(float));
    if constexpr (SameType<M, uint8_t>::value) {
      pipe.InitBuffer(half_, max32 * sizeof(half));
    }
  }

  __aicore__ inline LocalTensor<float> Load(uint64_t offset, uint32_t count) {
    const uint32_t padded = AlignUp(count, kUbBlock / sizeof(M));
    LocalTensor<M> raw = que_.template AllocTensor<M>();
    AscendC::DataCopyExtParams p{1, static_cast<uint32_t>(count * sizeof(M)), 0, 0, 0};
    AscendC::DataCopyPadExtParams<M> pad{true, 0, static_cast<uint8_t>(padded - count), static_cast<M>(0)};
    AscendC::DataCopyPad(raw, gm_[offset], p, pad);
    que_.EnQue(raw);
    raw = que_.template DeQue<M>();
    LocalTensor<float> m = m32_.Get<float>();
    if constexpr (SameType<M, uint8_t>::value) {
      LocalTensor<half> h = half_.Get<half>();
      AscendC::Cast(h, raw, AscendC::RoundMode::CAST_NONE, padded);
      AscendC::Cast(m, h, AscendC::RoundMode::CAST_NONE, padded);
    } else if constexpr (SameType<M, float>::value) {
      AscendC::Adds(m, raw, 0.0f, padded);
    } else {
      AscendC::Cast(m, raw, AscendC::RoundMode::CAST_NONE, padded);
    }
    que_.FreeTensor(raw);
    return m;
  }

 private:
  GlobalTensor<M> gm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> que_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> m32_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> half_;
};

// ---------------------------------------------------------------------------------------------
template <typename T, typename M>
class MaskedBlendForward {
 public:
  __aicore__ inline void Init(GM_ADDR fresh, GM_ADDR cached, GM_ADDR mask, GM_ADDR out, GM_ADDR tiling) {
    plan_.Init(tiling);
    const uint64_t total = plan_.outer * plan_.mid * plan_.inner;
    freshGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(fresh), total);
    cachedGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(cached), total);
    outGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(out), total);
    const uint32_t tile = plan_.tileRows * AlignUp(plan_.tileCols, kUbBlock / sizeof(T));
    pipe_.InitBuffer(inFresh_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(inCached_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(outQue_, plan_.bufferNum, tile * sizeof(T));
    if constexpr (!SameType<T, float>::value) {
      pipe_.InitBuffer(work0_, tile * sizeof(float));
      pipe_.InitBuffer(work1_, tile * sizeof(float));
    }
    const uint32_t maskMax = plan_.rowMode ? plan_.tileRows : plan_.tileCols;
    mask_.Init(pipe_, mask, plan_.outer * plan_.inner, maskMax, plan_.bufferNum);
    if (!plan_.rowMode) pipe_.InitBuffer(oneMinus_, AlignUp(maskMax, 32) * sizeof(float));
  }

  __aicore__ inline void Process() {
    uint64_t loadedKey = ~static_cast<uint64_t>(0);
    LocalTensor<float> m;
    for (uint64_t t = plan_.tileBegin; t < plan_.tileEnd; ++t) {
      const BlendTile tile = plan_.Tile(t);
      CopyIn(tile);
      if (plan_.rowMode || tile.maskKey != loadedKey) {
        m = mask_.Load(tile.maskOffset, tile.maskCount);
        loadedKey = tile.maskKey;
        if (!plan_.rowMode) {  // 1 - mask, once per mask chunk
          LocalTensor<float> om = oneMinus_.Get<float>();
          const uint32_t n = AlignUp(tile.maskCount, kUbBlock / sizeof(T));
          AscendC::Muls(om, m, -1.0f, n);
          AscendC::Adds(om, om, 1.0f, n);
        }
      }
      Compute(tile, m);
      CopyOut(tile);
    }
  }

 private:
  __aicore__ inline void CopyIn(const BlendTile& tile) {
    LocalTensor<T> f = inFresh_.template AllocTensor<T>();
    LocalTensor<T> c = inCached_.template AllocTensor<T>();
    CopyRowsIn(f, freshGm_[tile.dataOffset], tile.rows, tile.cols, tile.rowStride);
    CopyRowsIn(c, cachedGm_[tile.dataOffset], tile.rows, tile.cols, tile.rowStride);
    inFresh_.EnQue(f);
    inCached_.EnQue(c);
  }

  __aicore__ inline void Compute(const BlendTile& tile, const LocalTensor<float>& m) {
    const uint32_t stride = AlignUp(tile.cols, kUbBlock / sizeof(T));
    const uint32_t count = tile.rows * stride;
    LocalTensor<T> fT = inFresh_.template DeQue<T>();
    LocalTensor<T> cT = inCached_.template DeQue<T>();
    LocalTensor<float> f = LoadF32(fT, WorkF32(work0_), count);
    LocalTensor<float> c = LoadF32(cT, WorkF32(work1_), count);
    if (plan_.rowMode) {
      SyncVToS();  // mask values were written by the vector unit
      for (uint32_t r = 0; r < tile.rows; ++r) {
        const float mr = m.GetValue(r);
        AscendC::Muls(f[r * stride], f[r * stride], mr, stride);
        AscendC::Muls(c[r * stride], c[r * stride], 1.0f - mr, stride);
      }
      SyncSToV();  // the next mask load overwrites what the scalar unit read
    } else {
      LocalTensor<float> om = oneMinus_.Get<float>();
      for (uint32_t r = 0; r < tile.rows; ++r) {
        AscendC::Mul(f[r * stride], f[r * stride], m, stride);
        AscendC::Mul(c[r * stride], c[r * stride], om, stride);
      }
    }
    LocalTensor<T> o = outQue_.template AllocTensor<T>();
    LocalTensor<float> res = ResultF32(o, f);
    AscendC::Add(res, f, c, count);
    StoreF32(o, res, count);
    outQue_.EnQue(o);
    inFresh_.FreeTensor(fT);
    inCached_.FreeTensor(cT);
  }

  __aicore__ inline void CopyOut(const BlendTile& tile) {
    LocalTensor<T> o = outQue_.template DeQue<T>();
    CopyRowsOut(outGm_[tile.dataOffset], o, tile.rows, tile.cols, tile.rowStride);
    outQue_.FreeTensor(o);
  }

  __aicore__ inline LocalTensor<float> WorkF32(AscendC::TBuf<AscendC::TPosition::VECCALC>& buf) {
    if constexpr (SameType<T, float>::value) {
      return LocalTensor<float>();  // unused: float data are computed in place
    } else {
      return buf.Get<float>();
    }
  }

  AscendC::TPipe pipe_;
  BlendPlan plan_;
  GlobalTensor<T> freshGm_, cachedGm_, outGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> inFresh_, inCached_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outQue_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> work0_, work1_, oneMinus_;
  BlendMaskLoader<M> mask_;
};

// ---------------------------------------------------------------------------------------------
template <typename T, typename M>
class MaskedBlendBackward {
  static constexpr bool kGradMask = !SameType<M, uint8_t>::value;

 public:
  __aicore__ inline void Init(GM_ADDR grad, GM_ADDR fresh, GM_ADDR cached, GM_ADDR mask, GM_ADDR gradFresh,
                              GM_ADDR gradCached, GM_ADDR gradMask, GM_ADDR tiling) {
    plan_.Init(tiling);
    const uint64_t total = plan_.outer * plan_.mid * plan_.inner;
    gradGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(grad), total);
    freshGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(fresh), total);
    cachedGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(cached), total);
    gradFreshGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradFresh), total);
    gradCachedGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradCached), total);
    const uint32_t stride = AlignUp(plan_.tileCols, kUbBlock / sizeof(T));
    const uint32_t tile = plan_.tileRows * stride;
    pipe_.InitBuffer(inGrad_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(inFresh_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(inCached_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(outGradFresh_, plan_.bufferNum, tile * sizeof(T));
    pipe_.InitBuffer(outGradCached_, plan_.bufferNum, tile * sizeof(T));
    if constexpr (!SameType<T, float>::value) {
      pipe_.InitBuffer(work0_, tile * sizeof(float));
      pipe_.InitBuffer(work1_, tile * sizeof(float));
      pipe_.InitBuffer(work2_, tile * sizeof(float));
    }
    const uint32_t maskMax = plan_.rowMode ? plan_.tileRows : plan_.tileCols;
    mask_.Init(pipe_, mask, plan_.outer * plan_.inner, maskMax, plan_.bufferNum);
    if constexpr (kGradMask) {
      gradMaskGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(gradMask), plan_.outer * plan_.inner);
      if (plan_.rowMode) {
        pipe_.InitBuffer(slots_, plan_.tileRows * kUbBlock);
        pipe_.InitBuffer(rowSums_, AlignUp(plan_.tileRows, 8) * sizeof(float));
        pipe_.InitBuffer(reduceTmp_, AlignUp(2 * static_cast<uint32_t>(CeilDiv(plan_.tileCols, 64)), 8) * 4);
      } else {
        pipe_.InitBuffer(outGradMask_, plan_.bufferNum, stride * sizeof(float));
      }
    }
  }

  __aicore__ inline void Process() {
    uint64_t loadedKey = ~static_cast<uint64_t>(0);
    LocalTensor<float> m;
    for (uint64_t t = plan_.tileBegin; t < plan_.tileEnd; ++t) {
      const BlendTile tile = plan_.Tile(t);
      CopyIn(tile);
      if (plan_.rowMode || tile.maskKey != loadedKey) {
        m = mask_.Load(tile.maskOffset, tile.maskCount);
        loadedKey = tile.maskKey;
      }
      Compute(tile, m);
      CopyOut(tile);
    }
  }

 private:
  __aicore__ inline void CopyIn(const BlendTile& tile) {
    LocalTensor<T> g = inGrad_.template AllocTensor<T>();
    LocalTensor<T> f = inFresh_.template AllocTensor<T>();
    LocalTensor<T> c = inCached_.template AllocTensor<T>();
    CopyRowsIn(g, gradGm_[tile.dataOffset], tile.rows, tile.cols, tile.rowStride);
    CopyRowsIn(f, freshGm_[tile.dataOffset], tile.rows, tile.cols, tile.rowStride);
    CopyRowsIn(c, cachedGm_[tile.dataOffset], tile.rows, tile.cols, tile.rowStride);
    inGrad_.EnQue(g);
    inFresh_.EnQue(f);
    inCached_.EnQue(c);
  }

  __aicore__ inline void Compute(const BlendTile& tile, const LocalTensor<float>& m) {
    const uint32_t stride = AlignUp(tile.cols, kUbBlock / sizeof(T));
    const uint32_t count = tile.rows * stride;
    LocalTensor<T> gT = inGrad_.template DeQue<T>();
    LocalTensor<T> fT = inFresh_.template DeQue<T>();
    LocalTensor<T> cT = inCached_.template DeQue<T>();
    LocalTensor<float> g = LoadF32(gT, WorkF32(work0_), count);
    LocalTensor<float> f = LoadF32(fT, WorkF32(work1_), count);
    LocalTensor<float> c = LoadF32(cT, WorkF32(work2_), count);
    LocalTensor<T> gfT = outGradFresh_.template AllocTensor<T>();
    LocalTensor<T> gcT = outGradCached_.template AllocTensor<T>();
    if constexpr (kGradMask) {
      // d = (fresh - cached) * g, summed over the tile rows (column mode) or along each row.
      AscendC::Sub(f, f, c, count);
      AscendC::Mul(f, f, g, count);
      if (!plan_.rowMode) {
        LocalTensor<float> gm = outGradMask_.template AllocTensor<float>();
        AscendC::Adds(gm, f, 0.0f, stride);
        for (uint32_t r = 1; r < tile.rows; ++r) AscendC::Add(gm, gm, f[r * stride], stride);
        outGradMask_.EnQue(gm);
      } else {
        LocalTensor<float> slots = slots_.Get<float>();
        LocalTensor<float> tmp = reduceTmp_.Get<float>();
        for (uint32_t r = 0; r < tile.rows; ++r) {
          AscendC::ReduceSum(slots[r * (kUbBlock / 4)], f[r * stride], tmp, static_cast<int32_t>(tile.cols));
        }
      }
    }
    // grad_fresh = m * g (into the cached tile, no longer needed), grad_cached = g - grad_fresh.
    LocalTensor<float> gf = ResultF32(gfT, c);
    if (plan_.rowMode) {
      SyncVToS();
      LocalTensor<float> sums = RowSums();
      LocalTensor<float> slots = Slots();
      for (uint32_t r = 0; r < tile.rows; ++r) {
        AscendC::Muls(gf[r * stride], g[r * stride], m.GetValue(r), stride);
        if constexpr (kGradMask) sums.SetValue(r, slots.GetValue(r * (kUbBlock / 4)));
      }
      SyncSToV();
      if constexpr (kGradMask) {
        // The scalar unit wrote the sums: order the DMA after it, and the next writes after it.
        AscendC::SetFlag<AscendC::HardEvent::S_MTE3>(EVENT_ID0);
        AscendC::WaitFlag<AscendC::HardEvent::S_MTE3>(EVENT_ID0);
        AtomicAddToGm(gradMaskGm_[tile.maskOffset], sums, tile.rows);
        AscendC::SetFlag<AscendC::HardEvent::MTE3_S>(EVENT_ID0);
        AscendC::WaitFlag<AscendC::HardEvent::MTE3_S>(EVENT_ID0);
      }
    } else {
      for (uint32_t r = 0; r < tile.rows; ++r) AscendC::Mul(gf[r * stride], g[r * stride], m, stride);
    }
    LocalTensor<float> gc = ResultF32(gcT, g);
    AscendC::Sub(gc, g, gf, count);
    StoreF32(gfT, gf, count);
    StoreF32(gcT, gc, count);
    outGradFresh_.EnQue(gfT);
    outGradCached_.EnQue(gcT);
    inGrad_.FreeTensor(gT);
    inFresh_.FreeTensor(fT);
    inCached_.FreeTensor(cT);
  }

  __aicore__ inline void CopyOut(const BlendTile& tile) {
    LocalTensor<T> gf = outGradFresh_.template DeQue<T>();
    LocalTensor<T> gc = outGradCached_.template DeQue<T>();
    CopyRowsOut(gradFreshGm_[tile.dataOffset], gf, tile.rows, tile.cols, tile.rowStride);
    CopyRowsOut(gradCachedGm_[tile.dataOffset], gc, tile.rows, tile.cols, tile.rowStride);
    outGradFresh_.FreeTensor(gf);
    outGradCached_.FreeTensor(gc);
    if constexpr (kGradMask) {
      if (!plan_.rowMode) {
        LocalTensor<float> gm = outGradMask_.template DeQue<float>();
        AtomicAddToGm(gradMaskGm_[tile.maskOffset], gm, tile.cols);
        outGradMask_.FreeTensor(gm);
      }
    }
  }

  // grad_mask is shared by blocks (and by tiles): accumulate with DMA atomic adds.
  __aicore__ inline void AtomicAddToGm(const GlobalTensor<float>& dst, const LocalTensor<float>& src, uint32_t n) {
    AscendC::SetAtomicAdd<float>();
    AscendC::DataCopyExtParams p{1, static_cast<uint32_t>(n * sizeof(float)), 0, 0, 0};
    AscendC::DataCopyPad(dst, src, p);
    AscendC::DisableDmaAtomic();
  }

  __aicore__ inline LocalTensor<float> WorkF32(AscendC::TBuf<AscendC::TPosition::VECCALC>& buf) {
    if constexpr (SameType<T, float>::value) {
      return LocalTensor<float>();  // unused: float data are computed in place
    } else {
      return buf.Get<float>();
    }
  }
  __aicore__ inline LocalTensor<float> RowSums() {
    if constexpr (kGradMask) return rowSums_.Get<float>();
    return LocalTensor<float>();
  }
  __aicore__ inline LocalTensor<float> Slots() {
    if constexpr (kGradMask) return slots_.Get<float>();
    return LocalTensor<float>();
  }

  AscendC::TPipe pipe_;
  BlendPlan plan_;
  GlobalTensor<T> gradGm_, freshGm_, cachedGm_, gradFreshGm_, gradCachedGm_;
  GlobalTensor<float> gradMaskGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> inGrad_, inFresh_, inCached_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outGradFresh_, outGradCached_, outGradMask_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> work0_, work1_, work2_, slots_, rowSums_, reduceTmp_;
  BlendMaskLoader<M> mask_;
};

}  // namespace npu_ops_kernels
