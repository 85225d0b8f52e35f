/*
 * mlcbuild's own implementation of <tvm/support/cuda/nvtx.h>, an interface
 * that the sources in the apache-tvm wheel include but do not ship.
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVTX profiling ranges.  This build has no CUDA/NVTX (it targets wasm), so
 * a range is an empty RAII object and compiles away.
 */
#ifndef TVM_SUPPORT_CUDA_NVTX_H_
#define TVM_SUPPORT_CUDA_NVTX_H_

#include <string>

namespace tvm {
namespace support {

/*! \brief Marks a named profiling range for the lifetime of the object (no-op here). */
class NVTXScopedRange {
 public:
  explicit NVTXScopedRange(const char* /*name*/) {}
  explicit NVTXScopedRange(const std::string& /*name*/) {}
  NVTXScopedRange(const NVTXScopedRange&) = delete;
  NVTXScopedRange& operator=(const NVTXScopedRange&) = delete;
};

}  // namespace support
}  // namespace tvm

/*! \brief Open a range named after the enclosing function (no-op here). */
#define TVM_NVTX_FUNC_SCOPE() ::tvm::support::NVTXScopedRange _tvm_nvtx_func_scope_(__func__)

#endif  // TVM_SUPPORT_CUDA_NVTX_H_
