// Vector instructions of the AscendC emulator (pipe V). Count forms for all; mask + repeat forms
// for the binary, scalar-binary and Duplicate instructions. fp16 ops round every result to half,
// like the vector unit; Exp/Ln/Sqrt use the host libm (hardware is approximate: see docs/ascend.md).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "emu_tensor.h"

namespace npu_ops_emu {

template <class T>
constexpr bool kIsFloat = std::is_same_v<T, float> || std::is_same_v<T, half>;
template <class T>
constexpr bool kIsArithInt = std::is_same_v<T, int32_t> || std::is_same_v<T, int16_t>;

// Arithmetic happens in float for half/float (one rounding to T per op) and in int64 for ints.
template <class T>
using Acc = std::conditional_t<kIsFloat<T>, float, int64_t>;

template <class T>
inline Acc<T> Up(T v) {
  return static_cast<Acc<T>>(v);
}
template <class T>
inline T Down(Acc<T> v) {
  return static_cast<T>(v);
}

template <class T>
void CheckVec(const char* api, const char* which, const AscendC::LocalTensor<T>& t, uint64_t count) {
  auto& c = Ctx();
  if (!t.valid_) c.Fail(api, std::string(which) + " is not an allocated LocalTensor");
  if (t.off_ % 32) c.Fail(api, std::string(which) + " starts at UB byte " + Str(t.off_) + ", not 32-byte aligned");
  if (count > t.size_)
    c.Fail(api, std::string(which) + " has " + Str(t.size_) + " elements; the instruction touches " + Str(count));
}

// Source and destination must coincide exactly or not overlap at all.
inline void CheckOverlap(const char* api, uint32_t dst, uint32_t src, uint64_t bytes) {
  if (dst != src && dst < src + bytes && src < dst + bytes)
    Ctx().Fail(api, "dst [" + Str(dst) + ", " + Str(dst + bytes) + ") partially overlaps a source [" + Str(src) + ", " +
                        Str(src + bytes) + "); operands must overlap completely or not at all");
}

inline bool CountOk(const char* api, int64_t count) {
  if (count < 0) Ctx().Fail(api, "count must be >= 0, got " + Str(count));
  return count > 0;
}

inline uint32_t BeginVec(const char* api, uint64_t bytes) {
  auto& c = Ctx();
  c.stats->vector_ops++;
  c.stats->vector_repeats += (bytes + 255) / 256;
  return c.Issue(kV, api);
}

template <class T, class F>
void BinaryCount(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& a,
                 const AscendC::LocalTensor<T>& b, int32_t count, F f) {
  if (!CountOk(api, count)) return;
  uint64_t n = count, bytes = n * sizeof(T);
  CheckVec(api, "dst", dst, n);
  CheckVec(api, "src0", a, n);
  CheckVec(api, "src1", b, n);
  CheckOverlap(api, dst.off_, a.off_, bytes);
  CheckOverlap(api, dst.off_, b.off_, bytes);
  auto& c = Ctx();
  uint32_t s = BeginVec(api, bytes);
  c.Read(kV, s, api, a.off_, bytes);
  c.Read(kV, s, api, b.off_, bytes);
  c.Write(kV, s, api, dst.off_, bytes);
  for (uint64_t i = 0; i < n; ++i) {
    T x = LoadUb<T>(a.off_ + i * sizeof(T)), y = LoadUb<T>(b.off_ + i * sizeof(T));
    StoreUb<T>(dst.off_ + i * sizeof(T), Down<T>(f(Up(x), Up(y))));
  }
}

template <class T, class F>
void UnaryCount(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& a, int32_t count,
                F f) {
  if (!CountOk(api, count)) return;
  uint64_t n = count, bytes = n * sizeof(T);
  CheckVec(api, "dst", dst, n);
  CheckVec(api, "src", a, n);
  CheckOverlap(api, dst.off_, a.off_, bytes);
  auto& c = Ctx();
  uint32_t s = BeginVec(api, bytes);
  c.Read(kV, s, api, a.off_, bytes);
  c.Write(kV, s, api, dst.off_, bytes);
  for (uint64_t i = 0; i < n; ++i)
    StoreUb<T>(dst.off_ + i * sizeof(T), Down<T>(f(Up(LoadUb<T>(a.off_ + i * sizeof(T))))));
}

// Lane masks of the mask + repeat forms: continuous (first `mask` lanes) or bit mask[2].
template <class T>
struct LaneMask {
  static constexpr uint32_t kLanes = 256 / sizeof(T);
  uint64_t bits[2] = {0, 0};
  LaneMask(const char* api, uint64_t mask) {
    if (mask > kLanes)
      Ctx().Fail(api, "continuous mask " + Str(mask) + " exceeds the " + Str(kLanes) + " lanes of a " + Str(sizeof(T)) +
                          "-byte type");
    for (uint64_t i = 0; i < mask; ++i) bits[i / 64] |= 1ull << (i % 64);
  }
  LaneMask(const char* api, const uint64_t mask[]) {
    bits[0] = mask[0];
    bits[1] = sizeof(T) == 2 ? mask[1] : 0;
    if (sizeof(T) == 4 && mask[1] != 0)
      Ctx().Fail(api, "bit mask[1] must be 0 for 32-bit types (64 lanes), got " + Str(mask[1]));
  }
  bool On(uint32_t lane) const { return (bits[lane / 64] >> (lane % 64)) & 1; }
};

inline void CheckRepeat(const char* api, int64_t repeat) {
  if (repeat < 0 || repeat > 255)
    Ctx().Fail(api,
               "repeatTime " + Str(repeat) + " is outside [0, 255]; split the instruction (hardware takes 8 bits)");
}

// Byte offset of lane `lane` in repeat `r` for block stride `blk` and repeat stride `rep` (32 B units).
template <class T>
inline uint32_t LaneOff(uint32_t base, uint32_t r, uint32_t lane, uint32_t blk, uint32_t rep) {
  constexpr uint32_t per_block = 32 / sizeof(T);
  return base + r * rep * 32 + (lane / per_block) * blk * 32 + (lane % per_block) * sizeof(T);
}

template <class T>
void CheckLaneRange(const char* api, const char* which, const AscendC::LocalTensor<T>& t, uint32_t last_byte) {
  if (!t.valid_) Ctx().Fail(api, std::string(which) + " is not an allocated LocalTensor");
  if (t.off_ % 32) Ctx().Fail(api, std::string(which) + " starts at UB byte " + Str(t.off_) + ", not 32-byte aligned");
  if (last_byte > t.off_ + uint64_t(t.size_) * sizeof(T))
    Ctx().Fail(api, std::string(which) + " is " + Str(uint64_t(t.size_) * sizeof(T)) +
                        " bytes; the repeats reach byte " + Str(last_byte - t.off_));
}

// Cross-repeat operand overlap of the mask + repeat forms (docs/zh/api/SIMD-API/通用说明和约束.md,
// 通用地址重叠约束): within one repeat a source and the destination overlap completely or not at
// all; across repeats, no repeat may read bytes an earlier repeat of the same instruction wrote
// (the hardware pipelines repeats, so the read may see either value). The one exception: Add, Sub,
// Mul, Max, Min on half/float/int32_t where the destination overlaps the *second* source and
// src1RepStride or dstRepStride is 0 (accumulation).
template <class T>
class RepeatOverlap {
 public:
  RepeatOverlap(const char* api, uint32_t dst_lo, uint32_t dst_hi) : api_(api), lo_(dst_lo), hi_(dst_hi) {
    static thread_local std::vector<int32_t> buf;
    first_ = &buf;
  }
  // Whether [src_lo, src_hi) meets the destination's span at all (else no per-lane work).
  bool Meets(uint32_t src_lo, uint32_t src_hi) const { return src_lo < hi_ && lo_ < src_hi; }
  void Arm() {
    if (armed_) return;
    armed_ = true;
    first_->assign((hi_ - lo_) / sizeof(T) + 1, -1);
  }
  void Wrote(uint32_t off, int32_t r) {
    if (!armed_ || off < lo_ || off >= hi_) return;
    int32_t& f = (*first_)[(off - lo_) / sizeof(T)];
    if (f < 0) f = r;
  }
  void Read(const char* which, uint32_t off, int32_t r, bool exempt, const char* hint) const {
    if (!armed_ || exempt || off < lo_ || off >= hi_) return;
    int32_t f = (*first_)[(off - lo_) / sizeof(T)];
    if (f >= 0 && f < r)
      Ctx().Fail(api_, "repeat " + Str(r) + " reads " + which + " bytes [" + Str(off) + ", " + Str(off + sizeof(T)) +
                           ") that repeat " + Str(f) +
                           " wrote (dst): a later repeat must not read an earlier repeat's destination "
                           "(通用地址重叠约束)" +
                           hint);
  }

