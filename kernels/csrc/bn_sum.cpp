// The BN-weighted sum  out = Σ_k w_k · BN(y_k)  (non-affine BatchNorm on batch statistics, DARTS Eq. 2 with the
// BN tails of the candidate ops) and its backward, for float32 channels-last maps on CPU.
//
// The PyTorch version (kernels/bn_sum.py) runs one BatchNorm per k and adds its output into the sum: per k it
// writes a normalised copy and reads it back to add it. Here, per k, one pass reads y_k for its statistics and a
// second adds its term to the sum while y_k is still in cache: each input comes from memory once (a 32x32 node's
// inputs, up to 48 MB at batch 32, do not fit in the L3 cache together, so k is the outer loop). The backward
// likewise reads g and y_k once for the sums and once for y_k's gradient, and g may be a channel slice of a wider
// tensor (the cell's concatenated output), read in place.
//
// Math, per channel c, with N = rows (B·H·W), x̂_k = (y_k − μ_k)·r_k, r_k = 1/sqrt(σ²_k + eps):
//   forward:  out = Σ_k (a_k·y_k + b_k),  a_k = w_k·r_k,  b_k = −a_k·μ_k
//   backward: ∂L/∂w_k = Σ_c r_k·S_k,  S_k = Σ_n g·(y_k − μ_k)
//             ∂L/∂y_k = w_k·r_k·(g − Σ_n g/N − x̂_k·r_k·S_k/N)
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "rows.h"

namespace darts_forge {

// Returns (out, mean (K, C), rstd (K, C), biased variance (K, C)); out is channels-last and contiguous.
std::vector<at::Tensor> bn_sum_forward(at::TensorList ys, const at::Tensor& weights, double eps) {
  const int64_t K = ys.size();
  TORCH_CHECK(K > 0, "bn_sum_forward: no inputs");
  TORCH_CHECK(weights.dim() == 1 && weights.numel() == K && weights.scalar_type() == at::kFloat,
              "bn_sum_forward: expected ", K, " float32 weights, got ", weights.sizes(), " ", weights.scalar_type());
  const int64_t C = ys[0].size(1), N = ys[0].numel() / C, nb = num_blocks(N);
  std::vector<Rows> y;
  for (const auto& t : ys) {
    TORCH_CHECK(t.sizes() == ys[0].sizes(), "bn_sum_forward: inputs of different shapes ", t.sizes(), " and ",
                ys[0].sizes());
    y.push_back(as_rows(t, C, "bn_sum_forward"));
  }
  at::Tensor mean = at::empty({K, C}, ys[0].options());
  at::Tensor rstd = at::empty({K, C}, ys[0].options());
  at::Tensor variance = at::empty({K, C}, ys[0].options());
  at::Tensor out = at::empty(ys[0].sizes(), ys[0].options().memory_format(at::MemoryFormat::ChannelsLast));
  float* o = out.data_ptr<float>();
  float* part = scratch<float>(0, nb * C * 2);
  float* a = scratch<float>(1, C);
  float* b = scratch<float>(2, C);
  for (int64_t k = 0; k < K; ++k) {
    const double wk = element(weights, k);
    moments(y[k], N, C, part);
    for (int64_t c = 0; c < C; ++c) {
      double mu, var;
      finish_moments(part, nb, C, c, N, y[k].data[c], &mu, &var);
      const double r = 1.0 / std::sqrt(var + eps);
      mean.data_ptr<float>()[k * C + c] = static_cast<float>(mu);
      rstd.data_ptr<float>()[k * C + c] = static_cast<float>(r);
      variance.data_ptr<float>()[k * C + c] = static_cast<float>(var);
      a[c] = static_cast<float>(wk * r);
      b[c] = static_cast<float>(-wk * r * mu);
    }
    const Rows yk = y[k];
    const bool first = k == 0;
    for_rows(N, [&](int64_t n) {
      const float* row = yk.data + n * yk.stride;
      float* orow = o + n * C;
      if (first) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) orow[c] = a[c] * row[c] + b[c];
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) orow[c] += a[c] * row[c] + b[c];
      }
    });
  }
  return {out, mean, rstd, variance};
}

