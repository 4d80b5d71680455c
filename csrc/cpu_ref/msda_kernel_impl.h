// msda CPU kernel bodies. Included once per instruction set with
// NPU_OPS_CPU_CAPABILITY naming the namespace; must not include torch headers
// (an inline function compiled here with AVX-512 could otherwise be picked by
// the linker for callers on older CPUs).
//
// Semantics are mmcv's CUDA kernel: pixel coordinate x = loc_x * W - 0.5, a
// point contributes only if -1 < y < H and -1 < x < W (NaN/Inf fail these
// tests and so contribute nothing and get zero gradients), every corner is
// bounds-checked (zero padding), attention weights enter linearly.
#ifndef NPU_OPS_CPU_CAPABILITY
#error "define NPU_OPS_CPU_CAPABILITY before including msda_kernel_impl.h"
#endif

#include <cstdint>
#include <cstring>

#include "cpu_ref/msda_kernel.h"

namespace npu_ops::cpu::NPU_OPS_CPU_CAPABILITY {
namespace {

#define NPU_OPS_STR2(x) #x
#define NPU_OPS_STR(x) NPU_OPS_STR2(x)

// Zero-initialised heap array. Local (internal linkage) on purpose: a
// std::vector instantiated here would be a weak symbol compiled with this
// file's ISA flags that the linker may share with the other variants.
template <typename T>
struct Scratch {
  T* data;
  explicit Scratch(int64_t n) : data(new T[static_cast<size_t>(n > 0 ? n : 1)]()) {}
  ~Scratch() { delete[] data; }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

inline float floor_of(float v) {
  return __builtin_floorf(v);
}
inline double floor_of(double v) {
  return __builtin_floor(v);
}

// 16-bit storage types; conversions to float are exact.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline float to_acc(float v) {
  return v;
}
inline double to_acc(double v) {
  return v;
}
inline float to_acc(BFloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float to_acc(Half v) {
  _Float16 h;  // F16C builds turn this into vcvtph2ps
  std::memcpy(&h, &v.bits, sizeof h);
  return static_cast<float>(h);
}

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};

// Bilinear footprint of one sampling point on one level.
template <typename acc_t>
struct Footprint {
  int64_t pixel[4];  // level-relative pixel index of the corners (y0x0, y0x1, y1x0, y1x1)
  bool valid[4];
  acc_t weight[4];  // bilinear weights, without the attention weight
  acc_t fx, fy;     // fractional parts (lw, lh in mmcv's notation)
};

// Returns false when the point is dropped (outside (-1, size) or NaN/Inf).
template <typename acc_t>
inline bool footprint(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width, Footprint<acc_t>& f) {
  const acc_t x = loc_x * static_cast<acc_t>(width) - acc_t(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(height) - acc_t(0.5);
  if (!(y > acc_t(-1) && x > acc_t(-1) && y < static_cast<acc_t>(height) && x < static_cast<acc_t>(width))) {
    return false;
  }
  const acc_t x0f = floor_of(x), y0f = floor_of(y);
  const int64_t x0 = static_cast<int64_t>(x0f), y0 = static_cast<int64_t>(y0f);
  f.fx = x - x0f;
  f.fy = y - y0f;
  const acc_t gx = acc_t(1) - f.fx, gy = acc_t(1) - f.fy;
  const bool x0ok = x0 >= 0, x1ok = x0 + 1 < width, y0ok = y0 >= 0, y1ok = y0 + 1 < height;
  f.pixel[0] = y0 * width + x0;
  f.pixel[1] = f.pixel[0] + 1;
  f.pixel[2] = f.pixel[0] + width;
  f.pixel[3] = f.pixel[2] + 1;
  f.valid[0] = y0ok && x0ok;
  f.valid[1] = y0ok && x1ok;
  f.valid[2] = y1ok && x0ok;
  f.valid[3] = y1ok && x1ok;
  f.weight[0] = gy * gx;
  f.weight[1] = gy * f.fx;
  f.weight[2] = f.fy * gx;
  f.weight[3] = f.fy * f.fx;
  return true;
}

// One 64-byte SIMD register of the accumulation type (GCC vector extension:
// 1 zmm on AVX-512, 2 ymm on AVX2, 4 xmm otherwise).
template <typename acc_t>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
};

template <typename V, typename acc_t>
inline V vload(const acc_t* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V>
inline V vload(const BFloat16* p) {
  typedef uint16_t u16x16 __attribute__((vector_size(32)));
  typedef uint32_t u32x16 __attribute__((vector_size(64)));
  u16x16 u;
  std::memcpy(&u, p, sizeof u);
  const u32x16 w = __builtin_convertvector(u, u32x16) << 16;
  V v;
  std::memcpy(&v, &w, sizeof v);
  return v;
}
template <typename V>
inline V vload(const Half* p) {
  typedef _Float16 f16x16 __attribute__((vector_size(32)));
  f16x16 h;
  std::memcpy(&h, p, sizeof h);
  return __builtin_convertvector(h, V);
}
template <typename V, typename acc_t>
inline void vstore(acc_t* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
// Pairwise lane sums in a fixed order: the summation order never depends on
// the variant's register width. (Variants still differ in the last bits where
// the compiler fuses multiply-adds; forbidding that costs ~25% here.)
inline float hsum(VecOf<float>::type v) {
  typedef float f8 __attribute__((vector_size(32)));
  typedef float f4 __attribute__((vector_size(16)));
  const f8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const f4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (b[0] + b[2]) + (b[1] + b[3]);
}
inline double hsum(VecOf<double>::type v) {
  typedef double d4 __attribute__((vector_size(32)));
  const d4 a = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  return (a[0] + a[2]) + (a[1] + a[3]);
}

template <typename in_t>
inline void prefetch_row(const in_t* row, int64_t channels) {
  const char* p = reinterpret_cast<const char*>(row);
  const int64_t bytes = channels * static_cast<int64_t>(sizeof(in_t));
  for (int64_t off = 0; off < bytes && off < 512; off += 64) __builtin_prefetch(p + off);
}

template <typename in_t>
void forward_impl(const MsdaForwardArgs& a, int64_t begin, int64_t end) {
  using acc_t = typename AccOf<in_t>::type;
  using V = typename VecOf<acc_t>::type;
  constexpr int64_t N = sizeof(V) / sizeof(acc_t);
  const MsdaDims& d = a.d;
  const int64_t C = d.channels, H = d.num_heads, LP = d.num_levels * d.num_points;
  const int64_t pix_stride = a.value_strides.pixel;
  const auto* value = static_cast<const in_t*>(a.value);
  const auto* loc = static_cast<const in_t*>(a.loc);
  const auto* attn = static_cast<const in_t*>(a.attn);
  auto* out = static_cast<acc_t*>(a.out);
  // In-bounds corners of a (query, head): row pointer and attention-times-
  // bilinear weight, so the channel loops below only stream. Two sets: the
  // corners of the next (query, head) are found and prefetched before the
  // current one's channel loop, so its row fetches overlap that work (the
  // decoder cases are bound by the latency of these random row reads).
  const Scratch<const in_t*> rows(2 * 4 * LP);
  const Scratch<acc_t> wts(2 * 4 * LP);
  // Fills set `buf` for work unit `u` = item * H + h; returns its corner count.
  auto gather = [&](int64_t u, int buf) -> int64_t {
    const in_t** rs = rows.data + buf * 4 * LP;
    acc_t* ws = wts.data + buf * 4 * LP;
    const int64_t item = u / H, h = u % H, b = item / d.num_queries;
    const in_t* vbase = value + b * a.value_strides.batch + h * a.value_strides.head;
    const in_t* lp = loc + u * LP * 2;
    const in_t* ap = attn + u * LP;
    int64_t n = 0;
    for (int64_t l = 0; l < d.num_levels; ++l) {
      const MsdaLevelDesc lv = a.levels[l];
      const in_t* vlevel = vbase + lv.start * pix_stride;
      for (int64_t p = 0; p < d.num_points; ++p, lp += 2, ++ap) {
        Footprint<acc_t> f;
        if (!footprint<acc_t>(to_acc(lp[0]), to_acc(lp[1]), lv.height, lv.width, f)) continue;
        const acc_t w = to_acc(*ap);
        for (int k = 0; k < 4; ++k) {
          if (!f.valid[k]) continue;
          rs[n] = vlevel + f.pixel[k] * pix_stride;
          ws[n] = w * f.weight[k];
          prefetch_row(rs[n], C);
          ++n;
        }
      }
    }
    return n;
  };

  const int64_t u_end = end * H;
  int64_t n_next = begin * H < u_end ? gather(begin * H, 0) : 0;
  for (int64_t u = begin * H; u < u_end; ++u) {
    const int cur = static_cast<int>((u - begin * H) & 1);
    const int64_t n = n_next;
    if (u + 1 < u_end) n_next = gather(u + 1, cur ^ 1);
    {
      acc_t* o = out + u * C;
      const in_t* const* r = rows.data + cur * 4 * LP;
      const acc_t* wt = wts.data + cur * 4 * LP;
      int64_t c = 0;
      // Two accumulator sets (even / odd corners) keep two FMA chains in flight.
      for (; c + 2 * N <= C; c += 2 * N) {
        V a0 = {}, a1 = {}, b0 = {}, b1 = {};
        int64_t i = 0;
        for (; i + 1 < n; i += 2) {
          a0 += wt[i] * vload<V>(r[i] + c);
          a1 += wt[i] * vload<V>(r[i] + c + N);
          b0 += wt[i + 1] * vload<V>(r[i + 1] + c);
          b1 += wt[i + 1] * vload<V>(r[i + 1] + c + N);
        }
        if (i < n) {
          a0 += wt[i] * vload<V>(r[i] + c);
          a1 += wt[i] * vload<V>(r[i] + c + N);
        }
        vstore(o + c, a0 + b0);
        vstore(o + c + N, a1 + b1);
      }
      for (; c + N <= C; c += N) {
        V a0 = {}, b0 = {};
        int64_t i = 0;
        for (; i + 1 < n; i += 2) {
          a0 += wt[i] * vload<V>(r[i] + c);
          b0 += wt[i + 1] * vload<V>(r[i + 1] + c);
        }
        if (i < n) a0 += wt[i] * vload<V>(r[i] + c);
        vstore(o + c, a0 + b0);
      }
      for (; c < C; ++c) {
        acc_t s = acc_t(0);
        for (int64_t i = 0; i < n; ++i) s += wt[i] * to_acc(r[i][c]);
        o[c] = s;
      }
    }
  }
}

// Per sampling point state the backward keeps between its two phases.
template <typename in_t, typename acc_t>
struct PointGrad {
  const in_t* row[4];  // value rows (a zero row when out of bounds)
  acc_t* target[4];    // grad_value rows (a private sink when out of bounds)
  acc_t aw[4];         // attention * bilinear weight (0 when out of bounds)
  acc_t weight[4];     // bilinear weights
  acc_t w, fx, fy, width, height;
  bool active;
};

template <typename in_t>
void backward_impl(const MsdaBackwardArgs& a, int64_t b, int64_t h, int64_t q_begin, int64_t q_end, void* gv_slice,
                   int64_t row_stride) {
  using acc_t = typename AccOf<in_t>::type;
  using V = typename VecOf<acc_t>::type;
  constexpr int64_t N = sizeof(V) / sizeof(acc_t);
  const MsdaDims& d = a.d;
  const int64_t C = d.channels, H = d.num_heads, L = d.num_levels, P = d.num_points, LP = L * P;
  const int64_t pix_stride = a.value_strides.pixel;
  const int64_t c_vec = C - C % N;
  const auto* value = static_cast<const in_t*>(a.value);
  const auto* loc = static_cast<const in_t*>(a.loc);
  const auto* attn = static_cast<const in_t*>(a.attn);
  const auto* grad_out = static_cast<const in_t*>(a.grad_out);
  auto* grad_loc = static_cast<acc_t*>(a.grad_loc);
  auto* grad_attn = static_cast<acc_t*>(a.grad_attn);
  auto* gv = static_cast<acc_t*>(gv_slice);

  const Scratch<in_t> zero_row(C);
  const Scratch<acc_t> sink(4 * C);  // write target of out-of-bounds corners, one row per corner
  const Scratch<acc_t> g(C);
  const Scratch<PointGrad<in_t, acc_t>> pts(LP);
  const in_t* vbase = value + b * a.value_strides.batch + h * a.value_strides.head;

  // Rows of consecutive queries of one head are H rows apart: prefetch the
  // next query's inputs while this one is processed.
  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t row = (b * d.num_queries + q) * H + h;  // (b, q, h)
    if (q + 1 < q_end) {
      prefetch_row(loc + (row + H) * LP * 2, LP * 2);
      prefetch_row(attn + (row + H) * LP, LP);
      prefetch_row(grad_out + (row + H) * C, C);
    }
    const in_t* go = grad_out + row * C;
    for (int64_t c = 0; c < C; ++c) g.data[c] = to_acc(go[c]);
    const in_t* lp = loc + row * LP * 2;
    const in_t* ap = attn + row * LP;
    // Phase 1: footprints of every point, with their rows prefetched.
    for (int64_t l = 0, i = 0; l < L; ++l) {
      const MsdaLevelDesc lv = a.levels[l];
      const in_t* vlevel = vbase + lv.start * pix_stride;
      acc_t* gvlevel = gv + lv.start * row_stride;
      for (int64_t p = 0; p < P; ++p, ++i, lp += 2, ++ap) {
        PointGrad<in_t, acc_t>& pt = pts.data[i];
        Footprint<acc_t> f;
        pt.active = footprint<acc_t>(to_acc(lp[0]), to_acc(lp[1]), lv.height, lv.width, f);
        if (!pt.active) continue;
        pt.w = to_acc(*ap);
        pt.fx = f.fx;
        pt.fy = f.fy;
        pt.width = static_cast<acc_t>(lv.width);
        pt.height = static_cast<acc_t>(lv.height);
        for (int k = 0; k < 4; ++k) {
          pt.weight[k] = f.weight[k];
          if (f.valid[k]) {
            pt.row[k] = vlevel + f.pixel[k] * pix_stride;
            pt.target[k] = gvlevel + f.pixel[k] * row_stride;
            pt.aw[k] = pt.w * f.weight[k];
            prefetch_row(pt.row[k], C);
            prefetch_row(pt.target[k], C);  // read for the add, then written
          } else {
            pt.row[k] = zero_row.data;
            pt.target[k] = sink.data + k * C;
            pt.aw[k] = acc_t(0);
          }
        }
      }
    }
    // Phase 2: per point, the four dot products <g, corner> and the scatter
    // of aw * g into the four grad_value rows, in one pass over the channels.
    acc_t* gl = grad_loc + row * LP * 2;
    acc_t* ga = grad_attn + row * LP;
    for (int64_t i = 0; i < LP; ++i) {
      const PointGrad<in_t, acc_t>& pt = pts.data[i];
      if (!pt.active) {
        gl[2 * i] = gl[2 * i + 1] = ga[i] = acc_t(0);
        continue;
      }
      const in_t *r0 = pt.row[0], *r1 = pt.row[1], *r2 = pt.row[2], *r3 = pt.row[3];
      acc_t *t0 = pt.target[0], *t1 = pt.target[1], *t2 = pt.target[2], *t3 = pt.target[3];
      V s0 = {}, s1 = {}, s2 = {}, s3 = {};
      for (int64_t c = 0; c < c_vec; c += N) {
        const V gc = vload<V>(g.data + c);
        s0 += gc * vload<V>(r0 + c);
        s1 += gc * vload<V>(r1 + c);
        s2 += gc * vload<V>(r2 + c);
        s3 += gc * vload<V>(r3 + c);
        vstore(t0 + c, vload<V>(t0 + c) + pt.aw[0] * gc);
        vstore(t1 + c, vload<V>(t1 + c) + pt.aw[1] * gc);
        vstore(t2 + c, vload<V>(t2 + c) + pt.aw[2] * gc);
        vstore(t3 + c, vload<V>(t3 + c) + pt.aw[3] * gc);
      }
      // grad_attn and the two location gradients are fixed linear combinations
      // of the dot products d_k = <g, corner_k>; combine the lanes first so
      // only three horizontal sums are needed.
      const acc_t gx = acc_t(1) - pt.fx, gy = acc_t(1) - pt.fy;
      acc_t dw = hsum(pt.weight[0] * s0 + pt.weight[1] * s1 + pt.weight[2] * s2 + pt.weight[3] * s3);
      acc_t dx = hsum(gy * (s1 - s0) + pt.fy * (s3 - s2));
      acc_t dy = hsum(gx * (s2 - s0) + pt.fx * (s3 - s1));
      for (int64_t c = c_vec; c < C; ++c) {
        const acc_t gc = g.data[c];
        const acc_t d00 = gc * to_acc(r0[c]), d01 = gc * to_acc(r1[c]);
        const acc_t d10 = gc * to_acc(r2[c]), d11 = gc * to_acc(r3[c]);
        dw += pt.weight[0] * d00 + pt.weight[1] * d01 + pt.weight[2] * d10 + pt.weight[3] * d11;
        dx += gy * (d01 - d00) + pt.fy * (d11 - d10);
        dy += gx * (d10 - d00) + pt.fx * (d11 - d01);
        t0[c] += pt.aw[0] * gc;
        t1[c] += pt.aw[1] * gc;
        t2[c] += pt.aw[2] * gc;
        t3[c] += pt.aw[3] * gc;
      }
      ga[i] = dw;
      gl[2 * i] = pt.width * pt.w * dx;
      gl[2 * i + 1] = pt.height * pt.w * dy;
    }
  }
}

void forward(const MsdaForwardArgs& a, int64_t begin, int64_t end) {
  switch (a.dtype) {
    case MsdaDtype::kFloat: return forward_impl<float>(a, begin, end);
    case MsdaDtype::kDouble: return forward_impl<double>(a, begin, end);
    case MsdaDtype::kHalf: return forward_impl<Half>(a, begin, end);
    case MsdaDtype::kBFloat16: return forward_impl<BFloat16>(a, begin, end);
  }
}

void backward(const MsdaBackwardArgs& a, int64_t b, int64_t h, int64_t q0, int64_t q1, void* gv, int64_t stride) {
  switch (a.dtype) {
    case MsdaDtype::kFloat: return backward_impl<float>(a, b, h, q0, q1, gv, stride);
    case MsdaDtype::kDouble: return backward_impl<double>(a, b, h, q0, q1, gv, stride);
    case MsdaDtype::kHalf: return backward_impl<Half>(a, b, h, q0, q1, gv, stride);
    case MsdaDtype::kBFloat16: return backward_impl<BFloat16>(a, b, h, q0, q1, gv, stride);
  }
}

}  // namespace

const MsdaKernels& msda_kernels() {
  static const MsdaKernels k{NPU_OPS_STR(NPU_OPS_CPU_CAPABILITY), &forward, &backward};
  return k;
}

}  // namespace npu_ops::cpu::NPU_OPS_CPU_CAPABILITY
