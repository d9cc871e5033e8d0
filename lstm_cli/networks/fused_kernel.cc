// One LSTM step's work but the recurrent matmul, fused into one kernel forward and one
// backward. lstm_cli/gates_kernel.py builds and loads it and registers the gradients.
//
// Forward (LstmDigitsGates; LstmDigitsGatesFirst for the zero state, without hw and c_prev),
// for each row of the batch, as lstm_cli/cell.py writes it with TensorFlow ops:
//     xw = x[:, step] @ w_x + b                       x: (batch, steps, input)
//     z, i, f, o = split(xw + hw, 4)                  hw = h_prev @ w_h: (batch, 4*hidden)
//     z = tanh(z); i, f, o = sigmoid(i), sigmoid(f), sigmoid(o)
//     c = c_prev * f + z * i
//     h = c * o  (standard: tanh(c) * o)
// outputs h, c (batch, hidden) and the activated gates [z, i, f, o] (batch, 4*hidden), which
// the gradient reads. The input projection has 8 terms a value (the pixels of a row): done
// here, it spares the graph a matmul, a split and their gradients. Backward (...Grad) maps
// the gradients of h and c to those of xw + hw (dpre), c_prev, w_x and b, as autodiff of
// those ops does. Eigen's tanh and logistic are TensorFlow's own; built with
// -ffp-contract=off, products and sums round as TensorFlow's separate ops do. One thread a
// call: the ops are small, and splitting them cost more than it saved (docs/performance.md).
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::errors::InvalidArgument;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using Array = Eigen::Map<Eigen::ArrayXf>;
using ConstArray = Eigen::Map<const Eigen::ArrayXf>;

// The shapes every kernel reads from its inputs x (batch, steps, input) and w_x (input, 4h).
struct Shapes {
  int64_t batch, steps, input, h, h4;
};

bool ReadShapes(OpKernelContext* ctx, int step, Shapes* s) {
  const Tensor& x = ctx->input(0);
  const Tensor& w_x = ctx->input(1);
  if (x.dims() != 3 || w_x.dims() != 2 || ctx->input(2).dims() != 1) {
    ctx->SetStatus(InvalidArgument("x (batch, steps, input), w_x (input, 4h), b (4h)"));
    return false;
  }
  *s = {x.dim_size(0), x.dim_size(1), x.dim_size(2), w_x.dim_size(1) / 4, w_x.dim_size(1)};
  if (w_x.dim_size(0) != s->input || s->h4 != 4 * s->h || ctx->input(2).dim_size(0) != s->h4 ||
      step < 0 || step >= s->steps) {
    ctx->SetStatus(InvalidArgument("w_x must be (input, 4*hidden), b (4*hidden,), step < steps"));
    return false;
  }
  return true;
}

// pre = x[r, step] @ w_x + b for one row: the matmul's terms in order, then the bias. A zero
// pixel (half of a digit's) adds nothing and is skipped.
void Project(const float* x_r, const float* w_x, const float* b, const Shapes& s,
             Eigen::ArrayXf* pre) {
  pre->setZero();
  for (int64_t k = 0; k < s.input; ++k) {
    if (x_r[k] != 0.0f) *pre += x_r[k] * ConstArray(w_x + k * s.h4, s.h4);
  }
  *pre += ConstArray(b, s.h4);
}