// Returns [grad_weights (K,), grad_y_0, ..., grad_y_{K-1}]; grad_y_k is undefined (None) where need_y[k] is false.
std::vector<at::Tensor> bn_sum_backward(const at::Tensor& grad_out, at::TensorList ys, const at::Tensor& weights,
                                        const at::Tensor& mean, const at::Tensor& rstd, c10::List<bool> need_y) {
  const int64_t K = ys.size();
  TORCH_CHECK(K > 0 && static_cast<int64_t>(need_y.size()) == K && weights.dim() == 1 && weights.numel() == K &&
                  weights.scalar_type() == at::kFloat,
              "bn_sum_backward: ", K, " inputs, ", need_y.size(), " flags, ", weights.numel(), " weights");
  TORCH_CHECK(grad_out.sizes() == ys[0].sizes(), "bn_sum_backward: gradient of shape ", grad_out.sizes(),
              " for inputs of shape ", ys[0].sizes());
  const int64_t C = ys[0].size(1), N = ys[0].numel() / C, nb = num_blocks(N);
  TORCH_CHECK(mean.numel() == K * C && rstd.numel() == K * C, "bn_sum_backward: statistics of the wrong size");
  const Rows g = as_rows(grad_out, C, "bn_sum_backward");
  std::vector<Rows> y;
  for (const auto& t : ys) {
    TORCH_CHECK(t.sizes() == ys[0].sizes(), "bn_sum_backward: inputs of different shapes");
    y.push_back(as_rows(t, C, "bn_sum_backward"));
  }
  TORCH_CHECK(mean.scalar_type() == at::kFloat && rstd.scalar_type() == at::kFloat && mean.is_contiguous() &&
                  rstd.is_contiguous(),
              "bn_sum_backward: expected contiguous float32 statistics");
  const float* mu = mean.data_ptr<float>();
  const float* r = rstd.data_ptr<float>();
  at::Tensor gw = at::empty({K}, weights.options());
  std::vector<at::Tensor> result{gw};
  float* part = scratch<float>(0, nb * C * 2);
  float* P = scratch<float>(1, 3 * C);
  float* Q = P + C;
  float* R = P + 2 * C;
  double* gsum = scratch<double>(2, C);
  std::fill(gsum, gsum + C, 0.0);
  const auto opts = ys[0].options().memory_format(at::MemoryFormat::ChannelsLast);
  for (int64_t k = 0; k < K; ++k) {
    // Per block: Σ_n g·(y_k − μ_k), and Σ_n g once, with k = 0.
    const bool first = k == 0;
    const Rows yk = y[k];
    const float* m = mu + k * C;
    block_sums(N, 2 * C, part, [&](int64_t n, float* s) {
      const float* grow = g.data + n * g.stride;
      const float* row = yk.data + n * yk.stride;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) s[c] += grow[c] * (row[c] - m[c]);
      if (first) {
        float* sg = s + C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) sg[c] += grow[c];
      }
    });
    double gwk = 0;
    const double wk = element(weights, k);
    for (int64_t c = 0; c < C; ++c) {
      double S = 0;
      for (int64_t blk = 0; blk < nb; ++blk) S += part[blk * C * 2 + c];
      if (first)
        for (int64_t blk = 0; blk < nb; ++blk) gsum[c] += part[blk * C * 2 + C + c];
      const double rk = r[k * C + c];
      gwk += rk * S;
      // ∂L/∂y_k = P·g − Q·(y_k − μ_k) + R,  P = w_k·r_k,  Q = w_k·r_k³·S_k/N,  R = −P·Σg/N
      P[c] = static_cast<float>(wk * rk);
      Q[c] = static_cast<float>(wk * rk * rk * rk * S / N);
      R[c] = static_cast<float>(-wk * rk * gsum[c] / N);
    }
    gw.data_ptr<float>()[k] = static_cast<float>(gwk);
    if (!need_y.get(k)) {
      result.push_back(at::Tensor());
      continue;
    }
    at::Tensor t = at::empty(ys[0].sizes(), opts);
    float* gy = t.data_ptr<float>();
    for_rows(N, [&](int64_t n) {
      const float* grow = g.data + n * g.stride;
      const float* row = yk.data + n * yk.stride;
      float* orow = gy + n * C;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) orow[c] = P[c] * grow[c] - Q[c] * (row[c] - m[c]) + R[c];
    });
    result.push_back(t);
  }
  return result;
}

