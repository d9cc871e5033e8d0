// A cell's step but its recurrent matmul, fused into one kernel forward and one backward: the
// LSTM family (LstmDigitsGates) and the GRU (LstmDigitsGru), each with a ...First op for the
// zero state (no hw, no previous state). fused_kernel.py builds and loads them and registers
// their gradients; the cells (networks/cells/) call them and write the same steps with
// TensorFlow ops, their docstrings giving the equations. The tanh RNN has no kernel: its one
// tanh a step leaves nothing to fuse (one was measured no faster than its ops).
//
// Every op reads the raw input x (batch, steps, input) and projects the step's pixels itself,
//     xw = x[:, step] @ w_x + b                       w_x: (input, k*hidden), k the blocks
// (8 terms a value on rows, 1 on pixels: done here, it spares the graph a matmul, a split and
// their gradients; a zero pixel, half of a digit's, adds nothing and is skipped), then adds
// hw = h_prev @ w_h (batch, k*hidden), which TensorFlow's matmul computes, and does the cell's
// elementwise work for each row of the batch. The LSTM family's step, by its attrs:
//     z, i, f, o = split(xw + hw)                     the blocks present, in that order
//     z = tanh(z) (input_tanh; else z as it is)
//     i = sigmoid(i + p_i * c_prev)                   peepholes: P (3, hidden), else no term
//     f = sigmoid(f + p_f * c_prev); f = 1 - i if coupled; f = 1 without either
//     c = c_prev * f + z * i                          (i = 1 without an i block)
//     o = sigmoid(o + p_o * c)                        (o = 1 without an o block)
//     h = tanh(c) * o (output_tanh; else c * o)
// The GRU's (Keras's GRUCell with reset_after; BR the recurrent biases):
//     u, r, n = split(xw); hu, hr, hn = split(hw + BR)
//     u = sigmoid(u + hu); r = sigmoid(r + hr); n = tanh(n + r * hn)
//     h = u * h_prev + (1 - u) * n
// Backward (...Grad) maps the gradients of the outputs to those of hw (or of xw + hw, the
// same), of the previous state, of w_x and b summed over the batch (and of P, BR), as autodiff
// of those ops does. Eigen's tanh and logistic are TensorFlow's own; built with
// -ffp-contract=off, products and sums round as TensorFlow's separate ops do. One thread a
// call: the ops are small, and splitting them cost more than it saved (bench/RESULTS.md,
// 2026-12-04).
#include <cstdint>
#include <string>

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

// The shapes every kernel reads from its inputs x (batch, steps, input) and w_x (input, k*h).
struct Shapes {
  int64_t batch, steps, input, h, width;  // width: k*h, the columns of w_x
};

bool ReadShapes(OpKernelContext* ctx, int step, int64_t blocks, Shapes* s) {
  const Tensor& x = ctx->input(0);
  const Tensor& w_x = ctx->input(1);
  if (x.dims() != 3 || w_x.dims() != 2 || ctx->input(2).dims() != 1) {
    ctx->SetStatus(InvalidArgument("x (batch, steps, input), w_x (input, k*h), b (k*h)"));
    return false;
  }
  *s = {x.dim_size(0), x.dim_size(1), x.dim_size(2), w_x.dim_size(1) / blocks, w_x.dim_size(1)};
  if (w_x.dim_size(0) != s->input || s->width != blocks * s->h ||
      ctx->input(2).dim_size(0) != s->width || step < 0 || step >= s->steps) {
    ctx->SetStatus(InvalidArgument("w_x must be (input, ", blocks, "*hidden), b (", blocks,
                                   "*hidden,), step < steps"));
    return false;
  }
  return true;
}

// pre = x[r, step] @ w_x + b for one row: the matmul's terms in order, then the bias. A zero
// pixel adds nothing and is skipped.
void Project(const float* x_r, const float* w_x, const float* b, const Shapes& s,
             Eigen::ArrayXf* pre) {
  pre->setZero();
  for (int64_t k = 0; k < s.input; ++k) {
    if (x_r[k] != 0.0f) *pre += x_r[k] * ConstArray(w_x + k * s.width, s.width);
  }
  *pre += ConstArray(b, s.width);
}

