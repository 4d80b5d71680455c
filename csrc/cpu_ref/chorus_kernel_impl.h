// Kernel bodies of the Chorus CPU ops. Included once per instruction set by
// chorus_kernel_{default,avx2,avx512}.cpp (each compiled with its ISA's flags), with
// NPU_OPS_CHORUS_ISA naming the namespace, NPU_OPS_CHORUS_TARGET an attribute every function here
// carries (empty) and NPU_OPS_CHORUS_LANES the vector width. Everything has internal linkage, so no
// code compiled for AVX-512 can be shared with the other variants. No includes: the including file
// provides <cstdint>, <cstring>, <type_traits> and <immintrin.h> (intrinsics are used where GCC's
// generic vectors compile badly: bfloat16 conversions) before the first inclusion.
//
// Data are processed kLanes = NPU_OPS_CHORUS_LANES elements at a time in GCC vector registers of
// the compute type (float, double for float64 data). The including file picks the width so that a
// vector of floats is one register of the ISA (16: a zmm on AVX-512, 8: a ymm on AVX2, 4: an xmm
// on baseline x86-64); GCC vectors wider than the ISA's registers are lowered element by element
// in places (selects, conversions) and ran several times slower.
// float16/bfloat16 are loaded and stored natively (round to nearest even) and computed in float.
#ifndef NPU_OPS_CHORUS_ISA
#error "define NPU_OPS_CHORUS_ISA before including chorus_kernel_impl.h"
#endif
#ifndef NPU_OPS_CHORUS_LANES
#error "define NPU_OPS_CHORUS_LANES before including chorus_kernel_impl.h"
#endif
#ifndef NPU_OPS_CHORUS_TARGET
#error "define NPU_OPS_CHORUS_TARGET before including chorus_kernel_impl.h"
#endif

