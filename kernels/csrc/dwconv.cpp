// Depthwise convolution forward and weight gradient for channels-last float32 maps on CPU, with any stride,
// padding and dilation, for 3x3 and 5x5 kernels and channel counts that are multiples of 16: the DARTS sep and
// dil convs. oneDNN (PyTorch's CPU conv) is fast for the plain 3x3 forward at 32x32 but pays a fixed cost per
// call, and its 5x5 and dilated weight gradients are 3 to 10 times slower than the forward conv of the same size
// (kernels/dwconv.py rewrites them onto faster cases, with extra copies). Here both are direct loops over rows of
// 16 channels, the 16 channels one SIMD vector (GCC/Clang vector extensions: one AVX-512 register, two AVX2
// ones, or whatever the target has):
//
//   forward:          y[b, oh, ow, c] = Σ_{i,j} x[b, oh·s − p + i·d, ow·s − p + j·d, c] · w[c, i, j]
//   weight gradient:  ∂L/∂w[c, i, j]  = Σ_{b,oh,ow} g[b, oh, ow, c] · x[b, oh·s − p + i·d, ow·s − p + j·d, c]
//
// (x zero outside the image). The input gradient of the stride-1 "same" conv is the forward conv of g with the
// flipped kernel (kernels/dwconv.py). The weight gradient is a reduction: output rows are cut into fixed blocks
// whatever the thread count, each block's sums go to their own slot, and the slots are added in block order in
// double precision, so it is deterministic.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

#include "rows.h"

namespace darts_forge {
namespace {

typedef float v16 __attribute__((vector_size(64)));
inline v16 ld(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void st(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

constexpr int64_t kRowsPerBlock = 8;  // output rows per reduction block of the weight gradient

struct Geometry {
  int64_t B, C, H, W, OH, OW, s, p, d;
  int64_t ih(int64_t oh, int64_t i) const { return oh * s - p + i * d; }
};

// Forward, 3x3: the 9 weight vectors stay in registers; one accumulator per output pixel.
template <int K>
void forward_row_registers(const Geometry& q, const float* x, const float* wt, int64_t r, int64_t cb, float* y) {
  const int64_t b = r / q.OH, oh = r % q.OH;
  v16 w[K][K];
  const float* rows[K];
  bool valid[K];
  for (int i = 0; i < K; ++i) {
    for (int j = 0; j < K; ++j) w[i][j] = ld(wt + (i * K + j) * q.C + cb);
    const int64_t ih = q.ih(oh, i);
    valid[i] = ih >= 0 && ih < q.H;
    rows[i] = x + (b * q.H + (valid[i] ? ih : 0)) * q.W * q.C + cb;
  }
  float* out = y + r * q.OW * q.C + cb;
  for (int64_t ow = 0; ow < q.OW; ++ow) {
    v16 acc{};
    const int64_t iw0 = ow * q.s - q.p;
    const bool inside = iw0 >= 0 && iw0 + (K - 1) * q.d < q.W;
    for (int i = 0; i < K; ++i) {
      if (!valid[i]) continue;
      if (inside) {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) acc += w[i][j] * ld(rows[i] + (iw0 + j * q.d) * q.C);
      } else {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
          const int64_t iw = iw0 + j * q.d;
          if (iw >= 0 && iw < q.W) acc += w[i][j] * ld(rows[i] + iw * q.C);
        }
      }
    }
    st(out + ow * q.C, acc);
  }
}

// Forward, larger kernels: kernel row by kernel row, its K weight vectors in registers, the output row (a few KB)
// accumulated in cache; K² weight vectors would not fit in the register file.
template <int K>
void forward_row_by_kernel_row(const Geometry& q, const float* x, const float* wt, int64_t r, int64_t cb, float* y) {
  const int64_t b = r / q.OH, oh = r % q.OH;
  float* out = y + r * q.OW * q.C + cb;
  for (int64_t ow = 0; ow < q.OW; ++ow) st(out + ow * q.C, v16{});
  for (int i = 0; i < K; ++i) {
    const int64_t ih = q.ih(oh, i);
    if (ih < 0 || ih >= q.H) continue;
    const float* row = x + (b * q.H + ih) * q.W * q.C + cb;
    v16 w[K];
    for (int j = 0; j < K; ++j) w[j] = ld(wt + (i * K + j) * q.C + cb);
    for (int64_t ow = 0; ow < q.OW; ++ow) {
      v16 acc = ld(out + ow * q.C);
      const int64_t iw0 = ow * q.s - q.p;
      if (iw0 >= 0 && iw0 + (K - 1) * q.d < q.W) {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) acc += w[j] * ld(row + (iw0 + j * q.d) * q.C);
      } else {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
          const int64_t iw = iw0 + j * q.d;
          if (iw >= 0 && iw < q.W) acc += w[j] * ld(row + iw * q.C);
        }
      }
      st(out + ow * q.C, acc);
    }
  }
}