// The projection's gradients for one row, summed over the rows as its matmul's would be.
void ProjectGrad(const float* x_r, const float* d_r, const Shapes& s, Array* dw_x, Array* db) {
  ConstArray d(d_r, s.width);
  for (int64_t k = 0; k < s.input; ++k) {
    if (x_r[k] != 0.0f) dw_x->segment(k * s.width, s.width) += x_r[k] * d;
  }
  *db += d;
}

// A tensor's floats, taken once a call: `flat` checks its type and shape each time, which a
// row's loop would pay for hundreds of times a step.
const float* In(OpKernelContext* ctx, int i) { return ctx->input(i).flat<float>().data(); }
float* Out(Tensor* t) { return t->flat<float>().data(); }

// ---------------------------------------------------------------------------------------------
// The LSTM family.

// Which LSTM of the family a step computes, from the op's attrs.
struct LstmForm {
  int64_t blocks = 1;
  int64_t i = -1, f = -1, o = -1;  // the block of each gate after z (block 0), or -1: none
  bool coupled = false, peepholes = false, input_tanh = true, output_tanh = true;

  // Where gate `k`'s block starts in a row of width blocks*h; z's for a gate that is not
  // there, whose segment is then never read (Eigen asserts a segment's start >= 0).
  int64_t At(int64_t k, int64_t h) const { return k < 0 ? 0 : k * h; }
};

::tensorflow::Status ParseBlocks(const std::string& blocks, LstmForm* form) {
  // "z" then any of "i", "f", "o" in that order: the cell's W column blocks.
  if (blocks.empty() || blocks[0] != 'z') return InvalidArgument("blocks must start with z");
  int64_t k = 1;
  for (const char* p = "ifo"; *p; ++p) {
    if (k < static_cast<int64_t>(blocks.size()) && blocks[k] == *p) {
      (*p == 'i' ? form->i : *p == 'f' ? form->f : form->o) = k++;
    }
  }
  if (k != static_cast<int64_t>(blocks.size())) {
    return InvalidArgument("blocks must be z followed by i, f, o in order, some left out: ",
                           blocks);
  }
  form->blocks = k;
  return ::tensorflow::OkStatus();
}

::tensorflow::Status ReadForm(OpKernelConstruction* ctx, LstmForm* form) {
  std::string blocks;
  TF_RETURN_IF_ERROR(ctx->GetAttr("blocks", &blocks));
  TF_RETURN_IF_ERROR(ParseBlocks(blocks, form));
  TF_RETURN_IF_ERROR(ctx->GetAttr("coupled", &form->coupled));
  TF_RETURN_IF_ERROR(ctx->GetAttr("peepholes", &form->peepholes));
  TF_RETURN_IF_ERROR(ctx->GetAttr("input_tanh", &form->input_tanh));
  TF_RETURN_IF_ERROR(ctx->GetAttr("output_tanh", &form->output_tanh));
  if (form->coupled && (form->i < 0 || form->f >= 0)) {
    return InvalidArgument("coupled (f = 1 - i) needs an i block and no f block");
  }
  return ::tensorflow::OkStatus();
}

bool CheckPeepholes(OpKernelContext* ctx, const LstmForm& form, const Shapes& s) {
  if (form.peepholes && ctx->input(3).shape() != TensorShape({3, s.h})) {
    ctx->SetStatus(InvalidArgument("p must be (3, hidden) with peepholes"));
    return false;
  }
  return true;
}

