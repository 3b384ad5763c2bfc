{% from "pipeline.j2" import pipeline %}
// edgelearn on-chip learning kernel: trained feedback (docs/arithmetic.md section 16), ap_fixed, Vitis/Vivado HLS.
//
// kp's B and the factors Q, P of ldfa / dldfa learn on chip; like the weights they are ports of the top function
// (memories the host loads and reads back), updated in place by the feedback step that runs right before the
// layer's weight update and reads the layer's pre-update words only.  Every operation is an exact ap_fixed
// expression assigned to a declared type, in the engine's order (engine_kernels.hidden_delta, feedback_learn).
//
// A layer's trained feedback is described by FB (fbconfig{k}, generated in parameters.h):
//   nq, r, m (Q is nq x r and P r x m; kp's B is nq x m), learn_q, learn_p, oja_target, src_w, s_frac,
//   q_t p_t (the words), u_t (u = P src, the source's error format), e_t (the layer's error format: a, rho),
//   h_t (the activation Q's or B's increment reads), uacc_t psum_t aacc_t racc_t (exact sums), s_t sraw_t (the
//   normalised source), qupd / pupd (update policies, el_learn.h).
{% if lanes > 1 %}
// Lanes: {{ lanes }}: the column loops are unrolled by {{ lanes }} under their pipeline; the words round RND / TRN (no
// draws), so the lanes share nothing and the bits do not depend on the lane count.
{% endif %}
#ifndef EL_FEEDBACK_H_
#define EL_FEEDBACK_H_

#include "el_learn.h"