namespace npu_ops::cpu::NPU_OPS_CHORUS_ISA {
namespace {

#define TGT NPU_OPS_CHORUS_TARGET
// Per-vector helpers are forced inline: GCC otherwise keeps some out of line (e.g. the bfloat16
// store) and passes the vectors through memory on every call.
#define TGT_INL NPU_OPS_CHORUS_TARGET inline __attribute__((always_inline))

constexpr int64_t kLanes = NPU_OPS_CHORUS_LANES;
static_assert(kLanes == 4 || kLanes == 8 || kLanes == 16, "kLanes must be 4, 8 or 16");

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};
struct Byte {
  uint8_t bits;
};

#define NPU_OPS_CHORUS_VEC(bytes) __attribute__((vector_size((bytes) * NPU_OPS_CHORUS_LANES)))
typedef float VF NPU_OPS_CHORUS_VEC(4);
typedef double VD NPU_OPS_CHORUS_VEC(8);
typedef int32_t VI32 NPU_OPS_CHORUS_VEC(4);
typedef int64_t VI64 NPU_OPS_CHORUS_VEC(8);
typedef int16_t VI16 NPU_OPS_CHORUS_VEC(2);
typedef int8_t VI8 NPU_OPS_CHORUS_VEC(1);
typedef uint8_t VU8 NPU_OPS_CHORUS_VEC(1);
typedef uint16_t VU16 NPU_OPS_CHORUS_VEC(2);
typedef uint32_t VU32 NPU_OPS_CHORUS_VEC(4);
typedef uint64_t VU64 NPU_OPS_CHORUS_VEC(8);
typedef _Float16 VH NPU_OPS_CHORUS_VEC(2);
#undef NPU_OPS_CHORUS_VEC

// Compute type of a storage type, and its vector.
template <typename T>
struct AccOf {
  using type = float;
  using vec = VF;
};
template <>
struct AccOf<double> {
  using type = double;
  using vec = VD;
};

// Raw bits of kLanes elements of a storage type, and the matching select mask.
template <typename T>
struct BitsOf;
template <>
struct BitsOf<float> {
  using type = VU32;
  using mask = VI32;
};
template <>
struct BitsOf<double> {
  using type = VU64;
  using mask = VI64;
};
template <>
struct BitsOf<Half> {
  using type = VU16;
  using mask = VI16;
};
template <>
struct BitsOf<BFloat16> {
  using type = VU16;
  using mask = VI16;
};

// ---------------------------------------------------------------------------------------------
// Scalar conversions.

TGT_INL float f32(float v) {
  return v;
}
TGT_INL float f32(double v) {
  return static_cast<float>(v);
}
TGT_INL float f32(Half v) {
  _Float16 h;
  std::memcpy(&h, &v.bits, sizeof h);
  return static_cast<float>(h);
}
TGT_INL float f32(BFloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
TGT_INL void cvt(float& d, float v) {
  d = v;
}
TGT_INL void cvt(float& d, double v) {
  d = static_cast<float>(v);
}
TGT_INL void cvt(float& d, Half v) {
  d = f32(v);
}
TGT_INL void cvt(float& d, BFloat16 v) {
  d = f32(v);
}
TGT_INL void cvt(double& d, double v) {
  d = v;
}
TGT_INL void cvt(double& d, float v) {
  d = v;
}
TGT_INL void cvt(double& d, Half v) {
  d = f32(v);
}
TGT_INL void cvt(double& d, BFloat16 v) {
  d = f32(v);
}
template <typename A, typename T>
TGT_INL A sload(const T* p) {
  A d;
  cvt(d, *p);
  return d;
}
TGT_INL void sstore(float* p, float v) {
  *p = v;
}
TGT_INL void sstore(double* p, double v) {
  *p = v;
}
TGT_INL void sstore(Half* p, float v) {
  const _Float16 h = static_cast<_Float16>(v);
  std::memcpy(&p->bits, &h, sizeof h);
}
TGT_INL void sstore(BFloat16* p, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  // Round to nearest even; NaN becomes the canonical quiet NaN (as c10::BFloat16).
  p->bits = (u & 0x7fffffffu) > 0x7f800000u ? uint16_t{0x7fc0}
                                            : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------------------------
// kLanes-element vector loads (any storage type to the compute vector) and stores.

TGT_INL void vload(VF& d, const float* p) {
  std::memcpy(&d, p, sizeof d);
}
TGT_INL void vload(VF& d, const double* p) {
  VD t;
  std::memcpy(&t, p, sizeof t);
  d = __builtin_convertvector(t, VF);
}
TGT_INL void vload(VF& d, const Half* p) {
  VH h;
  std::memcpy(&h, p, sizeof h);
  d = __builtin_convertvector(h, VF);
}
TGT_INL void vload(VF& d, const BFloat16* p) {
  // GCC 12 widens a whole-register __builtin_convertvector of uint16 in two halves (extract,
  // two vpmovzxwd, insert): three ops more per vector than the one zero-extending load.
#if NPU_OPS_CHORUS_LANES == 16 && defined(__AVX512F__)
  const __m512i w =
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16);
#elif NPU_OPS_CHORUS_LANES == 8 && defined(__AVX2__)
  const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16);
#elif NPU_OPS_CHORUS_LANES == 4 && defined(__SSE2__)
  const __m128i w = _mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
#else
  VU16 u;
  std::memcpy(&u, p, sizeof u);
  const VU32 w = __builtin_convertvector(u, VU32) << 16;
#endif
  std::memcpy(&d, &w, sizeof d);
}
TGT_INL void vload(VD& d, const double* p) {
  std::memcpy(&d, p, sizeof d);
}
template <typename T>
TGT_INL void vload(VD& d, const T* p) {
  VF f;
  vload(f, p);
  d = __builtin_convertvector(f, VD);
}
template <typename V, typename T>
TGT_INL V vld(const T* p) {
  V v;
  vload(v, p);
  return v;
}
TGT_INL void vstore(float* p, const VF& v) {
  std::memcpy(p, &v, sizeof v);
}
TGT_INL void vstore(double* p, const VD& v) {
  std::memcpy(p, &v, sizeof v);
}
TGT_INL void vstore(Half* p, const VF& v) {
  const VH h = __builtin_convertvector(v, VH);
  std::memcpy(p, &h, sizeof h);
}
TGT_INL void vstore(BFloat16* p, const VF& v) {
  VU32 u;
  std::memcpy(&u, &v, sizeof u);
  const VI32 nan = v != v;
#if NPU_OPS_CHORUS_LANES == 4 && defined(__SSE2__)
  // The rounded value's high half, sign-extended by the arithmetic shift, packs without saturation
  // (SSE2 has no unsigned 32-to-16 pack; GCC's own conversion takes six shuffles).
  const VU32 r = nan ? VU32{} + 0x7fc00000u : u + 0x7fffu + ((u >> 16) & 1u);
  __m128i x;
  std::memcpy(&x, &r, sizeof x);
  x = _mm_srai_epi32(x, 16);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi32(x, x));
#else
  const VU32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const VU32 r = nan ? VU32{} + 0x7fc0u : rounded;
  const VU16 b = __builtin_convertvector(r, VU16);
  std::memcpy(p, &b, sizeof b);
#endif
}