template <bool kFirst>
class LstmOp : public OpKernel {
 public:
  explicit LstmOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadForm(ctx, &form_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }  // run inline: no hand-off to the pool

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x (batch, steps, input), w_x (input, k*h), b (k*h), p (3, h) (with peepholes,
    // else ignored); then hw (batch, k*h) and c_prev (batch, h) unless kFirst.
    Shapes s;
    if (!ReadShapes(ctx, step_, form_.blocks, &s) || !CheckPeepholes(ctx, form_, s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.width});
    if (!kFirst) {
      OP_REQUIRES(ctx, ctx->input(4).shape() == wide && ctx->input(5).shape() == state,
                  InvalidArgument("hw must be (batch, k*hidden), c_prev (batch, hidden)"));
    }
    Tensor *h_out, *c_out, *gates_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, state, &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, state, &c_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, wide, &gates_out));
    const float *x = In(ctx, 0), *w_x = In(ctx, 1), *b = In(ctx, 2);
    const float* p = form_.peepholes ? In(ctx, 3) : nullptr;
    const float* hw = kFirst ? nullptr : In(ctx, 4);
    const float* c_prevs = kFirst ? nullptr : In(ctx, 5);
    float *gates = Out(gates_out), *cs = Out(c_out), *hs = Out(h_out);
    const int64_t h = s.h, w = s.width;
    const LstmForm& m = form_;
    Eigen::ArrayXf pre(w);  // one row's pre-activations (k*h,)
    for (int64_t r = 0; r < s.batch; ++r) {
      Project(x + (r * s.steps + step_) * s.input, w_x, b, s, &pre);
      if (!kFirst) pre += ConstArray(hw + r * w, w);
      Array g(gates + r * w, w), c(cs + r * h, h), h_r(hs + r * h, h);
      auto z = g.segment(0, h);
      if (m.input_tanh) {
        z = pre.segment(0, h).tanh();
      } else {
        z = pre.segment(0, h);
      }
      // The gates: i and f peep at c_prev (from the zero state there is none), o at c, so o
      // comes after c where it peeps. The others take one sigmoid over their blocks, which are
      // contiguous: Eigen rounds its vector and scalar paths differently in the last bit, and
      // which elements take which follows the expression's length, so one pass keeps the
      // numbers of the kernel before the variants (bit for bit, for the article's run).
      if (m.peepholes && !kFirst) {
        ConstArray c_prev(c_prevs + r * h, h);
        if (m.i >= 0) pre.segment(m.i * h, h) += ConstArray(p, h) * c_prev;
        if (m.f >= 0) pre.segment(m.f * h, h) += ConstArray(p + h, h) * c_prev;
      }
      const int64_t early = m.blocks - 1 - (m.o >= 0 && m.peepholes ? 1 : 0);  // gate blocks
      g.segment(h, early * h) = pre.segment(h, early * h).logistic();
      auto i = g.segment(m.At(m.i, h), h);  // read only where there is an i block
      if (kFirst) {
        if (m.i >= 0) {
          c = z * i;
        } else {
          c = z;
        }
      } else {  // one pass each (at hidden 50 a pass a row more shows in the epoch's time)
        ConstArray c_prev(c_prevs + r * h, h);
        if (m.f >= 0 && m.i >= 0) {
          c = c_prev * g.segment(m.f * h, h) + z * i;
        } else if (m.f >= 0) {
          c = c_prev * g.segment(m.f * h, h) + z;
        } else if (m.coupled) {
          c = c_prev * (1.0f - i) + z * i;
        } else if (m.i >= 0) {
          c = c_prev + z * i;
        } else {
          c = c_prev + z;
        }
      }
      if (m.o >= 0) {
        auto o = g.segment(m.o * h, h);
        if (m.peepholes) o = (pre.segment(m.o * h, h) + ConstArray(p + 2 * h, h) * c).logistic();
        if (m.output_tanh) {
          h_r = c.tanh() * o;
        } else {
          h_r = c * o;
        }
      } else if (m.output_tanh) {
        h_r = c.tanh();
      } else {
        h_r = c;
      }
    }
  }

 private:
  LstmForm form_;
  int step_;
};

