// Kernel bodies of the Chorus CPU ops. Included once per instruction set by
// chorus_kernels.cpp, with NPU_OPS_CHORUS_ISA naming the namespace and
// NPU_OPS_CHORUS_TARGET the target attribute every function here carries
// (empty for the generic build). Everything has internal linkage, and only
// functions defined here get the attribute, so no code compiled for AVX-512
// can be shared with the other variants. No includes: the including file
// provides <cstdint> and <cstring> before the first inclusion.
//
// Data are processed 16 elements at a time in GCC vector registers of the
// compute type (float, double for float64 data): one zmm of floats on
// AVX-512, two ymm on AVX2, four xmm otherwise. float16/bfloat16 are loaded
// and stored natively (round to nearest even) and computed in float.
#ifndef NPU_OPS_CHORUS_ISA
#error "define NPU_OPS_CHORUS_ISA before including chorus_kernel_impl.h"
#endif
#ifndef NPU_OPS_CHORUS_TARGET
#error "define NPU_OPS_CHORUS_TARGET before including chorus_kernel_impl.h"
#endif

namespace npu_ops::cpu::NPU_OPS_CHORUS_ISA {
namespace {

#define TGT NPU_OPS_CHORUS_TARGET

constexpr int64_t kLanes = 16;

struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};
struct Byte {
  uint8_t bits;
};

typedef float VF __attribute__((vector_size(64)));
typedef double VD __attribute__((vector_size(128)));
typedef int32_t VI32 __attribute__((vector_size(64)));
typedef int64_t VI64 __attribute__((vector_size(128)));
typedef int16_t VI16 __attribute__((vector_size(32)));
typedef int8_t VI8 __attribute__((vector_size(16)));
typedef uint8_t VU8 __attribute__((vector_size(16)));
typedef uint16_t VU16 __attribute__((vector_size(32)));
typedef uint32_t VU32 __attribute__((vector_size(64)));
typedef uint64_t VU64 __attribute__((vector_size(128)));
typedef _Float16 VH __attribute__((vector_size(32)));

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

// Raw bits of 16 elements of a storage type, and the matching select mask.
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

TGT inline float f32(float v) {
  return v;
}
TGT inline float f32(double v) {
  return static_cast<float>(v);
}
TGT inline float f32(Half v) {
  _Float16 h;
  std::memcpy(&h, &v.bits, sizeof h);
  return static_cast<float>(h);
}
TGT inline float f32(BFloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
TGT inline void cvt(float& d, float v) {
  d = v;
}
TGT inline void cvt(float& d, double v) {
  d = static_cast<float>(v);
}
TGT inline void cvt(float& d, Half v) {
  d = f32(v);
}
TGT inline void cvt(float& d, BFloat16 v) {
  d = f32(v);
}
TGT inline void cvt(double& d, double v) {
  d = v;
}
TGT inline void cvt(double& d, float v) {
  d = v;
}
TGT inline void cvt(double& d, Half v) {
  d = f32(v);
}
TGT inline void cvt(double& d, BFloat16 v) {
  d = f32(v);
}
template <typename A, typename T>
TGT inline A sload(const T* p) {
  A d;
  cvt(d, *p);
  return d;
}
TGT inline void sstore(float* p, float v) {
  *p = v;
}
TGT inline void sstore(double* p, double v) {
  *p = v;
}
TGT inline void sstore(Half* p, float v) {
  const _Float16 h = static_cast<_Float16>(v);
  std::memcpy(&p->bits, &h, sizeof h);
}
TGT inline void sstore(BFloat16* p, float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  // Round to nearest even; NaN becomes the canonical quiet NaN (as c10::BFloat16).
  p->bits = (u & 0x7fffffffu) > 0x7f800000u ? uint16_t{0x7fc0}
                                            : static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---------------------------------------------------------------------------------------------
// 16-element vector loads (any storage type to the compute vector) and stores.

TGT inline void vload(VF& d, const float* p) {
  std::memcpy(&d, p, sizeof d);
}
TGT inline void vload(VF& d, const double* p) {
  VD t;
  std::memcpy(&t, p, sizeof t);
  d = __builtin_convertvector(t, VF);
}
TGT inline void vload(VF& d, const Half* p) {
  VH h;
  std::memcpy(&h, p, sizeof h);
  d = __builtin_convertvector(h, VF);
}
TGT inline void vload(VF& d, const BFloat16* p) {
  VU16 u;
  std::memcpy(&u, p, sizeof u);
  const VU32 w = __builtin_convertvector(u, VU32) << 16;
  std::memcpy(&d, &w, sizeof d);
}
TGT inline void vload(VD& d, const double* p) {
  std::memcpy(&d, p, sizeof d);
}
template <typename T>
TGT inline void vload(VD& d, const T* p) {
  VF f;
  vload(f, p);
  d = __builtin_convertvector(f, VD);
}
template <typename V, typename T>
TGT inline V vld(const T* p) {
  V v;
  vload(v, p);
  return v;
}
TGT inline void vstore(float* p, const VF& v) {
  std::memcpy(p, &v, sizeof v);
}
TGT inline void vstore(double* p, const VD& v) {
  std::memcpy(p, &v, sizeof v);
}
TGT inline void vstore(Half* p, const VF& v) {
  const VH h = __builtin_convertvector(v, VH);
  std::memcpy(p, &h, sizeof h);
}
TGT inline void vstore(BFloat16* p, const VF& v) {
  VU32 u;
  std::memcpy(&u, &v, sizeof u);
  const VU32 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const VI32 nan = (u & 0x7fffffffu) > 0x7f800000u;
  const VU32 r = nan ? VU32{} + 0x7fc0u : rounded;
  const VU16 b = __builtin_convertvector(r, VU16);
  std::memcpy(p, &b, sizeof b);
}

TGT inline float hsum(const VF& v) {
  float t[16];
  std::memcpy(t, &v, sizeof t);
  for (int w = 8; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  }
  return t[0];
}
TGT inline double hsum(const VD& v) {
  double t[16];
  std::memcpy(t, &v, sizeof t);
  for (int w = 8; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  }
  return t[0];
}
template <typename V, typename A>
TGT inline A hmax(const V& v) {
  A t[16];
  std::memcpy(t, &v, sizeof t);
  A m = t[0];
  for (int i = 1; i < 16; ++i) m = t[i] > m ? t[i] : m;
  return m;
}

// v = exp(v) for 16 floats: Cephes-style range reduction and degree-6 polynomial (about 1 ulp on the
// normal range). exp(-inf) = 0, exp(+inf) = inf, NaN stays NaN; results below the smallest normal
// float (x < -87.34, exp(x) < 1.2e-38) are flushed to 0.
TGT inline void vexp(VF& v) {
  const VF x = v;
  const float lo = -87.3365447f, hi = 88.7228391f;
  VF xc = x < lo ? VF{} + lo : x;
  xc = xc > hi ? VF{} + hi : xc;
  xc = x != x ? VF{} : xc;  // NaN lanes: computed on 0, restored below
  const VF n = __builtin_convertvector(
      __builtin_convertvector(xc * 1.44269504088896341f + (xc < 0.0f ? VF{} - 0.5f : VF{} + 0.5f), VI32),
      VF);  // round half away from zero
  VF r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  VF p = VF{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2^n for n in [-126, 128]; n = 128 as 2^127 * 2 keeps the exponent field in range.
  const VI32 ni = __builtin_convertvector(n, VI32);
  const VI32 big = ni > 127;  // -1 where n == 128
  const VI32 bits = (ni + big + 127) << 23;
  VF scale;
  std::memcpy(&scale, &bits, sizeof scale);
  VF y = p * scale;
  y = big ? y * 2.0f : y;
  y = x < lo ? VF{} : y;
  y = x > hi ? VF{} + __builtin_inff() : y;
  v = x != x ? x : y;
}
TGT inline void vexp(VD& v) {
  double t[16];
  std::memcpy(t, &v, sizeof t);
  for (int i = 0; i < 16; ++i) t[i] = __builtin_exp(t[i]);
  std::memcpy(&v, t, sizeof v);
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

// src[0, n) converted into dst[0, n); dst[n, round_up(n)) = fill.
template <typename A, typename T>
TGT inline void stage(const T* src, int64_t n, A* dst, A fill) {
  using V = typename AccOf<A>::vec;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const V v = vld<V>(src + j);
    std::memcpy(dst + j, &v, sizeof v);
  }
  for (; j < n; ++j) dst[j] = sload<A>(src + j);
  for (; j < round_up(n); ++j) dst[j] = fill;
}
template <typename T, typename A>
TGT inline void unstage(const A* src, int64_t n, T* dst) {
  using V = typename AccOf<A>::vec;
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) vstore(dst + j, vld<V>(src + j));
  for (; j < n; ++j) sstore(dst + j, src[j]);
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

// Lane indices 0..15 of a compute vector.
template <typename V>
TGT inline V iota() {
  V v;
  for (int i = 0; i < kLanes; ++i) v[i] = i;
  return v;
}
// The first n (< 16) elements of p into v, the other lanes = fill.
template <typename V, typename T, typename A>
TGT inline void load_n(V& v, const T* p, int64_t n, A fill) {
  A tmp[kLanes];
  for (int64_t i = 0; i < kLanes; ++i) tmp[i] = i < n ? sload<A>(p + i) : fill;
  std::memcpy(&v, tmp, sizeof v);
}
// The first n (< 16) lanes of v into p.
template <typename T, typename V>
TGT inline void store_n(T* p, const V& v, int64_t n) {
  typename std::remove_reference<decltype(v[0])>::type tmp[kLanes];
  std::memcpy(tmp, &v, sizeof tmp);
  for (int64_t i = 0; i < n; ++i) sstore(p + i, tmp[i]);
}

// One pass over a score row: xs = scale * x, padded with -inf up to a multiple of 16. Returns the
// row max m of the logits t = xs (+ log alpha when renormalizing): NaN if a t is NaN, -inf when
// every t is -inf (no key left).
template <typename T, typename A>
TGT inline A row_logits(const T* x, A scale, const A* la, bool renormalize, int64_t len, A* xs) {
  using V = typename AccOf<A>::vec;
  using M = decltype(V{} != V{});
  const A ninf = -A(__builtin_huge_val());
  V vm = V{} + ninf;
  M nan = {};
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
    nan |= tv != tv;
  }
  for (int i = 0; i < kLanes; ++i) {
    if (nan[i]) return A(__builtin_nan(""));
  }
  return hmax<V, A>(vm);
}

// e = exp((xs - m) + log alpha) (renormalize) or exp(xs - m) over round_up(len) elements; returns
// sum(e). Subtracting m before adding log alpha keeps alpha's effect when |xs| >> |log alpha|.
template <typename A>
TGT inline A row_exp(const A* xs, const A* la, bool renormalize, A m, int64_t len, A* e) {
  using V = typename AccOf<A>::vec;
  V sum = {};
  for (int64_t j = 0; j < round_up(len); j += kLanes) {
    V v = vld<V>(xs + j) - m;
    if (renormalize) v += vld<V>(la + j);
    vexp(v);
    std::memcpy(e + j, &v, sizeof v);
    sum += v;
  }
  return hsum(sum);
}

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
    if (m == ninf || m != m) {  // no key left (or a NaN logit): zeros (NaN)
      const A fill = m == ninf ? A(0) : m;
      for (int64_t j = 0; j < len; ++j) sstore(o + j, fill);
      continue;
    }
    const A inv = A(1) / row_exp<A>(xs.data, al.data, a.renormalize, m, len, t.data);
    for (int64_t j = 0; j < len; j += kLanes) {
      V p = vld<V>(t.data + j) * inv;
      if (!a.renormalize) p *= vld<V>(al.data + j);
      if (j + kLanes <= len) {
        vstore(o + j, p);
      } else {
        store_n(o + j, p, len - j);
      }
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
  const Scratch<A> gbuf(lp), pbuf(lp);

  if (a.scores == nullptr) {  // renormalize, from the output: ds = scale * p * (g - <g, p>)
    const auto* out = static_cast<const T*>(a.output);
    for (int64_t r = begin; r < end; ++r) {
      stage<A, T>(go + r * len, len, gbuf.data, A(0));
      stage<A, T>(out + r * len, len, pbuf.data, A(0));
      V dv = {};
      for (int64_t j = 0; j < lp; j += kLanes) dv += vld<V>(gbuf.data + j) * vld<V>(pbuf.data + j);
      const A dot = hsum(dv);
      for (int64_t j = 0; j < lp; j += kLanes) {
        const V d = scale * vld<V>(pbuf.data + j) * (vld<V>(gbuf.data + j) - dot);
        std::memcpy(pbuf.data + j, &d, sizeof d);
      }
      if (gs) unstage<T, A>(pbuf.data, len, gs + r * len);
    }
    return;
  }

  // From the scores: recompute the forward's row statistics.
  const auto* scores = static_cast<const T*>(a.scores);
  const Scratch<A> xs(lp), al(lp), t(lp), ga(lp);
  const SoftmaxArgs fa{a.rows,  a.len,         a.groups, a.dtype, a.alpha_dtype,
                       a.scale, a.renormalize, a.scores, a.alpha, nullptr};
  int64_t group = -1;
  for (int64_t r = begin; r < end; ++r) {
    if (r / per_group != group) {
      group = r / per_group;
      load_alpha<A, AL>(fa, group, a.renormalize, al.data);
    }
    const A m = row_logits<T, A>(scores + r * len, scale, al.data, a.renormalize, len, xs.data);
    if (m == ninf || m != m) {  // zero (NaN) row: zero (NaN) gradients
      const A fill = m == ninf ? A(0) : m;
      if (gs) {
        for (int64_t j = 0; j < len; ++j) sstore(gs + r * len + j, fill);
      }
      if (m != m) {
        for (int64_t j = 0; j < len; ++j) ga.data[j] += m;
      }
      continue;
    }
    const A inv = A(1) / row_exp<A>(xs.data, al.data, a.renormalize, m, len, t.data);
    stage<A, T>(go + r * len, len, gbuf.data, A(0));
    V dv = {};
    if (a.renormalize) {
      // p = e / Z; q = exp(scale * x - m) / Z (so p = alpha * q, also where alpha = 0)
      for (int64_t j = 0; j < lp; j += kLanes) {
        const V p = vld<V>(t.data + j) * inv;
        std::memcpy(t.data + j, &p, sizeof p);
        dv += vld<V>(gbuf.data + j) * p;
      }
      const A dot = hsum(dv);
      for (int64_t j = 0; j < lp; j += kLanes) {
        const V gd = vld<V>(gbuf.data + j) - dot;
        if (ga_out) {
          V q = vld<V>(xs.data + j) - m;
          vexp(q);
          V acc = vld<V>(ga.data + j) + q * inv * gd;
          std::memcpy(ga.data + j, &acc, sizeof acc);
        }
        const V d = scale * vld<V>(t.data + j) * gd;
        std::memcpy(pbuf.data + j, &d, sizeof d);
      }
    } else {
      // q = e / Z, p = alpha * q
      for (int64_t j = 0; j < lp; j += kLanes) {
        const V q = vld<V>(t.data + j) * inv;
        std::memcpy(t.data + j, &q, sizeof q);
        dv += vld<V>(gbuf.data + j) * vld<V>(al.data + j) * q;
      }
      const A dot = hsum(dv);
      for (int64_t j = 0; j < lp; j += kLanes) {
        const V q = vld<V>(t.data + j), gv = vld<V>(gbuf.data + j);
        if (ga_out) {
          const V acc = vld<V>(ga.data + j) + gv * q;
          std::memcpy(ga.data + j, &acc, sizeof acc);
        }
        const V d = scale * q * (gv * vld<V>(al.data + j) - dot);
        std::memcpy(pbuf.data + j, &d, sizeof d);
      }
    }
    if (gs) unstage<T, A>(pbuf.data, len, gs + r * len);
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

}  // namespace

const ChorusKernels& chorus_kernels_table() {
  static const ChorusKernels k{NPU_OPS_CHORUS_NAME,    &blend_forward,   &blend_backward,
                               &blend_backward_reduce, &softmax_forward, &softmax_backward};
  return k;
}

}  // namespace npu_ops::cpu::NPU_OPS_CHORUS_ISA