// Horizontal sum in a fixed tree order (lane i + w into lane i, w = kLanes / 2, ..., 1).
template <typename V, typename A>
TGT inline A hsum_t(const V& v) {
  A t[kLanes];
  std::memcpy(t, &v, sizeof t);
  for (int64_t w = kLanes / 2; w >= 1; w /= 2) {
    for (int64_t i = 0; i < w; ++i) t[i] += t[i + w];
  }
  return t[0];
}
TGT inline float hsum(const VF& v) {
  return hsum_t<VF, float>(v);
}
TGT inline double hsum(const VD& v) {
  return hsum_t<VD, double>(v);
}
template <typename V, typename A>
TGT inline A hmax(const V& v) {
  A t[kLanes];
  std::memcpy(t, &v, sizeof t);
  A m = t[0];
  for (int64_t i = 1; i < kLanes; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

// exp in float: Cephes-style range reduction x = n ln2 + r (n = round(x / ln2), by adding
// 1.5 * 2^23, whose low mantissa bits then hold n) and a degree-6 polynomial in r (about 1 ulp on
// the normal range). Results below the smallest normal float (x < -87.34, exp(x) < 1.2e-38) are
// flushed to 0, so keys removed by alpha = 0 get exactly 0.
constexpr float kExpLo = -87.3365447f, kExpHi = 88.7228391f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23

// p(r) ~ exp(r) for |r| <= ln2 / 2 (1 + r + r^2 (c2 + ... + c6 r^4), Horner; coefficients fitted for
// the least maximum relative error, 1.4 ulp in float), and t = n + kRoundMagic.
TGT_INL VF exp_poly(const VF& xc, VF& t) {
  t = xc * 1.44269504088896341f + kRoundMagic;  // n + magic, rounded to an integer
  const VF n = t - kRoundMagic;
  VF r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  VF p = VF{} + 1.3814613093196036e-3f;
  p = p * r + 8.368709961334408e-3f;
  p = p * r + 4.166838737390418e-2f;
  p = p * r + 1.6666520688656863e-1f;
  p = p * r + 4.999999345162588e-1f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

// v = exp(v) for any v: exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN.
TGT_INL void vexp(VF& v) {
  const VF x = v;
  VF xc = x < kExpLo ? VF{} + kExpLo : x;
  xc = xc > kExpHi ? VF{} + kExpHi : xc;
  xc = x != x ? VF{} : xc;  // NaN lanes: computed on 0, restored below
  VF t;
  const VF p = exp_poly(xc, t);
  // 2^n for n in [-126, 128]; n = 128 as 2^127 * 2 keeps the exponent field in range.
  VI32 ni;
  std::memcpy(&ni, &t, sizeof ni);
  ni -= 0x4b400000;           // the bits of kRoundMagic
  const VI32 big = ni > 127;  // -1 where n == 128
  const VI32 bits = (ni + big + 127) << 23;
  VF scale;
  std::memcpy(&scale, &bits, sizeof scale);
  VF y = p * scale;
  y = big ? y * 2.0f : y;
  y = x < kExpLo ? VF{} : y;
  y = x > kExpHi ? VF{} + __builtin_inff() : y;
  v = x != x ? x : y;
}

// v = exp(v) for v <= 88 (so n <= 127 and 2^n is a normal float), -inf (gives 0) or NaN (stays NaN):
// the softmax's arguments (logit - row max, see row_exp). Fewer selects than vexp.
TGT_INL void vexp_le0(VF& v) {
  const VF x = v;
  const VF xc = x < kExpLo ? VF{} + kExpLo : x;
  VF t;
  const VF p = exp_poly(xc, t);
  VU32 bits;
  std::memcpy(&bits, &t, sizeof bits);
  bits = (bits << 23) + (127u << 23);  // the low bits of t hold n (two's complement): 2^n
  VF scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const VF y = p * scale;
  v = x < kExpLo ? VF{} : y;
}

TGT_INL void vexp(VD& v) {
  double t[kLanes];
  std::memcpy(t, &v, sizeof t);
  for (int64_t i = 0; i < kLanes; ++i) t[i] = __builtin_exp(t[i]);
  std::memcpy(&v, t, sizeof v);
}
TGT_INL void vexp_le0(VD& v) {
  vexp(v);
}
TGT inline float slog(float v) {
  return __builtin_logf(v);
}
TGT inline double slog(double v) {
  return __builtin_log(v);
}

// Zero-initialised heap array (internal linkage: no std::vector instantiated with this ISA).
template <typename T>
struct Scratch {
  T* data;
  TGT explicit Scratch(int64_t n) : data(new T[static_cast<size_t>(n > 0 ? n : 1)]()) {}
  TGT ~Scratch() { delete[] data; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

TGT inline int64_t round_up(int64_t n) {
  return (n + kLanes - 1) / kLanes * kLanes;
}

// =============================================================================================
// masked_blend

// Hard select of raw bits: out[i] = m[i] ? a[i] : b[i] (b or a may be null for zeros).
template <typename T>
TGT inline void select_run(const uint8_t* m, const T* a, const T* b, T* out, int64_t n) {
  using U = typename BitsOf<T>::type;
  using M = typename BitsOf<T>::mask;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    VU8 mb;
    std::memcpy(&mb, m + i, sizeof mb);
    const M sel = __builtin_convertvector(static_cast<VI8>(mb != 0), M);
    U ua = {}, ub = {};
    if (a) std::memcpy(&ua, a + i, sizeof ua);
    if (b) std::memcpy(&ub, b + i, sizeof ub);
    const U r = sel ? ua : ub;
    std::memcpy(out + i, &r, sizeof r);
  }
  for (; i < n; ++i) {
    const T* src = m[i] ? a : b;
    if (src) {
      out[i] = src[i];
    } else {
      std::memset(out + i, 0, sizeof(T));
    }
  }
}

template <typename T>
TGT inline void copy_or_zero(const T* src, T* out, int64_t n) {
  if (src) {
    std::memcpy(out, src, static_cast<size_t>(n) * sizeof(T));
  } else {
    std::memset(out, 0, static_cast<size_t>(n) * sizeof(T));
  }
}

// Soft blend of a run; the mask is a vector (m) or one value (m == null, ms).
template <typename T, typename M>
TGT inline void blend_run(const M* m, typename AccOf<T>::type ms, const T* f, const T* c, T* out, int64_t n) {
  using A = typename AccOf<T>::type;
  using V = typename AccOf<T>::vec;
  const A half = A(0.5), one = A(1);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const V mv = m ? vld<V>(m + i) : V{} + ms;
    const V fv = vld<V>(f + i), cv = vld<V>(c + i);
    const V d = fv - cv;
    // torch.lerp's two-sided form: exact at mask 0 and 1.
    const V lo = cv + mv * d, hi = fv - (one - mv) * d;
    vstore(out + i, mv < half ? lo : hi);
  }
  for (; i < n; ++i) {
    const A mv = m ? sload<A>(m + i) : ms;
    const A fv = sload<A>(f + i), cv = sload<A>(c + i);
    const A d = fv - cv;
    sstore(out + i, mv < half ? cv + mv * d : fv - (one - mv) * d);
  }
}

template <typename T, typename M>
TGT void blend_forward_impl(const BlendArgs& a, int64_t begin, int64_t end) {
  using A = typename AccOf<T>::type;
  const auto* f = static_cast<const T*>(a.fresh);
  const auto* c = static_cast<const T*>(a.cached);
  const auto* mk = static_cast<const M*>(a.mask);
  auto* out = static_cast<T*>(a.out);
  constexpr bool hard = std::is_same<M, Byte>::value;
  if (a.inner == 1) {  // one mask value per row of `mid` elements
    int64_t o = begin / a.mid, off = begin % a.mid;
    for (int64_t e = begin; e < end; off = 0, ++o) {
      const int64_t n = std::min(a.mid - off, end - e);
      if constexpr (hard) {
        copy_or_zero(mk[o].bits ? f + e : c + e, out + e, n);
      } else {
        blend_run<T, M>(nullptr, sload<A>(mk + o), f + e, c + e, out + e, n);
      }
      e += n;
    }
  } else {  // a mask row of `inner` elements, repeated over mid
    int64_t row = begin / a.inner, i = begin % a.inner;
    for (int64_t e = begin; e < end; i = 0, ++row) {
      const int64_t n = std::min(a.inner - i, end - e);
      const M* mrow = mk + (row / a.mid) * a.inner + i;
      if constexpr (hard) {
        select_run<T>(&mrow->bits, f + e, c + e, out + e, n);
      } else {
        blend_run<T, M>(mrow, A(0), f + e, c + e, out + e, n);
      }
      e += n;
    }
  }
}

// grad_fresh = m * g, grad_cached = (1 - m) * g for a run (either output may be null).
template <typename T, typename M>
TGT inline void blend_grad_run(const M* m, typename AccOf<T>::type ms, const T* g, T* gf, T* gc, int64_t n) {
  using A = typename AccOf<T>::type;
  using V = typename AccOf<T>::vec;
  const A one = A(1);
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const V mv = m ? vld<V>(m + i) : V{} + ms;
    const V gv = vld<V>(g + i);
    if (gf) vstore(gf + i, mv * gv);
    if (gc) vstore(gc + i, (one - mv) * gv);
  }
  for (; i < n; ++i) {
    const A mv = m ? sload<A>(m + i) : ms;
    const A gv = sload<A>(g + i);
    if (gf) sstore(gf + i, mv * gv);
    if (gc) sstore(gc + i, (one - mv) * gv);
  }
}

// Hard-mask gradients: grad_fresh = m ? g : 0, grad_cached = m ? 0 : g (exact).
template <typename T>
TGT inline void select_grad_run(const uint8_t* m, bool ms, const T* g, T* gf, T* gc, int64_t n) {
  if (m) {
    if (gf) select_run<T>(m, g, nullptr, gf, n);
    if (gc) select_run<T>(m, nullptr, g, gc, n);
  } else {
    if (gf) copy_or_zero<T>(ms ? g : nullptr, gf, n);
    if (gc) copy_or_zero<T>(ms ? nullptr : g, gc, n);
  }
}

template <typename T, typename M>
TGT void blend_backward_impl(const BlendBackwardArgs& a, int64_t begin, int64_t end) {
  using A = typename AccOf<T>::type;
  const auto* g = static_cast<const T*>(a.grad_out);
  const auto* mk = static_cast<const M*>(a.mask);
  auto* gf = static_cast<T*>(a.grad_fresh);
  auto* gc = static_cast<T*>(a.grad_cached);
  constexpr bool hard = std::is_same<M, Byte>::value;
  if (a.inner == 1) {
    int64_t o = begin / a.mid, off = begin % a.mid;
    for (int64_t e = begin; e < end; off = 0, ++o) {
      const int64_t n = std::min(a.mid - off, end - e);
      if constexpr (hard) {
        select_grad_run<T>(nullptr, mk[o].bits != 0, g + e, gf ? gf + e : nullptr, gc ? gc + e : nullptr, n);
      } else {
        blend_grad_run<T, M>(nullptr, sload<A>(mk + o), g + e, gf ? gf + e : nullptr, gc ? gc + e : nullptr, n);
      }
      e += n;
    }
  } else {
    int64_t row = begin / a.inner, i = begin % a.inner;
    for (int64_t e = begin; e < end; i = 0, ++row) {
      const int64_t n = std::min(a.inner - i, end - e);
      const M* mrow = mk + (row / a.mid) * a.inner + i;
      if constexpr (hard) {
        select_grad_run<T>(&mrow->bits, false, g + e, gf ? gf + e : nullptr, gc ? gc + e : nullptr, n);
      } else {
        blend_grad_run<T, M>(mrow, A(0), g + e, gf ? gf + e : nullptr, gc ? gc + e : nullptr, n);
      }
      e += n;
    }
  }
}

// Soft masks only: gradients of fresh / cached plus the mask gradient of a block.
template <typename T, typename M>
TGT void blend_backward_reduce_impl(const BlendBackwardArgs& a, int64_t o, int64_t m0, int64_t m1, int64_t i0,
                                    int64_t i1, void* part) {
  using A = typename AccOf<T>::type;
  using V = typename AccOf<T>::vec;
  const auto* g = static_cast<const T*>(a.grad_out);
  const auto* f = static_cast<const T*>(a.fresh);
  const auto* c = static_cast<const T*>(a.cached);
  const auto* mk = static_cast<const M*>(a.mask);
  auto* gf = static_cast<T*>(a.grad_fresh);
  auto* gc = static_cast<T*>(a.grad_cached);
  auto* gm = static_cast<A*>(part);
  const A one = A(1);
  if (a.inner == 1) {  // mask value o over the contiguous mid rows [m0, m1)
    const int64_t base = o * a.mid + m0, n = m1 - m0;
    const A ms = sload<A>(mk + o);
    V acc = {};
    A tail = A(0);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const int64_t e = base + i;
      const V gv = vld<V>(g + e);
      acc += (vld<V>(f + e) - vld<V>(c + e)) * gv;
      if (gf) vstore(gf + e, ms * gv);
      if (gc) vstore(gc + e, (one - ms) * gv);
    }
    for (; i < n; ++i) {
      const int64_t e = base + i;
      const A gv = sload<A>(g + e);
      tail += (sload<A>(f + e) - sload<A>(c + e)) * gv;
      if (gf) sstore(gf + e, ms * gv);
      if (gc) sstore(gc + e, (one - ms) * gv);
    }
    gm[0] = hsum(acc) + tail;
    return;
  }
  const int64_t n = i1 - i0;
  for (int64_t i = 0; i < n; ++i) gm[i] = A(0);
  const M* mrow = mk + o * a.inner + i0;
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t base = (o * a.mid + m) * a.inner + i0;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      const int64_t e = base + i;
      const V mv = vld<V>(mrow + i), gv = vld<V>(g + e);
      V acc = vld<V>(gm + i);
      acc += (vld<V>(f + e) - vld<V>(c + e)) * gv;
      std::memcpy(gm + i, &acc, sizeof acc);
      if (gf) vstore(gf + e, mv * gv);
      if (gc) vstore(gc + e, (one - mv) * gv);
    }
    for (; i < n; ++i) {
      const int64_t e = base + i;
      const A mv = sload<A>(mrow + i), gv = sload<A>(g + e);
      gm[i] += (sload<A>(f + e) - sload<A>(c + e)) * gv;
      if (gf) sstore(gf + e, mv * gv);
      if (gc) sstore(gc + e, (one - mv) * gv);
    }
  }
}

