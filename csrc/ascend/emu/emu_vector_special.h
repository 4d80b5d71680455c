// Cast, reductions, Compare/Compares/Select and Gather of the AscendC emulator (pipe V).
#pragma once

#include "emu_vector.h"

namespace npu_ops_emu {

// ---- rounding to narrower float formats ---------------------------------------------------------

// Neighbouring representable values of a 16-bit float format, from its bit pattern.
inline uint16_t NextUp16(uint16_t b) {
  if ((b & 0x7FFF) == 0) return 1;  // +-0 -> smallest positive subnormal
  return (b & 0x8000) ? b - 1 : b + 1;
}
inline uint16_t NextDown16(uint16_t b) {
  if ((b & 0x7FFF) == 0) return 0x8001;
  return (b & 0x8000) ? b + 1 : b - 1;
}

// Round x to a 16-bit format given its RNE conversion `rne` and a bits<->float pair.
template <class ToF, class FromBits>
uint16_t Round16(float x, uint16_t rne, AscendC::RoundMode m, ToF to_f, FromBits) {
  using AscendC::RoundMode;
  if (std::isnan(x) || m == RoundMode::CAST_NONE || m == RoundMode::CAST_RINT) return rne;
  float r = to_f(rne);
  if (r == x || std::isinf(x)) return rne;
  uint16_t lo, hi;
  if (r < x) {
    lo = rne, hi = NextUp16(rne);
  } else {
    hi = rne, lo = NextDown16(rne);
  }
  double dl = double(x) - to_f(lo), dh = double(to_f(hi)) - x;
  switch (m) {
    case RoundMode::CAST_FLOOR: return lo;
    case RoundMode::CAST_CEIL: return hi;
    case RoundMode::CAST_TRUNC: return x > 0 ? lo : hi;
    case RoundMode::CAST_ROUND:
      if (dl == dh) return x > 0 ? hi : lo;  // ties away from zero
      return dl < dh ? lo : hi;
    case RoundMode::CAST_ODD: return (lo & 1) ? lo : hi;
    default: return rne;
  }
}

inline half ToHalf(float x, AscendC::RoundMode m) {
  half h = static_cast<half>(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  auto to_f = [](uint16_t v) {
    half t;
    std::memcpy(&t, &v, 2);
    return float(t);
  };
  uint16_t r = Round16(x, b, m, to_f, 0);
  std::memcpy(&h, &r, 2);
  return h;
}

inline bfloat16_t ToBf16(float x, AscendC::RoundMode m) {
  bfloat16_t h(x);
  auto to_f = [](uint16_t v) { return float(bfloat16_t::FromBits(v)); };
  return bfloat16_t::FromBits(Round16(x, h.bits, m, to_f, 0));
}

inline int32_t ToInt32(double x, AscendC::RoundMode m) {
  using AscendC::RoundMode;
  double r;
  switch (m) {
    case RoundMode::CAST_FLOOR: r = std::floor(x); break;
    case RoundMode::CAST_CEIL: r = std::ceil(x); break;
    case RoundMode::CAST_TRUNC: r = std::trunc(x); break;
    case RoundMode::CAST_ROUND: r = std::round(x); break;
    default: r = std::nearbyint(x);
  }
  if (std::isnan(r)) return 0;
  return static_cast<int32_t>(std::clamp(r, -2147483648.0, 2147483647.0));  // saturates
}

inline const char* ModeName(AscendC::RoundMode m) {
  static const char* n[] = {"CAST_NONE",  "CAST_RINT",  "CAST_FLOOR", "CAST_CEIL",
                            "CAST_ROUND", "CAST_TRUNC", "CAST_ODD"};
  return n[static_cast<int>(m)];
}

inline float RoundToIntegral(float x, AscendC::RoundMode m) {
  using AscendC::RoundMode;
  switch (m) {
    case RoundMode::CAST_FLOOR: return std::floor(x);
    case RoundMode::CAST_CEIL: return std::ceil(x);
    case RoundMode::CAST_TRUNC: return std::trunc(x);
    case RoundMode::CAST_ROUND: return std::round(x);
    default: return std::nearbyint(x);
  }
}

// int32_t -> float with a rounding mode: exact integers above 2^24 round as the mode says.
inline float Int32ToFloat(int32_t v, AscendC::RoundMode m) {
  using AscendC::RoundMode;
  float r = static_cast<float>(v);  // round to nearest even
  double d = double(v), rf = double(r);
  if (rf == d || m == RoundMode::CAST_NONE || m == RoundMode::CAST_RINT) return r;
  float lo = rf < d ? r : std::nextafter(r, -INFINITY), hi = rf > d ? r : std::nextafter(r, INFINITY);
  switch (m) {
    case RoundMode::CAST_FLOOR: return lo;
    case RoundMode::CAST_CEIL: return hi;
    case RoundMode::CAST_TRUNC: return v > 0 ? lo : hi;
    case RoundMode::CAST_ROUND: {
      double dl = d - lo, dh = double(hi) - d;
      if (dl == dh) return v > 0 ? hi : lo;  // ties away from zero
      return dl < dh ? lo : hi;
    }
    default: return r;
  }
}

// One element of Cast<T, U>; `ok` is false for a (dst, src, mode) triple dav-2201 does not have.
// The table is the Atlas A2 one of docs/zh/api/SIMD-API/基础API/Memory矢量计算/类型转换/Cast.md
// (npu="910b"), as far as the emulated types go; CAST_NONE means CAST_RINT where the conversion
// loses precision.
template <class T, class U>
T CastElem(U v, AscendC::RoundMode m, bool* ok) {
  using AscendC::RoundMode;
  *ok = true;
  bool none = m == RoundMode::CAST_NONE;
  bool rounding = !none && m != RoundMode::CAST_ODD;  // RINT/FLOOR/CEIL/ROUND/TRUNC
  if constexpr (std::is_same_v<T, float> && (std::is_same_v<U, half> || std::is_same_v<U, bfloat16_t>)) {
    *ok = none;
    return float(v);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<U, int16_t>) {
    *ok = none;  // A2: int16_t -> float only with CAST_NONE
    return static_cast<float>(v);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<U, int32_t>) {
    *ok = none || rounding;
    return Int32ToFloat(v, m);
  } else if constexpr (std::is_same_v<T, float> && std::is_same_v<U, float>) {
    *ok = rounding;  // float -> float rounds to an integral value
    return RoundToIntegral(v, m);
  } else if constexpr (std::is_same_v<T, half> && std::is_same_v<U, float>) {
    return ToHalf(v, m);
  } else if constexpr (std::is_same_v<T, bfloat16_t> && std::is_same_v<U, float>) {
    *ok = rounding;
    return ToBf16(v, m);
  } else if constexpr (std::is_same_v<T, int32_t> &&
                       (std::is_same_v<U, float> || std::is_same_v<U, half> || std::is_same_v<U, bfloat16_t>)) {
    *ok = rounding;
    return ToInt32(double(float(v)), m);
  } else if constexpr (std::is_same_v<T, half> && (std::is_same_v<U, uint8_t> || std::is_same_v<U, int8_t>)) {
    *ok = none;
    return static_cast<half>(v);
  } else if constexpr (std::is_same_v<T, half> && std::is_same_v<U, int32_t>) {
    *ok = false;  // needs SetDeqScale, not emulated
    return half(0);
  } else {
    *ok = false;
    return T{};
  }
}

}  // namespace npu_ops_emu

namespace AscendC {

template <typename T, typename U>
void Cast(const LocalTensor<T>& dst, const LocalTensor<U>& src, const RoundMode& roundMode, const uint32_t count) {
  const char* api = "Cast";
  if (count == 0) return;
  bool ok;
  npu_ops_emu::CastElem<T, U>(U{}, roundMode, &ok);
  if (!ok)
    npu_ops_emu::Ctx().Fail(api, std::string("no ") + npu_ops_emu::TypeName(npu_ops_emu::TagOf<U>()) + " -> " +
                                     npu_ops_emu::TypeName(npu_ops_emu::TagOf<T>()) + " conversion with " +
                                     npu_ops_emu::ModeName(roundMode) + " on dav-2201 (or not emulated)");
  npu_ops_emu::CheckVec(api, "dst", dst, count);
  npu_ops_emu::CheckVec(api, "src", src, count);
  uint64_t db = uint64_t(count) * sizeof(T), sb = uint64_t(count) * sizeof(U);
  if (dst.off_ != src.off_ && dst.off_ < src.off_ + sb && src.off_ < dst.off_ + db)
    npu_ops_emu::Ctx().Fail(api, "dst and src partially overlap");
  // In place only between types of one width (Cast.md: widening with overlapping operands gives
  // wrong results; narrowing overlaps each repeat's source and destination partially).
  if (dst.off_ == src.off_ && sizeof(T) != sizeof(U))
    npu_ops_emu::Ctx().Fail(api, std::string("in place ") + npu_ops_emu::TypeName(npu_ops_emu::TagOf<U>()) + " -> " +
                                     npu_ops_emu::TypeName(npu_ops_emu::TagOf<T>()) +
                                     ": a Cast between types of different widths must not overlap its operands "
                                     "(a repeat reads bytes an earlier repeat wrote)");
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = npu_ops_emu::BeginVec(api, std::max(db, sb));
  c.Read(npu_ops_emu::kV, s, api, src.off_, sb);
  c.Write(npu_ops_emu::kV, s, api, dst.off_, db);
  std::vector<T> out(count);
  for (uint32_t i = 0; i < count; ++i)
    out[i] = npu_ops_emu::CastElem<T, U>(npu_ops_emu::LoadUb<U>(src.off_ + i * sizeof(U)), roundMode, &ok);
  std::memcpy(c.ub.data() + dst.off_, out.data(), db);
}

namespace emu_detail {
template <typename T>
void CheckTmp(const char* api, const LocalTensor<T>& tmp, uint64_t need) {
  npu_ops_emu::CheckVec(api, "sharedTmpBuffer", tmp, 0);
  if (tmp.size_ < need)
    npu_ops_emu::Ctx().Fail(api, "sharedTmpBuffer has " + npu_ops_emu::Str(tmp.size_) +
                                     " elements; the documented requirement for this count is " +
                                     npu_ops_emu::Str(need));
}
// Binary-tree sum of one repeat's lanes, as the hardware adds within a repeat.
inline float TreeSum(std::vector<float> v) {
  while (v.size() > 1) {
    std::vector<float> n((v.size() + 1) / 2);
    for (size_t i = 0; i < n.size(); ++i) n[i] = v[2 * i] + (2 * i + 1 < v.size() ? v[2 * i + 1] : 0.0f);
    v.swap(n);
  }
  return v.empty() ? 0.0f : v[0];
}
}  // namespace emu_detail

// sum(src[0:count]) -> dst[0]: a binary tree inside each 256-byte repeat, repeats added in order.
// A2 (asc-devkit impl/basic_api/dav_c220/kernel_operator_vec_reduce_impl.h ReduceSumImpl): the
// count form is one vcadd in counter mode; sharedTmpBuffer is never touched (ReduceSum.md, 方式一),
// and dst needs only element alignment (ReduceRepeat.md table 3: 4 B for float, 2 B for half).
template <typename T, bool isSetMask = true>
void ReduceSum(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count) {
  static_assert(npu_ops_emu::kIsFloat<T>, "ReduceSum: dav-2201 supports half and float");
  const char* api = "ReduceSum";
  if (!npu_ops_emu::CountOk(api, count)) return;
  constexpr uint32_t epr = 256 / sizeof(T);
  uint32_t reps = std::max<uint32_t>(1, (count + epr - 1) / epr);
  auto& c = npu_ops_emu::Ctx();
  if (!dst.valid_) c.Fail(api, "dst is not an allocated LocalTensor");
  if (dst.off_ % sizeof(T) || dst.size_ < 1)
    c.Fail(api, "dst at UB byte " + npu_ops_emu::Str(dst.off_) + " must be " + npu_ops_emu::Str(sizeof(T)) +
                    "-byte aligned and hold one element");
  npu_ops_emu::CheckVec(api, "src", src, count);
  (void)sharedTmpBuffer;
  uint32_t s = npu_ops_emu::BeginVec(api, uint64_t(count) * sizeof(T));
  c.Read(npu_ops_emu::kV, s, api, src.off_, count * sizeof(T));
  c.Write(npu_ops_emu::kV, s, api, dst.off_, sizeof(T));
  float total = 0.0f;
  for (uint32_t r = 0; r < reps; ++r) {
    std::vector<float> lanes;
    for (uint32_t i = r * epr; i < std::min<uint32_t>(count, (r + 1) * epr); ++i)
      lanes.push_back(float(npu_ops_emu::LoadUb<T>(src.off_ + i * sizeof(T))));
    float part = static_cast<float>(static_cast<T>(emu_detail::TreeSum(lanes)));
    total = static_cast<float>(static_cast<T>(total + part));
  }
  npu_ops_emu::StoreUb<T>(dst.off_, static_cast<T>(total));
}

// max(src[0:count]) -> dst[0]; with calIndex, dst[1] holds the index's bits. NaN propagates.
template <typename T>
void ReduceMax(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<T>& sharedTmpBuffer,
               const int32_t count, bool calIndex = 0) {
  static_assert(npu_ops_emu::kIsFloat<T>, "ReduceMax: dav-2201 supports half and float");
  const char* api = "ReduceMax";
  if (!npu_ops_emu::CountOk(api, count)) return;
  constexpr uint32_t epr = 256 / sizeof(T), epb = 32 / sizeof(T);
  uint32_t reps = std::max<uint32_t>(1, (count + epr - 1) / epr);
  uint64_t it1 = uint64_t(reps) * 2, start = (it1 + epb - 1) / epb * epb;
  // ReduceMax.md, sharedTmpBuffer 所需空间: without the index only the first round's output
  // (aligned to 32 B) is needed; with it the rounds' outputs add up.
  uint64_t need = (reps == 1 || !calIndex) ? start : start + ((it1 + epr - 1) / epr * 2 + epb - 1) / epb * epb;
  npu_ops_emu::CheckVec(api, "dst", dst, 2);
  npu_ops_emu::CheckVec(api, "src", src, count);
  emu_detail::CheckTmp(api, sharedTmpBuffer, need);
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = npu_ops_emu::BeginVec(api, uint64_t(count) * sizeof(T));
  c.Read(npu_ops_emu::kV, s, api, src.off_, count * sizeof(T));
  c.Write(npu_ops_emu::kV, s, api, sharedTmpBuffer.off_, need * sizeof(T));
  c.Write(npu_ops_emu::kV, s, api, dst.off_, 2 * sizeof(T));
  c.Poison(sharedTmpBuffer.off_, need * sizeof(T));
  float best = -INFINITY;
  uint32_t idx = 0;
  for (int32_t i = 0; i < count; ++i) {
    float v = float(npu_ops_emu::LoadUb<T>(src.off_ + i * sizeof(T)));
    if (std::isnan(v) && !std::isnan(best)) {
      best = v, idx = i;
    } else if (v > best) {
      best = v, idx = i;
    }
  }
  npu_ops_emu::StoreUb<T>(dst.off_, static_cast<T>(best));
  if (calIndex) {
    if constexpr (sizeof(T) == 4) {
      npu_ops_emu::StoreUb<uint32_t>(dst.off_ + 4, idx);
    } else {
      npu_ops_emu::StoreUb<uint16_t>(dst.off_ + 2, static_cast<uint16_t>(idx));
    }
  }
}

namespace emu_detail {
inline bool Cmp(double a, double b, CMPMODE m) {
  switch (m) {
    case CMPMODE::LT: return a < b;
    case CMPMODE::GT: return a > b;
    case CMPMODE::EQ: return a == b;
    case CMPMODE::LE: return a <= b;
    case CMPMODE::GE: return a >= b;
    default: return a != b;
  }
}
template <typename U, typename T, typename F>
void CompareImpl(const char* api, const LocalTensor<U>& dst, const LocalTensor<T>& src0, uint32_t count,
                 const LocalTensor<T>* src1, CMPMODE cmp_mode, F value1) {
  static_assert(npu_ops_emu::kIsFloat<T> || std::is_same_v<T, int32_t>, "Compare: half, float or int32_t");
  if (count == 0) return;
  // dav_c220/kernel_operator_vec_cmp_impl.h (CheckVcmpDtype / CheckVcmpvsDtype, VcmpvIntrinsicsImpl
  // for int32_t): int32_t is compared with CMPMODE::EQ only.
  if (std::is_same_v<T, int32_t> && cmp_mode != CMPMODE::EQ)
    npu_ops_emu::Ctx().Fail(api, "int32_t operands support only CMPMODE::EQ on dav-2201, got mode " +
                                     npu_ops_emu::Str(static_cast<int>(cmp_mode)));
  uint64_t bits_bytes = (uint64_t(count) + 7) / 8;
  npu_ops_emu::CheckVec(api, "dst", dst, (bits_bytes + sizeof(U) - 1) / sizeof(U));
  npu_ops_emu::CheckVec(api, "src0", src0, count);
  if (src1) npu_ops_emu::CheckVec(api, "src1", *src1, count);
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = npu_ops_emu::BeginVec(api, uint64_t(count) * sizeof(T));
  c.Read(npu_ops_emu::kV, s, api, src0.off_, count * sizeof(T));
  if (src1) c.Read(npu_ops_emu::kV, s, api, src1->off_, count * sizeof(T));
  c.Write(npu_ops_emu::kV, s, api, dst.off_, bits_bytes);
  std::vector<uint8_t> bits(bits_bytes, 0);
  for (uint32_t i = 0; i < count; ++i)
    if (value1(i)) bits[i / 8] |= uint8_t(1u << (i % 8));
  std::memcpy(c.ub.data() + dst.off_, bits.data(), bits_bytes);
}
}  // namespace emu_detail

// Bit i of dst (LSB first) = src0[i] <cmpMode> src1[i]. count * sizeof(T) must be a multiple of 256.
template <typename T, typename U>
void Compare(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const LocalTensor<T>& src1, CMPMODE cmpMode,
             uint32_t count) {
  const char* api = "Compare";
  if ((uint64_t(count) * sizeof(T)) % 256)
    npu_ops_emu::Ctx().Fail(api, "count " + npu_ops_emu::Str(count) + " x " + npu_ops_emu::Str(sizeof(T)) +
                                     " B is not a multiple of 256 bytes (hardware skips the unaligned rest)");
  emu_detail::CompareImpl(api, dst, src0, count, &src1, cmpMode, [&](uint32_t i) {
    return emu_detail::Cmp(double(npu_ops_emu::LoadUb<T>(src0.off_ + i * sizeof(T))),
                           double(npu_ops_emu::LoadUb<T>(src1.off_ + i * sizeof(T))), cmpMode);
  });
}

template <typename T, typename U>
void Compares(const LocalTensor<U>& dst, const LocalTensor<T>& src0, const T src1Scalar, CMPMODE cmpMode,
              uint32_t count) {
  // dav_c220 CompareScalarCompute: count * sizeof(T) / 256 whole repeats, the rest is dropped.
  if ((uint64_t(count) * sizeof(T)) % 256)
    npu_ops_emu::Ctx().Fail("Compares", "count " + npu_ops_emu::Str(count) + " x " + npu_ops_emu::Str(sizeof(T)) +
                                            " B = " + npu_ops_emu::Str(uint64_t(count) * sizeof(T)) +
                                            " bytes: the count form compares whole 256-byte repeats only and "
                                            "silently skips the rest");
  emu_detail::CompareImpl(
      "Compares", dst, src0, count, static_cast<const LocalTensor<T>*>(nullptr), cmpMode, [&](uint32_t i) {
        return emu_detail::Cmp(double(npu_ops_emu::LoadUb<T>(src0.off_ + i * sizeof(T))), double(src1Scalar), cmpMode);
      });
}

namespace emu_detail {
template <typename T, typename U, typename F>
void SelectImpl(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0,
                const LocalTensor<T>* src1, SELMODE mode, uint32_t count, F other) {
  const char* api = "Select";
  static_assert(npu_ops_emu::kIsFloat<T>, "Select: dav-2201 supports half and float");
  if (mode == SELMODE::VSEL_CMPMASK_SPR)
    npu_ops_emu::Ctx().Fail(api,
                            "VSEL_CMPMASK_SPR (mode 0) is not emulated; use VSEL_TENSOR_TENSOR_MODE or "
                            "VSEL_TENSOR_SCALAR_MODE");
  if (count == 0) return;
  uint64_t bits_bytes = (uint64_t(count) + 7) / 8;
  npu_ops_emu::CheckVec(api, "dst", dst, count);
  npu_ops_emu::CheckVec(api, "selMask", selMask, (bits_bytes + sizeof(U) - 1) / sizeof(U));
  npu_ops_emu::CheckVec(api, "src0", src0, count);
  if (src1) npu_ops_emu::CheckVec(api, "src1", *src1, count);
  auto& c = npu_ops_emu::Ctx();
  uint32_t s = npu_ops_emu::BeginVec(api, uint64_t(count) * sizeof(T));
  c.Read(npu_ops_emu::kV, s, api, selMask.off_, bits_bytes);
  c.Read(npu_ops_emu::kV, s, api, src0.off_, count * sizeof(T));
  if (src1) c.Read(npu_ops_emu::kV, s, api, src1->off_, count * sizeof(T));
  c.Write(npu_ops_emu::kV, s, api, dst.off_, count * sizeof(T));
  std::vector<T> out(count);
  for (uint32_t i = 0; i < count; ++i) {
    bool bit = (c.ub[selMask.off_ + i / 8] >> (i % 8)) & 1;
    out[i] = bit ? npu_ops_emu::LoadUb<T>(src0.off_ + i * sizeof(T)) : other(i);
  }
  std::memcpy(c.ub.data() + dst.off_, out.data(), count * sizeof(T));
}
}  // namespace emu_detail

// dst[i] = bit i of selMask ? src0[i] : src1[i] (or the scalar src1).
template <typename T, typename U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0,
            const LocalTensor<T>& src1, SELMODE selMode, uint32_t count) {
  if (selMode != SELMODE::VSEL_TENSOR_TENSOR_MODE && selMode != SELMODE::VSEL_CMPMASK_SPR)
    npu_ops_emu::Ctx().Fail("Select", "a tensor src1 needs SELMODE::VSEL_TENSOR_TENSOR_MODE");
  emu_detail::SelectImpl(dst, selMask, src0, &src1, selMode, count,
                         [&](uint32_t i) { return npu_ops_emu::LoadUb<T>(src1.off_ + i * sizeof(T)); });
}

template <typename T, typename U>
void Select(const LocalTensor<T>& dst, const LocalTensor<U>& selMask, const LocalTensor<T>& src0, T src1,
            SELMODE selMode, uint32_t count) {
  if (selMode != SELMODE::VSEL_TENSOR_SCALAR_MODE && selMode != SELMODE::VSEL_CMPMASK_SPR)
    npu_ops_emu::Ctx().Fail("Select", "a scalar src1 needs SELMODE::VSEL_TENSOR_SCALAR_MODE");
  emu_detail::SelectImpl(dst, selMask, src0, static_cast<const LocalTensor<T>*>(nullptr), selMode, count,
                         [&](uint32_t) { return src1; });
}

// dst[i] = element at byte (srcBaseOffset + srcOffset[i]) of src. Offsets are bytes and must be
// multiples of sizeof(T) inside src: on hardware a misaligned one silently misplaces data.
template <typename T>
void Gather(const LocalTensor<T>& dst, const LocalTensor<T>& src, const LocalTensor<uint32_t>& srcOffset,
            const uint32_t srcBaseOffset, const uint32_t count) {
  const char* api = "Gather";
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "Gather: dav-2201 supports 16- and 32-bit types");
  if (count == 0) return;
  // impl/basic_api/kernel_operator_vec_gather_intf_impl.h (count form): `const uint8_t repeatTime =
  // count / elementCountSingleRepeat` - the repeat count wraps at 256 and the gather silently
  // moves (count / epr mod 256) repeats plus the tail.
  constexpr uint32_t epr = 256 / sizeof(T);
  if (count / epr > 255)
    npu_ops_emu::Ctx().Fail(api, "count " + npu_ops_emu::Str(count) + " needs " + npu_ops_emu::Str(count / epr) +
                                     " repeats of " + npu_ops_emu::Str(epr) +
                                     " elements (>= 256 repeats); the count form keeps the repeat count in 8 bits, so "
                                     "at most " +
                                     npu_ops_emu::Str(255 * epr + epr - 1) + " elements per call");
  npu_ops_emu::CheckVec(api, "dst", dst, count);
  npu_ops_emu::CheckVec(api, "src", src, 0);
  npu_ops_emu::CheckVec(api, "srcOffset", srcOffset, count);
  auto& c = npu_ops_emu::Ctx();
  if (srcBaseOffset % sizeof(T))
    c.Fail(api, "srcBaseOffset " + npu_ops_emu::Str(srcBaseOffset) +
                    " is not a multiple of sizeof(T) = " + npu_ops_emu::Str(sizeof(T)));
  uint32_t s = npu_ops_emu::BeginVec(api, uint64_t(count) * sizeof(T));
  c.stats->gather_ops++;
  c.stats->gather_elements += count;
  c.stats->gather_bytes += uint64_t(count) * sizeof(T);
  c.Read(npu_ops_emu::kV, s, api, srcOffset.off_, count * 4);
  std::vector<T> out(count);
  uint64_t src_bytes = uint64_t(src.size_) * sizeof(T);
  for (uint32_t i = 0; i < count; ++i) {
    uint64_t o = uint64_t(srcBaseOffset) + npu_ops_emu::LoadUb<uint32_t>(srcOffset.off_ + i * 4);
    if (o % sizeof(T))
      c.Fail(api, "srcOffset[" + npu_ops_emu::Str(i) + "] gives byte " + npu_ops_emu::Str(o) +
                      ", not a multiple of sizeof(T) = " + npu_ops_emu::Str(sizeof(T)) +
                      " (hardware silently misplaces data)");
    if (o + sizeof(T) > src_bytes)
      c.Fail(api, "srcOffset[" + npu_ops_emu::Str(i) + "] gives byte " + npu_ops_emu::Str(o) + ", outside the " +
                      npu_ops_emu::Str(src_bytes) + "-byte src");
    uint64_t at = src.off_ + o;
    if (at < dst.off_ + uint64_t(count) * sizeof(T) && dst.off_ < at + sizeof(T))
      c.Fail(api, "srcOffset[" + npu_ops_emu::Str(i) + "] reads UB byte " + npu_ops_emu::Str(at) +
                      " inside dst; Gather's source and destination must not overlap");
    c.Read(npu_ops_emu::kV, s, api, static_cast<uint32_t>(src.off_ + o), sizeof(T));
    out[i] = npu_ops_emu::LoadUb<T>(static_cast<uint32_t>(src.off_ + o));
  }
  c.Write(npu_ops_emu::kV, s, api, dst.off_, count * sizeof(T));
  std::memcpy(c.ub.data() + dst.off_, out.data(), count * sizeof(T));
}

}  // namespace AscendC