 private:
  const char* api_;
  uint32_t lo_, hi_;
  bool armed_ = false;
  std::vector<int32_t>* first_;
};

inline bool AccumulateApi(const char* api) {
  for (const char* n : {"Add", "Sub", "Mul", "Max", "Min"})
    if (std::strcmp(api, n) == 0) return true;
  return false;
}

template <class T, class F>
void BinaryRepeat(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& a,
                  const AscendC::LocalTensor<T>& b, const LaneMask<T>& m, int64_t repeat,
                  const AscendC::BinaryRepeatParams& p, F f) {
  CheckRepeat(api, repeat);
  if (repeat == 0) return;
  auto& c = Ctx();
  constexpr uint32_t lanes = LaneMask<T>::kLanes;
  uint32_t last = lanes - 1;
  CheckLaneRange(api, "dst", dst, LaneOff<T>(dst.off_, repeat - 1, last, p.dstBlkStride, p.dstRepStride) + sizeof(T));
  CheckLaneRange(api, "src0", a, LaneOff<T>(a.off_, repeat - 1, last, p.src0BlkStride, p.src0RepStride) + sizeof(T));
  CheckLaneRange(api, "src1", b, LaneOff<T>(b.off_, repeat - 1, last, p.src1BlkStride, p.src1RepStride) + sizeof(T));
  c.stats->vector_ops++;
  c.stats->vector_repeats += repeat;
  uint32_t s = c.Issue(kV, api);
  const uint32_t dlo = dst.off_,
                 dhi = LaneOff<T>(dst.off_, repeat - 1, last, p.dstBlkStride, p.dstRepStride) + sizeof(T);
  RepeatOverlap<T> ov(api, dlo, std::max(dhi, LaneOff<T>(dst.off_, 0, last, p.dstBlkStride, p.dstRepStride) + 1));
  const uint32_t ahi = LaneOff<T>(a.off_, repeat - 1, last, p.src0BlkStride, p.src0RepStride) + sizeof(T);
  const uint32_t bhi = LaneOff<T>(b.off_, repeat - 1, last, p.src1BlkStride, p.src1RepStride) + sizeof(T);
  const bool check_a = repeat > 1 && ov.Meets(a.off_, std::max(ahi, a.off_ + 256u));
  const bool check_b = repeat > 1 && ov.Meets(b.off_, std::max(bhi, b.off_ + 256u));
  if (check_a || check_b) ov.Arm();
  constexpr bool kAccumType = std::is_same_v<T, half> || std::is_same_v<T, float> || std::is_same_v<T, int32_t>;
  const bool b_exempt = kAccumType && AccumulateApi(api) && (p.src1RepStride == 0 || p.dstRepStride == 0);
  const char* hint =
      "; the only exception is Add/Sub/Mul/Max/Min on half/float/int32_t with only dst overlapping src1 and "
      "src1RepStride or dstRepStride 0 (put the accumulator in src1)";
  for (uint32_t r = 0; r < repeat; ++r) {
    for (uint32_t l = 0; l < lanes; ++l) {
      if (!m.On(l)) continue;
      uint32_t oa = LaneOff<T>(a.off_, r, l, p.src0BlkStride, p.src0RepStride);
      uint32_t ob = LaneOff<T>(b.off_, r, l, p.src1BlkStride, p.src1RepStride);
      uint32_t od = LaneOff<T>(dst.off_, r, l, p.dstBlkStride, p.dstRepStride);
      if (check_a) ov.Read("src0", oa, r, false, hint);
      if (check_b) ov.Read("src1", ob, r, b_exempt, hint);
      ov.Wrote(od, r);
      c.Read(kV, s, api, oa, sizeof(T));
      c.Read(kV, s, api, ob, sizeof(T));
      c.Write(kV, s, api, od, sizeof(T));
      StoreUb<T>(od, Down<T>(f(Up(LoadUb<T>(oa)), Up(LoadUb<T>(ob)))));
    }
  }
}

template <class T, class F>
void UnaryRepeat(const char* api, const AscendC::LocalTensor<T>& dst, const AscendC::LocalTensor<T>& a,
                 const LaneMask<T>& m, int64_t repeat, const AscendC::UnaryRepeatParams& p, F f) {
  CheckRepeat(api, repeat);
  if (repeat == 0) return;
  auto& c = Ctx();
  constexpr uint32_t lanes = LaneMask<T>::kLanes;
  CheckLaneRange(api, "dst", dst,
                 LaneOff<T>(dst.off_, repeat - 1, lanes - 1, p.dstBlkStride, p.dstRepStride) + sizeof(T));
  CheckLaneRange(api, "src", a, LaneOff<T>(a.off_, repeat - 1, lanes - 1, p.srcBlkStride, p.srcRepStride) + sizeof(T));
  c.stats->vector_ops++;
  c.stats->vector_repeats += repeat;
  uint32_t s = c.Issue(kV, api);
  const uint32_t dhi = LaneOff<T>(dst.off_, repeat - 1, lanes - 1, p.dstBlkStride, p.dstRepStride) + sizeof(T);
  RepeatOverlap<T> ov(api, dst.off_, std::max(dhi, dst.off_ + 256u));
  const uint32_t ahi = LaneOff<T>(a.off_, repeat - 1, lanes - 1, p.srcBlkStride, p.srcRepStride) + sizeof(T);
  const bool check_a = repeat > 1 && ov.Meets(a.off_, std::max(ahi, a.off_ + 256u));
  if (check_a) ov.Arm();
  for (uint32_t r = 0; r < repeat; ++r) {
    for (uint32_t l = 0; l < lanes; ++l) {
      if (!m.On(l)) continue;
      uint32_t oa = LaneOff<T>(a.off_, r, l, p.srcBlkStride, p.srcRepStride);
      uint32_t od = LaneOff<T>(dst.off_, r, l, p.dstBlkStride, p.dstRepStride);
      if (check_a) ov.Read("src", oa, r, false, "");
      ov.Wrote(od, r);
      c.Read(kV, s, api, oa, sizeof(T));
      c.Write(kV, s, api, od, sizeof(T));
      StoreUb<T>(od, Down<T>(f(Up(LoadUb<T>(oa)))));
    }
  }
}

// NaN propagates, so reads of poisoned (uninitialised) UB surface in the results.
template <class A>
A MaxNan(A a, A b) {
  if constexpr (std::is_floating_point_v<A>) {
    if (std::isnan(a) || std::isnan(b)) return NAN;
  }
  return std::max(a, b);
}
template <class A>
A MinNan(A a, A b) {
  if constexpr (std::is_floating_point_v<A>) {
    if (std::isnan(a) || std::isnan(b)) return NAN;
  }
  return std::min(a, b);
}

}  // namespace npu_ops_emu

