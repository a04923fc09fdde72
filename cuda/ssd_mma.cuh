// Warp-level tensor-core steps of the fast 16-bit SSD kernels: mma.sync m16n8k16 (bf16 / f16
// operands, f32 accumulators) with operands loaded by ldmatrix, so that a product's f32
// accumulator can be masked in registers and fed to the next product as its A operand (no
// shared-memory round trip), as flash attention does.
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"), lane = 4 g + t (g = lane / 4, t = lane % 4):
//   A (16 x 16, row-major): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..),
//                           a[3] = (g+8, 2t+8..)   (each register two 16-bit elements, the lower
//                           column in the low half)
//   B (16 x 8, "col"):      b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8.., n g)
//   C (16 x 8, f32):        c[0], c[1] = (g, 2t), (g, 2t+1); c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// Two C tiles side by side (columns 0..7 and 8..15) are, rounded to 16 bits, exactly one A
// operand of depth 16: A = {pack(c0[0], c0[1]), pack(c0[2], c0[3]), pack(c1[0], c1[1]),
// pack(c1[2], c1[3])}.
//
// ldmatrix.x4 loads four 8 x 8 matrices of 16-bit elements; lane i gives the address of row
// i % 8 of matrix i / 8. Shared-memory rows must be 16-byte aligned; a pitch of 16 bytes over a
// multiple of 128 keeps the 8 rows of a matrix in distinct banks.
#ifndef LYRA_CUDA_SSD_MMA_CUH_
#define LYRA_CUDA_SSD_MMA_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace lyra::cuda::ssd {

__device__ __forceinline__ unsigned SmemAddress(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The A operand (16 x 16) at `tile` (row-major, `pitch` elements): rows 0..15, columns 0..15.
template <typename E>
__device__ __forceinline__ void LoadA(unsigned (&a)[4], const E* tile, int pitch) {
  const int lane = threadIdx.x % 32;
  const E* row = tile + (lane % 16) * pitch + (lane / 16) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(SmemAddress(row)));
}

// The A operand (16 x 16) of a matrix stored transposed: element (m, k) at tile[k pitch + m].
template <typename E>
__device__ __forceinline__ void LoadATransposed(unsigned (&a)[4], const E* tile, int pitch) {
  const int lane = threadIdx.x % 32, j = lane / 8;
  const E* row = tile + ((lane % 8) + (j / 2) * 8) * pitch + (j % 2) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
               : "r"(SmemAddress(row)));
}

// B operands of two adjacent n-tiles (n 0..7 -> b[0..1], n 8..15 -> b[2..3]), depth 16, from a
// matrix stored n-major: element (k, n) at tile[n pitch + k] (the rows of B Cᵀ-like products).
template <typename E>
__device__ __forceinline__ void LoadBNMajor(unsigned (&b)[4], const E* tile, int pitch) {
  const int lane = threadIdx.x % 32;
  const E* row = tile + ((lane % 8) + (lane / 16) * 8) * pitch + ((lane / 8) % 2) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(SmemAddress(row)));
}

// B operands of two adjacent n-tiles, depth 16, from a matrix stored k-major: element (k, n) at
// tile[k pitch + n] (x-like operands: rows are time steps).
template <typename E>
__device__ __forceinline__ void LoadBKMajor(unsigned (&b)[4], const E* tile, int pitch) {
  const int lane = threadIdx.x % 32;
  const E* row = tile + ((lane % 8) + ((lane / 8) % 2) * 8) * pitch + (lane / 16) * 8;
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(SmemAddress(row)));
}

// The same loads from a shared-space byte address the caller computed (per-thread lane offsets
// hoisted out of the loops: see the *LaneOffset helpers below).
__device__ __forceinline__ void LdMatrix(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void LdMatrixTrans(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// Byte offsets of this lane's row address for a tile of 16-bit elements with `pitch` elements
// per row: LoadA (LdMatrix), LoadBNMajor (LdMatrix), LoadBKMajor and LoadATransposed
// (LdMatrixTrans). Add the tile's byte address (and k * 2 bytes along k).
__device__ __forceinline__ unsigned ALaneOffset(int pitch) {
  const int lane = threadIdx.x % 32;
  return static_cast<unsigned>(((lane % 16) * pitch + (lane / 16) * 8) * 2);
}
__device__ __forceinline__ unsigned BNMajorLaneOffset(int pitch) {
  const int lane = threadIdx.x % 32;
  return static_cast<unsigned>((((lane % 8) + (lane / 16) * 8) * pitch + ((lane / 8) % 2) * 8) * 2);
}
__device__ __forceinline__ unsigned BKMajorLaneOffset(int pitch) {
  const int lane = threadIdx.x % 32;
  return static_cast<unsigned>((((lane % 8) + ((lane / 8) % 2) * 8) * pitch + (lane / 16) * 8) * 2);
}
__device__ __forceinline__ unsigned ATransposedLaneOffset(int pitch) {
  const int lane = threadIdx.x % 32, j = lane / 8;
  return static_cast<unsigned>((((lane % 8) + (j / 2) * 8) * pitch + (j % 2) * 8) * 2);
}

// c += a b for one 16 x 8 tile; b points at two registers (one n-tile of a LoadB* pair).
template <typename E>
__device__ __forceinline__ void MmaStep(float (&c)[4], const unsigned (&a)[4], const unsigned* b) {
  if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    static_assert(std::is_same_v<E, __half>, "mma operands are bf16 or f16");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// Two floats as one register of two 16-bit elements (lo in the low half), rounded to nearest.
template <typename E>
__device__ __forceinline__ unsigned Pack2(float lo, float hi) {
  if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const unsigned*>(&v);
  }
}

// The two floats of a packed register.
template <typename E>
__device__ __forceinline__ float2 Unpack2(unsigned v) {
  if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v));
  } else {
    return __half22float2(*reinterpret_cast<const __half2*>(&v));
  }
}

}  // namespace lyra::cuda::ssd

#endif  // LYRA_CUDA_SSD_MMA_CUH_