template <bool kFirst>
class LstmGradOp : public OpKernel {
 public:
  explicit LstmGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadForm(ctx, &form_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x, w_x, b, p (as forward); dh, dc (batch, h): the gradients of the step's h and
    // c; gates (batch, k*h) and c (batch, h): the step's outputs; c_prev unless kFirst.
    // Outputs: dpre (batch, k*h), dw_x (input, k*h), db (k*h), dp (as p), dc_prev (batch, h)
    // unless kFirst.
    Shapes s;
    if (!ReadShapes(ctx, step_, form_.blocks, &s) || !CheckPeepholes(ctx, form_, s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.width});
    OP_REQUIRES(ctx, ctx->input(4).shape() == state && ctx->input(5).shape() == state &&
                         ctx->input(6).shape() == wide && ctx->input(7).shape() == state &&
                         (kFirst || ctx->input(8).shape() == state),
                InvalidArgument("dh, dc, c, c_prev must be (batch, hidden), gates (batch, k*h)"));
    const float* x = In(ctx, 0);
    const float* p = form_.peepholes ? In(ctx, 3) : nullptr;
    const float *dhs = In(ctx, 4), *dc_nexts = In(ctx, 5), *gates = In(ctx, 6), *cs = In(ctx, 7);
    const float* c_prevs = kFirst ? nullptr : In(ctx, 8);
    Tensor *dpre_out, *dw_x_out, *db_out, *dp_out, *dc_prev_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, wide, &dpre_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &dw_x_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, ctx->input(2).shape(), &db_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(3).shape(), &dp_out));
    if (!kFirst) OP_REQUIRES_OK(ctx, ctx->allocate_output(4, state, &dc_prev_out));
    const int64_t h = s.h, w = s.width;
    const LstmForm& m = form_;
    Array dw_x(Out(dw_x_out), s.input * w), db(Out(db_out), w), dp(Out(dp_out), dp_out->NumElements());
    float *dpres = Out(dpre_out), *dc_prevs = kFirst ? nullptr : Out(dc_prev_out);
    dw_x.setZero();
    db.setZero();
    dp.setZero();
    Eigen::ArrayXf dc(h), tc(h);  // one row's scratch
    for (int64_t r = 0; r < s.batch; ++r) {
      ConstArray g(gates + r * w, w), dh(dhs + r * h, h), c(cs + r * h, h);
      ConstArray dc_next(dc_nexts + r * h, h);
      auto z = g.segment(0, h), i = g.segment(m.At(m.i, h), h);  // i: where there is one
      Array d(dpres + r * w, w);
      // Through h = out(c) * o, to o's pre-activation and to c (one pass each, as forward).
      if (m.output_tanh) tc = c.tanh();
      if (m.o >= 0) {
        auto o = g.segment(m.o * h, h);
        auto d_o = d.segment(m.o * h, h);
        if (m.output_tanh) {
          d_o = (dh * tc) * (o * (1.0f - o));
          dc = dc_next + (dh * o) * (1.0f - tc * tc);
        } else {
          d_o = (dh * c) * (o * (1.0f - o));
          dc = dc_next + dh * o;
        }
        if (m.peepholes) {  // o peeps at the new c
          dc += d_o * ConstArray(p + 2 * h, h);
          dp.segment(2 * h, h) += d_o * c;
        }
      } else if (m.output_tanh) {
        dc = dc_next + dh * (1.0f - tc * tc);
      } else {
        dc = dc_next + dh;
      }
      // Through c = c_prev * f + z * i.
      auto d_z = d.segment(0, h);
      if (m.i >= 0 && m.input_tanh) {
        d_z = (dc * i) * (1.0f - z * z);
      } else if (m.i >= 0) {
        d_z = dc * i;
      } else if (m.input_tanh) {
        d_z = dc * (1.0f - z * z);
      } else {
        d_z = dc;
      }
      if (m.coupled && !kFirst) {  // f = 1 - i: i's gradient also takes -(f's)
        ConstArray c_prev(c_prevs + r * h, h);
        d.segment(m.i * h, h) = (dc * z - dc * c_prev) * (i * (1.0f - i));
      } else if (m.i >= 0) {
        d.segment(m.i * h, h) = (dc * z) * (i * (1.0f - i));
      }
      if (m.f >= 0) {
        auto f = g.segment(m.f * h, h);
        if (kFirst) {
          d.segment(m.f * h, h).setZero();
        } else {
          ConstArray c_prev(c_prevs + r * h, h);
          d.segment(m.f * h, h) = (dc * c_prev) * (f * (1.0f - f));
        }
      }
      if (!kFirst) {
        ConstArray c_prev(c_prevs + r * h, h);
        Array dc_prev(dc_prevs + r * h, h);
        if (m.f >= 0) {
          dc_prev = dc * g.segment(m.f * h, h);
        } else if (m.coupled) {
          dc_prev = dc * (1.0f - i);
        } else {
          dc_prev = dc;
        }
        if (m.peepholes) {  // i and f peep at c_prev
          for (int64_t k : {m.i, m.f}) {
            if (k < 0) continue;
            const int64_t which = k == m.i ? 0 : h;
            dc_prev += d.segment(k * h, h) * ConstArray(p + which, h);
            dp.segment(which, h) += d.segment(k * h, h) * c_prev;
          }
        }
      }
      ProjectGrad(x + (r * s.steps + step_) * s.input, d.data(), s, &dw_x, &db);
    }
  }

 private:
  LstmForm form_;
  int step_;
};

