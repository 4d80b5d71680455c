// The co-designed MSDA forward kernel (see msda_forward.h for the design summary and
// ../host/tiling/msda_forward_tiling_data.h for the tiling). Included by msda_forward.h.
//
// Point index inside a tile: i = q * L*P + l * P + p (q: row of the tile, one head at a time).
// Per-point data live in fp32 "planes" of tileN elements; the corner planes (weights, UB offsets)
// are four consecutive planes, corner k = 2 * dy + dx. A corner chunk of level l and points
// [p0, p0 + pc) is laid out [p][k][q][cPad]; bcastTab maps each chunk row to its point's
// corner-plane entry (relative to the chunk's first point), 8 copies a row, so one Gather builds a
// 32-byte block per row holding the point's weight (or UB offset), and a repeat-form Mul (Add)
// with src1 block stride 0 applies it to the whole row: the gather moves 32 B a row, not cPad
// elements.
#pragma once

#include "msda_forward.h"

namespace npu_ops_kernels {

template <typename T>
class MsdaForwardCodesign {
  static constexpr bool kF32 = SameType<T, float>::value;
  // fp32 planes of tileN elements.
  enum Plane : uint32_t {
    // kXs..kValid are dead once the corner weights exist: they take the 4 corner flags.
    kXs = 0,    // x (then the fractional part lx)
    kYs,        // y (then ly)
    kAt,        // attention weight (0 for dropped points)
    kValid,     // point validity (0/1)
    kTabW,      // W of the point's level
    kTabH,      // H of the point's level
    kTabDeint,  // int: byte offset of the point's x in the loc tile
    kTabAttn,   // int: byte offset of the point's weight in the attn tile
    kOnes,
    kX0,
    kY0,
    kHx,
    kHy,
    kFx0,  // corner-column flags (0/1), including the point's validity
    kFx1,
    kFy0,
    kFy1,
    kTmp,
    kWts,  // 4 planes: corner weights A * bilinear, 0 for invalid corners
    kFixedPlanes = kWts + 4,
    kCf = kXs,  // 4 planes: corner on the map (0/1), including the point's validity
  };

