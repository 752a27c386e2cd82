// relu(BN(u)) (non-affine BatchNorm on batch statistics) and its backward, for float32 channels-last maps on
// CPU: the middle of a DARTS separable conv (kernels/sepconv.py). Forward is one statistics pass and one pass that
// writes the activation (PyTorch: BatchNorm, then a separate ReLU pass). The backward takes u, not the
// activation: the mask x̂ > 0 and x̂ itself come from u and the saved statistics, so the recomputation in
// sepconv.py need not materialise relu(x̂) at all where no weight gradient wants it (the α-only passes).
//
// Math, per channel c, with N = rows, x̂ = (u − μ)·r, r = 1/sqrt(σ² + eps), a = relu(x̂), g = ∂L/∂a:
//   g' = g·[x̂ > 0]   (ReLU backward)
//   ∂L/∂u = r·(g' − Σ_n g'/N − x̂·r·S/N),  S = Σ_n g'·(u − μ)   (BatchNorm backward)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "rows.h"

namespace darts_forge {

static void check_stats(const at::Tensor& mean, const at::Tensor& rstd, const char* what) {
  TORCH_CHECK(mean.scalar_type() == at::kFloat && rstd.scalar_type() == at::kFloat && mean.is_contiguous() &&
                  rstd.is_contiguous(),
              what, ": expected contiguous float32 statistics");
}

static at::Tensor like_cl(const at::Tensor& t) {
  return at::empty(t.sizes(), t.options().memory_format(at::MemoryFormat::ChannelsLast));
}

// a = relu((u − mean)·rstd), rows in parallel.
static void apply(const Rows& u, int64_t N, int64_t C, const float* mu, const float* r, float* a) {
  for_rows(N, [&](int64_t n) {
    const float* row = u.data + n * u.stride;
    float* arow = a + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) arow[c] = std::max((row[c] - mu[c]) * r[c], 0.f);
  });
}

// Returns (relu(BN(u)), mean (C,), rstd (C,), biased variance (C,)).
std::vector<at::Tensor> bn_relu_forward(const at::Tensor& u, double eps) {
  const int64_t C = u.size(1), N = u.numel() / C, nb = num_blocks(N);
  const Rows ur = as_rows(u, C, "bn_relu_forward");
  float* part = scratch<float>(0, nb * C * 2);
  moments(ur, N, C, part);
  at::Tensor mean = at::empty({C}, u.options()), rstd = at::empty({C}, u.options()), var = at::empty({C}, u.options());
  for (int64_t c = 0; c < C; ++c) {
    double m, v;
    finish_moments(part, nb, C, c, N, ur.data[c], &m, &v);
    mean.data_ptr<float>()[c] = static_cast<float>(m);
    rstd.data_ptr<float>()[c] = static_cast<float>(1.0 / std::sqrt(v + eps));
    var.data_ptr<float>()[c] = static_cast<float>(v);
  }
  at::Tensor a = like_cl(u);
  apply(ur, N, C, mean.data_ptr<float>(), rstd.data_ptr<float>(), a.data_ptr<float>());
  return {a, mean, rstd, var};
}

// relu((u − mean)·rstd) on saved statistics (the recomputation of the backward).
at::Tensor bn_relu_apply(const at::Tensor& u, const at::Tensor& mean, const at::Tensor& rstd) {
  const int64_t C = u.size(1), N = u.numel() / C;
  const Rows ur = as_rows(u, C, "bn_relu_apply");
  TORCH_CHECK(mean.numel() == C && rstd.numel() == C, "bn_relu_apply: statistics of the wrong size");
  check_stats(mean, rstd, "bn_relu_apply");
  at::Tensor a = like_cl(u);
  apply(ur, N, C, mean.data_ptr<float>(), rstd.data_ptr<float>(), a.data_ptr<float>());
  return a;
}

// ∂L/∂u from g = ∂L/∂relu(BN(u)).
at::Tensor bn_relu_backward(const at::Tensor& grad, const at::Tensor& u, const at::Tensor& mean,
                            const at::Tensor& rstd) {
  const int64_t C = u.size(1), N = u.numel() / C, nb = num_blocks(N);
  TORCH_CHECK(grad.sizes() == u.sizes(), "bn_relu_backward: gradient of shape ", grad.sizes(), " for input ",
              u.sizes());
  TORCH_CHECK(mean.numel() == C && rstd.numel() == C, "bn_relu_backward: statistics of the wrong size");
  const Rows ur = as_rows(u, C, "bn_relu_backward"), g = as_rows(grad, C, "bn_relu_backward");
  check_stats(mean, rstd, "bn_relu_backward");
  const float* mu = mean.data_ptr<float>();
  const float* r = rstd.data_ptr<float>();
  float* part = scratch<float>(0, nb * C * 2);  // per block: Σ g'·(u − μ), then Σ g'
  block_sums(N, 2 * C, part, [&](int64_t n, float* s) {
    const float* grow = g.data + n * g.stride;
    const float* row = ur.data + n * ur.stride;
    float* sg = s + C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float d = row[c] - mu[c];
      const float gp = d > 0.f ? grow[c] : 0.f;  // x̂ > 0 exactly where u > μ (r > 0)
      s[c] += gp * d;
      sg[c] += gp;
    }
  });
  float* A = scratch<float>(1, 3 * C);
  float* B = A + C;
  float* D = A + 2 * C;
  for (int64_t c = 0; c < C; ++c) {
    double S = 0, G = 0;
    for (int64_t blk = 0; blk < nb; ++blk) {
      S += part[blk * C * 2 + c];
      G += part[blk * C * 2 + C + c];
    }
    // ∂L/∂u = A·g' − B·(u − μ) + D,  A = r,  B = r³·S/N,  D = −r·G/N
    A[c] = r[c];
    B[c] = static_cast<float>(static_cast<double>(r[c]) * r[c] * r[c] * S / N);
    D[c] = static_cast<float>(-static_cast<double>(r[c]) * G / N);
  }
  at::Tensor gu = like_cl(u);
  float* o = gu.data_ptr<float>();
  for_rows(N, [&](int64_t n) {
    const float* grow = g.data + n * g.stride;
    const float* row = ur.data + n * ur.stride;
    float* orow = o + n * C;
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float d = row[c] - mu[c];
      orow[c] = A[c] * (d > 0.f ? grow[c] : 0.f) - B[c] * d + D[c];
    }
  });
  return gu;
}

}  // namespace darts_forge

TORCH_LIBRARY_FRAGMENT(darts_forge, m) {
  m.def("bn_relu_forward(Tensor u, float eps) -> Tensor[]");
  m.def("bn_relu_apply(Tensor u, Tensor mean, Tensor rstd) -> Tensor");
  m.def("bn_relu_backward(Tensor grad, Tensor u, Tensor mean, Tensor rstd) -> Tensor");
}

TORCH_LIBRARY_IMPL(darts_forge, CPU, m) {
  m.impl("bn_relu_forward", &darts_forge::bn_relu_forward);
  m.impl("bn_relu_apply", &darts_forge::bn_relu_apply);
  m.impl("bn_relu_backward", &darts_forge::bn_relu_backward);
}
