{% from "pipeline.j2" import pipeline %}
// edgelearn on-chip learning kernel: layer templates (ap_fixed, Vitis/Vivado HLS).
//
// Every operation below is an exact ap_fixed expression followed by an assignment to a declared type, which is the
// arithmetic contract of docs/arithmetic.md ("assignment = round, then overflow"); the order of operations and the
// LFSR draw schedule are those of the edgelearn fixed-point engine, so C-simulation is bit-exact with it.
//
// A layer is described by a config struct CFG (generated in parameters.h):
//   n_in, n_out, n_classes, act (EL_ACT_*), rule (EL_RULE_*), is_output, need_g, fb_lfsr, fb_width, table_size,
//   in_t w_t b_t acc_t act_t g_t err_t fb_t idx_t psum_t mult_t dm_t, act_raw_t / fb_raw_t (ROM words: raw bits of
//   act_t / fb_t), wupd / bupd (update policies, below),
//   static double mult_value()  (1.0 when the layer has no learning-rate multiplier).
// An update policy U (one for weights, one for biases) holds:
//   w_t (stored type; STOCH rendered as AP_TRN), delta_t (increment in the stored LSBs, with the stored format's
//   rounding and enough bits never to overflow), lr_t (ap_ufixed<1, 1-lr_shift>: exactly 2^-lr_shift),
//   draw_t (ap_ufixed<32, -F_w>: a 32-bit LFSR draw just below the stored LSB), stoch, has_update, upd_t (the optional
//   update format), upd_stoch, udraw_t.
{# Rendered by edgelearn.hls.kernel with `lanes` (export-hls --lanes P); lanes = 1 renders the one-lane kernel
   unchanged.  P lanes only add pragmas: the C code, hence C-simulation and the draw order, is the same. #}
{% if lanes > 1 %}
// Lanes: {{ lanes }}.  The forward MAC, signal and update loops over a layer's output neurons are unrolled by
// {{ lanes }} and pipelined (II = 1), and the arrays they walk are partitioned cyclic by {{ lanes }} on that dimension:
// {{ lanes }} neurons per cycle (the activation, one table read a cycle, and argmax stay one neuron per cycle).
// The unrolled lanes keep the sequential order of the C code, so lane l of an update takes the draws that
// follow lane l-1's: one cycle advances the layer's LFSR by {{ lanes }} draws (a constant XOR network), the
// draw order of the engine (docs/arithmetic.md sections 8-9) is unchanged and so are the bits.  Under rng: neuron
// (update_neuron, section 9a) there is no chain: lane l steps only the generators of its own columns.
{% endif %}
#ifndef EL_LEARN_H_
#define EL_LEARN_H_

#include "ap_fixed.h"
#include "ap_int.h"

#include "el_codes.h"  // EL_ACT_*, EL_RULE_*: generated from edgelearn.program, the codes of every back end

namespace el {

typedef unsigned int lfsr_t;  // 32-bit state of the Galois LFSR (docs/arithmetic.md section 8)

// one step: out = s & 1; s >>= 1; if out: s ^= 0x80200003   (x^32 + x^22 + x^2 + x + 1)
inline lfsr_t lfsr_step(lfsr_t s) {
#pragma HLS INLINE
    lfsr_t out = s & 1u;
    s = s >> 1;
    return out ? (lfsr_t)(s ^ 0x80200003u) : s;
}

// a K-bit draw (K <= 32): K steps, the first output bit becomes the MSB.  Unrolled into an XOR network.
template <int K> inline ap_uint<K> lfsr_draw(lfsr_t &s) {
#pragma HLS INLINE
    lfsr_t bits = 0;
    lfsr_t st = s;
DrawBits:
    for (int t = 0; t < K; t++) {
#pragma HLS UNROLL
        bits = (bits << 1) | (st & 1u);
        st = lfsr_step(st);
    }
    s = st;
    return ap_uint<K>(bits);
}

// rng: neuron (docs/arithmetic.md section 9a): one 32-bit xorshift generator per output neuron; a draw is one step and
// the draw is the new state.  Every bit of the next state is the parity of at most 7 bits of the current one.
typedef unsigned int xs_t;

inline xs_t xs_step(xs_t s) {
#pragma HLS INLINE
    s ^= s << EL_XS_A;
    s ^= s >> EL_XS_B;
    s ^= s << EL_XS_C;
    return s;
}

// the two sources of the 32-bit stochastic-rounding draws, for apply_update: a layer's LFSR (rng: layer) or a
// neuron's xorshift generator (rng: neuron)
struct lfsr_rng {
    typedef lfsr_t state_t;
    static const bool per_column = false;
    static ap_uint<32> draw(state_t &s) {
#pragma HLS INLINE
        return lfsr_draw<32>(s);
    }
};
struct xs_rng {
    typedef xs_t state_t;
    static const bool per_column = true;
    static ap_uint<32> draw(state_t &s) {
#pragma HLS INLINE
        s = xs_step(s);
        return ap_uint<32>(s);
    }
};

// ------------------------------------------------------------------------------------------------------------------
// raw-integer access (testbench I/O): value = raw * 2^-F

template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> long long raw_of(const ap_fixed<W, I, Q, O, N> &v) {
    ap_int<W> t;
    t.range(W - 1, 0) = v.range(W - 1, 0);
    return (long long)t.to_int64();
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> long long raw_of(const ap_ufixed<W, I, Q, O, N> &v) {
    ap_uint<W> t;
    t.range(W - 1, 0) = v.range(W - 1, 0);
    return (long long)t.to_uint64();
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> void set_raw(ap_fixed<W, I, Q, O, N> &v, long long r) {
    ap_int<W> t = r;
    v.range(W - 1, 0) = t.range(W - 1, 0);
}
template <int W, int I, ap_q_mode Q, ap_o_mode O, int N> void set_raw(ap_ufixed<W, I, Q, O, N> &v, long long r) {
    ap_uint<W> t = r;
    v.range(W - 1, 0) = t.range(W - 1, 0);
}

// ------------------------------------------------------------------------------------------------------------------
// forward: acc = b; acc += W[j][i] * x[j] for j = 0, 1, ... (arithmetic.md section 7).  Zero inputs add an exact
// zero and are skipped (as in the engine); the MAC loop runs over outputs, pipelined.

template <class CFG>
void dense(const typename CFG::in_t x[CFG::n_in], typename CFG::w_t W[CFG::n_in][CFG::n_out],
           typename CFG::b_t b[CFG::n_out], typename CFG::acc_t z[CFG::n_out]) {
    typename CFG::acc_t acc[CFG::n_out];
{% if lanes > 1 %}
#pragma HLS ARRAY_PARTITION variable=acc type=cyclic factor={{ lanes }}
{% endif %}
DenseInit:
    for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
        acc[i] = b[i];
    }
DenseRows:
    for (unsigned j = 0; j < CFG::n_in; j++) {
        typename CFG::in_t xj = x[j];
        if (xj == 0)
            continue;
    DenseCols:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            acc[i] += W[j][i] * xj;
        }
    }
DenseOut:
    for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
        z[i] = acc[i];
    }
}

// ------------------------------------------------------------------------------------------------------------------
// activation y = f(z) and derivative g = f'(z) (arithmetic.md section 11)

template <class CFG> inline unsigned table_index(typename CFG::acc_t z) {
#pragma HLS INLINE
    // idx_t = ap_fixed<TB, RB+1, AP_TRN, AP_SAT>: floor(z / bin) clamped to [-N/2, N/2 - 1]; index = that + N/2
    typename CFG::idx_t zi = z;
    ap_uint<CFG::idx_t::width> u;
    u.range() = zi.range();
    u[CFG::idx_t::width - 1] = !u[CFG::idx_t::width - 1];
    return u.to_uint();
}

template <class CFG>
void activate(const typename CFG::acc_t z[CFG::n_out], const typename CFG::act_raw_t table[CFG::table_size],
              typename CFG::act_t y[CFG::n_out], typename CFG::g_t g[CFG::n_out]) {
Activate:
    for (unsigned i = 0; i < CFG::n_out; i++) {
#pragma HLS PIPELINE II = 1
        typename CFG::acc_t zi = z[i];
        if (CFG::act == EL_ACT_TANH || CFG::act == EL_ACT_SIGMOID) {
            typename CFG::act_t t;
            const typename CFG::act_raw_t traw = table[table_index<CFG>(zi)];
            t.range() = traw;
            y[i] = t;
            if (CFG::need_g) {
                // the end entry of a format that cannot hold 1 reads as saturated: f' = 0 (arithmetic.md section 11)
                if (traw <= CFG::t_sat_lo || traw >= CFG::t_sat_hi)
                    g[i] = 0;
                else if (CFG::act == EL_ACT_TANH)
                    g[i] = 1 - t * t;  // exact 1 - t^2, then the derivative format
                else
                    g[i] = t * (1 - t);  // exact s (1 - s)
            } else {
                g[i] = 0;
            }
        } else if (CFG::act == EL_ACT_HARDTANH) {
            if (zi >= 1)
                y[i] = 1;
            else if (zi <= -1)
                y[i] = -1;
            else
                y[i] = zi;
            g[i] = (zi > -1 && zi < 1) ? 1 : 0;
        } else if (CFG::act == EL_ACT_RELU) {
            if (zi < 0)
                y[i] = 0;
            else
                y[i] = zi;
            g[i] = (zi > 0) ? 1 : 0;
        } else {
            y[i] = zi;
            g[i] = 1;
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// modulatory signals

// output layer: e = y* - y (bce, sigmoid outputs) or (y* - y) f'(z) (mse), in the error format
template <class CFG>
void output_error(const typename CFG::act_t y[CFG::n_out], const typename CFG::g_t g[CFG::n_out], unsigned label,
                  bool mse, typename CFG::err_t e[CFG::n_out]) {
OutputError:
    for (unsigned c = 0; c < CFG::n_out; c++) {
#pragma HLS UNROLL
        ap_int<2> t = (c == label) ? 1 : 0;
        if (mse)
            e[c] = (t - y[c]) * g[c];
        else
            e[c] = t - y[c];
    }
}

// output layer under loss ce: e = y* - softmax(y) (arithmetic.md section 11a), exactly in integers.  y holds the
// logits (activation none); E_c = the exp ROM at floor((max y - y_c) / bin) clamped to its last entry, S = sum E_c,
// p_c = floor((2 E_c 2^F + S) / (2 S)) (nearest, ties up; F = p_frac), one divider, one class per cycle.  Config:
// exp_t (ROM word: the raw exp entry), exp_size, sm_idx_t (ap_ufixed<TB, RB+1, AP_TRN, AP_SAT>: the index),
// sm_sum_t (S), sm_num_t (2 E_c 2^F + S and 2S), p_t (ap_ufixed<F+1, 1>), p_frac.
template <class CFG>
void output_error_ce(const typename CFG::act_t y[CFG::n_out], const typename CFG::exp_t table[CFG::exp_size],
                     unsigned label, typename CFG::err_t e[CFG::n_out]) {
    typename CFG::act_t m = y[0];
SoftmaxMax:
    for (unsigned c = 1; c < CFG::n_out; c++) {
#pragma HLS PIPELINE II = 1
        if (y[c] > m)
            m = y[c];
    }
    typename CFG::exp_t E[CFG::n_out];
    typename CFG::sm_sum_t S = 0;
SoftmaxExp:
    for (unsigned c = 0; c < CFG::n_out; c++) {
#pragma HLS PIPELINE II = 1
        typename CFG::sm_idx_t d = m - y[c];  // the difference is exact and >= 0: truncation is the floor
        ap_uint<CFG::sm_idx_t::width> i;
        i.range() = d.range();
        E[c] = table[i];
        S += E[c];
    }
    typename CFG::sm_num_t two_s = S;
    two_s <<= 1;
SoftmaxDiv:
    for (unsigned c = 0; c < CFG::n_out; c++) {
#pragma HLS PIPELINE II = 1
        typename CFG::sm_num_t num = E[c];
        num <<= CFG::p_frac + 1;
        num += S;
        typename CFG::sm_num_t q = num / two_s;
        typename CFG::p_t p;
        p.range() = q.range(CFG::p_t::width - 1, 0);
        ap_int<2> t = (c == label) ? 1 : 0;
        e[c] = t - p;
    }
}

// row r of the layer's random feedback matrix B (n_classes x n_out): stored (ROM) or regenerated from its LFSR
// row state (same values: W_fb-bit draws, row-major, two's complement)
template <class CFG>
inline void feedback_row(unsigned r, const typename CFG::fb_raw_t B[CFG::n_classes][CFG::n_out],
                         const lfsr_t row_state[CFG::n_classes], typename CFG::fb_t row[CFG::n_out]) {
#pragma HLS INLINE
    if (CFG::fb_lfsr) {
        lfsr_t s = row_state[r];
    FeedbackGen:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            ap_uint<CFG::fb_width> bits = lfsr_draw<CFG::fb_width>(s);
            typename CFG::fb_t v;
            v.range() = bits;
            row[i] = v;
        }
    } else {
    FeedbackRead:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            typename CFG::fb_t v;
            v.range() = B[r][i];
            row[i] = v;
        }
    }
}

// hidden layer, DRTP: delta_i = B[label, i] * g_i ; sDFA: (sum_c B[c, i] sign(e_c)) * g_i ;
// DFA: (sum_c B[c, i] e_c) * g_i  -- the sums exact (psum_t), the product exact, then the error format
template <class CFG, class OUT_ERR_T>
void hidden_delta(unsigned label, const OUT_ERR_T e[CFG::n_classes], const typename CFG::g_t g[CFG::n_out],
                  const typename CFG::fb_raw_t B[CFG::n_classes][CFG::n_out], const lfsr_t row_state[CFG::n_classes],
                  typename CFG::err_t delta[CFG::n_out]) {
    typename CFG::fb_t row[CFG::n_out];
{% if lanes > 1 %}
#pragma HLS ARRAY_PARTITION variable=row type=cyclic factor={{ lanes }}
{% endif %}
    if (CFG::rule == EL_RULE_DRTP) {
        feedback_row<CFG>(label, B, row_state, row);
    DeltaDRTP:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            delta[i] = row[i] * g[i];
        }
    } else {
        typename CFG::psum_t p[CFG::n_out];
{% if lanes > 1 %}
#pragma HLS ARRAY_PARTITION variable=p type=cyclic factor={{ lanes }}
{% endif %}
    DeltaInit:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            p[i] = 0;
        }
    DeltaClasses:
        for (unsigned c = 0; c < CFG::n_classes; c++) {
            if (e[c] == 0)
                continue;
            feedback_row<CFG>(c, B, row_state, row);
        DeltaAcc:
            for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
                if (CFG::rule == EL_RULE_SDFA) {
                    if (e[c] > 0)
                        p[i] += row[i];
                    else
                        p[i] -= row[i];
                } else {
                    p[i] += row[i] * e[c];
                }
            }
        }
    DeltaOut:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            delta[i] = p[i] * g[i];
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// weight update (arithmetic.md section 12): w_new = overflow(w + round(u * 2^-lr_shift)), the increment rounded to
// the stored LSB with the stored format's rounding (STOCH: + a 32-bit draw below the LSB, then truncation), with the
// optional update format in between.  Exactly one 32-bit draw per STOCH assignment.

template <class U, class RNG, class T>
inline typename U::w_t apply_update(typename U::w_t w, T u, typename RNG::state_t &rnd) {
#pragma HLS INLINE
    typename U::lr_t lr;
    lr[0] = 1;  // the single bit of ap_ufixed<1, 1 - lr_shift>: 2^-lr_shift
    if (U::has_update) {
        typename U::udraw_t r1 = 0;
        if (U::upd_stoch)
            r1.range() = RNG::draw(rnd);
        typename U::upd_t dl = u * lr + r1;
        typename U::draw_t r2 = 0;
        if (U::stoch)
            r2.range() = RNG::draw(rnd);
        typename U::w_t out = w + dl + r2;
        return out;
    } else {
        typename U::draw_t r = 0;
        if (U::stoch)
            r.range() = RNG::draw(rnd);
        typename U::delta_t d = u * lr + r;
        typename U::w_t out = w + d;
        return out;
    }
}

// rows j with x_j != 0 in increasing order, outputs i inner (the engine's draw order), then the biases.  The draws
// come from st[0] (RNG::per_column false: one generator for the layer) or st[i] (true: column i's own generator)
template <class CFG, class RNG>
void update_rows(const typename CFG::in_t x[CFG::n_in], const typename CFG::err_t delta[CFG::n_out],
                 typename CFG::w_t W[CFG::n_in][CFG::n_out], typename CFG::b_t b[CFG::n_out],
                 typename RNG::state_t st[RNG::per_column ? CFG::n_out : 1]) {
    const typename CFG::mult_t m = CFG::mult_value();
    typename CFG::dm_t dm[CFG::n_out];
{% if lanes > 1 %}
#pragma HLS ARRAY_PARTITION variable=dm type=cyclic factor={{ lanes }}
{% endif %}
UpdateScale:
    for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
        dm[i] = delta[i] * m;
    }
UpdateRows:
    for (unsigned j = 0; j < CFG::n_in; j++) {
        typename CFG::in_t xj = x[j];
        if (xj == 0)
            continue;
    UpdateCols:
        for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
            W[j][i] = apply_update<typename CFG::wupd, RNG>(W[j][i], dm[i] * xj, st[RNG::per_column ? i : 0]);
        }
    }
