// Every npu_ops schema, in one place. Backends add kernels with
// TORCH_LIBRARY_IMPL(npu_ops, <DispatchKey>, m) in their own files; fakes and
// autograd are registered from Python (python/npu_ops/<area>/ops.py).
#include <torch/library.h>

TORCH_LIBRARY(npu_ops, m) {
  // Multi-scale deformable attention (Deformable DETR / mmcv semantics).
  // set_python_module names the module holding the ops' fakes, so torch can
  // say "import it" when the library is loaded without the Python package.
  m.set_python_module("npu_ops.msda.ops");
  m.def(
      "msda(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor");
  // Returns (grad_value, grad_sampling_locations, grad_attention_weights).
  m.def(
      "_msda_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, "
      "Tensor attention_weights) -> (Tensor, Tensor, Tensor)");

  // Name of the instruction-set variant the CPU kernels run (diagnostics, tests).
  m.def("_cpu_capability() -> str");
}

// Chorus (inter-request caching for video DiT serving). Fragments, so each
// can name the module holding its fakes and autograd.
TORCH_LIBRARY_FRAGMENT(npu_ops, m) {
  m.set_python_module("npu_ops.chorus.masked_blend");
  // out = cached + mask * (fresh - cached); mask broadcasts to fresh.
  m.def("masked_blend(Tensor fresh, Tensor cached, Tensor mask) -> Tensor");
  // Returns (grad_fresh, grad_cached, grad_mask); outputs not asked for by
  // output_mask are empty tensors.
  m.def(
      "_masked_blend_backward(Tensor grad_output, Tensor fresh, Tensor cached, Tensor mask, "
      "bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_FRAGMENT(npu_ops, m) {
  m.set_python_module("npu_ops.chorus.amplified_softmax");
  // softmax(scale * scores + log(alpha)) over the last dim (renormalize), or
  // softmax(scale * scores) * alpha; alpha broadcasts to scores.
  m.def("amplified_softmax(Tensor scores, Tensor alpha, *, float scale=1.0, bool renormalize=True) -> Tensor");
  // Returns (grad_scores, grad_alpha); recomputes the forward from scores when
  // given, else uses the output (renormalize, scores gradient only). Outputs
  // not asked for by output_mask are empty tensors.
  m.def(
      "_amplified_softmax_backward(Tensor grad_output, Tensor? output, Tensor? scores, Tensor alpha, float scale, "
      "bool renormalize, bool[2] output_mask) -> (Tensor, Tensor)");
}

// Multi-scale deformable attention v2 (RT-DETRv2 / D-FINE / DEIM): per-level
// point counts (num_points_list) and method "default" (bilinear) or "discrete".
TORCH_LIBRARY_FRAGMENT(npu_ops, m) {
  m.set_python_module("npu_ops.msda_v2.ops");
  m.def(
      "msda_v2(Tensor value, Tensor spatial_shapes, Tensor level_start_index, Tensor sampling_locations, "
      "Tensor attention_weights, int[] num_points_list, str method) -> Tensor");
  // Returns (grad_value, grad_sampling_locations, grad_attention_weights).
  m.def(
      "_msda_v2_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights, int[] num_points_list, str method) "
      "-> (Tensor, Tensor, Tensor)");
}