// ---------------------------------------------------------------------------------------------
// The GRU (reset_after): blocks u, r, n; gates holds u, r, n and hn = (hw + BR)'s n block.

template <bool kFirst>
class GruOp : public OpKernel {
 public:
  explicit GruOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x, w_x (input, 3h), b (3h), br (3h); then hw (batch, 3h) and h_prev (batch, h)
    // unless kFirst. Outputs: h (batch, h), gates (batch, 4h).
    Shapes s;
    if (!ReadShapes(ctx, step_, 3, &s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.width});
    OP_REQUIRES(ctx, ctx->input(3).shape() == ctx->input(2).shape(),
                InvalidArgument("br must be (3*hidden,)"));
    if (!kFirst) {
      OP_REQUIRES(ctx, ctx->input(4).shape() == wide && ctx->input(5).shape() == state,
                  InvalidArgument("hw must be (batch, 3*hidden), h_prev (batch, hidden)"));
    }
    Tensor *h_out, *gates_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, state, &h_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({s.batch, 4 * s.h}), &gates_out));
    const float *x = In(ctx, 0), *w_x = In(ctx, 1), *b = In(ctx, 2);
    const float* hw = kFirst ? nullptr : In(ctx, 4);
    const float* h_prevs = kFirst ? nullptr : In(ctx, 5);
    float *gates = Out(gates_out), *hs = Out(h_out);
    ConstArray br(In(ctx, 3), s.width);
    const int64_t h = s.h, w = s.width;
    Eigen::ArrayXf pre(w), hh(w);  // one row's x and h pre-activations
    for (int64_t r = 0; r < s.batch; ++r) {
      Project(x + (r * s.steps + step_) * s.input, w_x, b, s, &pre);
      if (kFirst) {
        hh = br;  // R h_prev is 0, its bias stays
      } else {
        hh = ConstArray(hw + r * w, w) + br;
      }
      Array g(gates + r * 4 * h, 4 * h);
      auto u = g.segment(0, h), rg = g.segment(h, h), n = g.segment(2 * h, h);
      u = (pre.segment(0, h) + hh.segment(0, h)).logistic();
      rg = (pre.segment(h, h) + hh.segment(h, h)).logistic();
      n = (pre.segment(2 * h, h) + rg * hh.segment(2 * h, h)).tanh();
      g.segment(3 * h, h) = hh.segment(2 * h, h);
      Array h_r(hs + r * h, h);
      if (kFirst) {
        h_r = (1.0f - u) * n;
      } else {
        h_r = u * ConstArray(h_prevs + r * h, h) + (1.0f - u) * n;
      }
    }
  }

 private:
  int step_;
};

