#include "common/chorus_checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <sstream>
#include <string>

namespace npu_ops {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

// Dtypes spelled as in Python (torch.float32), so the fakes' messages read the same.
std::string dtype_str(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "torch.float32";
    case at::kDouble: return "torch.float64";
    case at::kHalf: return "torch.float16";
    case at::kBFloat16: return "torch.bfloat16";
    case at::kBool: return "torch.bool";
    case at::kByte: return "torch.uint8";
    case at::kChar: return "torch.int8";
    case at::kShort: return "torch.int16";
    case at::kInt: return "torch.int32";
    case at::kLong: return "torch.int64";
    default: return std::string("torch.") + c10::toString(t);
  }
}

bool is_float_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Pads `operand` to the data's rank and checks that it broadcasts to the data without changing
// the data's shape. Returns the padded shape.
std::vector<int64_t> padded_shape(const char* op, const char* name, const at::Tensor& operand, const char* data_name,
                                  at::IntArrayRef data) {
  const int64_t n = static_cast<int64_t>(data.size());
  TORCH_CHECK(operand.dim() <= n, op, ": ", name, " of shape ", shape_str(operand.sizes()), " does not broadcast to ",
              data_name, "'s shape ", shape_str(data), ": it has ", operand.dim(), " dims, at most ", n, " allowed");
  std::vector<int64_t> p(n, 1);
  const int64_t lead = n - operand.dim();
  for (int64_t i = 0; i < operand.dim(); ++i) p[lead + i] = operand.size(i);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(p[i] == data[i] || p[i] == 1, op, ": ", name, " of shape ", shape_str(operand.sizes()),
                " does not broadcast to ", data_name, "'s shape ", shape_str(data), ": ", data_name, " dim ", i,
                " has size ", data[i], ", ", name, " has ", p[i], " (expected ", data[i], " or 1)");
  }
  return p;
}

void finish_canon(BroadcastCanon& c) {
  c.expanded.clear();
  for (size_t i = 0; i < c.canonical.size(); ++i) {
    if (c.canonical[i] != c.padded[i]) c.expanded.push_back(static_cast<int64_t>(i));
  }
}

int64_t prod(at::IntArrayRef s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

constexpr const char* kBlend = "npu_ops.masked_blend";
constexpr const char* kSoftmax = "npu_ops.amplified_softmax";

}  // namespace