UpdateBias:
    for (unsigned i = 0; i < CFG::n_out; i++) {
{{ pipeline(lanes)|trim }}
        b[i] = apply_update<typename CFG::bupd, RNG>(b[i], dm[i], st[RNG::per_column ? i : 0]);
    }
}

// rng: layer: every STOCH assignment draws from the layer's one LFSR, in update_rows' order
template <class CFG>
void update(const typename CFG::in_t x[CFG::n_in], const typename CFG::err_t delta[CFG::n_out],
            typename CFG::w_t W[CFG::n_in][CFG::n_out], typename CFG::b_t b[CFG::n_out], lfsr_t &rnd) {
    lfsr_t s[1] = {rnd};
    update_rows<CFG, lfsr_rng>(x, delta, W, b, s);
    rnd = s[0];
}

// rng: neuron: the same update, every STOCH assignment to column i drawing from its own generator ns[i] (the
// weight rows in order, then the bias: docs/arithmetic.md section 9a).  The lanes share no state: lane l steps only
// the generators of its columns, kept in its bank of ns (partitioned like b).
template <class CFG>
void update_neuron(const typename CFG::in_t x[CFG::n_in], const typename CFG::err_t delta[CFG::n_out],
                   typename CFG::w_t W[CFG::n_in][CFG::n_out], typename CFG::b_t b[CFG::n_out],
                   xs_t ns[CFG::n_out]) {
    update_rows<CFG, xs_rng>(x, delta, W, b, ns);
}

// argmax, ties to the lowest index (the engine's prediction)
template <class T, unsigned N> unsigned argmax(const T z[N]) {
    unsigned best = 0;
Argmax:
    for (unsigned c = 1; c < N; c++) {
#pragma HLS PIPELINE II = 1
        if (z[c] > z[best])
            best = c;
    }
    return best;
}

} // namespace el

#endif