// =============================================================================================
// amplified_softmax

// Loads alpha row `group` into al (compute type, padded with pad_value); with log_alpha also
// replaces it by log(alpha). Returns false if a value is negative, NaN or infinite.
template <typename A, typename AL>
TGT inline bool load_alpha(const SoftmaxArgs& a, int64_t group, bool log_alpha, A* al) {
  const auto* src = static_cast<const AL*>(a.alpha) + group * a.len;
  bool ok = true;
  for (int64_t j = 0; j < a.len; ++j) {
    const A v = sload<A>(src + j);
    ok = ok && v >= A(0) && v < A(__builtin_huge_val());  // NaN fails both
    al[j] = log_alpha ? slog(v) : v;
  }
  for (int64_t j = a.len; j < round_up(a.len); ++j) al[j] = log_alpha ? -A(__builtin_huge_val()) : A(0);
  return ok;
}

// Lane indices 0..kLanes-1 of a compute vector.
template <typename V>
TGT inline V iota() {
  V v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}
// The first n (< kLanes) elements of p into v, the other lanes = fill. Out of line (also store_n): row
// tails are rare, and inlined they bloat the hot loops that test for them.
template <typename V, typename T, typename A>
TGT __attribute__((noinline)) void load_n(V& v, const T* p, int64_t n, A fill) {
  A tmp[kLanes];
  for (int64_t i = 0; i < kLanes; ++i) tmp[i] = i < n ? sload<A>(p + i) : fill;
  std::memcpy(&v, tmp, sizeof v);
}
// The first n (< kLanes) lanes of v into p.
template <typename T, typename V>
TGT __attribute__((noinline)) void store_n(T* p, const V& v, int64_t n) {
  typename std::remove_reference<decltype(v[0])>::type tmp[kLanes];
  std::memcpy(tmp, &v, sizeof tmp);
  for (int64_t i = 0; i < n; ++i) sstore(p + i, tmp[i]);
}
// Elements [j, j + kLanes) of a row of len elements (lanes past the end = 0), converted in registers.
template <typename V, typename T>
TGT_INL V vld_row(const T* p, int64_t j, int64_t len) {
  V v;
  if (j + kLanes <= len) {
    vload(v, p + j);
  } else {
    load_n(v, p + j, len - j, decltype(v[0] + 0)(0));
  }
  return v;
}
// The lanes of v that fall inside a row of len elements into p[j, ...).
template <typename T, typename V>
TGT_INL void vst_row(T* p, int64_t j, int64_t len, const V& v) {
  if (j + kLanes <= len) {
    vstore(p + j, v);
  } else {
    store_n(p + j, v, len - j);
  }
}