 public:
  __aicore__ inline void Init(GM_ADDR value, GM_ADDR loc, GM_ADDR attn, GM_ADDR out, GM_ADDR tiling) {
    plan_.Init(tiling);
    const MsdaPlan& p = plan_;
    res_ = p.numResident > 0;
    win_ = p.windowPixels > 0;
    gath_ = res_ || win_;
    dma_ = p.hasDmaLevels != 0;
    valueGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(value), p.batch * p.numKeys * p.heads * p.channels);
    locGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(loc), p.totalRows * p.heads * p.lp * 2);
    attnGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(attn), p.totalRows * p.heads * p.lp);
    outGm_.SetGlobalBuffer(reinterpret_cast<__gm__ T*>(out), p.totalRows * p.heads * p.channels);
    const uint32_t q = p.tileQ, tn = p.tileN, ce = p.chunkElems, cp = p.cPad;
    pipe_.InitBuffer(locQue_, p.bufferNum, q * p.locRowBytes);
    pipe_.InitBuffer(attnQue_, p.bufferNum, q * p.attnRowBytes);
    // RowBlockOp's repeats span 8 blocks even where the mask uses fewer: its destinations get
    // kRowSlack bytes past the last row so that the span stays inside the buffer.
    pipe_.InitBuffer(valQue_, p.bufferNum, ce * sizeof(T) + (kF32 ? kRowSlack : 0));
    pipe_.InitBuffer(outQue_, p.bufferNum, q * cp * sizeof(T));
    if constexpr (!kF32) pipe_.InitBuffer(gathT_, tn * sizeof(T));
    offsPlane_ = kFixedPlanes;
    winPlane_ = offsPlane_ + (gath_ ? 5 : 0);  // tabBase + 4 offset planes
    pixPlane_ = winPlane_ + (win_ ? 5 : 0);    // 4 window offset planes + the level table
    const uint32_t planes = pixPlane_ + (dma_ ? 2 : 0);
    pipe_.InitBuffer(planes_, planes * tn * sizeof(float));
    maskStride_ = AlignUp(tn / 8, kUbBlock);
    pipe_.InitBuffer(masks_, kMasks * maskStride_);
    const uint32_t blkElems = ce / cp * kBlk32;  // one 32-byte block per chunk row
    pipe_.InitBuffer(bcast_, blkElems * sizeof(uint32_t));
    pipe_.InitBuffer(wb_, blkElems * sizeof(float));
    if (gath_) {
      pipe_.InitBuffer(ramp_, AlignUp(cp, 64) * sizeof(int32_t));
      pipe_.InitBuffer(goffs_, ce * sizeof(int32_t) + kRowSlack);
    }
    if constexpr (!kF32) pipe_.InitBuffer(vf_, ce * sizeof(float) + kRowSlack);
    pipe_.InitBuffer(acc_, q * cp * sizeof(float));
    if (gath_) pipe_.InitBuffer(resident_, p.residentBytes + p.windowPixels * cp * sizeof(T));
    BuildTables();
  }

  __aicore__ inline void Process() {
    const MsdaPlan& p = plan_;
    if (p.rowBegin >= p.rowEnd) return;
    bool loaded = false;
    uint64_t loadedB = 0;
    for (uint32_t h = 0; h < p.heads; ++h) {
      uint64_t r = p.rowBegin;
      while (r < p.rowEnd) {
        const uint64_t b = r / p.numQueries;
        const uint32_t nq =
            static_cast<uint32_t>(Min64(Min64(p.tileQ, p.rowEnd - r), (b + 1) * p.numQueries - r));  // one batch
        if (res_ && (!loaded || loadedB != b || loadedH_ != h)) {
          LoadResident(b, h, loaded);
          loaded = true;
          loadedB = b;
          loadedH_ = h;
        }
        Tile(h, b, r, nq);
        r += nq;
      }
    }
  }

 private:
  __aicore__ inline LocalTensor<float> P(uint32_t k) { return planes_.Get<float>()[k * plan_.tileN]; }
  __aicore__ inline LocalTensor<int32_t> PI(uint32_t k) {
    return planes_.Get<float>()[k * plan_.tileN].template ReinterpretCast<int32_t>();
  }
  __aicore__ inline LocalTensor<uint8_t> M(uint32_t k) { return masks_.Get<uint8_t>()[k * maskStride_]; }

  // Tables that depend only on the tile layout, built once per block: the scalar unit writes
  // the per-(level, point) values (L*P of each) and a ramp 0..7; the vector unit derives the rest.
  __aicore__ inline void BuildTables() {
    const MsdaPlan& p = plan_;
    const int32_t tn = static_cast<int32_t>(p.tileN);
    // Scratch: the work planes are free until the first tile.
    LocalTensor<float> wl = P(kHx), hl = P(kHy), bl = P(kFx0), idx = P(kX0), q = P(kY0), lp = P(kTmp);
    LocalTensor<float> s1 = P(kFy1);
    for (uint32_t j = 0; j < p.lp; ++j) {
      const uint32_t l = j / p.points, off = p.levelUbOffset[l];
      wl.SetValue(j, static_cast<float>(p.levelW[l]));
      hl.SetValue(j, static_cast<float>(p.levelH[l]));
      if (gath_) bl.SetValue(j, off != npu_ops::ascend::kMsdaNotResident ? static_cast<float>(off) : 0.0f);
    }
    if (win_) {  // levTab[q * P + p] = byte offset of plane entry q * L*P + p (+ 4 * l * P: the level)
      LocalTensor<int32_t> lt = PI(winPlane_ + 4);
      for (uint32_t q = 0; q < p.tileQ; ++q)
        for (uint32_t pt = 0; pt < p.points; ++pt)
          lt.SetValue(q * p.points + pt, static_cast<int32_t>(4 * (q * p.lp + pt)));
    }
    for (uint32_t j = 0; j < 8; ++j) idx.SetValue(j, static_cast<float>(j));
    if (gath_) {
      LocalTensor<int32_t> ramp = ramp_.Get<int32_t>();
      for (uint32_t c = 0; c < p.cPad; ++c) ramp.SetValue(c, static_cast<int32_t>(c * sizeof(T)));
    }
    SyncSToV();
    for (int32_t n = 8; n < tn; n *= 2) AscendC::Adds(idx[n], idx, static_cast<float>(n), n < tn - n ? n : tn - n);
    // Point i of the tile: lp = i mod LP and row q = floor((i + 0.5) / LP) (exact for i < 2^20),
    // clamped to the last row for the padding points (never output).
    AscendC::Adds(q, idx, 0.5f, tn);
    AscendC::Muls(q, q, 1.0f / static_cast<float>(p.lp), tn);
    AscendC::Cast(PI(kFx1), q, AscendC::RoundMode::CAST_FLOOR, tn);
    AscendC::Cast(q, PI(kFx1), AscendC::RoundMode::CAST_NONE, tn);
    AscendC::Muls(lp, q, -static_cast<float>(p.lp), tn);
    AscendC::Add(lp, lp, idx, tn);
    AscendC::Mins(q, q, static_cast<float>(p.tileQ - 1), tn);
    // Per-(level, point) lookups by Gather (byte offsets 4 * lp).
    AscendC::Muls(s1, lp, 4.0f, tn);
    AscendC::Cast(PI(kFy0), s1, AscendC::RoundMode::CAST_RINT, tn);
    LocalTensor<uint32_t> lpOff = PI(kFy0).template ReinterpretCast<uint32_t>();
    AscendC::Gather(P(kTabW), wl, lpOff, 0, tn);
    AscendC::Gather(P(kTabH), hl, lpOff, 0, tn);
    if (gath_) AscendC::Gather(P(offsPlane_), bl, lpOff, 0, tn);
    // Byte offsets of the point's x in the loc tile and of its weight in the attn tile.
    AscendC::Muls(idx, q, static_cast<float>(p.locRowBytes), tn);
    AscendC::Muls(s1, lp, static_cast<float>(2 * sizeof(T)), tn);
    AscendC::Add(idx, idx, s1, tn);
    AscendC::Cast(PI(kTabDeint), idx, AscendC::RoundMode::CAST_RINT, tn);
    AscendC::Muls(idx, q, static_cast<float>(p.attnRowBytes), tn);
    AscendC::Muls(s1, lp, static_cast<float>(sizeof(T)), tn);
    AscendC::Add(idx, idx, s1, tn);
    AscendC::Cast(PI(kTabAttn), idx, AscendC::RoundMode::CAST_RINT, tn);
    AscendC::Duplicate(P(kOnes), 1.0f, tn);
    // bcastTab[((pg * 4 + k) * tileQ + q) * 8 + j] = byte offset of plane entry k*tileN + q*L*P + pg.
    LocalTensor<uint32_t> bc = bcast_.Get<uint32_t>();
    for (uint32_t pg = 0; pg < p.pointGroup; ++pg) {
      for (uint32_t k = 0; k < 4; ++k) {
        for (uint32_t q = 0; q < p.tileQ; ++q) {
          const uint32_t row = (pg * 4 + k) * p.tileQ + q;
          const uint32_t v = 4 * (k * tn + q * p.lp + pg);
          AscendC::Duplicate(bc[row * kBlk32], v, static_cast<int32_t>(kBlk32));
        }
      }
    }
    if (gath_) {
      // Zero row at the start of the resident region: what invalid corners gather.
      LocalTensor<uint16_t> z = resident_.Get<uint16_t>();
      AscendC::Duplicate(z, static_cast<uint16_t>(0), static_cast<int32_t>(p.cPad * sizeof(T) / 2));
    }
  }

  // Resident levels of (batch b, head h): each level's [h*w, C] slice, rows padded to cPad.
  __aicore__ inline void LoadResident(uint64_t b, uint32_t h, bool reload) {
    const MsdaPlan& p = plan_;
    if (reload) {  // the previous tiles' gathers read the region
      PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
    }
    LocalTensor<T> res = resident_.Get<T>();
    const uint64_t keyStride = static_cast<uint64_t>(p.heads) * p.channels;
    for (uint32_t l = 0; l < p.levels; ++l) {
      if (p.levelUbOffset[l] == npu_ops::ascend::kMsdaNotResident) continue;
      const uint64_t npix = static_cast<uint64_t>(p.levelH[l]) * p.levelW[l];
      const uint64_t src = ((b * p.numKeys + p.levelStart[l]) * p.heads + h) * p.channels;
      const uint32_t dst = p.levelUbOffset[l] / sizeof(T);
      for (uint64_t r0 = 0; r0 < npix; r0 += npu_ops::ascend::kChorusMaxBlockCount) {
        const uint32_t cnt = static_cast<uint32_t>(Min64(npu_ops::ascend::kChorusMaxBlockCount, npix - r0));
        CopyValueRows(res[dst + static_cast<uint32_t>(r0) * p.cPad], valueGm_[src + r0 * keyStride], cnt, p.channels,
                      p.cPad, keyStride, 0);
      }
    }
    PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
  }

  // Rows [r, r + nq) of batch b, head h.
  __aicore__ inline void Tile(uint32_t h, uint64_t b, uint64_t r, uint32_t nq) {
    const MsdaPlan& p = plan_;
    const uint64_t hlp = static_cast<uint64_t>(p.heads) * p.lp;
    LocalTensor<T> lt = locQue_.template AllocTensor<T>();
    LocalTensor<T> at = attnQue_.template AllocTensor<T>();
    AscendC::DataCopyPadExtParams<T> none{false, 0, 0, static_cast<T>(0)};
    AscendC::DataCopyExtParams lpar{static_cast<uint16_t>(nq), static_cast<uint32_t>(2 * p.lp * sizeof(T)),
                                    static_cast<uint32_t>((hlp - p.lp) * 2 * sizeof(T)), 0, 0};
    AscendC::DataCopyExtParams apar{static_cast<uint16_t>(nq), static_cast<uint32_t>(p.lp * sizeof(T)),
                                    static_cast<uint32_t>((hlp - p.lp) * sizeof(T)), 0, 0};
    AscendC::DataCopyPad(lt, locGm_[(r * p.heads + h) * p.lp * 2], lpar, none);
    AscendC::DataCopyPad(at, attnGm_[(r * p.heads + h) * p.lp], apar, none);
    locQue_.EnQue(lt);
    attnQue_.EnQue(at);
    lt = locQue_.template DeQue<T>();
    at = attnQue_.template DeQue<T>();
    PointMaths(lt, at);
    locQue_.FreeTensor(lt);
    attnQue_.FreeTensor(at);

    const uint32_t accN = p.tileQ * p.cPad;
    LocalTensor<float> acc = acc_.Get<float>();
    AscendC::Duplicate(acc, 0.0f, static_cast<int32_t>(accN));
    if (dma_) SyncVToS();  // the DMA chunks read the points' pixel and corner codes
    if (win_) WindowKeys();
    for (uint32_t l = 0; l < p.levels; ++l) {
      uint32_t offPlane = offsPlane_ + 1;  // resident level: gather with the resident offsets
      if (p.levelUbOffset[l] == npu_ops::ascend::kMsdaNotResident) {
        offPlane = 0;  // DMA
        if (win_) {
          const WindowBox box = WindowRange(l, nq);
          if (!box.any) continue;  // no valid point of this level in the tile: nothing to add
          // The window costs one DMA per row; paired corner DMAs cost up to 2 per point.
          if (box.rows * box.cols <= p.windowPixels && box.rows <= nq * p.points) {
            const WindowBox win = Band(box, p.levelW[l]);
            LoadWindow(b, h, l, win);
            WindowOffsets(win);
            offPlane = winPlane_;
          }
        }
      }
      for (uint32_t p0 = 0; p0 < p.points; p0 += p.pointGroup) {
        const uint32_t pc = p.points - p0 < p.pointGroup ? p.points - p0 : p.pointGroup;
        FetchChunk(l, p0, pc, b, h, nq, offPlane);
        FoldChunk(l, p0, pc, acc);
      }
    }
    if (dma_) SyncSToV();  // the next tile's maths overwrites what the scalar unit read
    LocalTensor<T> o = outQue_.template AllocTensor<T>();
    FromF32(o, acc, accN);
    outQue_.EnQue(o);
    o = outQue_.template DeQue<T>();
    AscendC::DataCopyExtParams opar{static_cast<uint16_t>(nq), static_cast<uint32_t>(p.channels * sizeof(T)), 0,
                                    static_cast<uint32_t>((p.heads - 1) * p.channels * sizeof(T)), 0};
    AscendC::DataCopyPad(outGm_[(r * p.heads + h) * p.channels], o, opar);
    outQue_.FreeTensor(o);
  }

  // floor(x) into x0 (fp32): Cast with CAST_FLOOR, then corrected so that x0 <= x < x0 + 1 holds
  // even where the conversion rounds a value a hair below an integer up (or down).
  __aicore__ inline void Floor(const LocalTensor<float>& x0, const LocalTensor<float>& x) {
    const int32_t n = static_cast<int32_t>(plan_.tileN);
    LocalTensor<float> t = P(kTmp);
    LocalTensor<uint8_t> m = M(0);
    AscendC::Cast(PI(kTmp), x, AscendC::RoundMode::CAST_FLOOR, n);
    AscendC::Cast(x0, PI(kTmp), AscendC::RoundMode::CAST_NONE, n);
    AscendC::Compare(m, x0, x, AscendC::CMPMODE::GT, n);
    AscendC::Adds(t, x0, -1.0f, n);
    AscendC::Select(x0, m, t, x0, AscendC::SELMODE::VSEL_TENSOR_TENSOR_MODE, n);
    AscendC::Adds(t, x0, 1.0f, n);
    AscendC::Compare(m, t, x, AscendC::CMPMODE::LE, n);
    AscendC::Select(x0, m, t, x0, AscendC::SELMODE::VSEL_TENSOR_TENSOR_MODE, n);
  }

  // All per-point maths of a tile, vectorised over tileN points.
  __aicore__ inline void PointMaths(const LocalTensor<T>& lt, const LocalTensor<T>& at) {
    const MsdaPlan& p = plan_;
    const int32_t n = static_cast<int32_t>(p.tileN);
    using AscendC::CMPMODE;
    constexpr auto kTS = AscendC::SELMODE::VSEL_TENSOR_SCALAR_MODE;
    LocalTensor<float> x = P(kXs), y = P(kYs), a = P(kAt), tw = P(kTabW), th = P(kTabH), ones = P(kOnes);
    LocalTensor<float> v = P(kValid), t = P(kTmp), x0 = P(kX0), y0 = P(kY0), hx = P(kHx), hy = P(kHy);
    LocalTensor<uint32_t> deint = PI(kTabDeint).template ReinterpretCast<uint32_t>();
    LocalTensor<uint32_t> atab = PI(kTabAttn).template ReinterpretCast<uint32_t>();
    // De-interleave (x, y) and gather the weights into point order.
    if constexpr (kF32) {
      AscendC::Gather(x, lt, deint, 0, n);
      AscendC::Gather(y, lt, deint, sizeof(T), n);
      AscendC::Gather(a, at, atab, 0, n);
    } else {
      LocalTensor<T> g = gathT_.Get<T>();
      AscendC::Gather(g, lt, deint, 0, n);
      AscendC::Cast(x, g, AscendC::RoundMode::CAST_NONE, n);
      AscendC::Gather(g, lt, deint, sizeof(T), n);
      AscendC::Cast(y, g, AscendC::RoundMode::CAST_NONE, n);
      AscendC::Gather(g, at, atab, 0, n);
      AscendC::Cast(a, g, AscendC::RoundMode::CAST_NONE, n);
    }
    // Pixel coordinates (align_corners=False).
    AscendC::Mul(x, x, tw, n);
    AscendC::Adds(x, x, -0.5f, n);
    AscendC::Mul(y, y, th, n);
    AscendC::Adds(y, y, -0.5f, n);
    // Point validity -1 < x < W, -1 < y < H as 0/1 (comparisons with NaN are false).
    LocalTensor<uint8_t> m = M(0);
    AscendC::Compares(m, x, -1.0f, CMPMODE::GT, n);
    AscendC::Select(v, m, ones, 0.0f, kTS, n);
    AscendC::Compare(m, x, tw, CMPMODE::LT, n);
    AscendC::Select(v, m, v, 0.0f, kTS, n);
    AscendC::Compares(m, y, -1.0f, CMPMODE::GT, n);
    AscendC::Select(v, m, v, 0.0f, kTS, n);
    AscendC::Compare(m, y, th, CMPMODE::LT, n);
    AscendC::Select(v, m, v, 0.0f, kTS, n);
    // Dropped points: coordinates 0 (finite for the maths below), weight 0.
    LocalTensor<uint8_t> mv = M(kValidMask);  // kept for WindowKeys
    AscendC::Compares(mv, v, 0.5f, CMPMODE::GT, n);
    AscendC::Select(x, mv, x, 0.0f, kTS, n);
    AscendC::Select(y, mv, y, 0.0f, kTS, n);
    AscendC::Select(a, mv, a, 0.0f, kTS, n);
    Floor(x0, x);
    Floor(y0, y);
    AscendC::Sub(x, x, x0, n);  // lx
    AscendC::Sub(y, y, y0, n);  // ly
    AscendC::Sub(hx, ones, x, n);
    AscendC::Sub(hy, ones, y, n);
    // Corner rows / columns on the map. A valid point has -1 <= x0 <= W - 1, so x0 >= 0 and
    // x0 + 1 < W decide its two columns; the columns carry the point's validity.
    LocalTensor<float> fx0 = P(kFx0), fx1 = P(kFx1), fy0 = P(kFy0), fy1 = P(kFy1);
    AscendC::Compares(m, x0, 0.0f, CMPMODE::GE, n);
    AscendC::Select(fx0, m, v, 0.0f, kTS, n);
    AscendC::Adds(t, x0, 1.0f, n);
    AscendC::Compare(m, t, tw, CMPMODE::LT, n);
    AscendC::Select(fx1, m, v, 0.0f, kTS, n);
    AscendC::Compares(m, y0, 0.0f, CMPMODE::GE, n);
    AscendC::Select(fy0, m, ones, 0.0f, kTS, n);
    AscendC::Adds(t, y0, 1.0f, n);
    AscendC::Compare(m, t, th, CMPMODE::LT, n);
    AscendC::Select(fy1, m, ones, 0.0f, kTS, n);
    // Corner weights (hy | ly) * (A hx | A lx), exactly 0 where the corner is off the map (even if
    // A is NaN). hx is not needed once A hx is formed: it takes A lx. Then x, y, A and the validity
    // are dead and their planes take the corner flags.
    AscendC::Mul(t, a, hx, n);
    AscendC::Mul(hx, a, x, n);
    for (uint32_t k = 0; k < 4; ++k) AscendC::Mul(P(kWts + k), k < 2 ? hy : y, k % 2 == 0 ? t : hx, n);
    for (uint32_t k = 0; k < 4; ++k) {
      LocalTensor<uint8_t> mk = M(1 + k);
      LocalTensor<float> w = P(kWts + k), cf = P(kCf + k);
      AscendC::Mul(cf, k < 2 ? fy0 : fy1, k % 2 == 0 ? fx0 : fx1, n);
      AscendC::Compares(mk, cf, 0.5f, CMPMODE::GT, n);
      AscendC::Select(w, mk, w, 0.0f, kTS, n);
    }
    // Pixel index y0 * W + x0 of the top-left corner (exact: < 2^24).
    LocalTensor<float> pix = dma_ ? P(pixPlane_) : t;
    AscendC::Mul(pix, y0, tw, n);
    AscendC::Add(pix, pix, x0, n);
    if (res_) {
      // Byte offsets in the resident region; invalid corners read the zero row at 0.
      const float rowB = static_cast<float>(p.cPad * sizeof(T));
      LocalTensor<float> base = P(offsPlane_);
      LocalTensor<float> o0 = P(offsPlane_ + 1), o1 = P(offsPlane_ + 2), o2 = P(offsPlane_ + 3), o3 = P(offsPlane_ + 4);
      AscendC::Muls(o0, pix, rowB, n);
      AscendC::Add(o0, o0, base, n);
      AscendC::Adds(o1, o0, rowB, n);
      AscendC::Muls(o2, tw, rowB, n);
      AscendC::Add(o2, o2, o0, n);
      AscendC::Adds(o3, o2, rowB, n);
      AscendC::Mul(o0, o0, P(kCf), 4 * n);  // off-map corners: the zero row (all four planes)
      AscendC::Cast(PI(offsPlane_ + 1), o0, AscendC::RoundMode::CAST_RINT, 4 * n);
    }
    if (dma_) {
      // code = fx0 + 2 fx1 + 4 fy0 + 8 fy1 (columns carry the validity), then both as int32.
      LocalTensor<float> code = P(pixPlane_ + 1);
      AscendC::Muls(code, fx1, 2.0f, n);
      AscendC::Add(code, code, fx0, n);
      AscendC::Muls(t, fy0, 4.0f, n);
      AscendC::Add(code, code, t, n);
      AscendC::Muls(t, fy1, 8.0f, n);
      AscendC::Add(code, code, t, n);
      // One int32 per point for the scalar loop: pix * 16 + code (|pix| < 2^24).
      AscendC::Cast(PI(pixPlane_), pix, AscendC::RoundMode::CAST_RINT, 2 * n);
      AscendC::Muls(PI(pixPlane_), PI(pixPlane_), 16, n);
      AscendC::Add(PI(pixPlane_), PI(pixPlane_), PI(pixPlane_ + 1), n);
    }
  }

  struct WindowBox {
    bool any;        // the level has a valid point in the tile
    int64_t y0, x0;  // top-left pixel of the rectangle holding every valid corner
    uint32_t rows, cols;
  };

  // Per point, for the window ranges: -y0, y0 + 1, -x0, x0 + 1 of valid points, -1e30 otherwise
  // (four planes, maximised per level by WindowRange). The work planes are free after PointMaths.
  __aicore__ inline void WindowKeys() {
    const int32_t n = static_cast<int32_t>(plan_.tileN);
    constexpr auto kTS = AscendC::SELMODE::VSEL_TENSOR_SCALAR_MODE;
    LocalTensor<uint8_t> m = M(kValidMask);
    AscendC::Muls(P(kHx), P(kY0), -1.0f, n);
    AscendC::Adds(P(kHy), P(kY0), 1.0f, n);
    AscendC::Muls(P(kFx0), P(kX0), -1.0f, n);
    AscendC::Adds(P(kFx1), P(kX0), 1.0f, n);
    for (uint32_t k = 0; k < 4; ++k) AscendC::Select(P(kHx + k), m, P(kHx + k), -1e30f, kTS, n);
  }

  // The rectangle of level l's pixels that the tile's valid corners touch.
  __aicore__ inline WindowBox WindowRange(uint32_t l, uint32_t nq) {
    const MsdaPlan& p = plan_;
    const int32_t cnt = static_cast<int32_t>(nq * p.points);
    LocalTensor<uint32_t> levTab = PI(winPlane_ + 4).template ReinterpretCast<uint32_t>();
    LocalTensor<float> g = P(kFy0), tmp = P(kFy1), dst = P(kTmp);
    for (uint32_t k = 0; k < 4; ++k) {
      AscendC::Gather(g, P(kHx + k), levTab, 4 * l * p.points, cnt);
      AscendC::ReduceMax(dst[8 * k], g, tmp, cnt);
    }
    SyncVToS();
    const float negTop = dst.GetValue(0), bottom = dst.GetValue(8), negLeft = dst.GetValue(16),
                right = dst.GetValue(24);
    SyncSToV();  // the next level's reductions overwrite what the scalar unit read
    WindowBox box{false, 0, 0, 0, 0};
    if (!(negTop > -1e29f)) return box;
    const int64_t H = p.levelH[l], W = p.levelW[l];
    const int64_t top = static_cast<int64_t>(-negTop), left = static_cast<int64_t>(-negLeft);
    const int64_t y0 = top > 0 ? top : 0, x0 = left > 0 ? left : 0;
    const int64_t y1 = static_cast<int64_t>(bottom) < H - 1 ? static_cast<int64_t>(bottom) : H - 1;
    const int64_t x1 = static_cast<int64_t>(right) < W - 1 ? static_cast<int64_t>(right) : W - 1;
    box.any = true;
    box.y0 = y0;
    box.x0 = x0;
    box.rows = static_cast<uint32_t>(y1 - y0 + 1);
    box.cols = static_cast<uint32_t>(x1 - x0 + 1);
    return box;
  }

  // The box widened to whole rows of the level (a band of consecutive pixels, loaded by one DMA)
  // where it fits the window and the extra pixels move fewer bytes than the saved row DMAs are
  // worth (kDmaWorthBytes each); otherwise the box itself.
  __aicore__ inline WindowBox Band(const WindowBox& box, uint32_t w) const {
    const uint64_t rowB = static_cast<uint64_t>(plan_.cPad) * sizeof(T);
    const uint64_t extra = static_cast<uint64_t>(box.rows) * (w - box.cols) * rowB;
    if (box.rows < 2 || box.cols == w || static_cast<uint64_t>(box.rows) * w > plan_.windowPixels ||
        extra > (box.rows - 1) * kDmaWorthBytes)
      return box;
    WindowBox band = box;
    band.x0 = 0;
    band.cols = w;
    return band;
  }

  // The window rectangle of level l (batch b, head h) into the gather region: one DMA per row, or
  // one per kChorusMaxBlockCount pixels for a band of whole rows (consecutive pixels).
  __aicore__ inline void LoadWindow(uint64_t b, uint32_t h, uint32_t l, const WindowBox& box) {
    const MsdaPlan& p = plan_;
    PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);  // earlier gathers read the window
    LocalTensor<T> win = resident_.Get<T>()[p.windowUbOffset / sizeof(T)];
    const uint64_t keyStride = static_cast<uint64_t>(p.heads) * p.channels;
    const uint64_t levelBase = ((b * p.numKeys + p.levelStart[l]) * p.heads + h) * p.channels;
    if (box.cols == p.levelW[l]) {
      const uint32_t npix = box.rows * box.cols;
      const uint64_t first = static_cast<uint64_t>(box.y0) * p.levelW[l];
      for (uint32_t r0 = 0; r0 < npix; r0 += npu_ops::ascend::kChorusMaxBlockCount) {
        const uint32_t cnt =
            npix - r0 < npu_ops::ascend::kChorusMaxBlockCount ? npix - r0 : npu_ops::ascend::kChorusMaxBlockCount;
        CopyValueRows(win[r0 * p.cPad], valueGm_[levelBase + (first + r0) * keyStride], cnt, p.channels, p.cPad,
                      keyStride, 0);
      }
    } else {
      for (uint32_t r = 0; r < box.rows; ++r) {
        const uint64_t pix = static_cast<uint64_t>(box.y0 + r) * p.levelW[l] + static_cast<uint64_t>(box.x0);
        CopyValueRows(win[r * box.cols * p.cPad], valueGm_[levelBase + pix * keyStride], box.cols, p.channels, p.cPad,
                      keyStride, 0);
      }
    }
    PipeSync<AscendC::HardEvent::MTE2_V>(pipe_);
  }

  // Byte offsets of the four corners in the window (invalid corners: the zero row at 0), from the
  // pixel coordinates relative to the rectangle (small, so exact in fp32).
  __aicore__ inline void WindowOffsets(const WindowBox& box) {
    const int32_t n = static_cast<int32_t>(plan_.tileN);
    const float rowB = static_cast<float>(plan_.cPad * sizeof(T));
    LocalTensor<float> rel = P(kFy0), o0 = P(winPlane_), o1 = P(winPlane_ + 1), o2 = P(winPlane_ + 2),
                       o3 = P(winPlane_ + 3);
    // Row index in the gather region: (y0 - wy0) * cols + x0 - wx0 + windowUbOffset / rowB (the
    // window starts on a row boundary), all small integers.
    AscendC::Adds(rel, P(kY0), -static_cast<float>(box.y0), n);
    AscendC::Muls(rel, rel, static_cast<float>(box.cols), n);
    AscendC::Add(rel, rel, P(kX0), n);
    const int64_t winRow = plan_.windowUbOffset / (plan_.cPad * sizeof(T));
    AscendC::Adds(rel, rel, static_cast<float>(winRow - box.x0), n);
    AscendC::Muls(o0, rel, rowB, n);
    AscendC::Adds(o1, o0, rowB, n);
    AscendC::Adds(o2, o0, rowB * static_cast<float>(box.cols), n);
    AscendC::Adds(o3, o2, rowB, n);
    AscendC::Mul(o0, o0, P(kCf), 4 * n);  // off-map corners: the zero row (all four planes)
    AscendC::Cast(PI(winPlane_), o0, AscendC::RoundMode::CAST_RINT, 4 * n);
  }

  // Corner rows of level l, points [p0, p0 + pc) of the tile, into a valQue chunk [p][k][q][cPad].
  // offPlane: first of the 4 int32 offset planes to gather with (resident level or window), or 0
  // for corner DMAs.
  __aicore__ inline void FetchChunk(uint32_t l, uint32_t p0, uint32_t pc, uint64_t b, uint32_t h, uint32_t nq,
                                    uint32_t offPlane) {
    const MsdaPlan& p = plan_;
    const uint32_t ce = pc * 4 * p.tileQ * p.cPad;
    LocalTensor<T> val = valQue_.template AllocTensor<T>();
    const uint32_t base = 4 * (l * p.points + p0);
    if (offPlane != 0) {
      // Row offset blocks, then every element's offset = chanRamp[c] + its row's offset.
      LocalTensor<int32_t> go = goffs_.Get<int32_t>(), blk = wb_.Get<int32_t>();
      const uint32_t rows = ce / p.cPad;
      AscendC::Gather(blk, PI(offPlane), bcast_.Get<uint32_t>(), base, rows * kBlk32);
      RowBlockOp<int32_t, false>(go, ramp_.Get<int32_t>(), false, blk, rows);
      AscendC::Gather(val, resident_.Get<T>(), go.template ReinterpretCast<uint32_t>(), 0, ce);
    } else {
      // Rows that no valid corner fills stay zero.
      AscendC::Duplicate(val.template ReinterpretCast<uint16_t>(), static_cast<uint16_t>(0),
                         static_cast<int32_t>(ce * sizeof(T) / 2));
      PipeSync<AscendC::HardEvent::V_MTE2>(pipe_);
      LocalTensor<int32_t> packed = PI(pixPlane_);
      const int64_t W = p.levelW[l];
      const uint64_t keyStride = static_cast<uint64_t>(p.heads) * p.channels;
      const uint64_t levelBase = ((b * p.numKeys + p.levelStart[l]) * p.heads + h) * p.channels;
      const uint32_t slab = p.tileQ * p.cPad;  // elements between corner k and k + 1
      const uint32_t pairGap = (slab - p.cPad) * sizeof(T) / kUbBlock;
      for (uint32_t q = 0; q < nq; ++q) {
        for (uint32_t pt = 0; pt < pc; ++pt) {
          const uint32_t i = q * p.lp + l * p.points + p0 + pt;
          const int32_t v = packed.GetValue(i);
          const int32_t code = v & 15;
          if ((code & 3) == 0) continue;  // no column on the map (or a dropped point)
          const int64_t pix = (v - code) / 16;
          for (int32_t dy = 0; dy < 2; ++dy) {
            if ((code & (4 << dy)) == 0) continue;
            const uint64_t off = levelBase + static_cast<uint64_t>(pix + dy * W) * keyStride;
            const uint32_t j = ((pt * 4 + 2 * dy) * p.tileQ + q) * p.cPad;
            if ((code & 3) == 3) {  // x0 and x1: one DMA, two blocks H*C apart
              CopyValueRows(val[j], valueGm_[off], 2, p.channels, p.cPad, keyStride, pairGap);
            } else if ((code & 1) != 0) {
              CopyValueRows(val[j], valueGm_[off], 1, p.channels, p.cPad, keyStride, 0);
            } else {
              CopyValueRows(val[j + slab], valueGm_[off + keyStride], 1, p.channels, p.cPad, keyStride, 0);
            }
          }
        }
      }
    }
    valQue_.EnQue(val);
  }

  // acc[q][c] += sum over the chunk's points and corners of weight * corner value.
  __aicore__ inline void FoldChunk(uint32_t l, uint32_t p0, uint32_t pc, const LocalTensor<float>& acc) {
    const MsdaPlan& p = plan_;
    const uint32_t slab = p.tileQ * p.cPad;
    const uint32_t ce = pc * 4 * slab;
    LocalTensor<T> val = valQue_.template DeQue<T>();
    LocalTensor<float> vf;
    if constexpr (kF32) {
      vf = val;
    } else {
      vf = vf_.Get<float>();
      AscendC::Cast(vf, val, AscendC::RoundMode::CAST_NONE, ce);
    }
    LocalTensor<float> wb = wb_.Get<float>();
    const uint32_t rows = ce / p.cPad;
    AscendC::Gather(wb, P(kWts), bcast_.Get<uint32_t>(), 4 * (l * p.points + p0), rows * kBlk32);
    RowBlockOp<float, true>(vf, vf, true, wb, rows);
    for (uint32_t m = pc * 4; m > 1;) {  // fold the slabs pairwise: log2(4 * pc) Adds
      const uint32_t half = m / 2;
      AscendC::Add(vf, vf, vf[(m - half) * slab], static_cast<int32_t>(half * slab));
      m -= half;
    }
    AscendC::Add(acc, acc, vf, static_cast<int32_t>(slab));
    valQue_.FreeTensor(val);
  }

  // dst[r][c] = a[r or 0][c] (* or +) blk[r][c % 8] for rows r of cPad 32-bit elements: one
  // repeat per row (and per 64 columns), src1 block stride 0 repeats the row's 32-byte block.
  template <typename U, bool kMul>
  __aicore__ inline void RowBlockOp(const LocalTensor<U>& dst, const LocalTensor<U>& a, bool aPerRow,
                                    const LocalTensor<U>& blk, uint32_t rows) {
    const uint32_t cp = plan_.cPad, rb = cp / kBlk32;  // 32-byte blocks per row
    const bool strided = rb <= kMaxRepStride;
    const uint32_t step = strided ? kMaxRepeat : 1;  // rows per instruction
    for (uint32_t cs = 0; cs < rb; cs += 8) {
      const uint64_t mask = static_cast<uint64_t>(rb - cs < 8 ? rb - cs : 8) * kBlk32;
      for (uint32_t r0 = 0; r0 < rows; r0 += step) {
        const uint32_t n = rows - r0 < step ? rows - r0 : step;
        const uint8_t rep = strided ? static_cast<uint8_t>(rb) : 0;
        AscendC::BinaryRepeatParams prm(1, 1, 0, rep, aPerRow ? rep : 0, 1);
        const LocalTensor<U> d = dst[r0 * cp + cs * kBlk32], s0 = a[(aPerRow ? r0 * cp : 0) + cs * kBlk32],
                             s1 = blk[r0 * kBlk32];
        if constexpr (kMul) {
          AscendC::Mul(d, s0, s1, mask, static_cast<int32_t>(n), prm);
        } else {
          AscendC::Add(d, s0, s1, mask, static_cast<int32_t>(n), prm);
        }
      }
    }
  }

  static constexpr uint32_t kBlk32 = 8;  // 32-bit elements per 32-byte block
  static constexpr uint32_t kMasks = 6;  // compare masks: scratch, 4 corners, point validity
  static constexpr uint32_t kValidMask = 5;
  static constexpr uint32_t kRowSlack = 256;
  // A DMA's fixed cost in bytes moved (~100 cycles at ~60 B/cycle GM->UB; an estimate, see
  // python/npu_ops/bench/ascend_cost_model.py): widening a window to whole rows pays below it.
  static constexpr uint64_t kDmaWorthBytes = 4096;  // one repeat
  static constexpr uint32_t kMaxRepeat = 255;       // repeatTime is 8 bits
  static constexpr uint32_t kMaxRepStride = 255;    // so are the repeat strides (in blocks)

  AscendC::TPipe pipe_;
  MsdaPlan plan_;
  bool res_ = false, win_ = false, gath_ = false, dma_ = false;
  uint32_t offsPlane_ = 0, winPlane_ = 0, pixPlane_ = 0, maskStride_ = 0, loadedH_ = 0;
  GlobalTensor<T> valueGm_, locGm_, attnGm_, outGm_;
  AscendC::TQue<AscendC::TPosition::VECIN, 1> locQue_, attnQue_, valQue_;
  AscendC::TQue<AscendC::TPosition::VECOUT, 1> outQue_;
  AscendC::TBuf<AscendC::TPosition::VECCALC> gathT_, planes_, masks_, bcast_, wb_, ramp_, goffs_, vf_, acc_, resident_;
};

}  // namespace npu_ops_kernels
