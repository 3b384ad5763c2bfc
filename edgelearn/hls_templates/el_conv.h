// edgelearn on-chip learning kernel: the frozen convolutional front end (ap_fixed, Vitis/Vivado HLS).
//
// docs/arithmetic.md section 15: a conv output is acc = b, then acc += W[o][c][ky][kx] * x[c][iy][ix] in the patch
// order (c, ky, kx), every += an assignment to the accumulator type (round, then overflow), then the activation
// (el::activate, the linear layers' code); padding terms add an exact zero and are skipped.  With the automatic
// accumulator no assignment rounds or overflows, so this order gives the engine's bits whatever order it sums in;
// with a narrower one it *is* the engine's order.  Max pooling keeps the largest value of the window; average
// pooling sums the window exactly and divides by k*k with the tensor format's rounding (round_div: q = floor(S / d)
// and the remainder against d / 2, here as two guard bits below the LSB that the format's own ap_fixed rounding
// reads).  Tensors are (C, H, W) flattened in C order; kernels W[o][c][ky][kx] (torch's layout).
//
// A front-end layer is described by a config struct CFG (generated in parameters.h):
//   conv: c_in h_in w_in c_out h_out w_out k stride pad n_in size_out, in_t w_t b_t acc_t act_t, w_raw_t b_raw_t
//         act_raw_t (ROM words: raw bits), and el::activate's view of one output position: n_out (= 1), act, need_g
//         (false: frozen, no derivative), table_size, idx_t, g_t;
//   pool: c_in h_in w_in h_out w_out k stride n_in size_out is_max, in_t act_t (the same format), sum_t (the exact
//         window sum), guard_t (the mean's raw with two guard bits).
// Loops: one multiply-accumulate (one window read) per cycle for each output position (PIPELINE II = 1 on the taps).
#ifndef EL_CONV_H_
#define EL_CONV_H_

#include "el_learn.h"

namespace el {

template <class CFG>
void conv2d(const typename CFG::in_t x[CFG::n_in],
            const typename CFG::w_raw_t W[CFG::c_out][CFG::c_in][CFG::k][CFG::k],
            const typename CFG::b_raw_t b[CFG::c_out], const typename CFG::act_raw_t table[CFG::table_size],
            typename CFG::act_t y[CFG::size_out]) {
ConvChannels:
    for (unsigned o = 0; o < CFG::c_out; o++) {
    ConvRows:
        for (unsigned oy = 0; oy < CFG::h_out; oy++) {
        ConvCols:
            for (unsigned ox = 0; ox < CFG::w_out; ox++) {
                typename CFG::b_t bo;
                bo.range() = b[o];
                typename CFG::acc_t acc = bo;  // acc = b: one assignment to the accumulator
                unsigned c = 0, ky = 0, kx = 0;
            ConvTaps:
                for (unsigned t = 0; t < CFG::c_in * CFG::k * CFG::k; t++) {
#pragma HLS PIPELINE II = 1
                    int iy = (int)(oy * CFG::stride + ky) - (int)CFG::pad;
                    int ix = (int)(ox * CFG::stride + kx) - (int)CFG::pad;
                    if (iy >= 0 && iy < (int)CFG::h_in && ix >= 0 && ix < (int)CFG::w_in) {
                        typename CFG::w_t w;
                        w.range() = W[o][c][ky][kx];
                        acc += w * x[(c * CFG::h_in + iy) * CFG::w_in + ix];
                    }
                    if (++kx == CFG::k) {  // the patch order: kx fastest, then ky, then c
                        kx = 0;
                        if (++ky == CFG::k) {
                            ky = 0;
                            c++;
                        }
                    }
                }
                typename CFG::acc_t z[1] = {acc};
                typename CFG::act_t a[1];
                typename CFG::g_t g[1];
                activate<CFG>(z, table, a, g);
                y[(o * CFG::h_out + oy) * CFG::w_out + ox] = a[0];
            }
        }
    }
}

// the mean of a window, S / d rounded with act_t's rounding (docs/arithmetic.md section 15, round_div): floor(S / d)
// and two guard bits (0: exact, 1: below a half, 2: a half, 3: above) that ap_fixed's rounding modes read as the
// engine's table does; the mean of in-range values is in range (no overflow)
template <class CFG> inline typename CFG::act_t window_mean(typename CFG::sum_t s) {
#pragma HLS INLINE
    const int d = CFG::k * CFG::k;
    ap_int<CFG::sum_t::width> sr;
    sr.range() = s.range();
    ap_int<CFG::sum_t::width> q = sr / d;  // C division truncates: make it the floor
    ap_int<CFG::sum_t::width + 1> rem = sr - q * d;
    if (rem < 0) {
        q -= 1;
        rem += d;
    }
    ap_uint<2> gd = rem == 0 ? 0 : (2 * rem < d ? 1 : (2 * rem == d ? 2 : 3));
    ap_int<CFG::guard_t::width> r4 = q;
    r4 = (r4 << 2) | gd;
    typename CFG::guard_t v;
    v.range() = r4.range();
    typename CFG::act_t out = v;
    return out;
}

template <class CFG> void pool(const typename CFG::in_t x[CFG::n_in], typename CFG::act_t y[CFG::size_out]) {
PoolChannels:
    for (unsigned c = 0; c < CFG::c_in; c++) {
    PoolRows:
        for (unsigned oy = 0; oy < CFG::h_out; oy++) {
        PoolCols:
            for (unsigned ox = 0; ox < CFG::w_out; ox++) {
                const unsigned base = (c * CFG::h_in + oy * CFG::stride) * CFG::w_in + ox * CFG::stride;
                typename CFG::in_t m = x[base];
                typename CFG::sum_t s = 0;
                unsigned ky = 0, kx = 0;
            PoolWindow:
                for (unsigned t = 0; t < CFG::k * CFG::k; t++) {
#pragma HLS PIPELINE II = 1
                    typename CFG::in_t v = x[base + ky * CFG::w_in + kx];
                    if (v > m)
                        m = v;
                    s += v;  // exact: sum_t holds k*k words
                    if (++kx == CFG::k) {
                        kx = 0;
                        ky++;
                    }
                }
                const unsigned i = (c * CFG::h_out + oy) * CFG::w_out + ox;
                if (CFG::is_max)
                    y[i] = m;
                else
                    y[i] = window_mean<CFG>(s);
            }
        }
    }
}

} // namespace el

#endif
