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

inline float floor_of(float v) { return __builtin_floorf(v); }
inline double floor_of(double v) { return __builtin_floor(v); }

// 16-bit storage types; conversions to float are exact.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

inline float to_acc(float v) { return v; }
inline double to_acc(double v) { return v; }
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
  acc_t weight[4];   // bilinear weights, without the attention weight
  acc_t fx, fy;      // fractional parts (lw, lh in mmcv's notation)
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

template <typename in_t>
void forward_impl(const MsdaForwardArgs& a, int64_t begin, int64_t end) {
  using acc_t = typename AccOf<in_t>::type;
  const MsdaDims& d = a.d;
  const int64_t C = d.channels, H = d.num_heads, LP = d.num_levels * d.num_points;
  const int64_t pix_stride = H * C;
  const auto* value = static_cast<const in_t*>(a.value);
  const auto* loc = static_cast<const in_t*>(a.loc);
  const auto* attn = static_cast<const in_t*>(a.attn);
  auto* out = static_cast<acc_t*>(a.out);
  const Scratch<in_t> zero_row(C);  // all-zero bits is 0 for every in_t

  for (int64_t item = begin; item < end; ++item) {  // item = b * Nq + q
    const int64_t b = item / d.num_queries;
    for (int64_t h = 0; h < H; ++h) {
      acc_t* __restrict o = out + (item * H + h) * C;
      for (int64_t c = 0; c < C; ++c) o[c] = acc_t(0);
      const in_t* vbase = value + (b * d.num_keys * H + h) * C;
      const in_t* lp = loc + (item * H + h) * LP * 2;
      const in_t* ap = attn + (item * H + h) * LP;
      for (int64_t l = 0; l < d.num_levels; ++l) {
        const MsdaLevelDesc lv = a.levels[l];
        const in_t* vlevel = vbase + lv.start * pix_stride;
        for (int64_t p = 0; p < d.num_points; ++p, lp += 2, ++ap) {
          Footprint<acc_t> f;
          if (!footprint<acc_t>(to_acc(lp[0]), to_acc(lp[1]), lv.height, lv.width, f)) continue;
          const acc_t w = to_acc(*ap);
          const in_t* r[4];
          acc_t aw[4];
          for (int k = 0; k < 4; ++k) {
            r[k] = f.valid[k] ? vlevel + f.pixel[k] * pix_stride : zero_row.data;
            aw[k] = f.valid[k] ? w * f.weight[k] : acc_t(0);
          }
          const in_t *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
          for (int64_t c = 0; c < C; ++c) {
            o[c] += aw[0] * to_acc(r0[c]) + aw[1] * to_acc(r1[c]) + aw[2] * to_acc(r2[c]) + aw[3] * to_acc(r3[c]);
          }
        }
      }
    }
  }
}

// Sums `lanes` partial sums in a fixed order, so results do not depend on
// how the compiler vectorised the loop that filled them.
template <typename acc_t, int N>
inline acc_t sum_lanes(const acc_t (&lanes)[N]) {
  acc_t s = acc_t(0);
  for (int j = 0; j < N; ++j) s += lanes[j];
  return s;
}

