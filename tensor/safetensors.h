// safetensors files (https://github.com/huggingface/safetensors): read memory-mapped, write
// atomically.
//
// Layout of a file:
//   bytes [0, 8)        N, the header length, a little-endian u64
//   bytes [8, 8 + N)    a UTF-8 JSON object:
//                         {"__metadata__": {"key": "value", ...},            (optional)
//                          "name": {"dtype": "F32", "shape": [2, 3],
//                                   "data_offsets": [begin, end]}, ...}
//   bytes [8 + N, ...)  the data buffer; a tensor's bytes are [begin, end) of the buffer,
//                       row-major and little-endian.
//
// dtypes: F64 F32 F16 BF16 I64 I32 BOOL map one to one onto Lyra's dtypes; every other
// safetensors dtype (I8, U8, I16, U16, U32, U64, F8_E4M3, ...) is Unimplemented.
//
//   LYRA_ASSIGN_OR_RETURN(SafetensorsContents contents, ReadSafetensors("model.safetensors"));
//   LYRA_ASSIGN_OR_RETURN(Tensor w, contents.Get("backbone.embeddings.weight"));
//   LYRA_RETURN_IF_ERROR(WriteSafetensors("out.safetensors", {{"w", w}}, {{"format", "pt"}}));
#ifndef LYRA_TENSOR_SAFETENSORS_H_
#define LYRA_TENSOR_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tensor/tensor.h"

namespace lyra {

// Headers larger than this are rejected as corrupt (the reference implementation's limit).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsContents {
  // The file the tensors were read from (named in error messages).
  std::string path;
  // Tensors in the order of their data offsets (ties: by name). Each is a contiguous CPU tensor
  // viewing the memory-mapped file; the mapping lives as long as any of them. The mapping is
  // private and copy-on-write: writing to a tensor never changes the file. A tensor whose bytes
  // are not aligned to its element size in the file (possible with headers of other writers) is
  // copied into aligned memory instead.
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor named `name`, or NotFound naming it and the file.
  absl::StatusOr<Tensor> Get(absl::string_view name) const;
};

// Reads and validates a safetensors file.
//
// NotFound for a missing file. DataLoss, naming the file and what is wrong, for: a file shorter
// than 8 bytes; a header length beyond the file or above kMaxSafetensorsHeaderBytes; a header
// that is not valid UTF-8 JSON, not an object, or repeats a key; "__metadata__" that is not an
// object of strings; a tensor entry that is not an object, lacks dtype/shape/data_offsets or has
// them with the wrong JSON types; negative or non-integer shape entries; data_offsets that are
// not [begin, end] with begin <= end; end beyond the data buffer (a truncated file);
// end - begin != numel * element size; two tensors whose bytes overlap; BOOL bytes other than
// 0 and 1. Unimplemented, naming the tensor, for a dtype Lyra does not have or a rank above
// Lyra's maximum. Gaps between tensors and trailing bytes after the last one are allowed.
absl::StatusOr<SafetensorsContents> ReadSafetensors(const std::string& path);

// Writes `tensors` (any device and layout; each is copied to the host in row-major order, one
// at a time) in the given order, with `metadata`. The header lists "__metadata__" first (when
// not empty), then the tensors in the given order, each as
// {"dtype":..,"shape":[..],"data_offsets":[begin,end]}, compact, padded with spaces to a
// multiple of 8 bytes as the reference implementation does; tensor data follows back to back.
//
// Atomic: writes `path + ".tmp.<pid>"`, fsyncs it, renames it over `path` and fsyncs the
// directory, so an existing file is never left half-written; on any error the temp file is
// removed and `path` is untouched. InvalidArgument for duplicate names, the reserved name
// "__metadata__", an undefined tensor, or a name or metadata string that is not valid UTF-8.
// I/O failures carry the errno's code (e.g. NotFound for a missing directory) and the path.
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<std::pair<std::string, Tensor>>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace lyra

#endif  // LYRA_TENSOR_SAFETENSORS_H_
