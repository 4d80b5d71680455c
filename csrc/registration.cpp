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