// One pass over a score row: xs = scale * x, padded with -inf up to a multiple of kLanes. Returns
// the row max m of the logits t = xs (+ log alpha when renormalizing; max(xs) into xs_max if given),
// -inf when every t is -inf
// (no key left) or NaN. NaN logits are not looked for here: they make the row's sum of exps NaN
// (row_exp), and so the whole row NaN, unless m is -inf (see row_is_nan).
template <typename T, typename A>
TGT inline A row_logits(const T* x, A scale, const A* la, bool renormalize, int64_t len, A* xs, A* xs_max = nullptr) {
  using V = typename AccOf<A>::vec;
  const A ninf = -A(__builtin_huge_val());
  V vm = V{} + ninf, vx = vm;
  for (int64_t j = 0; j < len; j += kLanes) {
    V xv;
    if (j + kLanes <= len) {
      vload(xv, x + j);
      xv *= scale;
    } else {
      load_n(xv, x + j, len - j, A(0));
      xv = iota<V>() < A(len - j) ? xv * scale : V{} + ninf;
    }
    std::memcpy(xs + j, &xv, sizeof xv);
    const V tv = renormalize ? xv + vld<V>(la + j) : xv;
    vm = tv > vm ? tv : vm;
    if (xs_max) vx = xv > vx ? xv : vx;
  }
  if (xs_max) *xs_max = hmax<V, A>(vx);
  return hmax<V, A>(vm);
}

