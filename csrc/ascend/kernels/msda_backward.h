// AscendC kernels of the multi-scale deformable attention backward (issue 5), mmcv semantics.
// Per point (b, q, h, l, p) with g = grad_output[b, q, h, :], pixel coordinates
// x = loc_x * W_l - 0.5, y = loc_y * H_l - 0.5 (the point counts only if -1 < x < W_l and
// -1 < y < H_l; NaN/Inf fail this and get zero gradients), corners v0..v3 = (y0,x0), (y0,x1),
// (y1,x0), (y1,x1) (zero when outside the map), fractions fx, fy, gx = 1 - fx, gy = 1 - fy,
// bilinear weights w = (gy gx, gy fx, fy gx, fy fx) and d_k = <g, v_k>:
//   grad_attn          = sum_k w_k d_k
//   grad_loc_x         = W_l * A * (gy (d1 - d0) + fy (d3 - d2))
//   grad_loc_y         = H_l * A * (gx (d2 - d0) + fx (d3 - d1))
//   grad_value[v_k]   += A * w_k * g              (only for corners inside the map)
// Everything accumulates in fp32 (fp16/bf16 inputs are read natively and cast in UB).
//
// Phases (each block): zero its slice of the fp32 accumulation buffer, SyncAll, accumulate,
// then (fp16/bf16) SyncAll and cast its slice of the workspace into grad_value.
// grad_loc / grad_attn rows are owned by one block and written once, without atomics.
//
// Work: units of (b, h) slice x query chunk (msda_backward_tiling_data.h), tiles of tileRows
// queries of one head; each row (b, q, h) has L*P points padded to a multiple of 16.
//
// Two designs, same work split:
//  * naive (kMsdaBwdNaive): scalar coordinate math per point, one DMA per corner read, one
//    atomic-add DMA per corner written, dot products with Mul + ReduceSum per corner.
//  * co-designed (kMsdaBwdCodesign):
//    - coordinate math vectorised over every point of a tile (Compare/Select validity that also
//      rejects NaN/Inf, floor by Cast with a correction where the result exceeds x, masked
//      bilinear weights, a 4-bit corner code per point for the scalar unit);
//    - the two horizontally adjacent corners of a row read with one strided DMA and added to
//      grad_value with one strided atomic DMA (x0 and x1 are H*C elements apart in GM);
//    - small levels (chosen by the tiling) keep one head's value slice and an fp32 grad_value
//      slice in UB while a block works on that (b, h): their corners are copied inside UB and
//      their contributions added inside UB (privatisation), flushed with one atomic DMA per
//      4095 rows when the block moves to another slice;
//    - the other levels get a per-tile window (issue 5's encoder: the queries of a tile are
//      neighbouring pixels, their points lie a few pixels around them): from the bounding box of
//      a (tile, level)'s valid corners, when it fits the UB window budget (tiling winRows, the
//      smallest boxes first) and saves DMAs, the box of value is loaded with one DMA per box row,
//      corners are copied and grads added inside UB as for a privatised slice, and the fp32 box
//      is flushed with one atomic DMA per box row after the tile; else the paired DMAs below;
//    - corner dot products of a 16-point group: one repeat-form Mul per 64 channels (all corner
//      rows as repeats), one repeat-form Add per 8 corner rows into 8-lane partial sums, one
//      Gather transpose and three folding Adds per 16 points;
//    - scatter rows A*w_k*g of a group: one broadcast Gather of the coefficients and one
//      repeat-form Mul per 64 channels;
//    - point groups visited in an order rotated by the block index (not in deterministic mode)
//      so that blocks sharing a slice start on different levels;
//    - index tables for the Gathers built by the host into the tiling buffer.
#pragma once

#include "../host/tiling/msda_backward_tiling_data.h"
#include "chorus_kernel_common.h"

namespace npu_ops_kernels {

using npu_ops::ascend::MsdaBwdLevel;
using npu_ops::ascend::MsdaBwdTiling;

constexpr uint32_t kBwdUnit = npu_ops::ascend::kMsdaBwdUnitPoints;  // 16 points per transpose unit
constexpr uint32_t kBwdChunk = npu_ops::ascend::kMsdaBwdChunkElems;
constexpr uint32_t kLevelWords = sizeof(MsdaBwdLevel) / 4;
// Elements after buffers read by repeat-form instructions with a partial lane mask: the emulator
// (conservatively) checks the full 256-byte repeat of the last row.
constexpr uint32_t kBwdSlack = npu_ops::ascend::kMsdaBwdSlackElems;

// Tiling fields and the block's share of the work.
struct MsdaBwdPlan {
  __aicore__ inline void Init(GM_ADDR tiling) {
    TilingReader rd;
    rd.Init(tiling, sizeof(MsdaBwdTiling));
    batch = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, batch);
    numKeys = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, numKeys);
    numQueries = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, numQueries);
    rows = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, rows);
    accElems = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, accElems);
    sliceChunks = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, sliceChunks);
    chunkQueries = NPU_OPS_TILING_U64(rd, MsdaBwdTiling, chunkQueries);
    heads = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, heads);
    channels = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, channels);
    levels = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, levels);
    points = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, points);
    lp = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, lp);
    lps = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, lps);
    cs = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, cs);
    tileRows = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, tileRows);
    np = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, np);
    group = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, group);
    privRows = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, privRows);
    winRows = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, winRows);
    tablesOffset = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, tablesOffset);
    tablesWords = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, tablesWords);
    deterministic = NPU_OPS_TILING_U32(rd, MsdaBwdTiling, deterministic) != 0;
    blockIdx = static_cast<uint32_t>(AscendC::GetBlockIdx());
    blockNum = static_cast<uint32_t>(AscendC::GetBlockNum());
    const uint64_t units = batch * heads * sliceChunks;
    unitBegin = units * blockIdx / blockNum;
    unitEnd = units * (blockIdx + 1) / blockNum;
  }

  uint64_t batch = 0, numKeys = 0, numQueries = 0, rows = 0, accElems = 0, sliceChunks = 1, chunkQueries = 1;
  uint64_t unitBegin = 0, unitEnd = 0;  // units: (slice, query chunk), slice = (b, h)
  uint32_t heads = 1, channels = 1, levels = 1, points = 1, lp = 1, lps = 16, cs = 8;
  uint32_t tileRows = 1, np = 64, group = 16, privRows = 0, winRows = 0, tablesOffset = 0, tablesWords = 0,
           blockIdx = 0, blockNum = 1;
  bool deterministic = false;
};

// One tile: `count` rows, the first at `row0`, consecutive rows `step` rows apart in GM.
struct MsdaBwdTile {
  uint64_t row0;
  uint64_t step;
  uint32_t count;
  uint64_t slice;  // the (b, h) slice: b * H + h
};

template <typename T, bool kCodesign>
class MsdaBackwardKernel {
  static constexpr bool kF32 = SameType<T, float>::value;
  static constexpr uint32_t kSz = sizeof(T);

  // fp32 planes of np points each (codesign), by index into planes_.
  enum Plane : uint32_t {
    kX = 0,
    kY,
    kFx,
    kFy,
    kGx,
    kGy,
    kX0,
    kY0,
    kTmp,
    kTmp2,
    kOnes,
    kW,
    kH,
    kA,
    kCx0,
    kCx1,
    kCy0,
    kCy1,
    kCode,
    kWt0,
    kWt1,
    kWt2,
    kWt3,  // masked bilinear weights
    kAw0,
    kAw1,
    kAw2,
    kAw3,  // attention * weights: scatter coefficients
    kD0,
    kD1,
    kD2,
    kD3,  // corner dot products
    kGa,
    kGlx,
    kGly,
    kNumPlanes
  };
  static constexpr uint32_t kIntPlanes = npu_ops::ascend::kMsdaBwdIntPlanes;  // x0, y0, code as int32
  static_assert(kNumPlanes == npu_ops::ascend::kMsdaBwdPlanes, "the host UB plan counts the planes");