// BatchNorm's running statistics, moved as F.batch_norm does: r ← (1 − f)·r + f·batch value, the variance
// unbiased (× n/(n − 1)). One call for the BNs of a sum instead of four small ops each; running_mean[i] takes row
// rows[i] of mean and var (K, C).
void update_running_stats(at::TensorList running_mean, at::TensorList running_var, at::ArrayRef<double> factor,
                          const at::Tensor& mean, const at::Tensor& var, int64_t n, at::IntArrayRef rows) {
  const size_t M = running_mean.size();
  TORCH_CHECK(running_var.size() == M && factor.size() == M && rows.size() == M,
              "update_running_stats: lists of different lengths");
  TORCH_CHECK(mean.dim() == 2 && mean.sizes() == var.sizes() && mean.scalar_type() == at::kFloat &&
                  var.scalar_type() == at::kFloat && mean.is_contiguous() && var.is_contiguous(),
              "update_running_stats: expected contiguous float32 (K, C) statistics");
  const int64_t C = mean.size(1);
  const double unbias = static_cast<double>(n) / std::max<int64_t>(n - 1, 1);
  for (size_t i = 0; i < M; ++i) {
    at::Tensor rm = running_mean[i], rv = running_var[i];
    TORCH_CHECK(rm.scalar_type() == at::kFloat && rv.scalar_type() == at::kFloat && rm.is_contiguous() &&
                    rv.is_contiguous() && rm.numel() == C && rv.numel() == C && rows[i] >= 0 &&
                    rows[i] < mean.size(0),
                "update_running_stats: running statistics must be contiguous float32 of ", C, " channels");
    float* pm = rm.data_ptr<float>();
    float* pv = rv.data_ptr<float>();
    const float* m = mean.data_ptr<float>() + rows[i] * C;
    const float* v = var.data_ptr<float>() + rows[i] * C;
    const double f = factor[i];
    for (int64_t c = 0; c < C; ++c) {
      pm[c] = static_cast<float>((1.0 - f) * pm[c] + f * m[c]);
      pv[c] = static_cast<float>((1.0 - f) * pv[c] + f * v[c] * unbias);
    }
  }
}

}  // namespace darts_forge

TORCH_LIBRARY_FRAGMENT(darts_forge, m) {
  m.def("bn_sum_forward(Tensor[] ys, Tensor weights, float eps) -> Tensor[]");
  m.def("bn_sum_backward(Tensor grad_out, Tensor[] ys, Tensor weights, Tensor mean, Tensor rstd, bool[] need_y)"
        " -> Tensor[]");
  m.def("update_running_stats(Tensor(a!)[] running_mean, Tensor(b!)[] running_var, float[] factor, Tensor mean,"
        " Tensor var, int n, int[] rows) -> ()");
}

TORCH_LIBRARY_IMPL(darts_forge, CPU, m) {
  m.impl("bn_sum_forward", &darts_forge::bn_sum_forward);
  m.impl("bn_sum_backward", &darts_forge::bn_sum_backward);
  m.impl("update_running_stats", &darts_forge::update_running_stats);
}
