// Shared helpers of the compiled CPU kernels: a channels-last float32 map seen as rows of C floats, and the
// fixed row blocks that make every reduction deterministic whatever the thread count.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace darts_forge {

constexpr int64_t kBlock = 256;  // rows per reduction block: the partition never depends on the thread count

struct Rows {  // a (B, C, H, W) tensor seen as N = B·H·W rows of C contiguous floats, rows `stride` floats apart
  const float* data;
  int64_t stride;
};

inline Rows as_rows(const at::Tensor& t, int64_t C, const char* what) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == at::kFloat && t.device().is_cpu(), what,
              ": expected a 4-d float32 CPU tensor, got sizes ", t.sizes(), " and dtype ", t.scalar_type());
  TORCH_CHECK(t.size(1) == C, what, ": expected ", C, " channels, got ", t.size(1));
  const int64_t B = t.size(0), H = t.size(2), W = t.size(3);
  // The row stride, read from the innermost spatial dimension of more than one element (size-1 ones have any).
  const int64_t s = W > 1 ? t.stride(3) : H > 1 ? t.stride(2) : B > 1 ? t.stride(0) : C;
  const bool rows = (C == 1 || t.stride(1) == 1) && s >= C && (W == 1 || t.stride(3) == s) &&
                    (H == 1 || t.stride(2) == W * s) && (B == 1 || t.stride(0) == H * W * s);
  TORCH_CHECK(rows, what, ": expected channels-last rows (channel stride 1, one row stride), got strides ",
              t.strides());
  return {t.data_ptr<float>(), s};
}

// Scratch memory for a kernel's temporaries, kept by the calling thread and reused: it grows to the largest size
// needed and is never freed. Temporaries allocated and freed between the long-lived tensors a kernel returns
// leave holes in glibc's heap that stay resident and raise the peak RSS (docs/performance.md).
// `slot` tells apart the buffers one kernel holds at once.
template <typename T>
T* scratch(int slot, size_t n) {
  thread_local std::vector<T> buffers[4];
  std::vector<T>& b = buffers[slot];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Element k of a 1-d float32 tensor of any stride, as a double, without a converted copy.
inline double element(const at::Tensor& t, int64_t k) {
  return static_cast<double>(t.data_ptr<float>()[k * t.stride(0)]);
}

inline int64_t num_blocks(int64_t N) { return (N + kBlock - 1) / kBlock; }

// An elementwise pass over rows: each_row(n) for every row n, rows in parallel in the same fixed blocks.
template <typename F>
inline void for_rows(int64_t N, F&& each_row) {
  at::parallel_for(0, num_blocks(N), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t n = b0 * kBlock; n < std::min(N, b1 * kBlock); ++n) each_row(n);
  });
}

// A deterministic per-block reduction over rows, blocks in parallel: for each fixed block of kBlock rows, zero
// its slot of `width` floats in `part` (num_blocks(N)·width floats), then call add_row(n, slot) for its rows in
// order. Callers add the slots in block order in double precision.
template <typename F>
inline void block_sums(int64_t N, int64_t width, float* part, F&& add_row) {
  at::parallel_for(0, num_blocks(N), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      float* slot = part + blk * width;
      std::fill(slot, slot + width, 0.f);
      for (int64_t n = blk * kBlock; n < std::min(N, (blk + 1) * kBlock); ++n) add_row(n, slot);
    }
  });
}

// Per-channel sums of (y − shift) and (y − shift)² per block (C sums, then C squares), shift = y's first row, so
// that E[y²] − E[y]² does not cancel: floats within a block, doubles across blocks (finish_moments).
inline void moments(const Rows& y, int64_t N, int64_t C, float* part) {
  const float* shift = y.data;
  block_sums(N, 2 * C, part, [&](int64_t n, float* slot) {
    const float* row = y.data + n * y.stride;
    float* s2 = slot + C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float d = row[c] - shift[c];
      slot[c] += d;
      s2[c] += d * d;
    }
  });
}

// Mean and biased variance of channel c from the block partials `part` of moments().
inline void finish_moments(const float* part, int64_t nb, int64_t C, int64_t c, int64_t N, float shift,
                           double* mean, double* var) {
  double t1 = 0, t2 = 0;
  for (int64_t blk = 0; blk < nb; ++blk) {
    t1 += part[blk * C * 2 + c];
    t2 += part[blk * C * 2 + C + c];
  }
  const double m = t1 / N;
  *var = std::max(t2 / N - m * m, 0.0);
  *mean = m + shift;
}

}  // namespace darts_forge