template <bool kFirst>
class GruGradOp : public OpKernel {
 public:
  explicit GruGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("step", &step_));
  }

  bool IsExpensive() override { return false; }

  void Compute(OpKernelContext* ctx) override {
    // Inputs: x, w_x, b, br (as forward); dh (batch, h); gates (batch, 4h); h_prev unless
    // kFirst. Outputs: dhw (batch, 3h), dw_x, db, dbr, dh_prev (batch, h: through u * h_prev
    // only; TensorFlow adds the matmul's) unless kFirst.
    Shapes s;
    if (!ReadShapes(ctx, step_, 3, &s)) return;
    const TensorShape state({s.batch, s.h}), wide({s.batch, s.width});
    OP_REQUIRES(ctx, ctx->input(4).shape() == state &&
                         ctx->input(5).shape() == TensorShape({s.batch, 4 * s.h}) &&
                         (kFirst || ctx->input(6).shape() == state),
                InvalidArgument("dh, h_prev must be (batch, hidden), gates (batch, 4*hidden)"));
    const float *x = In(ctx, 0), *dhs = In(ctx, 4), *gates = In(ctx, 5);
    const float* h_prevs = kFirst ? nullptr : In(ctx, 6);
    Tensor *dhw_out, *dw_x_out, *db_out, *dbr_out, *dh_prev_out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, wide, &dhw_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, ctx->input(1).shape(), &dw_x_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, ctx->input(2).shape(), &db_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, ctx->input(3).shape(), &dbr_out));
    if (!kFirst) OP_REQUIRES_OK(ctx, ctx->allocate_output(4, state, &dh_prev_out));
    const int64_t h = s.h, w = s.width;
    Array dw_x(Out(dw_x_out), s.input * w), db(Out(db_out), w), dbr(Out(dbr_out), w);
    float *dhws = Out(dhw_out), *dh_prevs = kFirst ? nullptr : Out(dh_prev_out);
    dw_x.setZero();
    db.setZero();
    dbr.setZero();
    Eigen::ArrayXf dx(w), du(h);  // one row's gradient of the x pre-activations; of u
    for (int64_t r = 0; r < s.batch; ++r) {
      ConstArray g(gates + r * 4 * h, 4 * h), dh(dhs + r * h, h);
      auto u = g.segment(0, h), rg = g.segment(h, h), n = g.segment(2 * h, h);
      auto hn = g.segment(3 * h, h);
      if (kFirst) {
        du = -(dh * n);
      } else {
        ConstArray h_prev(h_prevs + r * h, h);
        du = dh * h_prev - dh * n;
        Array(dh_prevs + r * h, h) = dh * u;
      }
      dx.segment(0, h) = du * (u * (1.0f - u));
      dx.segment(2 * h, h) = (dh * (1.0f - u)) * (1.0f - n * n);
      dx.segment(h, h) = (dx.segment(2 * h, h) * hn) * (rg * (1.0f - rg));
      Array d(dhws + r * w, w);  // the h pre-activations' gradient
      d.segment(0, 2 * h) = dx.segment(0, 2 * h);
      d.segment(2 * h, h) = dx.segment(2 * h, h) * rg;
      dbr += d;
      ProjectGrad(x + (r * s.steps + step_) * s.input, dx.data(), s, &dw_x, &db);
    }
  }

 private:
  int step_;
};

// ---------------------------------------------------------------------------------------------
// Shapes.

::tensorflow::Status Hidden(InferenceContext* c, int64_t blocks, DimensionHandle* hidden) {
  return c->Divide(c->Dim(c->input(1), 1), blocks, true, hidden);
}

::tensorflow::Status LstmShape(InferenceContext* c) {
  std::string blocks;
  TF_RETURN_IF_ERROR(c->GetAttr("blocks", &blocks));
  LstmForm form;
  TF_RETURN_IF_ERROR(ParseBlocks(blocks, &form));
  DimensionHandle hidden;
  TF_RETURN_IF_ERROR(Hidden(c, form.blocks, &hidden));
  DimensionHandle batch = c->Dim(c->input(0), 0);
  c->set_output(0, c->Matrix(batch, hidden));  // h
  c->set_output(1, c->Matrix(batch, hidden));  // c
  c->set_output(2, c->Matrix(batch, c->Dim(c->input(1), 1)));  // gates
  return ::tensorflow::OkStatus();
}

::tensorflow::Status LstmGradShape(InferenceContext* c) {
  c->set_output(0, c->input(6));  // dpre: as the gates
  c->set_output(1, c->input(1));  // dw_x
  c->set_output(2, c->input(2));  // db
  c->set_output(3, c->input(3));  // dp
  if (c->num_outputs() > 4) c->set_output(4, c->input(4));  // dc_prev: as dh
  return ::tensorflow::OkStatus();
}

::tensorflow::Status GruShape(InferenceContext* c) {
  DimensionHandle hidden, four;
  TF_RETURN_IF_ERROR(Hidden(c, 3, &hidden));
  TF_RETURN_IF_ERROR(c->Multiply(hidden, 4, &four));
  DimensionHandle batch = c->Dim(c->input(0), 0);
  c->set_output(0, c->Matrix(batch, hidden));  // h
  c->set_output(1, c->Matrix(batch, four));  // gates: u, r, n, hn
  return ::tensorflow::OkStatus();
}