 public:
  __aicore__ inline void Init(GM_ADDR gradOut, GM_ADDR value, GM_ADDR loc, GM_ADDR attn, GM_ADDR gradValue,
                              GM_ADDR gradLoc, GM_ADDR gradAttn, GM_ADDR workspace, GM_ADDR tiling) {
    p_.Init(tiling);
    const uint64_t C = p_.channels;
    const uint64_t pts = p_.rows * p_.lp;
    gradOutGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradOut), p_.rows * C);
    valueGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(value), p_.accElems);
    locGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(loc), pts * 2);
    attnGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(attn), pts);
    gradValueGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradValue), p_.accElems);
    gradLocGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradLoc), pts * 2);
    gradAttnGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(gradAttn), pts);
    accGm_.SetGlobalBuffer(reinterpret_cast<__gm__ float*>(kF32 ? gradValue : workspace), p_.accElems);

    const uint32_t TR = p_.tileRows, lps = p_.lps, cs = p_.cs;
    levelsGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(tiling + sizeof(MsdaBwdTiling)),
                              p_.levels * kLevelWords);
    if constexpr (kCodesign) {
      tablesGm_.SetGlobalBuffer(reinterpret_cast<__gm__ uint32_t*>(tiling), p_.tablesOffset / 4 + p_.tablesWords);
    }
    pipe_.InitBuffer(levelsUb_, AlignUp(p_.levels * sizeof(MsdaBwdLevel), kUbBlock));
    pipe_.InitBuffer(inLoc_, 1, TR * lps * 2 * kSz);
    pipe_.InitBuffer(inAttn_, 1, TR * lps * kSz);
    pipe_.InitBuffer(inGo_, 1, (TR * cs + kBwdSlack) * kSz);
    if constexpr (!kF32) pipe_.InitBuffer(g32_, (TR * cs + kBwdSlack) * 4);
    pipe_.InitBuffer(outLoc_, 1, TR * lps * 2 * kSz);
    pipe_.InitBuffer(outAttn_, 1, TR * lps * kSz);
    pipe_.InitBuffer(chunk_, kBwdChunk * 4);
    if constexpr (!kF32) pipe_.InitBuffer(chunkOut_, kBwdChunk * kSz);
    if constexpr (kCodesign) {
      const uint32_t G = p_.group, np = p_.np;
      pipe_.InitBuffer(planes_, kNumPlanes * np * 4);
      pipe_.InitBuffer(intPlanes_, kIntPlanes * np * 4);
      if constexpr (!kF32) pipe_.InitBuffer(locPlanes_, 2 * np * kSz);
      pipe_.InitBuffer(masks_, 2 * AlignUp(np / 8, kUbBlock));
      pipe_.InitBuffer(deint_, 2 * np * 4);
      pipe_.InitBuffer(inter_, TR * lps * 2 * 4);
      pipe_.InitBuffer(bcast_, 4 * G * 8 * 4);
      pipe_.InitBuffer(trans_, 4 * kBwdUnit * 8 * 4);
      if constexpr (!kF32) pipe_.InitBuffer(gl32_, TR * lps * 2 * 4);
      // Two buffers each: the next group's corner DMAs and scatter rows overlap this group's work.
      pipe_.InitBuffer(corners_, 2, (4 * G * cs + kBwdSlack) * kSz);
      if constexpr (!kF32) pipe_.InitBuffer(corners32_, (4 * G * cs + kBwdSlack) * 4);
      pipe_.InitBuffer(acc_, 4 * kBwdUnit * 8 * 4);
      pipe_.InitBuffer(tr_, 4 * kBwdUnit * 8 * 4);
      pipe_.InitBuffer(awB_, 4 * G * 8 * 4);
      pipe_.InitBuffer(gRep_, 64 * 4);
      pipe_.InitBuffer(scatter_, 2, (4 * G * cs + kBwdSlack) * 4);
      if (p_.privRows > 0) {
        pipe_.InitBuffer(priv_, (p_.privRows * cs + kBwdSlack) * 4);  // slack: two-row Adds
        pipe_.InitBuffer(valueUb_, p_.privRows * cs * kSz);
      }
      if (p_.winRows > 0) {
        pipe_.InitBuffer(winAcc_, (p_.winRows * cs + kBwdSlack) * 4);
        pipe_.InitBuffer(winVal_, p_.winRows * cs * kSz);
      }
    } else {
      if constexpr (!kF32) {
        pipe_.InitBuffer(locF_, TR * lps * 2 * 4);
        pipe_.InitBuffer(attnF_, TR * lps * 4);
      }
      pipe_.InitBuffer(outLocF_, TR * lps * 2 * 4);
      pipe_.InitBuffer(outAttnF_, TR * lps * 4);
      pipe_.InitBuffer(corners_, 1, 4 * cs * kSz);
      if constexpr (!kF32) pipe_.InitBuffer(corners32_, 4 * cs * 4);
      pipe_.InitBuffer(prod_, cs * 4);
      pipe_.InitBuffer(slots_, 4 * kUbBlock);
      pipe_.InitBuffer(reduceTmp_, AlignUp(static_cast<uint32_t>(CeilDiv(cs, 64)), 8) * 4);
      pipe_.InitBuffer(scatter_, 1, 4 * cs * 4);
    }
  }

  __aicore__ inline void Process() {
    LoadLevels();
    ZeroAccumulator();
    AscendC::SyncAll();
    if constexpr (kCodesign) BuildTables();
    // Units are (slice, query chunk); a slice is one (b, h), its rows are H apart in GM.
    for (uint64_t u = p_.unitBegin; u < p_.unitEnd; ++u) {
      const uint64_t s = u / p_.sliceChunks, chunk = u % p_.sliceChunks;
      const uint64_t b = s / p_.heads, h = s % p_.heads;
      const uint64_t qEnd = Min64(p_.numQueries, (chunk + 1) * p_.chunkQueries);
      for (uint64_t q0 = chunk * p_.chunkQueries; q0 < qEnd; q0 += p_.tileRows) {
        MsdaBwdTile t;
        t.row0 = (b * p_.numQueries + q0) * p_.heads + h;
        t.step = p_.heads;
        t.count = static_cast<uint32_t>(Min64(p_.tileRows, qEnd - q0));
        t.slice = s;
        ProcessTile(t);
      }
    }
    if constexpr (kCodesign) FlushPrivate();
    if constexpr (!kF32) {
      AscendC::SyncAll();
      CastAccumulator();
    }
  }

 private:
  // ---- levels ---------------------------------------------------------------------------------
  __aicore__ inline void LoadLevels() {
    LocalTensor<uint32_t> lv = levelsUb_.Get<uint32_t>();
    AscendC::DataCopyExtParams cp{1, static_cast<uint32_t>(p_.levels * sizeof(MsdaBwdLevel)), 0, 0, 0};
    AscendC::DataCopyPadExtParams<uint32_t> pad{false, 0, 0, 0u};
    AscendC::DataCopyPad(lv, levelsGm_, cp, pad);
    PipeSync<AscendC::HardEvent::MTE2_S>(pipe_);
  }
  __aicore__ inline uint64_t LevelStart(uint32_t l) {
    LocalTensor<uint32_t> lv = levelsUb_.Get<uint32_t>();
    return static_cast<uint64_t>(lv.GetValue(l * kLevelWords)) |
           (static_cast<uint64_t>(lv.GetValue(l * kLevelWords + 1)) << 32);
  }
  __aicore__ inline uint32_t LevelWord(uint32_t l, uint32_t word) {
    return levelsUb_.Get<uint32_t>().GetValue(l * kLevelWords + word);
  }
  // The level of the current points, cached: consecutive points share it.
  // ub: the level's corners are in UB, pixel (y, x) at row ubRow + (y - ubY) * ubW + x - ubX of
  // the privatised slice (priv) or of the tile's window (else).
  struct LevelInfo {
    uint64_t start;
    uint64_t width;
    int64_t ubRow, ubX, ubY, ubW;
    bool priv;
    bool ub;
  };
  __aicore__ inline const LevelInfo& Level(uint32_t l) {
    if (l != cachedLevel_) {
      cached_.start = LevelStart(l);
      cached_.width = LevelW(l);
      cached_.priv = p_.privRows > 0 && LevelPriv(l);
      cached_.ub = cached_.priv;
      cached_.ubRow = LevelPrivRow(l);
      cached_.ubX = 0;
      cached_.ubY = 0;
      cached_.ubW = static_cast<int64_t>(cached_.width);
      if (!cached_.priv && l < kMaxWinLevels && win_[l].h > 0) {
        cached_.ub = true;
        cached_.ubRow = win_[l].row;
        cached_.ubX = win_[l].x;
        cached_.ubY = win_[l].y;
        cached_.ubW = win_[l].w;
      }
      cachedLevel_ = l;
    }
    return cached_;
  }
  // UB row of pixel (y, x) of a level held in UB (x may be -1 when only x + 1 is used).
  __aicore__ inline uint32_t UbRow(const LevelInfo& lv, int64_t y, int64_t x) const {
    return static_cast<uint32_t>(lv.ubRow + (y - lv.ubY) * lv.ubW + x - lv.ubX);
  }
  __aicore__ inline uint32_t LevelH(uint32_t l) { return LevelWord(l, 2); }
  __aicore__ inline uint32_t LevelW(uint32_t l) { return LevelWord(l, 3); }
  __aicore__ inline bool LevelPriv(uint32_t l) { return LevelWord(l, 4) != 0; }
  __aicore__ inline uint32_t LevelPrivRow(uint32_t l) { return LevelWord(l, 5); }

  // ---- phase 0 and 2: zero the fp32 accumulator, cast it into grad_value ----------------------
  // Each block takes whole 32-byte units of the accumulator: [unit0 * 8, unit1 * 8).
  __aicore__ inline void BlockRange(uint64_t* begin, uint64_t* end) const {
    const uint64_t units = CeilDiv(p_.accElems, 8);
    *begin = Min64(units * p_.blockIdx / p_.blockNum * 8, p_.accElems);
    *end = Min64(units * (p_.blockIdx + 1) / p_.blockNum * 8, p_.accElems);
  }

  __aicore__ inline void ZeroAccumulator() {
    uint64_t e0, e1;
    BlockRange(&e0, &e1);
    LocalTensor<float> z = chunk_.Get<float>();
    AscendC::Duplicate(z, 0.0f, static_cast<int32_t>(kBwdChunk));
    PipeSync<AscendC::HardEvent::V_MTE3>(pipe_);
    for (uint64_t e = e0; e < e1; e += kBwdChunk) {
      const uint32_t n = static_cast<uint32_t>(Min64(kBwdChunk, e1 - e));
      AscendC::DataCopyExtParams cp{1, n * 4u, 0, 0, 0};
      AscendC::DataCopyPad(accGm_[e], z, cp);
    }
    PipeSync<AscendC::HardEvent::MTE3_V>(pipe_);  // z is reused as a work buffer later
  }

  __aicore__ inline void CastAccumulator() {
    uint64_t e0, e1;
    BlockRange(&e0, &e1);
    AscendC::PipeBarrier<PIPE_ALL>();  // the chunk buffer was last used by other pipes
    LocalTensor<float> in = chunk_.Get<float>();
    LocalTensor<T> out = ChunkOut();
    for (uint64_t e = e0; e < e1; e += kBwdChunk) {
      const uint32_t n = static_cast<uint32_t>(Min64(kBwdChunk, e1 - e));
      AscendC::DataCopyExtParams cin{1, n * 4u, 0, 0, 0};
      AscendC::DataCopyPadExtParams<float> pad{false, 0, 0, 0.0f};
      AscendC::DataCopyPad(in, accGm_[e], cin, pad);
      PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
      AscendC::Cast(out, in, AscendC::RoundMode::CAST_RINT, AlignUp(n, 16));
      PipeSync<AscendC::HardEvent::V_MTE3>(pipe_);
      AscendC::DataCopyExtParams cout{1, n * kSz, 0, 0, 0};
      AscendC::DataCopyPad(gradValueGm_[e], out, cout);
      PipeSync<AscendC::HardEvent::MTE3_V>(pipe_);
      PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
    }
  }

  // ---- tiles ----------------------------------------------------------------------------------
  __aicore__ inline void ProcessTile(const MsdaBwdTile& t) {
    CopyIn(t);
    LocalTensor<T> locT = inLoc_.template DeQue<T>();
    LocalTensor<T> attnT = inAttn_.template DeQue<T>();
    LocalTensor<T> goT = inGo_.template DeQue<T>();
    LocalTensor<float> g = LoadF32(goT, G32(), t.count * p_.cs);
    if constexpr (kCodesign) {
      Coordinates(locT, attnT, t.count);
      inLoc_.FreeTensor(locT);
      inAttn_.FreeTensor(attnT);
      SyncVToS();
      PlanWindows(t);
      for (uint32_t i = 0; i < t.count; ++i) RowCodesign(t, i, g);
      FlushWindows(t);
      Gradients();
    } else {
      LocalTensor<float> locF = LoadF32(locT, LocF(), t.count * p_.lps * 2);
      LocalTensor<float> attnF = LoadF32(attnT, AttnF(), t.count * p_.lps);
      SyncVToS();
      for (uint32_t i = 0; i < t.count; ++i) RowNaive(t, i, g, locF, attnF);
      inLoc_.FreeTensor(locT);
      inAttn_.FreeTensor(attnT);
      SyncSToV();
    }
    inGo_.FreeTensor(goT);
    CopyOut(t);
  }

  __aicore__ inline void CopyIn(const MsdaBwdTile& t) {
    const uint32_t lp = p_.lp, lps = p_.lps, C = p_.channels;
    const uint64_t gap = t.step - 1;
    LocalTensor<T> loc = inLoc_.template AllocTensor<T>();
    LocalTensor<T> attn = inAttn_.template AllocTensor<T>();
    LocalTensor<T> go = inGo_.template AllocTensor<T>();
    {
      const uint32_t len = lp * 2 * kSz;
      AscendC::DataCopyExtParams cp{static_cast<uint16_t>(t.count), len, static_cast<uint32_t>(gap * len),
                                    (lps * 2 * kSz - AlignUp(len, kUbBlock)) / kUbBlock, 0};
      AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, static_cast<T>(0)};
      AscendC::DataCopyPad(loc, locGm_[t.row0 * lp * 2], cp, pad);
    }
    {
      const uint32_t len = lp * kSz;
      AscendC::DataCopyExtParams cp{static_cast<uint16_t>(t.count), len, static_cast<uint32_t>(gap * len),
                                    (lps * kSz - AlignUp(len, kUbBlock)) / kUbBlock, 0};
      AscendC::DataCopyPadExtParams<T> pad{false, 0, 0, static_cast<T>(0)};
      AscendC::DataCopyPad(attn, attnGm_[t.row0 * lp], cp, pad);
    }
    CopyChannelRows(go, gradOutGm_[t.row0 * C], t.count, gap * C * kSz);
    inLoc_.EnQue(loc);
    inAttn_.EnQue(attn);
    inGo_.EnQue(go);
  }

  // `n` channel rows from GM (`gapBytes` between them) into UB rows of cs elements, zero padded.
  __aicore__ inline void CopyChannelRows(const LocalTensor<T>& dst, const GlobalTensor<T>& src, uint32_t n,
                                         uint64_t gapBytes) {
    const uint32_t C = p_.channels;
    AscendC::DataCopyExtParams cp{static_cast<uint16_t>(n), C * kSz, static_cast<uint32_t>(gapBytes), 0, 0};
    AscendC::DataCopyPadExtParams<T> pad{true, 0, static_cast<uint8_t>(p_.cs - C), static_cast<T>(0)};
    AscendC::DataCopyPad(dst, src, cp, pad);
  }

  __aicore__ inline void CopyOut(const MsdaBwdTile& t) {
    const uint32_t lp = p_.lp, lps = p_.lps;
    const uint64_t gap = t.step - 1;
    LocalTensor<T> gl = outLoc_.template AllocTensor<T>();
    LocalTensor<T> ga = outAttn_.template AllocTensor<T>();
    const uint32_t nl = t.count * lps * 2, na = t.count * lps;
    if constexpr (kCodesign) {
      LocalTensor<float> planes = planes_.Get<float>();
      LocalTensor<float> gl32 = ResultF32(gl, GlWork());
      // Interleave (grad_x, grad_y) back into the location layout.
      AscendC::Gather(gl32, planes[kGlx * p_.np], inter_.Get<uint32_t>(), 0u, nl);
      StoreF32(gl, gl32, nl);
      StoreOrCopy(ga, planes[kGa * p_.np], na);
    } else {
      StoreOrCopy(gl, outLocF_.Get<float>(), nl);
      StoreOrCopy(ga, outAttnF_.Get<float>(), na);
    }
    outLoc_.EnQue(gl);
    outAttn_.EnQue(ga);
    gl = outLoc_.template DeQue<T>();
    ga = outAttn_.template DeQue<T>();
    {
      const uint32_t len = lp * 2 * kSz;
      AscendC::DataCopyExtParams cp{static_cast<uint16_t>(t.count), len,
                                    (lps * 2 * kSz - AlignUp(len, kUbBlock)) / kUbBlock,
                                    static_cast<uint32_t>(gap * len), 0};
      AscendC::DataCopyPad(gradLocGm_[t.row0 * lp * 2], gl, cp);
    }
    {
      const uint32_t len = lp * kSz;
      AscendC::DataCopyExtParams cp{static_cast<uint16_t>(t.count), len,
                                    (lps * kSz - AlignUp(len, kUbBlock)) / kUbBlock, static_cast<uint32_t>(gap * len),
                                    0};
      AscendC::DataCopyPad(gradAttnGm_[t.row0 * lp], ga, cp);
    }
    outLoc_.FreeTensor(gl);
    outAttn_.FreeTensor(ga);
  }

  // dst (data dtype) = src (fp32): a cast, or a plain copy for fp32.
  __aicore__ inline void StoreOrCopy(const LocalTensor<T>& dst, const LocalTensor<float>& src, uint32_t n) {
    if constexpr (kF32) {
      AscendC::Adds(dst, src, 0.0f, static_cast<int32_t>(n));
    } else {
      AscendC::Cast(dst, src, AscendC::RoundMode::CAST_RINT, n);
    }
  }

  // Zeroes n elements; 16-bit types through an int16 view (Duplicate of 0 bits).
  __aicore__ inline void ZeroFill(const LocalTensor<T>& t, uint32_t n) {
    if constexpr (kF32) {
      AscendC::Duplicate(t, 0.0f, static_cast<int32_t>(n));
    } else {
      AscendC::Duplicate(t.template ReinterpretCast<int16_t>(), static_cast<int16_t>(0), static_cast<int32_t>(n));
    }
  }

  // Element offset of channel 0 of value[b, pix, h, :].
  __aicore__ inline uint64_t ValueRow(uint64_t b, uint64_t pix, uint64_t h) const {
    return ((b * p_.numKeys + pix) * p_.heads + h) * p_.channels;
  }

  // ---- naive design ---------------------------------------------------------------------------
  __aicore__ inline void RowNaive(const MsdaBwdTile& t, uint32_t i, const LocalTensor<float>& g,
                                  const LocalTensor<float>& locF, const LocalTensor<float>& attnF) {
    const uint64_t r = t.row0 + i * t.step;
    const uint64_t b = r / (p_.numQueries * p_.heads), h = r % p_.heads;
    const uint32_t cs = p_.cs, C = p_.channels;
    LocalTensor<float> gRow = g[i * cs];
    LocalTensor<float> outL = outLocF_.Get<float>();
    LocalTensor<float> outA = outAttnF_.Get<float>();
    LocalTensor<float> slots = slots_.Get<float>();
    for (uint32_t j = 0; j < p_.lp; ++j) {
      const uint32_t idx = i * p_.lps + j;
      const uint32_t l = j / p_.points;
      const float W = static_cast<float>(LevelW(l)), Hl = static_cast<float>(LevelH(l));
      const float x = locF.GetValue(idx * 2) * W - 0.5f;
      const float y = locF.GetValue(idx * 2 + 1) * Hl - 0.5f;
      if (!(x > -1.0f && y > -1.0f && x < W && y < Hl)) {  // NaN/Inf fail too
        outL.SetValue(idx * 2, 0.0f);
        outL.SetValue(idx * 2 + 1, 0.0f);
        outA.SetValue(idx, 0.0f);
        continue;
      }
      const float A = attnF.GetValue(idx);
      int32_t x0 = static_cast<int32_t>(x), y0 = static_cast<int32_t>(y);
      if (static_cast<float>(x0) > x) --x0;
      if (static_cast<float>(y0) > y) --y0;
      const float fx = x - static_cast<float>(x0), fy = y - static_cast<float>(y0);
      const float gx = 1.0f - fx, gy = 1.0f - fy;
      const int32_t iw = static_cast<int32_t>(LevelW(l)), ih = static_cast<int32_t>(LevelH(l));
      const bool ok[4] = {y0 >= 0 && x0 >= 0, y0 >= 0 && x0 + 1 < iw, y0 + 1 < ih && x0 >= 0,
                          y0 + 1 < ih && x0 + 1 < iw};
      const int32_t cy[4] = {y0, y0, y0 + 1, y0 + 1}, cx[4] = {x0, x0 + 1, x0, x0 + 1};
      const float w[4] = {gy * gx, gy * fx, fy * gx, fy * fx};
      const uint64_t start = LevelStart(l);
      uint64_t off[4] = {0, 0, 0, 0};
      for (int k = 0; k < 4; ++k) {
        if (ok[k]) off[k] = ValueRow(b, start + static_cast<uint64_t>(cy[k]) * iw + cx[k], h);
      }
      // Corner rows (one DMA each), zero where outside the map.
      LocalTensor<T> v = corners_.template AllocTensor<T>();
      ZeroFill(v, 4 * cs);
      PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
      for (int k = 0; k < 4; ++k) {
        if (ok[k]) CopyChannelRows(v[k * cs], valueGm_[off[k]], 1, 0);
      }
      corners_.EnQue(v);
      v = corners_.template DeQue<T>();
      LocalTensor<float> v32 = LoadF32(v, Corners32(), 4 * cs);
      LocalTensor<float> prod = prod_.Get<float>();
      for (int k = 0; k < 4; ++k) {
        AscendC::Mul(prod, v32[k * cs], gRow, static_cast<int32_t>(cs));
        AscendC::ReduceSum(slots[k * 8], prod, reduceTmp_.Get<float>(), static_cast<int32_t>(C));
      }
      corners_.FreeTensor(v);
      SyncVToS();
      float d[4];
      for (int k = 0; k < 4; ++k) d[k] = slots.GetValue(k * 8);
      outA.SetValue(idx, w[0] * d[0] + w[1] * d[1] + w[2] * d[2] + w[3] * d[3]);
      outL.SetValue(idx * 2, W * A * (gy * (d[1] - d[0]) + fy * (d[3] - d[2])));
      outL.SetValue(idx * 2 + 1, Hl * A * (gx * (d[2] - d[0]) + fx * (d[3] - d[1])));
      // grad_value rows A * w_k * g, one atomic DMA per corner.
      LocalTensor<float> s = scatter_.template AllocTensor<float>();
      for (int k = 0; k < 4; ++k) {
        if (ok[k]) AscendC::Muls(s[k * cs], gRow, A * w[k], static_cast<int32_t>(cs));
      }
      scatter_.EnQue(s);
      s = scatter_.template DeQue<float>();
      AscendC::SetAtomicAdd<float>();
      for (int k = 0; k < 4; ++k) {
        if (!ok[k]) continue;
        AscendC::DataCopyExtParams cp{1, C * 4u, 0, 0, 0};
        AscendC::DataCopyPad(accGm_[off[k]], s[k * cs], cp);
      }
      AscendC::SetAtomicNone();
      scatter_.FreeTensor(s);
    }
  }

  // ---- co-designed: tables built once per block -----------------------------------------------
  __aicore__ inline void BuildTables() {
    const uint32_t np = p_.np, lps = p_.lps, TR = p_.tileRows, G = p_.group;
    LocalTensor<float> planes = planes_.Get<float>();
    LocalTensor<float> W = planes[kW * np], Hl = planes[kH * np];
    AscendC::Duplicate(planes[kOnes * np], 1.0f, static_cast<int32_t>(np));
    AscendC::Duplicate(W, -1.0f, static_cast<int32_t>(np));  // padding points: W = H = -1 never pass
    AscendC::Duplicate(Hl, -1.0f, static_cast<int32_t>(np));
    if (p_.privRows > 0) AscendC::Duplicate(priv_.Get<float>(), 0.0f, static_cast<int32_t>(p_.privRows * p_.cs));
    PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
    // The host built the tables (msda_backward_tiling_blob): one DMA each.
    uint32_t off = p_.tablesOffset / 4;
    LoadTable(W.ReinterpretCast<uint32_t>(), &off, lps);  // W_l per point of a row, -1 for padding
    LoadTable(Hl.ReinterpretCast<uint32_t>(), &off, lps);
    LoadTable(deint_.Get<uint32_t>(), &off, 2 * np);
    LoadTable(inter_.Get<uint32_t>(), &off, 2 * TR * lps);
    LoadTable(bcast_.Get<uint32_t>(), &off, 4 * G * 8);
    LoadTable(trans_.Get<uint32_t>(), &off, 4 * kBwdUnit * 8);
    PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
    for (uint32_t r = 1; r < TR; ++r) {  // the level sizes repeat for every row of the tile
      AscendC::DataCopy(W[r * lps], W, lps);
      AscendC::DataCopy(Hl[r * lps], Hl, lps);
    }
  }

  __aicore__ inline void LoadTable(const LocalTensor<uint32_t>& dst, uint32_t* wordOffset, uint32_t words) {
    AscendC::DataCopy(dst, tablesGm_[*wordOffset], words);
    *wordOffset += words;
  }

  // ---- co-designed: coordinates of every point of the tile ------------------------------------
  __aicore__ inline void Coordinates(const LocalTensor<T>& locT, const LocalTensor<T>& attnT, uint32_t count) {
    using AscendC::CMPMODE;
    using AscendC::SELMODE;
    const uint32_t np = p_.np;
    const int32_t n = static_cast<int32_t>(np);
    LocalTensor<float> pl = planes_.Get<float>();
    auto P = [&](uint32_t k) { return pl[k * np]; };
    LocalTensor<int32_t> ip = intPlanes_.Get<int32_t>();
    LocalTensor<int32_t> xi = ip, yi = ip[np], codeI = ip[2 * np];
    LocalTensor<uint8_t> mk = masks_.Get<uint8_t>();
    LocalTensor<uint8_t> mv = mk, m = mk[AlignUp(np / 8, kUbBlock)];
    LocalTensor<float> x = P(kX), y = P(kY), tmp = P(kTmp), tmp2 = P(kTmp2), ones = P(kOnes);
    LocalTensor<float> W = P(kW), Hl = P(kH), A = P(kA);

    // De-interleave (x, y) and widen to fp32; attention weights to fp32.
    if constexpr (kF32) {
      AscendC::Gather(x, locT, deint_.Get<uint32_t>(), 0u, 2 * np);
      AscendC::Adds(A, attnT, 0.0f, static_cast<int32_t>(count * p_.lps));
    } else {
      LocalTensor<T> lt = locPlanes_.Get<T>();
      AscendC::Gather(lt, locT, deint_.Get<uint32_t>(), 0u, 2 * np);
      AscendC::Cast(x, lt, AscendC::RoundMode::CAST_NONE, 2 * np);
      AscendC::Cast(A, attnT, AscendC::RoundMode::CAST_NONE, count * p_.lps);
    }
    AscendC::Mul(x, x, W, n);
    AscendC::Adds(x, x, -0.5f, n);
    AscendC::Mul(y, y, Hl, n);
    AscendC::Adds(y, y, -0.5f, n);
    // Point validity -1 < x < W, -1 < y < H (false for NaN/Inf), then sanitised inputs.
    AscendC::Compares(m, x, -1.0f, CMPMODE::GT, np);
    AscendC::Select(tmp, m, ones, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Compares(m, y, -1.0f, CMPMODE::GT, np);
    AscendC::Select(tmp, m, tmp, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Compare(m, x, W, CMPMODE::LT, np);
    AscendC::Select(tmp, m, tmp, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Compare(m, y, Hl, CMPMODE::LT, np);
    AscendC::Select(tmp, m, tmp, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Compares(mv, tmp, 0.5f, CMPMODE::GT, np);
    AscendC::Select(x, mv, x, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Select(y, mv, y, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Select(A, mv, A, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    Floor(P(kX0), xi, x, tmp, m);
    Floor(P(kY0), yi, y, tmp, m);
    LocalTensor<float> x0 = P(kX0), y0 = P(kY0);
    AscendC::Sub(P(kFx), x, x0, n);
    AscendC::Sub(P(kFy), y, y0, n);
    AscendC::Muls(P(kGx), P(kFx), -1.0f, n);
    AscendC::Adds(P(kGx), P(kGx), 1.0f, n);
    AscendC::Muls(P(kGy), P(kFy), -1.0f, n);
    AscendC::Adds(P(kGy), P(kGy), 1.0f, n);
    // Corner validity as 1/0: x0 >= 0, x0 + 1 < W, y0 >= 0, y0 + 1 < H.
    AscendC::Compares(m, x0, 0.0f, CMPMODE::GE, np);
    AscendC::Select(P(kCx0), m, ones, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Adds(tmp, x0, 1.0f, n);
    AscendC::Compare(m, tmp, W, CMPMODE::LT, np);
    AscendC::Select(P(kCx1), m, ones, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Compares(m, y0, 0.0f, CMPMODE::GE, np);
    AscendC::Select(P(kCy0), m, ones, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Adds(tmp, y0, 1.0f, n);
    AscendC::Compare(m, tmp, Hl, CMPMODE::LT, np);
    AscendC::Select(P(kCy1), m, ones, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    // Corner code for the scalar unit: bit k set when corner k is read / written.
    AscendC::Muls(tmp, P(kCx1), 2.0f, n);
    AscendC::Add(tmp, tmp, P(kCx0), n);  // x bits of the y0 row
    AscendC::Muls(tmp2, P(kCy1), 4.0f, n);
    AscendC::Add(tmp2, tmp2, P(kCy0), n);
    AscendC::Mul(P(kCode), tmp, tmp2, n);
    AscendC::Select(P(kCode), mv, P(kCode), 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Cast(codeI, P(kCode), AscendC::RoundMode::CAST_RINT, np);
    // Masked bilinear weights and the scatter coefficients A * w_k.
    AscendC::Mul(P(kCy0), P(kCy0), P(kGy), n);
    AscendC::Mul(P(kCy1), P(kCy1), P(kFy), n);
    AscendC::Mul(P(kCx0), P(kCx0), P(kGx), n);
    AscendC::Mul(P(kCx1), P(kCx1), P(kFx), n);
    AscendC::Mul(P(kWt0), P(kCy0), P(kCx0), n);
    AscendC::Mul(P(kWt1), P(kCy0), P(kCx1), n);
    AscendC::Mul(P(kWt2), P(kCy1), P(kCx0), n);
    AscendC::Mul(P(kWt3), P(kCy1), P(kCx1), n);
    for (uint32_t k = 0; k < 4; ++k) AscendC::Mul(P(kAw0 + k), P(kWt0 + k), A, n);
  }

  // floor(v) as float and int32: Cast with CAST_FLOOR, then one step down wherever the float
  // result exceeds v (the documented hardware rounding of values a hair below an integer).
  __aicore__ inline void Floor(const LocalTensor<float>& f, const LocalTensor<int32_t>& i, const LocalTensor<float>& v,
                               const LocalTensor<float>& tmp, const LocalTensor<uint8_t>& m) {
    const uint32_t np = p_.np;
    AscendC::Cast(i, v, AscendC::RoundMode::CAST_FLOOR, np);
    AscendC::Cast(f, i, AscendC::RoundMode::CAST_NONE, np);
    AscendC::Compare(m, f, v, AscendC::CMPMODE::GT, np);
    AscendC::Adds(tmp, f, -1.0f, static_cast<int32_t>(np));
    AscendC::Select(f, m, tmp, f, AscendC::SELMODE::VSEL_TENSOR_TENSOR_MODE, np);
    AscendC::Cast(i, f, AscendC::RoundMode::CAST_RINT, np);
  }

  // ---- co-designed: one row ---------------------------------------------------------------------
  __aicore__ inline void RowCodesign(const MsdaBwdTile& t, uint32_t i, const LocalTensor<float>& g) {
    const uint64_t r = t.row0 + i * t.step;
    const uint64_t b = r / (p_.numQueries * p_.heads), h = r % p_.heads;
    if (p_.privRows > 0 && t.slice != privKey_) {
      FlushPrivate();
      LoadPrivateValues(b, h);
      privKey_ = t.slice;
      privB_ = b;
      privH_ = h;
    }
    const uint32_t G = p_.group, groups = kBwdUnit / G;
    LocalTensor<float> planes = planes_.Get<float>();
    if (Packed()) {  // g repeated to one 64-lane repeat
      for (uint32_t c0 = 0; c0 < 64; c0 += p_.cs) AscendC::DataCopy(gRep_.Get<float>()[c0], g[i * p_.cs], p_.cs);
    }
    LocalTensor<float> acc = acc_.Get<float>();
    LocalTensor<float> tr = tr_.Get<float>();
    for (uint32_t u = 0; u * kBwdUnit < p_.lps; ++u) {
      AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(4 * kBwdUnit * 8));
      for (uint32_t k = 0; k < groups; ++k) {
        const uint32_t gi = p_.deterministic ? k : (k + p_.blockIdx) % groups;
        Group(b, h, i, u * kBwdUnit + gi * G, gi * G, g[i * p_.cs]);
      }
      // acc [point * 4 + k][8 lanes] -> tr [lane][k][point], then fold the 8 lanes.
      AscendC::Gather(tr, acc, trans_.Get<uint32_t>(), 0u, 4 * kBwdUnit * 8);
      AscendC::Add(tr, tr, tr[4 * kBwdUnit * 4], static_cast<int32_t>(4 * kBwdUnit * 4));
      AscendC::Add(tr, tr, tr[4 * kBwdUnit * 2], static_cast<int32_t>(4 * kBwdUnit * 2));
      AscendC::Add(tr, tr, tr[4 * kBwdUnit], static_cast<int32_t>(4 * kBwdUnit));
      // The four corner sums into the d0..d3 planes (consecutive, np apart): one strided copy.
      AscendC::DataCopyParams cp{4, static_cast<uint16_t>(kBwdUnit * 4 / kUbBlock), 0,
                                 static_cast<uint16_t>((p_.np - kBwdUnit) * 4 / kUbBlock)};
      AscendC::DataCopy(planes[kD0 * p_.np + i * p_.lps + u * kBwdUnit], tr, cp);
    }
  }

  // Points [j0, j0 + G) of row i: read corners, partial dot products into acc, scatter.
  __aicore__ inline void Group(uint64_t b, uint64_t h, uint32_t i, uint32_t j0, uint32_t jInUnit,
                               const LocalTensor<float>& gRow) {
    const uint32_t G = p_.group, cs = p_.cs, C = p_.channels, np = p_.np;
    const uint32_t base = i * p_.lps + j0;  // plane index of the group's first point
    LocalTensor<int32_t> ip = intPlanes_.Get<int32_t>();
    // The group's scalars, read from UB once: corner code, x0, y0 per point.
    const uint32_t n = j0 < p_.lp ? (p_.lp - j0 < G ? p_.lp - j0 : G) : 0;
    int32_t codes[kBwdUnit], xs[kBwdUnit], ys[kBwdUnit];
    bool any = false, partial = false;
    for (uint32_t j = 0; j < n; ++j) {
      codes[j] = ip.GetValue(2 * np + base + j);
      if (codes[j] == 0) continue;
      xs[j] = ip.GetValue(base + j);
      ys[j] = ip.GetValue(np + base + j);
      any = true;
      partial = partial || codes[j] != 15;
    }
    if (!any) return;  // acc stays zero for these points
    // Corner rows: the x0 and x1 pixels of a row with one strided DMA when both are inside.
    // Rows of corners outside the map must read as zero; the other unread rows (dropped or
    // padding points) only feed results that Gradients() masks or CopyOut() never writes.
    LocalTensor<T> v = corners_.template AllocTensor<T>();
    if (partial) {
      ZeroFill(v, 4 * G * cs);
      PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
    }
    const uint64_t pairGap = (static_cast<uint64_t>(p_.heads) - 1) * C * kSz;
    for (uint32_t j = 0; j < n; ++j) {
      const int32_t code = codes[j];
      if (code == 0) continue;
      const LevelInfo& lv = Level((j0 + j) / p_.points);
      const uint64_t w = lv.width;
      const uint64_t pix = lv.start + static_cast<uint64_t>(ys[j]) * w;
      const int64_t x0 = xs[j];
      if (code == 15 && lv.ub) {  // all four corners in UB: one copy of two strided row pairs
        const uint32_t rowBlk = cs * kSz / kUbBlock;
        AscendC::DataCopyParams cp{2, static_cast<uint16_t>(2 * rowBlk), static_cast<uint16_t>((lv.ubW - 2) * rowBlk),
                                   0};
        LocalTensor<T> src = lv.priv ? valueUb_.Get<T>() : winVal_.Get<T>();
        AscendC::DataCopy(v[j * 4 * cs], src[UbRow(lv, ys[j], x0) * cs], cp);
        continue;
      }
      for (uint32_t yy = 0; yy < 2; ++yy) {
        const uint32_t bits = (static_cast<uint32_t>(code) >> (2 * yy)) & 3u;
        if (bits == 0) continue;
        const uint64_t rowPix = pix + yy * w;
        LocalTensor<T> dst = v[(j * 4 + 2 * yy) * cs];
        if (lv.ub) {  // the level's value slice or the tile's window is in UB: vector copies, no DMA
          const uint32_t lrow = UbRow(lv, ys[j] + static_cast<int64_t>(yy), x0);
          LocalTensor<T> src = lv.priv ? valueUb_.Get<T>() : winVal_.Get<T>();
          if (bits == 3) {
            AscendC::DataCopy(dst, src[lrow * cs], 2 * cs);
          } else if (bits == 1) {
            AscendC::DataCopy(dst, src[lrow * cs], cs);
          } else {
            AscendC::DataCopy(v[(j * 4 + 2 * yy + 1) * cs], src[(lrow + 1) * cs], cs);
          }
          continue;
        }
        if (bits == 3) {
          CopyChannelRows(dst, valueGm_[ValueRow(b, rowPix + x0, h)], 2, pairGap);
        } else if (bits == 1) {
          CopyChannelRows(dst, valueGm_[ValueRow(b, rowPix + x0, h)], 1, 0);
        } else {
          CopyChannelRows(v[(j * 4 + 2 * yy + 1) * cs], valueGm_[ValueRow(b, rowPix + x0 + 1, h)], 1, 0);
        }
      }
    }
    corners_.EnQue(v);
    v = corners_.template DeQue<T>();
    LocalTensor<float> v32 = LoadF32(v, Corners32(), 4 * G * cs);
    // v32 *= g (row broadcast): rows of cs in {8, 16, 32} channels are packed 64 / cs to a
    // repeat against g repeated in gRep; else 64 channels per instruction, a row per repeat.
    const uint8_t rowBlocks = static_cast<uint8_t>(cs / 8);
    if (Packed()) {
      AscendC::Mul(v32, v32, gRep_.Get<float>(), static_cast<uint64_t>(64), static_cast<int32_t>(4 * G * cs / 64),
                   AscendC::BinaryRepeatParams(1, 1, 1, 8, 8, 0));
    } else {
      for (uint32_t c0 = 0; c0 < cs; c0 += 64) {
        const uint64_t mask = cs - c0 < 64 ? cs - c0 : 64;
        AscendC::Mul(v32[c0], v32[c0], gRow[c0], mask, static_cast<int32_t>(4 * G),
                     AscendC::BinaryRepeatParams(1, 1, 1, rowBlocks, rowBlocks, 0));
      }
    }
    // 8-lane partial sums of 8 corner rows per instruction: repeat c adds block c of each row.
    // The accumulator is src1 with repeat stride 0: the one cross-repeat overlap the docs allow
    // (通用说明和约束.md, 通用地址重叠约束: dst may overlap the second source only).
    LocalTensor<float> acc = acc_.Get<float>();
    for (uint32_t r8 = 0; r8 < 4 * G / 8; ++r8) {
      LocalTensor<float> a = acc[(jInUnit * 4 + r8 * 8) * 8];
      AscendC::Add(a, v32[r8 * 8 * cs], a, static_cast<uint64_t>(64), static_cast<int32_t>(rowBlocks),
                   AscendC::BinaryRepeatParams(1, rowBlocks, 1, 0, 1, 0));
    }
    corners_.FreeTensor(v);

    // Scatter rows A * w_k * g: broadcast the coefficients to 8 lanes, then one Mul per 64 channels.
    LocalTensor<float> awB = awB_.Get<float>();
    LocalTensor<float> planes = planes_.Get<float>();
    AscendC::Gather(awB, planes[kAw0 * np], bcast_.Get<uint32_t>(), base * 4, 4 * G * 8);
    LocalTensor<float> s = scatter_.template AllocTensor<float>();
    for (uint32_t c0 = 0; c0 < cs; c0 += 64) {
      const uint64_t mask = cs - c0 < 64 ? cs - c0 : 64;
      AscendC::Mul(s[c0], gRow[c0], awB, mask, static_cast<int32_t>(4 * G),
                   AscendC::BinaryRepeatParams(1, 1, 0, rowBlocks, 0, 1));
    }
    scatter_.EnQue(s);
    s = scatter_.template DeQue<float>();
    const uint32_t rowGap = (cs * 4 - AlignUp(C * 4, kUbBlock)) / kUbBlock;  // UB gap between rows
    const uint64_t pairGapF = (static_cast<uint64_t>(p_.heads) - 1) * C * 4;
    AscendC::SetAtomicAdd<float>();
    for (uint32_t j = 0; j < n; ++j) {
      const int32_t code = codes[j];
      if (code == 0) continue;
      const LevelInfo& lv = Level((j0 + j) / p_.points);
      const uint64_t w = lv.width;
      const uint64_t y0 = static_cast<uint64_t>(ys[j]);
      const int64_t x0 = xs[j];
      if (code == 15 && lv.ub && 2 * cs <= 64 && lv.ubW * cs / 8 <= 255) {
        // All four corners in UB and a row pair within one repeat: one Add of two repeats, the
        // second ubW rows further on (repeat strides are 8-bit 32-byte units).
        const uint8_t ubStride = static_cast<uint8_t>(lv.ubW * cs / 8), pairStride = static_cast<uint8_t>(cs / 4);
        LocalTensor<float> dst = (lv.priv ? priv_.Get<float>() : winAcc_.Get<float>())[UbRow(lv, ys[j], x0) * cs];
        AscendC::Add(dst, dst, s[j * 4 * cs], static_cast<uint64_t>(2 * cs), 2,
                     AscendC::BinaryRepeatParams(1, 1, 1, ubStride, ubStride, pairStride));
        continue;
      }
      for (uint32_t yy = 0; yy < 2; ++yy) {
        const uint32_t bits = (static_cast<uint32_t>(code) >> (2 * yy)) & 3u;
        if (bits == 0) continue;
        const uint64_t lpix = (y0 + yy) * w;  // level-relative pixel of x = 0
        if (lv.ub) {                          // UB accumulation; x0 and x1 are adjacent rows on both sides: one Add
          const uint32_t xx = bits == 2 ? 1 : 0;
          const uint32_t prow = UbRow(lv, static_cast<int64_t>(y0 + yy), x0 + xx);
          LocalTensor<float> dst = (lv.priv ? priv_.Get<float>() : winAcc_.Get<float>())[prow * cs];
          AscendC::Add(dst, dst, s[(j * 4 + 2 * yy + xx) * cs], static_cast<int32_t>((bits == 3 ? 2 : 1) * cs));
          continue;
        }
        const uint64_t pix = lv.start + lpix + x0;
        if (bits == 3) {
          AscendC::DataCopyExtParams cp{2, C * 4u, rowGap, static_cast<uint32_t>(pairGapF), 0};
          AscendC::DataCopyPad(accGm_[ValueRow(b, pix, h)], s[(j * 4 + 2 * yy) * cs], cp);
        } else {
          const uint32_t xx = bits == 1 ? 0 : 1;
          AscendC::DataCopyExtParams cp{1, C * 4u, 0, 0, 0};
          AscendC::DataCopyPad(accGm_[ValueRow(b, pix + xx, h)], s[(j * 4 + 2 * yy + xx) * cs], cp);
        }
      }
    }
    AscendC::SetAtomicNone();
    scatter_.FreeTensor(s);
  }

  // Adds the UB-private grad_value slices of the small levels to GM (one atomic DMA per 4095
  // rows) and clears them.
  __aicore__ inline void FlushPrivate() {
    if (p_.privRows == 0 || privKey_ == kNoKey) return;
    const uint32_t C = p_.channels, cs = p_.cs;
    LocalTensor<float> pv = priv_.Get<float>();
    PipeSync<AscendC::HardEvent::V_MTE3>(pipe_);
    const uint32_t rowGap = (cs * 4 - AlignUp(C * 4, kUbBlock)) / kUbBlock;
    const uint32_t gmGap = (p_.heads - 1) * C * 4;  // one head of H per pixel
    AscendC::SetAtomicAdd<float>();
    for (uint32_t l = 0; l < p_.levels; ++l) {
      if (!LevelPriv(l)) continue;
      const uint64_t rowsL = static_cast<uint64_t>(LevelH(l)) * LevelW(l);
      const uint64_t gm0 = ValueRow(privB_, LevelStart(l), privH_);
      const uint32_t ub0 = LevelPrivRow(l);
      for (uint64_t r0 = 0; r0 < rowsL; r0 += 4095) {
        const uint32_t n = static_cast<uint32_t>(Min64(4095, rowsL - r0));
        const uint64_t gmRow = r0 * p_.heads;
        AscendC::DataCopyExtParams cp{static_cast<uint16_t>(n), C * 4u, rowGap, gmGap, 0};
        AscendC::DataCopyPad(accGm_[gm0 + gmRow * C], pv[(ub0 + r0) * cs], cp);
      }
    }
    AscendC::SetAtomicNone();
    PipeSync<AscendC::HardEvent::MTE3_V>(pipe_);
    AscendC::Duplicate(pv, 0.0f, static_cast<int32_t>(p_.privRows * cs));
    privKey_ = kNoKey;
  }

  // ---- co-designed: per-tile windows of the levels not privatised -------------------------------
  // Bounding box of the valid corners of each level over the tile's points (scalar pass over the
  // int planes), then windows for the smallest boxes first while they fit winRows and cost less
  // than the paired path (DMAs and rows moved); their value rows are loaded, fp32 rows zeroed.
  __aicore__ inline void PlanWindows(const MsdaBwdTile& t) {
    cachedLevel_ = ~0u;
    for (uint32_t l = 0; l < kMaxWinLevels; ++l) win_[l].h = 0;
    if (p_.winRows == 0) return;
    const uint32_t nl = p_.levels < kMaxWinLevels ? p_.levels : kMaxWinLevels, np = p_.np;
    int32_t xl[kMaxWinLevels], xh[kMaxWinLevels], yl[kMaxWinLevels], yh[kMaxWinLevels];
    uint32_t pts[kMaxWinLevels];
    LocalTensor<int32_t> ip = intPlanes_.Get<int32_t>();
    for (uint32_t l = 0; l < nl; ++l) {
      pts[l] = 0;
      if (p_.privRows > 0 && LevelPriv(l)) continue;
      int32_t x0m = 0x7fffffff, x1m = -0x7fffffff, y0m = 0x7fffffff, y1m = -0x7fffffff;
      for (uint32_t i = 0; i < t.count; ++i) {
        const uint32_t base = i * p_.lps + l * p_.points;
        for (uint32_t k = 0; k < p_.points; ++k) {
          const int32_t code = ip.GetValue(2 * np + base + k);
          if (code == 0) continue;
          const int32_t x = ip.GetValue(base + k), y = ip.GetValue(np + base + k);
          // Corner bits: 1 (y0, x0), 2 (y0, x1), 4 (y1, x0), 8 (y1, x1).
          const int32_t cx0 = (code & 5) != 0 ? x : x + 1, cx1 = (code & 10) != 0 ? x + 1 : x;
          const int32_t cy0 = (code & 3) != 0 ? y : y + 1, cy1 = (code & 12) != 0 ? y + 1 : y;
          x0m = cx0 < x0m ? cx0 : x0m;
          x1m = cx1 > x1m ? cx1 : x1m;
          y0m = cy0 < y0m ? cy0 : y0m;
          y1m = cy1 > y1m ? cy1 : y1m;
          ++pts[l];
        }
      }
      xl[l] = x0m;
      xh[l] = x1m;
      yl[l] = y0m;
      yh[l] = y1m;
    }
    uint32_t used = 0;
    bool taken[kMaxWinLevels] = {};
    for (;;) {  // smallest box first
      uint32_t best = kMaxWinLevels;
      uint64_t bestArea = 0;
      for (uint32_t l = 0; l < nl; ++l) {
        if (taken[l] || pts[l] == 0) continue;
        const uint64_t ww = static_cast<uint64_t>(xh[l] - xl[l] + 1), wh = static_cast<uint64_t>(yh[l] - yl[l] + 1);
        // Worth a window: its DMAs and rows cost less than the paired path's (up to two DMAs of
        // two rows per point), a DMA's fixed cost taken as kDmaRowCost row transfers.
        const uint64_t winCost = wh * kDmaRowCost + ww * wh, pairCost = 2 * pts[l] * (kDmaRowCost + 2);
        if (ww > 4095 || winCost > pairCost) continue;
        if (best == kMaxWinLevels || ww * wh < bestArea) {
          best = l;
          bestArea = ww * wh;
        }
      }
      if (best == kMaxWinLevels || bestArea > p_.winRows - used) break;
      taken[best] = true;
      win_[best].row = used;
      win_[best].x = static_cast<uint32_t>(xl[best]);
      win_[best].y = static_cast<uint32_t>(yl[best]);
      win_[best].w = static_cast<uint32_t>(xh[best] - xl[best] + 1);
      win_[best].h = static_cast<uint32_t>(yh[best] - yl[best] + 1);
      used += static_cast<uint32_t>(bestArea);
    }
    if (used == 0) return;
    const uint64_t b = t.slice / p_.heads, h = t.slice % p_.heads;
    const uint32_t cs = p_.cs;
    LocalTensor<T> wv = winVal_.Get<T>();
    AscendC::Duplicate(winAcc_.Get<float>(), 0.0f, static_cast<int32_t>(used * cs));
    PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);  // earlier copies out of wv are done
    const uint64_t gap = static_cast<uint64_t>(p_.heads - 1) * p_.channels * kSz;
    for (uint32_t l = 0; l < nl; ++l) {
      const Win& wn = win_[l];
      if (wn.h == 0) continue;
      const uint64_t pix = LevelStart(l) + static_cast<uint64_t>(wn.y) * LevelW(l) + wn.x;
      for (uint32_t r = 0; r < wn.h; ++r) {
        CopyChannelRows(wv[(wn.row + r * wn.w) * cs], valueGm_[ValueRow(b, pix + r * LevelW(l), h)], wn.w, gap);
      }
    }
    PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
  }

  // Adds the tile's fp32 windows to GM: one atomic DMA per window row.
  __aicore__ inline void FlushWindows(const MsdaBwdTile& t) {
    const uint32_t nl = p_.levels < kMaxWinLevels ? p_.levels : kMaxWinLevels;
    bool any = false;
    for (uint32_t l = 0; l < nl; ++l) any = any || win_[l].h > 0;
    if (!any) return;
    const uint64_t b = t.slice / p_.heads, h = t.slice % p_.heads;
    const uint32_t C = p_.channels, cs = p_.cs;
    const uint32_t rowGap = (cs * 4 - AlignUp(C * 4, kUbBlock)) / kUbBlock;
    const uint32_t gmGap = (p_.heads - 1) * C * 4;
    LocalTensor<float> wa = winAcc_.Get<float>();
    PipeSync<AscendC::HardEvent::V_MTE3>(pipe_);
    AscendC::SetAtomicAdd<float>();
    for (uint32_t l = 0; l < nl; ++l) {
      const Win& wn = win_[l];
      if (wn.h == 0) continue;
      const uint64_t pix = LevelStart(l) + static_cast<uint64_t>(wn.y) * LevelW(l) + wn.x;
      for (uint32_t r = 0; r < wn.h; ++r) {
        AscendC::DataCopyExtParams cp{static_cast<uint16_t>(wn.w), C * 4u, rowGap, gmGap, 0};
        AscendC::DataCopyPad(accGm_[ValueRow(b, pix + r * LevelW(l), h)], wa[(wn.row + r * wn.w) * cs], cp);
      }
    }
    AscendC::SetAtomicNone();
    PipeSync<AscendC::HardEvent::MTE3_V>(pipe_);  // the next tile zeroes the windows
  }

  // Corner rows short enough to pack several into one 64-lane fp32 repeat.
  __aicore__ inline bool Packed() const { return p_.cs <= 32 && 64 % p_.cs == 0; }

  // Reads the value slices [pixels][C] of head h of the privatised levels into UB (zero padded
  // to cs): their corners are then copied inside UB instead of read by DMA.
  __aicore__ inline void LoadPrivateValues(uint64_t b, uint64_t h) {
    const uint32_t C = p_.channels;
    LocalTensor<T> vu = valueUb_.Get<T>();
    PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);  // earlier copies out of vu are done
    for (uint32_t l = 0; l < p_.levels; ++l) {
      if (!LevelPriv(l)) continue;
      const uint64_t rowsL = static_cast<uint64_t>(LevelH(l)) * LevelW(l);
      const uint64_t gm0 = ValueRow(b, LevelStart(l), h);
      for (uint64_t r0 = 0; r0 < rowsL; r0 += 4095) {
        const uint32_t n = static_cast<uint32_t>(Min64(4095, rowsL - r0));
        CopyChannelRows(vu[(LevelPrivRow(l) + r0) * p_.cs], valueGm_[gm0 + r0 * p_.heads * C], n,
                        static_cast<uint64_t>(p_.heads - 1) * C * kSz);
      }
    }
    PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
  }

  // ---- co-designed: per-point gradients of the tile ---------------------------------------------
  __aicore__ inline void Gradients() {
    using AscendC::SELMODE;
    const uint32_t np = p_.np;
    const int32_t n = static_cast<int32_t>(np);
    LocalTensor<float> pl = planes_.Get<float>();
    auto P = [&](uint32_t k) { return pl[k * np]; };
    LocalTensor<uint8_t> mv = masks_.Get<uint8_t>();
    LocalTensor<float> tmp = P(kTmp), ga = P(kGa), gx = P(kGlx), gy = P(kGly);
    // grad_attn = sum_k w_k d_k
    AscendC::Mul(ga, P(kWt0), P(kD0), n);
    for (uint32_t k = 1; k < 4; ++k) {
      AscendC::Mul(tmp, P(kWt0 + k), P(kD0 + k), n);
      AscendC::Add(ga, ga, tmp, n);
    }
    // grad_x = W * A * (gy (d1 - d0) + fy (d3 - d2)); grad_y = H * A * (gx (d2 - d0) + fx (d3 - d1))
    AscendC::Sub(gx, P(kD1), P(kD0), n);
    AscendC::Mul(gx, gx, P(kGy), n);
    AscendC::Sub(tmp, P(kD3), P(kD2), n);
    AscendC::Mul(tmp, tmp, P(kFy), n);
    AscendC::Add(gx, gx, tmp, n);
    AscendC::Mul(gx, gx, P(kA), n);
    AscendC::Mul(gx, gx, P(kW), n);
    AscendC::Sub(gy, P(kD2), P(kD0), n);
    AscendC::Mul(gy, gy, P(kGx), n);
    AscendC::Sub(tmp, P(kD3), P(kD1), n);
    AscendC::Mul(tmp, tmp, P(kFx), n);
    AscendC::Add(gy, gy, tmp, n);
    AscendC::Mul(gy, gy, P(kA), n);
    AscendC::Mul(gy, gy, P(kH), n);
    // Dropped points (outside, NaN/Inf): exactly zero.
    AscendC::Select(ga, mv, ga, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Select(gx, mv, gx, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
    AscendC::Select(gy, mv, gy, 0.0f, SELMODE::VSEL_TENSOR_SCALAR_MODE, np);
  }

  // ---- buffers of optional use --------------------------------------------------------------------
  __aicore__ inline LocalTensor<float> G32() {
    if constexpr (kF32) return LocalTensor<float>();
    return g32_.Get<float>();
  }
  __aicore__ inline LocalTensor<float> Corners32() {
    if constexpr (kF32) return LocalTensor<float>();
    return corners32_.Get<float>();
  }
  __aicore__ inline LocalTensor<float> GlWork() {
    if constexpr (kF32 || !kCodesign) return LocalTensor<float>();
    return gl32_.Get<float>();
  }
  __aicore__ inline LocalTensor<float> LocF() {
    if constexpr (kF32 || kCodesign) return LocalTensor<float>();
    return locF_.Get<float>();
  }
  __aicore__ inline LocalTensor<float> AttnF() {
    if constexpr (kF32 || kCodesign) return LocalTensor<float>();
    return attnF_.Get<float>();
  }
  __aicore__ inline LocalTensor<T> ChunkOut() {
    if constexpr (kF32) return LocalTensor<T>();
    return chunkOut_.Get<T>();
  }

  static constexpr uint64_t kNoKey = ~static_cast<uint64_t>(0);
  static constexpr uint32_t kMaxWinLevels = 8;  // levels that may get a per-tile window
  // A DMA's fixed cost in channel-row transfers (~100 cycles against a few per row of a burst).
  static constexpr uint64_t kDmaRowCost = 24;

  // A tile window of one level: pixels [y, y + h) x [x, x + w) at UB rows from `row`; h = 0: none.
  struct Win {
    uint32_t row, x, y, w, h;
  };

  AscendC::TPipe pipe_;
  MsdaBwdPlan p_;
  GlobalTensor<T> gradOutGm_, valueGm_, locGm_, attnGm_, gradValueGm_, gradLocGm_, gradAttnGm_;
  GlobalTensor<float> accGm_;
  GlobalTensor<uint32_t> levelsGm_, tablesGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> inLoc_, inAttn_, inGo_, corners_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outLoc_, outAttn_, scatter_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> levelsUb_, g32_, chunk_, chunkOut_, planes_, intPlanes_, locPlanes_,
      masks_, deint_, inter_, bcast_, trans_, gl32_, corners32_, acc_, tr_, awB_, gRep_, priv_, valueUb_, winAcc_,
      winVal_, locF_, attnF_, outLocF_, outAttnF_, prod_, slots_, reduceTmp_;
  uint64_t privKey_ = kNoKey, privB_ = 0, privH_ = 0;
  LevelInfo cached_ = {0, 0, 0, 0, 0, 0, false, false};
  Win win_[kMaxWinLevels] = {};
  uint32_t cachedLevel_ = ~0u;
};

}  // namespace npu_ops_kernels