template <bool kFirst>
class GatesOp : public OpKernel {
 public:
  explicit GatesOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("standard", &standard_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }  // run inline: no hand-off to the pool

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x (batch, steps, input), w_x (input, 4h), b (4h); then hw (batch, 4h) and
    // c_prev (batch, h) unless kFirst.
    Shapes s;
    if (!ReadShapes(ctx, step_, &s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.h4});
    const float* hw = nullptr;
    const float* c_prev = nullptr;
    if (!kFirst) {
      OP_REQUIRES(ctx, ctx->input(3).shape() == wide && ctx->input(4).shape() == state,
                  InvalidArgument("hw must be (batch, 4*hidden), c_prev (batch, hidden)"));
      hw = ctx->input(3).flat<float>().data();
      c_prev = ctx->input(4).flat<float>().data();
    }
    Tensor *h_out, *c_out, *gates_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, state, &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, state, &c_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, wide, &gates_out));
    const float* x = ctx->input(0).flat<float>().data();
    const float* w_x = ctx->input(1).flat<float>().data();
    const float* b = ctx->input(2).flat<float>().data();
    const int64_t h = s.h, h4 = s.h4;
    Eigen::ArrayXf pre(h4);  // (4h,) one row's pre-activations
    for (int64_t r = 0; r < s.batch; ++r) {
      Project(x + (r * s.steps + step_) * s.input, w_x, b, s, &pre);
      if (!kFirst) pre += ConstArray(hw + r * h4, h4);
      Array g(gates_out->flat<float>().data() + r * h4, h4);
      g.head(h) = pre.head(h).tanh();
      g.tail(3 * h) = pre.tail(3 * h).logistic();
      auto z = g.segment(0, h), i = g.segment(h, h), f = g.segment(2 * h, h),
           o = g.segment(3 * h, h);
      Array c(c_out->flat<float>().data() + r * h, h);
      Array h_r(h_out->flat<float>().data() + r * h, h);
      if (kFirst) {
        c = z * i;
      } else {
        c = ConstArray(c_prev + r * h, h) * f + z * i;
      }
      if (standard_) {
        h_r = c.tanh() * o;
      } else {
        h_r = c * o;
      }
    }
  }

 private:
  bool standard_;
  int step_;
};

template <bool kFirst>
class GatesGradOp : public OpKernel {
 public:
  explicit GatesGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("standard", &standard_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x, w_x, b (as forward); dh, dc (batch, h): the gradients of the step's h and
    // c; gates (batch, 4h) and c (batch, h): the step's outputs; c_prev unless kFirst.
    // Outputs: dpre (batch, 4h), dw_x (input, 4h), db (4h), dc_prev (batch, h) unless kFirst.
    Shapes s;
    if (!ReadShapes(ctx, step_, &s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.h4});
    OP_REQUIRES(ctx, ctx->input(3).shape() == state && ctx->input(4).shape() == state &&
                         ctx->input(5).shape() == wide && ctx->input(6).shape() == state &&
                         (kFirst || ctx->input(7).shape() == state),
                InvalidArgument("dh, dc, c, c_prev must be (batch, hidden), gates (batch, 4h)"));
    const float* x = ctx->input(0).flat<float>().data();
    const float* dh = ctx->input(3).flat<float>().data();
    const float* dc_in = ctx->input(4).flat<float>().data();
    const float* gs = ctx->input(5).flat<float>().data();
    const float* cs = ctx->input(6).flat<float>().data();
    const float* c_prev = kFirst ? nullptr : ctx->input(7).flat<float>().data();
    Tensor *dpre_out, *dw_x_out, *db_out, *dc_prev_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, wide, &dpre_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &dw_x_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, ctx->input(2).shape(), &db_out));
    if (!kFirst) OP_REQUIRES_OK(ctx, ctx->allocate_output(3, state, &dc_prev_out));
    const int64_t h = s.h, h4 = s.h4;
    Array dw_x(dw_x_out->flat<float>().data(), s.input * h4), db(db_out->flat<float>().data(), h4);
    dw_x.setZero();
    db.setZero();
    Eigen::ArrayXf dc(h), tc(h);  // one row's scratch
    for (int64_t r = 0; r < s.batch; ++r) {
      const float* g = gs + r * h4;
      ConstArray z(g, h), i(g + h, h), f(g + 2 * h, h), o(g + 3 * h, h);
      ConstArray dh_r(dh + r * h, h), dc_r(dc_in + r * h, h), c_r(cs + r * h, h);
      float* d = dpre_out->flat<float>().data() + r * h4;
      if (standard_) {
        tc = c_r.tanh();
        dc = dc_r + (dh_r * o) * (1.0f - tc * tc);
        Array(d + 3 * h, h) = (dh_r * tc) * (o * (1.0f - o));
      } else {
        dc = dc_r + dh_r * o;
        Array(d + 3 * h, h) = (dh_r * c_r) * (o * (1.0f - o));
      }
      Array(d, h) = (dc * i) * (1.0f - z * z);
      Array(d + h, h) = (dc * z) * (i * (1.0f - i));
      if (kFirst) {
        Array(d + 2 * h, h).setZero();
      } else {
        Array(d + 2 * h, h) = (dc * ConstArray(c_prev + r * h, h)) * (f * (1.0f - f));
        Array(dc_prev_out->flat<float>().data() + r * h, h) = dc * f;
      }
      // The projection's gradients, summed over the rows as its matmul's would be.
      ConstArray d_r(d, h4);
      const float* x_r = x + (r * s.steps + step_) * s.input;
      for (int64_t k = 0; k < s.input; ++k) {
        if (x_r[k] != 0.0f) dw_x.segment(k * h4, h4) += x_r[k] * d_r;
      }
      db += d_r;
    }
  }

 private:
  bool standard_;
  int step_;
};