::tensorflow::Status GruGradShape(InferenceContext* c) {
  c->set_output(0, c->Matrix(c->Dim(c->input(4), 0), c->Dim(c->input(1), 1)));  // dhw
  c->set_output(1, c->input(1));  // dw_x
  c->set_output(2, c->input(2));  // db
  c->set_output(3, c->input(3));  // dbr
  if (c->num_outputs() > 4) c->set_output(4, c->input(4));  // dh_prev: as dh
  return ::tensorflow::OkStatus();
}

}  // namespace

#define LSTM_ATTRS                \
  Attr("blocks: string")          \
      .Attr("coupled: bool")      \
      .Attr("peepholes: bool")    \
      .Attr("input_tanh: bool")   \
      .Attr("output_tanh: bool")  \
      .Attr("step: int")

REGISTER_OP("LstmDigitsGates")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("p: float")
    .Input("hw: float")
    .Input("c_prev: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .LSTM_ATTRS.SetShapeFn(LstmShape);
REGISTER_OP("LstmDigitsGatesFirst")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("p: float")
    .Output("h: float")
    .Output("c: float")
    .Output("gates: float")
    .LSTM_ATTRS.SetShapeFn(LstmShape);
REGISTER_OP("LstmDigitsGatesGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("p: float")
    .Input("dh: float")
    .Input("dc: float")
    .Input("gates: float")
    .Input("c: float")
    .Input("c_prev: float")
    .Output("dpre: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Output("dp: float")
    .Output("dc_prev: float")
    .LSTM_ATTRS.SetShapeFn(LstmGradShape);
REGISTER_OP("LstmDigitsGatesFirstGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("p: float")
    .Input("dh: float")
    .Input("dc: float")
    .Input("gates: float")
    .Input("c: float")
    .Output("dpre: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Output("dp: float")
    .LSTM_ATTRS.SetShapeFn(LstmGradShape);

REGISTER_OP("LstmDigitsGru")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("br: float")
    .Input("hw: float")
    .Input("h_prev: float")
    .Output("h: float")
    .Output("gates: float")
    .Attr("step: int")
    .SetShapeFn(GruShape);
REGISTER_OP("LstmDigitsGruFirst")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("br: float")
    .Output("h: float")
    .Output("gates: float")
    .Attr("step: int")
    .SetShapeFn(GruShape);
REGISTER_OP("LstmDigitsGruGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("br: float")
    .Input("dh: float")
    .Input("gates: float")
    .Input("h_prev: float")
    .Output("dhw: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Output("dbr: float")
    .Output("dh_prev: float")
    .Attr("step: int")
    .SetShapeFn(GruGradShape);
REGISTER_OP("LstmDigitsGruFirstGrad")
    .Input("x: float")
    .Input("w_x: float")
    .Input("b: float")
    .Input("br: float")
    .Input("dh: float")
    .Input("gates: float")
    .Output("dhw: float")
    .Output("dw_x: float")
    .Output("db: float")
    .Output("dbr: float")
    .Attr("step: int")
    .SetShapeFn(GruGradShape);

#define CPU_KERNEL(name, ...) \
  REGISTER_KERNEL_BUILDER(Name(name).Device(::tensorflow::DEVICE_CPU), __VA_ARGS__)

CPU_KERNEL("LstmDigitsGates", LstmOp<false>);
CPU_KERNEL("LstmDigitsGatesFirst", LstmOp<true>);
CPU_KERNEL("LstmDigitsGatesGrad", LstmGradOp<false>);
CPU_KERNEL("LstmDigitsGatesFirstGrad", LstmGradOp<true>);
CPU_KERNEL("LstmDigitsGru", GruOp<false>);
CPU_KERNEL("LstmDigitsGruFirst", GruOp<true>);
CPU_KERNEL("LstmDigitsGruGrad", GruGradOp<false>);
CPU_KERNEL("LstmDigitsGruFirstGrad", GruGradOp<true>);