// Whether a logit of a row whose max is -inf is NaN (then the row is NaN, not zeros).
template <typename A>
TGT inline bool row_is_nan(const A* xs, const A* la, bool renormalize, int64_t len) {
  for (int64_t j = 0; j < len; ++j) {
    const A t = renormalize ? xs[j] + la[j] : xs[j];
    if (t != t) return true;
  }
  return false;
}

// Whether the row max m is a finite number (else the row is all zeros, m = -inf, or NaN).
template <typename A>
TGT inline bool finite_max(A m) {
  return m > -A(__builtin_huge_val()) && m < A(__builtin_huge_val());
}

template <bool kLe0, typename A>
TGT inline A row_exp_impl(const A* xs, const A* la, bool renormalize, A m, int64_t len, A* e) {
  using V = typename AccOf<A>::vec;
  V sum = {};
  for (int64_t j = 0; j < round_up(len); j += kLanes) {
    V v = vld<V>(xs + j) - m;
    if (renormalize) v += vld<V>(la + j);
    if constexpr (kLe0) {
      vexp_le0(v);
    } else {
      vexp(v);
    }
    std::memcpy(e + j, &v, sizeof v);
    sum += v;
  }
  return hsum(sum);
}

// e = exp((xs - m) + log alpha) (renormalize) or exp(xs - m) over round_up(len) elements, m the
// finite row max; returns sum(e) (NaN if a logit is NaN: both exps keep NaN). Subtracting m before adding log alpha
// keeps alpha's effect when |xs| >> |log alpha|. The exact arguments are <= 0; rounded they exceed 0 by at most about
// ulp(m), so while |m| < 2^20 they stay below 0.34 and the cheaper vexp_le0 applies.
template <typename A>
TGT inline A row_exp(const A* xs, const A* la, bool renormalize, A m, int64_t len, A* e) {
  if (m > A(-1048576) && m < A(1048576)) return row_exp_impl<true, A>(xs, la, renormalize, m, len, e);
  return row_exp_impl<false, A>(xs, la, renormalize, m, len, e);
}

// Each row is read once (row_logits keeps scale * x in an L1-resident buffer), exponentiated once
// and written once.
template <typename T, typename AL>
TGT bool softmax_forward_impl(const SoftmaxArgs& a, int64_t begin, int64_t end) {
  using A = typename AccOf<T>::type;
  using V = typename AccOf<T>::vec;
  const int64_t len = a.len, lp = round_up(len), per_group = a.rows / a.groups;
  const Scratch<A> al(lp), xs(lp), t(lp);
  const auto* scores = static_cast<const T*>(a.scores);
  auto* out = static_cast<T*>(a.out);
  const A scale = static_cast<A>(a.scale);
  const A ninf = -A(__builtin_huge_val());
  bool ok = true;
  int64_t group = -1;
  for (int64_t r = begin; r < end; ++r) {
    if (r / per_group != group) {
      group = r / per_group;
      ok = load_alpha<A, AL>(a, group, a.renormalize, al.data) && ok;
    }
    T* o = out + r * len;
    const A m = row_logits<T, A>(scores + r * len, scale, al.data, a.renormalize, len, xs.data);
    if (!finite_max(m)) {  // no key left: zeros; a NaN or +inf logit: NaN
      const bool nan = m != ninf || row_is_nan(xs.data, al.data, a.renormalize, len);
      const A fill = nan ? A(__builtin_nan("")) : A(0);
      for (int64_t j = 0; j < len; ++j) sstore(o + j, fill);
      continue;
    }
    const A inv = A(1) / row_exp<A>(xs.data, al.data, a.renormalize, m, len, t.data);
    for (int64_t j = 0; j < len; j += kLanes) {
      V p = vld<V>(t.data + j) * inv;
      if (!a.renormalize) p *= vld<V>(al.data + j);
      vst_row(o, j, len, p);
    }
  }
  return ok;
}