// Forward, 5x5 with stride S and dilation D known at compile time: 4 output pixels at once, a kernel row's 5
// weight vectors loaded once for the 4 (4 accumulators + 5 weights stay in registers; all 25 weights would not
// leave room for the rest). Pixels whose taps reach outside the image go one at a time.
template <int K, int S, int D>
void forward_row_blocked(const Geometry& q, const float* x, const float* wt, int64_t r, int64_t cb, float* y) {
  constexpr int M = 4;
  const int64_t b = r / q.OH, oh = r % q.OH, C = q.C;
  const float* rows[K];
  int ki[K], nv = 0;
  for (int i = 0; i < K; ++i) {
    const int64_t ih = oh * S - q.p + i * D;
    if (ih >= 0 && ih < q.H) {
      rows[nv] = x + (b * q.H + ih) * q.W * C + cb;
      ki[nv++] = i;
    }
  }
  float* out = y + r * q.OW * C + cb;
  auto one = [&](int64_t ow) {
    v16 acc{};
    const int64_t iw0 = ow * S - q.p;
    for (int n = 0; n < nv; ++n)
      for (int j = 0; j < K; ++j) {
        const int64_t iw = iw0 + j * D;
        if (iw >= 0 && iw < q.W) acc += ld(wt + (ki[n] * K + j) * C + cb) * ld(rows[n] + iw * C);
      }
    st(out + ow * C, acc);
  };
  // Pixels ow with every tap inside: ow·S − p ≥ 0 and ow·S − p + (K−1)·D ≤ W − 1.
  const int64_t first = (q.p + S - 1) / S;
  const int64_t last_span = q.W - 1 - (K - 1) * D + q.p;
  const int64_t last = last_span < 0 ? -1 : last_span / S;
  int64_t ow = 0;
  for (; ow < std::min(first, q.OW); ++ow) one(ow);
  for (; ow + M - 1 <= last && ow + M <= q.OW; ow += M) {
    v16 acc[M];
    for (int m = 0; m < M; ++m) acc[m] = v16{};
    const int64_t iw0 = ow * S - q.p;
    for (int n = 0; n < nv; ++n) {
      const float* xr = rows[n] + iw0 * C;
      v16 w[K];
#pragma GCC unroll 8
      for (int j = 0; j < K; ++j) w[j] = ld(wt + (ki[n] * K + j) * C + cb);
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m)
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) acc[m] += w[j] * ld(xr + (m * S + j * D) * C);
    }
    for (int m = 0; m < M; ++m) st(out + (ow + m) * C, acc[m]);
  }
  for (; ow < q.OW; ++ow) one(ow);
}

// Weight gradient of one output row r and 16 channels, added into P (K·K·C floats): one accumulator per tap of
// a kernel row, the output gradient vector loaded once for the K taps.
template <int K>
void weight_grad_row(const Geometry& q, const float* g, const float* x, int64_t r, int64_t cb, float* P) {
  const int64_t b = r / q.OH, oh = r % q.OH;
  const float* grow = g + r * q.OW * q.C + cb;
  for (int i = 0; i < K; ++i) {
    const int64_t ih = q.ih(oh, i);
    if (ih < 0 || ih >= q.H) continue;
    const float* row = x + (b * q.H + ih) * q.W * q.C + cb;
    v16 acc[K];
    for (int j = 0; j < K; ++j) acc[j] = v16{};
    for (int64_t ow = 0; ow < q.OW; ++ow) {
      const v16 gv = ld(grow + ow * q.C);
      const int64_t iw0 = ow * q.s - q.p;
      if (iw0 >= 0 && iw0 + (K - 1) * q.d < q.W) {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) acc[j] += gv * ld(row + (iw0 + j * q.d) * q.C);
      } else {
#pragma GCC unroll 8
        for (int j = 0; j < K; ++j) {
          const int64_t iw = iw0 + j * q.d;
          if (iw >= 0 && iw < q.W) acc[j] += gv * ld(row + iw * q.C);
        }
      }
    }
    for (int j = 0; j < K; ++j) {
      float* p = P + (i * K + j) * q.C + cb;
      st(p, ld(p) + acc[j]);
    }
  }
}

void check_input(const at::Tensor& x, const char* what) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              what, ": expected a channels-last contiguous 4-d float32 CPU tensor, got sizes ", x.sizes(),
              ", strides ", x.strides(), ", dtype ", x.scalar_type());
  TORCH_CHECK(x.size(1) % 16 == 0, what, ": the channel count must be a multiple of 16, got ", x.size(1));
}

// Output size of a conv; 0 where the dilated kernel is larger than the padded image (C++ division truncates
// toward zero, so a negative numerator must not reach it).
int64_t out_size(int64_t n, int64_t k, int64_t s, int64_t p, int64_t d) {
  const int64_t span = n + 2 * p - d * (k - 1) - 1;
  return span < 0 ? 0 : span / s + 1;
}

}  // namespace