namespace el {

// out_t = sum_i P[t][i] src_i (exact in acc_t, i ascending), assigned to out_t: u = P src of the low-rank signal
// (and of Q's update) and Oja's a = P s share it
template <class FB, class acc_t, class src_t, class out_t>
void p_times(typename FB::p_t P[FB::r][FB::m], const src_t src[FB::m], out_t out[FB::r]) {
PTimes:
    for (unsigned t = 0; t < FB::r; t++) {
        acc_t acc = 0;
    PTimesCols:
        for (unsigned i = 0; i < FB::m; i++) {
#pragma HLS PIPELINE II = 1
            acc += P[t][i] * src[i];
        }
        out[t] = acc;
    }
}

// u_t = sum_i P[t][i] src_i, assigned to u_t: the r-dimensional error of a low-rank feedback
template <class FB>
void lowrank_u(const typename FB::u_t src[FB::m], typename FB::p_t P[FB::r][FB::m], typename FB::u_t u[FB::r]) {
    p_times<FB, typename FB::uacc_t>(P, src, u);
}

// the signal of layer CFG through low-rank factors: u = P src, then delta_j = (sum_t Q[j][t] u_t) g_j, assigned to
// the layer's error format.  ldfa: the factors of the layer above, src its delta; dldfa: the layer's own, src the
// output error
template <class CFG, class FB>
void lowrank_delta(const typename FB::u_t src[FB::m], typename FB::q_t Q[FB::nq][FB::r],
                   typename FB::p_t P[FB::r][FB::m], const typename CFG::g_t g[CFG::n_out],
                   typename CFG::err_t delta[CFG::n_out]) {
    typename FB::u_t u[FB::r];
#pragma HLS ARRAY_PARTITION variable=u complete
    lowrank_u<FB>(src, P, u);
LowrankDelta:
    for (unsigned j = 0; j < CFG::n_out; j++) {
#pragma HLS PIPELINE II = 1
        typename FB::psum_t p = 0;
    LowrankRank:
        for (unsigned t = 0; t < FB::r; t++)
            p += Q[j][t] * u[t];
        delta[j] = p * g[j];
    }
}

// the signal of layer CFG through kp's B of the layer above: delta_j = (sum_i B[j][i] d_up_i) g_j
template <class CFG, class FB>
void fa_delta(const typename FB::u_t d_up[FB::m], typename FB::q_t B[FB::nq][FB::m],
              const typename CFG::g_t g[CFG::n_out], typename CFG::err_t delta[CFG::n_out]) {
FADelta:
    for (unsigned j = 0; j < CFG::n_out; j++) {
        typename FB::psum_t p = 0;
    FADeltaCols:
        for (unsigned i = 0; i < FB::m; i++) {
{{ pipeline(lanes)|trim }}
            p += B[j][i] * d_up[i];
        }
        delta[j] = p * g[j];
    }
}

// kp: B[j][i] += 2^-lr_shift d_i x_j for the non-zero inputs j ascending, i inner (W's own increment, rounded to
// B's LSB with B's rounding)
template <class FB>
void kp_learn(const typename FB::h_t x[FB::nq], const typename FB::u_t d[FB::m], typename FB::q_t B[FB::nq][FB::m]) {
    lfsr_t none = 0;  // the feedback words round RND / TRN: no draw is taken
KpRows:
    for (unsigned j = 0; j < FB::nq; j++) {
        typename FB::h_t xj = x[j];
        if (xj == 0)
            continue;
    KpCols:
        for (unsigned i = 0; i < FB::m; i++) {
{{ pipeline(lanes)|trim }}
            B[j][i] = apply_update<typename FB::qupd, lfsr_rng>(B[j][i], d[i] * xj, none);
        }
    }
}

// ldfa / dldfa: Q[j][t] += 2^-lr_shift u_t h_j (u = P src; h the layer's input for ldfa, its activation for dldfa;
// non-zero h_j only), then P's online Oja step:
//   s = src with its binary point moved so that max |s_i| is in [1/4, 1/2) (a leading-one detector: no divider),
//       the one-hot target read as 1/4 under oja_target; a zero source takes no step
//   a = P s, rho = s - P^T a (exact sums, each assigned to the layer's error format)
//   P[t][i] += 2^-(lr_shift - OJA_GAIN) a_t rho_i
template <class FB>
void lowrank_learn(const typename FB::h_t h[FB::nq], const typename FB::u_t src[FB::m], unsigned label,
                   typename FB::q_t Q[FB::nq][FB::r], typename FB::p_t P[FB::r][FB::m]) {
    lfsr_t none = 0;  // the feedback words round RND / TRN: no draw is taken
    if (FB::learn_q) {
        typename FB::u_t u[FB::r];
#pragma HLS ARRAY_PARTITION variable=u complete
        lowrank_u<FB>(src, P, u);
    QRows:
        for (unsigned j = 0; j < FB::nq; j++) {
            typename FB::h_t hj = h[j];
            if (hj == 0)
                continue;
        QCols:
            for (unsigned t = 0; t < FB::r; t++) {
#pragma HLS PIPELINE II = 1
                Q[j][t] = apply_update<typename FB::qupd, lfsr_rng>(Q[j][t], u[t] * hj, none);
            }
        }
    }
    if (!FB::learn_p)
        return;
    typename FB::s_t s[FB::m];
    if (FB::oja_target) {
    OjaTarget:
        for (unsigned i = 0; i < FB::m; i++) {
#pragma HLS PIPELINE II = 1
            s[i] = 0;
            if (i == label)
                s[i][FB::s_frac - 2] = 1;  // the bit of weight 2^-2: 1/4
        }
    } else {
        ap_uint<FB::src_w> big = 0;
    OjaMax:
        for (unsigned i = 0; i < FB::m; i++) {
#pragma HLS PIPELINE II = 1
            ap_int<FB::src_w> r;
            r.range(FB::src_w - 1, 0) = src[i].range(FB::src_w - 1, 0);
            ap_int<FB::src_w + 1> a = r;
            if (a < 0)
                a = -a;
            if (a > big)
                big = a;
        }
        if (big == 0)
            return;  // no error, nothing to learn (the float rule: a batch without variance)
        // fs: 2^(fs-2) <= max |raw| < 2^(fs-1), the position of the leading one plus 2
        int fs = 1;
    OjaLead:
        for (int bit = 0; bit < FB::src_w; bit++) {
#pragma HLS UNROLL
            if (big[bit])
                fs = bit + 2;
        }
    OjaNorm:
        for (unsigned i = 0; i < FB::m; i++) {
#pragma HLS PIPELINE II = 1
            ap_int<FB::src_w> r;
            r.range(FB::src_w - 1, 0) = src[i].range(FB::src_w - 1, 0);
            typename FB::sraw_t t = r;
            t <<= (FB::s_frac - fs);  // raw * 2^-fs in s_t (s_frac fractional bits): exact
            s[i].range(FB::s_frac - 1, 0) = t.range(FB::s_frac - 1, 0);
        }
    }
    typename FB::e_t a[FB::r];
#pragma HLS ARRAY_PARTITION variable=a complete
    p_times<FB, typename FB::aacc_t>(P, s, a);
    typename FB::e_t rho[FB::m];
OjaRho:
    for (unsigned i = 0; i < FB::m; i++) {
#pragma HLS PIPELINE II = 1
        typename FB::racc_t acc = s[i];
    OjaRhoRank:
        for (unsigned t = 0; t < FB::r; t++)
            acc -= P[t][i] * a[t];
        rho[i] = acc;
    }
OjaRows:
    for (unsigned t = 0; t < FB::r; t++) {
    OjaCols:
        for (unsigned i = 0; i < FB::m; i++) {
{{ pipeline(lanes)|trim }}
            P[t][i] = apply_update<typename FB::pupd, lfsr_rng>(P[t][i], a[t] * rho[i], none);
        }
    }
}

} // namespace el

#endif