template <typename in_t>
void backward_impl(const MsdaBackwardArgs& a, int64_t b, int64_t h, int64_t q_begin, int64_t q_end,
                   void* gv_slice, int64_t row_stride) {
  using acc_t = typename AccOf<in_t>::type;
  constexpr int kLanes = 64 / sizeof(acc_t);  // one cache line of partial sums per corner
  const MsdaDims& d = a.d;
  const int64_t C = d.channels, H = d.num_heads, L = d.num_levels, P = d.num_points, LP = L * P;
  const int64_t pix_stride = H * C;
  const int64_t c_main = C - C % kLanes;
  const auto* value = static_cast<const in_t*>(a.value);
  const auto* loc = static_cast<const in_t*>(a.loc);
  const auto* attn = static_cast<const in_t*>(a.attn);
  const auto* grad_out = static_cast<const in_t*>(a.grad_out);
  auto* grad_loc = static_cast<acc_t*>(a.grad_loc);
  auto* grad_attn = static_cast<acc_t*>(a.grad_attn);
  auto* gv = static_cast<acc_t*>(gv_slice);

  const Scratch<in_t> zero_row(C);
  const Scratch<acc_t> sink(4 * C);  // write target of out-of-bounds corners
  const Scratch<acc_t> g(C);
  const in_t* vbase = value + (b * d.num_keys * H + h) * C;

  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t row = (b * d.num_queries + q) * H + h;  // (b, q, h)
    const in_t* go = grad_out + row * C;
    for (int64_t c = 0; c < C; ++c) g.data[c] = to_acc(go[c]);
    const acc_t* __restrict gp = g.data;
    const in_t* lp = loc + row * LP * 2;
    const in_t* ap = attn + row * LP;
    acc_t* gl = grad_loc + row * LP * 2;
    acc_t* ga = grad_attn + row * LP;
    for (int64_t l = 0; l < L; ++l) {
      const MsdaLevelDesc lv = a.levels[l];
      const in_t* vlevel = vbase + lv.start * pix_stride;
      acc_t* gvlevel = gv + lv.start * row_stride;
      for (int64_t p = 0; p < P; ++p, lp += 2, ++ap, gl += 2, ++ga) {
        Footprint<acc_t> f;
        if (!footprint<acc_t>(to_acc(lp[0]), to_acc(lp[1]), lv.height, lv.width, f)) {
          gl[0] = gl[1] = *ga = acc_t(0);
          continue;
        }
        const acc_t w = to_acc(*ap);
        const in_t* r[4];
        acc_t* t[4];
        acc_t aw[4];
        for (int k = 0; k < 4; ++k) {
          r[k] = f.valid[k] ? vlevel + f.pixel[k] * pix_stride : zero_row.data;
          t[k] = f.valid[k] ? gvlevel + f.pixel[k] * row_stride : sink.data + k * C;
          aw[k] = f.valid[k] ? w * f.weight[k] : acc_t(0);
        }
        const in_t *r0 = r[0], *r1 = r[1], *r2 = r[2], *r3 = r[3];
        acc_t *__restrict t0 = t[0], *__restrict t1 = t[1], *__restrict t2 = t[2], *__restrict t3 = t[3];
        // s_k = <g, corner_k>, accumulated in kLanes partial sums.
        acc_t s0[kLanes] = {}, s1[kLanes] = {}, s2[kLanes] = {}, s3[kLanes] = {};
        for (int64_t c0 = 0; c0 < c_main; c0 += kLanes) {
          for (int j = 0; j < kLanes; ++j) {
            const int64_t c = c0 + j;
            const acc_t gc = gp[c];
            s0[j] += gc * to_acc(r0[c]);
            s1[j] += gc * to_acc(r1[c]);
            s2[j] += gc * to_acc(r2[c]);
            s3[j] += gc * to_acc(r3[c]);
            t0[c] += aw[0] * gc;
            t1[c] += aw[1] * gc;
            t2[c] += aw[2] * gc;
            t3[c] += aw[3] * gc;
          }
        }
        for (int64_t c = c_main; c < C; ++c) {
          const int j = static_cast<int>(c - c_main);
          const acc_t gc = gp[c];
          s0[j] += gc * to_acc(r0[c]);
          s1[j] += gc * to_acc(r1[c]);
          s2[j] += gc * to_acc(r2[c]);
          s3[j] += gc * to_acc(r3[c]);
          t0[c] += aw[0] * gc;
          t1[c] += aw[1] * gc;
          t2[c] += aw[2] * gc;
          t3[c] += aw[3] * gc;
        }
        const acc_t d00 = sum_lanes(s0), d01 = sum_lanes(s1), d10 = sum_lanes(s2), d11 = sum_lanes(s3);
        const acc_t gx = acc_t(1) - f.fx, gy = acc_t(1) - f.fy;
        *ga = f.weight[0] * d00 + f.weight[1] * d01 + f.weight[2] * d10 + f.weight[3] * d11;
        gl[0] = static_cast<acc_t>(lv.width) * w * (gy * (d01 - d00) + f.fy * (d11 - d10));
        gl[1] = static_cast<acc_t>(lv.height) * w * (gx * (d10 - d00) + f.fx * (d11 - d01));
      }
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