::tensorflow::Status ForwardShape(InferenceContext* c) {
  DimensionHandle hidden;
  TF_RETURN_IF_ERROR(c->Divide(c->Dim(c->input(1), 1), 4, true, &hidden));
  DimensionHandle batch = c->Dim(c->input(0), 0);
  c->set_output(0, c->Matrix(batch, hidden));  // h
  c->set_output(1, c->Matrix(batch, hidden));  // c
  c->set_output(2, c->Matrix(batch, c->Dim(c->input(1), 1)));  // gates
  return ::tensorflow::OkStatus();
}

::tensorflow::Status GradShape(InferenceContext* c) {
  c->set_output(0, c->input(5));  // dpre: as the gates
  c->set_output(1, c->input(1));  // dw_x
  c->set_output(2, c->input(2));  // db
  if (c->num_outputs() > 3) c->set_output(3, c->input(3));  // dc_prev: as dh
  return ::tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("LstmDigitsGates")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("hw: float")
    .Input("c_prev: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .Attr("standard: bool")
    .Attr("step: int")
    .SetShapeFn(ForwardShape);
REGISTER_OP("LstmDigitsGatesFirst")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .Attr("standard: bool")
    .Attr("step: int")
    .SetShapeFn(ForwardShape);
REGISTER_OP("LstmDigitsGatesGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("dh: float")
    .Input("dc: float")
    .Input("gates: float")
    .Input("c: float")
    .Input("c_prev: float")
    .Output("dpre: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Output("dc_prev: float")
    .Attr("standard: bool")
    .Attr("step: int")
    .SetShapeFn(GradShape);
REGISTER_OP("LstmDigitsGatesFirstGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("dh: float")
    .Input("dc: float")
    .Input("gates: float")
    .Input("c: float")
    .Output("dpre: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Attr("standard: bool")
    .Attr("step: int")
    .SetShapeFn(GradShape);

REGISTER_KERNEL_BUILDER(Name("LstmDigitsGates").Device(::tensorflow::DEVICE_CPU), GatesOp<false>);
REGISTER_KERNEL_BUILDER(Name("LstmDigitsGatesFirst").Device(::tensorflow::DEVICE_CPU),
                        GatesOp<true>);
REGISTER_KERNEL_BUILDER(Name("LstmDigitsGatesGrad").Device(::tensorflow::DEVICE_CPU),
                        GatesGradOp<false>);
REGISTER_KERNEL_BUILDER(Name("LstmDigitsGatesFirstGrad").Device(::tensorflow::DEVICE_CPU),
                        GatesGradOp<true>);