template <typename T, typename AL>
TGT void softmax_backward_impl(const SoftmaxBackwardArgs& a, int64_t begin, int64_t end, void* part) {
  using A = typename AccOf<T>::type;
  using V = typename AccOf<T>::vec;
  const int64_t len = a.len, lp = round_up(len), per_group = a.rows / a.groups;
  const A scale = static_cast<A>(a.scale);
  const A ninf = -A(__builtin_huge_val());
  const auto* go = static_cast<const T*>(a.grad_out);
  auto* gs = static_cast<T*>(a.grad_scores);
  auto* ga_out = static_cast<A*>(part);

  if (a.scores == nullptr) {  // renormalize, from the output: ds = scale * p * (g - <g, p>)
    const auto* out = static_cast<const T*>(a.output);
    if (!gs) return;
    for (int64_t r = begin; r < end; ++r) {
      const T* gr = go + r * len;
      const T* pr = out + r * len;
      V dv = {};
      for (int64_t j = 0; j < len; j += kLanes) dv += vld_row<V>(gr, j, len) * vld_row<V>(pr, j, len);
      const A dot = hsum(dv);
      for (int64_t j = 0; j < len; j += kLanes) {
        vst_row(gs + r * len, j, len, scale * vld_row<V>(pr, j, len) * (vld_row<V>(gr, j, len) - dot));
      }
    }
    return;
  }

  // From the scores: recompute the forward's row statistics.
  const auto* scores = static_cast<const T*>(a.scores);
  const Scratch<A> xs(lp), al(lp), t(lp), ga(lp), araw(lp), qb(lp);
  const SoftmaxArgs fa{a.rows,  a.len,         a.groups, a.dtype, a.alpha_dtype,
                       a.scale, a.renormalize, a.scores, a.alpha, nullptr};
  // Renormalised alpha gradient: q = exp(xs - m) is needed besides e = exp((xs - m) + log alpha).
  // One exp serves both (e = alpha * q, 0 where alpha = 0) when no alpha is positive but below
  // 2^-40: then xs - m <= -log(alpha) + ulp(m) < 28 for alpha > 0 and q cannot overflow there.
  const bool want_q = a.renormalize && ga_out;
  bool one_exp = false;
  int64_t group = -1;
  for (int64_t r = begin; r < end; ++r) {
    if (r / per_group != group) {
      group = r / per_group;
      load_alpha<A, AL>(fa, group, a.renormalize, al.data);
      if (want_q) {
        load_alpha<A, AL>(fa, group, false, araw.data);
        one_exp = true;
        for (int64_t j = 0; j < len; ++j) {
          one_exp = one_exp && !(araw.data[j] > A(0) && araw.data[j] < A(0x1p-40));
        }
      }
    }
    A xs_max = ninf;
    const A m = row_logits<T, A>(scores + r * len, scale, al.data, a.renormalize, len, xs.data,
                                 want_q && one_exp ? &xs_max : nullptr);
    if (!finite_max(m)) {  // zero (NaN) row: zero (NaN) gradients
      const bool nan = m != ninf || row_is_nan(xs.data, al.data, a.renormalize, len);
      const A fill = nan ? A(__builtin_nan("")) : A(0);
      if (gs) {
        for (int64_t j = 0; j < len; ++j) sstore(gs + r * len + j, fill);
      }
      if (nan) {
        for (int64_t j = 0; j < len; ++j) ga.data[j] += fill;
      }
      continue;
    }
    const T* gr = go + r * len;
    T* gsr = gs ? gs + r * len : nullptr;
    V dv = {};
    A z;
    if (want_q && one_exp) {                  // e and q in one pass, with sum(e) and sum(g * e)
      V zv = {}, qv = {};                     // qv: sum(q), NaN iff a logit is NaN (also where e is 0)
      const bool le88 = xs_max - m <= A(88);  // q's arguments suit vexp_le0 (usual: no key far above m)
      for (int64_t j = 0; j < lp; j += kLanes) {
        V q = vld<V>(xs.data + j) - m;
        if (le88) {
          vexp_le0(q);
        } else {
          vexp(q);
        }
        const V av = vld<V>(araw.data + j);
        const V e = av == A(0) ? V{} : q * av;
        std::memcpy(qb.data + j, &q, sizeof q);
        std::memcpy(t.data + j, &e, sizeof e);
        zv += e;
        qv += q;
        dv += vld_row<V>(gr, j, len) * e;
      }
      z = hsum(zv) + hsum(qv) * A(0);
    } else {
      z = row_exp<A>(xs.data, al.data, a.renormalize, m, len, t.data);
      if (a.renormalize) {
        for (int64_t j = 0; j < len; j += kLanes) dv += vld_row<V>(gr, j, len) * vld<V>(t.data + j);
      } else {
        for (int64_t j = 0; j < len; j += kLanes) {
          dv += vld_row<V>(gr, j, len) * vld<V>(al.data + j) * vld<V>(t.data + j);
        }
      }
    }
    const A inv = A(1) / z, dot = hsum(dv) * inv, sinv = scale * inv;
    if (a.renormalize) {
      // p = e / Z, q = exp(scale * x - m) / Z (so p = alpha * q, also where alpha = 0):
      // d scores = scale * p * (g - dot), d alpha = q * (g - dot)
      for (int64_t j = 0; j < len; j += kLanes) {
        const V gd = vld_row<V>(gr, j, len) - dot;
        if (want_q) {
          V q;
          if (one_exp) {
            q = vld<V>(qb.data + j);
          } else {
            q = vld<V>(xs.data + j) - m;
            vexp(q);
          }
          const V acc = vld<V>(ga.data + j) + q * gd * inv;
          std::memcpy(ga.data + j, &acc, sizeof acc);
        }
        if (gsr) vst_row(gsr, j, len, vld<V>(t.data + j) * sinv * gd);
      }
    } else {
      // q = e / Z, p = alpha * q: d alpha = g * q, d scores = scale * q * (g * alpha - dot)
      for (int64_t j = 0; j < len; j += kLanes) {
        const V e = vld<V>(t.data + j), gv = vld_row<V>(gr, j, len);
        if (ga_out) {
          const V acc = vld<V>(ga.data + j) + gv * e * inv;
          std::memcpy(ga.data + j, &acc, sizeof acc);
        }
        if (gsr) vst_row(gsr, j, len, e * sinv * (gv * vld<V>(al.data + j) - dot));
      }
    }
  }
  if (ga_out) {
    for (int64_t j = 0; j < len; ++j) ga_out[j] = ga.data[j];
  }
}