at::Tensor dw_conv_forward(const at::Tensor& x, const at::Tensor& w, int64_t stride, int64_t padding,
                           int64_t dilation, bool flip) {
  check_input(x, "dw_conv_forward");
  const int64_t C = x.size(1), k = w.size(-1);
  TORCH_CHECK(w.dim() == 4 && w.size(0) == C && w.size(1) == 1 && w.size(2) == k && (k == 3 || k == 5) &&
                  w.scalar_type() == at::kFloat,
              "dw_conv_forward: expected a float32 weight (", C, ", 1, 3 or 5, 3 or 5), got ", w.sizes());
  TORCH_CHECK(stride >= 1 && dilation >= 1 && padding >= 0, "dw_conv_forward: bad stride/padding/dilation");
  Geometry q{x.size(0), C, x.size(2), x.size(3), out_size(x.size(2), k, stride, padding, dilation),
             out_size(x.size(3), k, stride, padding, dilation), stride, padding, dilation};
  TORCH_CHECK(q.OH > 0 && q.OW > 0, "dw_conv_forward: the kernel does not fit the ", q.H, "x", q.W, " image");
  // The kernel as (k·k, C), a tap's 16 channels contiguous; flipped (w[c, k−1−i, k−1−j]) for the input gradient.
  const at::Tensor wc = w.contiguous();
  float* wp = scratch<float>(0, k * k * C);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < k * k; ++t) wp[(flip ? k * k - 1 - t : t) * C + c] = wc.data_ptr<float>()[c * k * k + t];
  at::Tensor y = at::empty({q.B, C, q.OH, q.OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, q.B * q.OH, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t cb = 0; cb < C; cb += 16) {
        if (k == 3)
          forward_row_registers<3>(q, xp, wp, r, cb, yp);
        else if (stride == 1 && dilation == 1)
          forward_row_blocked<5, 1, 1>(q, xp, wp, r, cb, yp);
        else if (stride == 1 && dilation == 2)
          forward_row_blocked<5, 1, 2>(q, xp, wp, r, cb, yp);
        else if (stride == 2 && dilation == 1)
          forward_row_blocked<5, 2, 1>(q, xp, wp, r, cb, yp);
        else if (stride == 2 && dilation == 2)
          forward_row_blocked<5, 2, 2>(q, xp, wp, r, cb, yp);
        else
          forward_row_by_kernel_row<5>(q, xp, wp, r, cb, yp);
      }
  });
  return y;
}

at::Tensor dw_conv_weight_grad(const at::Tensor& grad, const at::Tensor& x, int64_t k, int64_t stride,
                               int64_t padding, int64_t dilation) {
  check_input(x, "dw_conv_weight_grad");
  check_input(grad, "dw_conv_weight_grad");
  TORCH_CHECK(k == 3 || k == 5, "dw_conv_weight_grad: kernel size 3 or 5, got ", k);
  const int64_t C = x.size(1);
  Geometry q{x.size(0), C, x.size(2), x.size(3), grad.size(2), grad.size(3), stride, padding, dilation};
  TORCH_CHECK(grad.size(0) == q.B && grad.size(1) == C && q.OH == out_size(q.H, k, stride, padding, dilation) &&
                  q.OW == out_size(q.W, k, stride, padding, dilation),
              "dw_conv_weight_grad: gradient of shape ", grad.sizes(), " does not match the input ", x.sizes());
  const int64_t R = q.B * q.OH, nb = (R + kRowsPerBlock - 1) / kRowsPerBlock, T = k * k;
  float* part = scratch<float>(0, nb * T * C);
  const float *gp = grad.data_ptr<float>(), *xp = x.data_ptr<float>();
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      float* P = part + blk * T * C;
      std::fill(P, P + T * C, 0.f);
      for (int64_t r = blk * kRowsPerBlock; r < std::min(R, (blk + 1) * kRowsPerBlock); ++r)
        for (int64_t cb = 0; cb < C; cb += 16) {
          if (k == 3)
            weight_grad_row<3>(q, gp, xp, r, cb, P);
          else
            weight_grad_row<5>(q, gp, xp, r, cb, P);
        }
    }
  });
  at::Tensor gw = at::empty({C, 1, k, k}, x.options());
  float* o = gw.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double s = 0;
      for (int64_t blk = 0; blk < nb; ++blk) s += part[(blk * T + t) * C + c];
      o[c * T + t] = static_cast<float>(s);
    }
  return gw;
}

}  // namespace darts_forge

TORCH_LIBRARY_FRAGMENT(darts_forge, m) {
  m.def("dw_conv_forward(Tensor x, Tensor w, int stride, int padding, int dilation, bool flip=False) -> Tensor");
  m.def("dw_conv_weight_grad(Tensor grad, Tensor x, int k, int stride, int padding, int dilation) -> Tensor");
}

TORCH_LIBRARY_IMPL(darts_forge, CPU, m) {
  m.impl("dw_conv_forward", &darts_forge::dw_conv_forward);
  m.impl("dw_conv_weight_grad", &darts_forge::dw_conv_weight_grad);
}