BlendLayout masked_blend_check(const at::Tensor& fresh, const at::Tensor& cached, const at::Tensor& mask) {
  const auto dt = fresh.scalar_type();
  TORCH_CHECK(is_float_dtype(dt), kBlend, ": fresh must have dtype float32, float64, float16 or bfloat16, got ",
              dtype_str(dt));
  TORCH_CHECK(cached.scalar_type() == dt, kBlend, ": cached must have fresh's dtype ", dtype_str(dt), ", got ",
              dtype_str(cached.scalar_type()));
  const auto mt = mask.scalar_type();
  TORCH_CHECK(mt == at::kBool || mt == at::kByte || is_float_dtype(mt), kBlend,
              ": mask must have dtype bool, uint8 (hard) or float32, float64, float16, bfloat16 (soft), got ",
              dtype_str(mt));
  TORCH_CHECK(cached.device() == fresh.device(), kBlend, ": cached is on ", cached.device(), " but fresh is on ",
              fresh.device());
  TORCH_CHECK(mask.device() == fresh.device(), kBlend, ": mask is on ", mask.device(), " but fresh is on ",
              fresh.device());
  TORCH_CHECK(cached.sizes().equals(fresh.sizes()), kBlend, ": cached must have fresh's shape ",
              shape_str(fresh.sizes()), ", got ", shape_str(cached.sizes()));

  BlendLayout l;
  l.hard = !is_float_dtype(mt);
  const at::IntArrayRef d = fresh.sizes();
  const size_t n = d.size();
  l.mask.padded = padded_shape(kBlend, "mask", mask, "fresh", d);
  // Broadcast segments: maximal runs of dims where the mask is 1 and the data is not (dims of
  // size 1 in the data belong to every run). The largest run becomes `mid`.
  size_t best_begin = 0, best_end = 0;
  int64_t best = 1;
  for (size_t i = 0; i < n;) {
    if (d[i] == 1 || l.mask.padded[i] == d[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    int64_t p = 1;
    while (j < n && (d[j] == 1 || l.mask.padded[j] != d[j])) p *= d[j++];
    if (p >= best) {  // ties: the later run (so [B, N, 1] masks stream whole rows)
      best = p;
      best_begin = i;
      best_end = j;
    }
    i = j;
  }
  l.mask.canonical.assign(d.begin(), d.end());
  if (best_end > best_begin) {
    for (size_t i = best_begin; i < best_end; ++i) l.mask.canonical[i] = 1;
    l.outer = prod(d, 0, best_begin);
    l.mid = prod(d, best_begin, best_end);
    l.inner = prod(d, best_end, n);
  } else {  // the mask has the data's shape
    l.outer = 1;
    l.mid = 1;
    l.inner = prod(d, 0, n);
  }
  finish_canon(l.mask);
  return l;
}

void masked_blend_check_grad(const at::Tensor& grad_output, const at::Tensor& fresh) {
  TORCH_CHECK(grad_output.sizes().equals(fresh.sizes()), kBlend, " backward: grad_output must have fresh's shape ",
              shape_str(fresh.sizes()), ", got ", shape_str(grad_output.sizes()));
  TORCH_CHECK(grad_output.scalar_type() == fresh.scalar_type(), kBlend,
              " backward: grad_output must have fresh's dtype ", dtype_str(fresh.scalar_type()), ", got ",
              dtype_str(grad_output.scalar_type()));
  TORCH_CHECK(grad_output.device() == fresh.device(), kBlend, " backward: grad_output is on ", grad_output.device(),
              " but fresh is on ", fresh.device());
}

SoftmaxLayout amplified_softmax_check(const at::Tensor& scores, const at::Tensor& alpha, double scale,
                                      const char* what) {
  const auto dt = scores.scalar_type();
  TORCH_CHECK(is_float_dtype(dt), kSoftmax, ": ", what, " must have dtype float32, float64, float16 or bfloat16, got ",
              dtype_str(dt));
  TORCH_CHECK(scores.dim() >= 1, kSoftmax, ": ", what, " must have at least 1 dim [..., L], got a 0-D tensor");
  TORCH_CHECK(is_float_dtype(alpha.scalar_type()), kSoftmax,
              ": alpha must have dtype float32, float64, float16 or bfloat16, got ", dtype_str(alpha.scalar_type()));
  TORCH_CHECK(alpha.device() == scores.device(), kSoftmax, ": alpha is on ", alpha.device(), " but ", what, " is on ",
              scores.device());
  TORCH_CHECK(std::isfinite(scale), kSoftmax, ": scale must be finite, got ", scale);

  SoftmaxLayout l;
  const at::IntArrayRef d = scores.sizes();
  const size_t n = d.size();
  l.len = d[n - 1];
  l.rows = prod(d, 0, n - 1);
  l.alpha.padded = padded_shape(kSoftmax, "alpha", alpha, what, d);
  // Rows of one group: the trailing leading dims where alpha is broadcast. Every other leading
  // broadcast dim, and a broadcast key dim, is expanded.
  size_t last_full = 0;  // one past the last leading dim where alpha varies
  for (size_t i = 0; i + 1 < n; ++i) {
    if (d[i] != 1 && l.alpha.padded[i] == d[i]) last_full = i + 1;
  }
  l.alpha.canonical.assign(d.begin(), d.end());
  for (size_t i = last_full; i + 1 < n; ++i) l.alpha.canonical[i] = 1;
  l.groups = prod(d, 0, last_full);
  finish_canon(l.alpha);
  return l;
}

void amplified_softmax_check_grad(const at::Tensor& grad_output, const at::Tensor& reference, const char* what) {
  TORCH_CHECK(grad_output.sizes().equals(reference.sizes()), kSoftmax, " backward: grad_output must have ", what,
              "'s shape ", shape_str(reference.sizes()), ", got ", shape_str(grad_output.sizes()));
  TORCH_CHECK(grad_output.scalar_type() == reference.scalar_type(), kSoftmax, " backward: grad_output must have ", what,
              "'s dtype ", dtype_str(reference.scalar_type()), ", got ", dtype_str(grad_output.scalar_type()));
  TORCH_CHECK(grad_output.device() == reference.device(), kSoftmax, " backward: grad_output is on ",
              grad_output.device(), " but ", what, " is on ", reference.device());
}

void amplified_softmax_report_bad_alpha(const at::Tensor& alpha) {
  const at::Tensor a = alpha.detach().to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor bad = (a < 0).logical_or(a.isfinite().logical_not()).flatten();
  const int64_t count = bad.sum().item<int64_t>();
  const at::Tensor hits = bad.nonzero();
  std::ostringstream where;
  if (hits.numel() > 0) {
    int64_t flat = hits[0][0].item<int64_t>();
    const double value = a.flatten()[flat].item<double>();
    std::vector<int64_t> idx(a.dim(), 0);
    for (int64_t i = a.dim() - 1; i >= 0; --i) {
      idx[i] = flat % a.size(i);
      flat /= a.size(i);
    }
    where << "alpha" << shape_str(idx) << " = " << value;
    if (count > 1) where << " (and " << count - 1 << " more)";
  } else {
    where << "a value that changed while the kernel ran";
  }
  TORCH_CHECK(false, kSoftmax, ": alpha must be finite and >= 0 (alpha = 0 removes a key), got ", where.str());
}

at::Tensor canonical_operand(const at::Tensor& operand, const BroadcastCanon& c) {
  return operand.reshape(c.padded).expand(c.canonical).contiguous();
}

at::Tensor operand_grad(const at::Tensor& grad_canonical, const BroadcastCanon& c, const at::Tensor& operand) {
  at::Tensor g = grad_canonical.view(c.canonical);
  if (!c.expanded.empty()) g = g.sum(c.expanded, /*keepdim=*/true);
  return g.reshape(operand.sizes()).to(operand.scalar_type());
}

}  // namespace npu_ops
