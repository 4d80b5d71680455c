// The AscendC emulator: a host C++17 implementation of the subset of the AscendC API that the
// kernels in csrc/ascend/kernels/ use (see ALLOWLIST), strict about the documented dav-2201 rules.
// Kernels include <kernel_operator.h>; the include path decides whether they get CANN's header
// (bisheng, real NPU) or this one (g++, CI).
#pragma once

#include "emu_copy.h"
#include "emu_runtime.h"
#include "emu_sync.h"
#include "emu_tensor.h"
#include "emu_types.h"
#include "emu_vector.h"
#include "emu_vector_special.h"