namespace AscendC {

#define NPU_OPS_EMU_ARITH_TYPES(T, NAME)                                 \
  static_assert(npu_ops_emu::kIsFloat<T> || npu_ops_emu::kIsArithInt<T>, \
                NAME ": dav-2201 supports half, float, int16_t and int32_t")
#define NPU_OPS_EMU_FLOAT_TYPES(T, NAME) \
  static_assert(npu_ops_emu::kIsFloat<T>, NAME ": dav-2201 supports half and float")

#define NPU_OPS_EMU_BINARY(NAME, CHECK, EXPR)                                                                          \
  template <typename T>                                                                                                \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, const int32_t& count) { \
    CHECK(T, #NAME);                                                                                                   \
    npu_ops_emu::BinaryCount(#NAME, dst, src0, src1, count, [](auto a, auto b) { return EXPR; });                      \
  }                                                                                                                    \
  template <typename T, bool isSetMask = true>                                                                         \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, uint64_t mask,          \
            const int32_t repeatTime, const BinaryRepeatParams& repeatParams) {                                        \
    CHECK(T, #NAME);                                                                                                   \
    npu_ops_emu::BinaryRepeat(#NAME, dst, src0, src1, npu_ops_emu::LaneMask<T>(#NAME, mask), repeatTime, repeatParams, \
                              [](auto a, auto b) { return EXPR; });                                                    \
  }                                                                                                                    \
  template <typename T, bool isSetMask = true>                                                                         \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, uint64_t mask[],        \
            const int32_t repeatTime, const BinaryRepeatParams& repeatParams) {                                        \
    CHECK(T, #NAME);                                                                                                   \
    npu_ops_emu::BinaryRepeat(#NAME, dst, src0, src1, npu_ops_emu::LaneMask<T>(#NAME, mask), repeatTime, repeatParams, \
                              [](auto a, auto b) { return EXPR; });                                                    \
  }

NPU_OPS_EMU_BINARY(Add, NPU_OPS_EMU_ARITH_TYPES, a + b)
NPU_OPS_EMU_BINARY(Sub, NPU_OPS_EMU_ARITH_TYPES, a - b)
NPU_OPS_EMU_BINARY(Mul, NPU_OPS_EMU_ARITH_TYPES, a* b)
NPU_OPS_EMU_BINARY(Div, NPU_OPS_EMU_FLOAT_TYPES, a / b)
NPU_OPS_EMU_BINARY(Max, NPU_OPS_EMU_ARITH_TYPES, npu_ops_emu::MaxNan(a, b))
NPU_OPS_EMU_BINARY(Min, NPU_OPS_EMU_ARITH_TYPES, npu_ops_emu::MinNan(a, b))
#undef NPU_OPS_EMU_BINARY

#define NPU_OPS_EMU_SCALAR(NAME, EXPR)                                                                          \
  template <typename T, bool isSetMask = true>                                                                  \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue, const int32_t& count) { \
    NPU_OPS_EMU_ARITH_TYPES(T, #NAME);                                                                          \
    auto s = npu_ops_emu::Up(scalarValue);                                                                      \
    npu_ops_emu::UnaryCount(#NAME, dst, src, count, [s](auto a) { return EXPR; });                              \
  }                                                                                                             \
  template <typename T, bool isSetMask = true>                                                                  \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const T& scalarValue, uint64_t mask,          \
            const int32_t repeatTime, const UnaryRepeatParams& repeatParams) {                                  \
    NPU_OPS_EMU_ARITH_TYPES(T, #NAME);                                                                          \
    auto s = npu_ops_emu::Up(scalarValue);                                                                      \
    npu_ops_emu::UnaryRepeat(#NAME, dst, src, npu_ops_emu::LaneMask<T>(#NAME, mask), repeatTime, repeatParams,  \
                             [s](auto a) { return EXPR; });                                                     \
  }

NPU_OPS_EMU_SCALAR(Adds, a + s)
NPU_OPS_EMU_SCALAR(Muls, a* s)
NPU_OPS_EMU_SCALAR(Maxs, npu_ops_emu::MaxNan(a, s))
NPU_OPS_EMU_SCALAR(Mins, npu_ops_emu::MinNan(a, s))
#undef NPU_OPS_EMU_SCALAR

#define NPU_OPS_EMU_UNARY(NAME, EXPR)                                                     \
  template <typename T, bool isReuseSource = false>                                       \
  void NAME(const LocalTensor<T>& dst, const LocalTensor<T>& src, const int32_t& count) { \
    NPU_OPS_EMU_FLOAT_TYPES(T, #NAME);                                                    \
    npu_ops_emu::UnaryCount(#NAME, dst, src, count, [](float a) { return EXPR; });        \
  }

NPU_OPS_EMU_UNARY(Exp, std::exp(a))
NPU_OPS_EMU_UNARY(Ln, std::log(a))
NPU_OPS_EMU_UNARY(Abs, std::fabs(a))
NPU_OPS_EMU_UNARY(Sqrt, std::sqrt(a))
NPU_OPS_EMU_UNARY(Reciprocal, 1.0f / a)
#undef NPU_OPS_EMU_UNARY
#undef NPU_OPS_EMU_FLOAT_TYPES
#undef NPU_OPS_EMU_ARITH_TYPES

template <typename T>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, const int32_t& count) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "Duplicate: dav-2201 supports 16- and 32-bit types");
  const char* api = "Duplicate";
  if (!npu_ops_emu::CountOk(api, count)) return;
  uint64_t bytes = uint64_t(count) * sizeof(T);
  npu_ops_emu::CheckVec(api, "dst", dst, count);
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = npu_ops_emu::BeginVec(api, bytes);
  c.Write(npu_ops_emu::kV, s, api, dst.off_, bytes);
  for (int32_t i = 0; i < count; ++i) npu_ops_emu::StoreUb<T>(dst.off_ + i * sizeof(T), scalarValue);
}

template <typename T, bool isSetMask = true>
void Duplicate(const LocalTensor<T>& dst, const T& scalarValue, uint64_t mask, const int32_t repeatTime,
               const uint16_t dstBlockStride, const uint8_t dstRepeatStride) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "Duplicate: dav-2201 supports 16- and 32-bit types");
  const char* api = "Duplicate";
  npu_ops_emu::CheckRepeat(api, repeatTime);
  if (repeatTime == 0) return;
  npu_ops_emu::LaneMask<T> m(api, mask);
  constexpr uint32_t lanes = npu_ops_emu::LaneMask<T>::kLanes;
  npu_ops_emu::CheckLaneRange(
      api, "dst", dst,
      npu_ops_emu::LaneOff<T>(dst.off_, repeatTime - 1, lanes - 1, dstBlockStride, dstRepeatStride) + sizeof(T));
  auto& c = npu_ops_emu::Ctx();
  c.stats->vector_ops++;
  c.stats->vector_repeats += repeatTime;
  uint32_t s = c.Issue(npu_ops_emu::kV, api);
  for (int32_t r = 0; r < repeatTime; ++r)
    for (uint32_t l = 0; l < lanes; ++l) {
      if (!m.On(l)) continue;
      uint32_t od = npu_ops_emu::LaneOff<T>(dst.off_, r, l, dstBlockStride, dstRepeatStride);
      c.Write(npu_ops_emu::kV, s, api, od, sizeof(T));
      npu_ops_emu::StoreUb<T>(od, scalarValue);
    }
}

}  // namespace AscendC