// ---------------------------------------------------------------------------------------------
// Dispatch on the storage types.

template <template <typename, typename> class F, typename T, typename... Args>
TGT inline auto on_mask(ChorusDtype m, Args&&... args) {
  switch (m) {
    case ChorusDtype::kFloat: return F<T, float>::run(args...);
    case ChorusDtype::kDouble: return F<T, double>::run(args...);
    case ChorusDtype::kHalf: return F<T, Half>::run(args...);
    case ChorusDtype::kBFloat16: return F<T, BFloat16>::run(args...);
    case ChorusDtype::kByte: break;
  }
  return F<T, Byte>::run(args...);
}
template <template <typename, typename> class F, typename... Args>
TGT inline auto on_types(ChorusDtype d, ChorusDtype m, Args&&... args) {
  switch (d) {
    case ChorusDtype::kDouble: return on_mask<F, double>(m, args...);
    case ChorusDtype::kHalf: return on_mask<F, Half>(m, args...);
    case ChorusDtype::kBFloat16: return on_mask<F, BFloat16>(m, args...);
    default: break;
  }
  return on_mask<F, float>(m, args...);
}

template <typename T, typename M>
struct BlendForwardF {
  TGT static void run(const BlendArgs& a, int64_t b, int64_t e) { blend_forward_impl<T, M>(a, b, e); }
};
template <typename T, typename M>
struct BlendBackwardF {
  TGT static void run(const BlendBackwardArgs& a, int64_t b, int64_t e) { blend_backward_impl<T, M>(a, b, e); }
};
template <typename T, typename M>
struct BlendReduceF {
  TGT static void run(const BlendBackwardArgs& a, int64_t o, int64_t m0, int64_t m1, int64_t i0, int64_t i1, void* p) {
    if constexpr (!std::is_same<M, Byte>::value) blend_backward_reduce_impl<T, M>(a, o, m0, m1, i0, i1, p);
  }
};
template <typename T, typename M>
struct SoftmaxForwardF {
  TGT static bool run(const SoftmaxArgs& a, int64_t b, int64_t e) {
    if constexpr (std::is_same<M, Byte>::value) {
      return false;
    } else {
      return softmax_forward_impl<T, M>(a, b, e);
    }
  }
};
template <typename T, typename M>
struct SoftmaxBackwardF {
  TGT static void run(const SoftmaxBackwardArgs& a, int64_t b, int64_t e, void* p) {
    if constexpr (!std::is_same<M, Byte>::value) softmax_backward_impl<T, M>(a, b, e, p);
  }
};

TGT void blend_forward(const BlendArgs& a, int64_t b, int64_t e) {
  on_types<BlendForwardF>(a.dtype, a.mask_dtype, a, b, e);
}
TGT void blend_backward(const BlendBackwardArgs& a, int64_t b, int64_t e) {
  on_types<BlendBackwardF>(a.dtype, a.mask_dtype, a, b, e);
}
TGT void blend_backward_reduce(const BlendBackwardArgs& a, int64_t o, int64_t m0, int64_t m1, int64_t i0, int64_t i1,
                               void* p) {
  on_types<BlendReduceF>(a.dtype, a.mask_dtype, a, o, m0, m1, i0, i1, p);
}
TGT bool softmax_forward(const SoftmaxArgs& a, int64_t b, int64_t e) {
  return on_types<SoftmaxForwardF>(a.dtype, a.alpha_dtype, a, b, e);
}
TGT void softmax_backward(const SoftmaxBackwardArgs& a, int64_t b, int64_t e, void* p) {
  on_types<SoftmaxBackwardF>(a.dtype, a.alpha_dtype, a, b, e, p);
}

#undef TGT
#undef TGT_INL

}  // namespace

const ChorusKernels& chorus_kernels_table() {
  static const ChorusKernels k{NPU_OPS_CHORUS_NAME,    &blend_forward,   &blend_backward,
                               &blend_backward_reduce, &softmax_forward, &softmax_backward};
  return k;
}

}  // namespace npu_ops::cpu::NPU_OPS_CHORUS_ISA
