// Oracle harness: Xilinx ap_fixed (the ap_types headers bundled with hls4ml) for tests/test_fixed_oracles.py.
//
// The formats are template arguments, so every (source, destination, Q, O) combination below is
// instantiated at compile time.  To keep the build short the file is compiled as three translation units
// that can be built in parallel and linked together:
//   g++ -std=c++17 -O0 -I<hls4ml>/templates/vivado/ap_types -DAPH_PART=N -c ap_harness.cpp -o partN.o   (N = 0, 1, 2)
//   g++ part0.o part1.o part2.o -o ap_harness
//
// Protocol (stdin -> stdout, exactly one output line per non-empty input line):
//   L                          -> "S <src> <W> <I> <signed>" per source format, "D <src> <dst> <W> <I> <signed>" per
//                                 destination compiled for that source, "F <dst> <W> <I> <signed>" per double
//                                 destination, then "END"
//   C <src> <dst> <q> <o> <r>  -> dst = src (ap_fixed assignment); the source is built from the low W bits of r
//                                 (decimal int64); prints the destination's raw bits as an unsigned decimal
//   F <dst> <q> <o> <hex>      -> dst = double (hex = the IEEE-754 bit pattern); prints the raw bits
// q uses edgelearn codes TRN=0 TRN_ZERO=1 RND=2 RND_ZERO=3 RND_INF=4 RND_MIN_INF=5 RND_CONV=6,
// o uses WRAP=0 SAT=1 SAT_ZERO=2 SAT_SYM=3.  Malformed lines answer "ERR <line>".
#include <ap_fixed.h>

#include <cstdint>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#ifndef APH_PART
#error "compile with -DAPH_PART=0, 1 and 2"
#endif

template <int W, int I, bool S>
struct Fmt {
  static constexpr int w = W, i = I;
  static constexpr bool s = S;
  template <ap_q_mode Q, ap_o_mode O>
  using type = typename std::conditional<S, ap_fixed<W, I, Q, O>, ap_ufixed<W, I, Q, O>>::type;
};

template <class... T>
struct List {
  static constexpr int n = sizeof...(T);
};
template <int K, class L>
struct At;
template <int K, class H, class... T>
struct At<K, List<H, T...>> : At<K - 1, List<T...>> {};
template <class H, class... T>
struct At<0, List<H, T...>> {
  using type = H;
};

// ---------------- formats under test (the test reads them back with "L") ----------------
// source 0: a wide signed source; source 1: an unsigned source
using Src0 = Fmt<64, 32, true>;
using Src1 = Fmt<40, 20, false>;
using Dst0 = List<Fmt<2, 1, true>, Fmt<3, -2, true>, Fmt<5, 9, true>, Fmt<8, 3, true>, Fmt<8, -3, true>,
                  Fmt<12, 4, true>, Fmt<16, 2, true>, Fmt<17, 20, true>, Fmt<32, 16, true>, Fmt<32, -4, true>,
                  Fmt<2, 1, false>, Fmt<5, 9, false>, Fmt<8, 3, false>, Fmt<10, 0, false>, Fmt<16, 2, false>,
                  Fmt<32, 36, false>>;
using Dst1 = List<Fmt<4, 2, true>, Fmt<8, -3, true>, Fmt<16, 6, true>, Fmt<3, 1, false>, Fmt<9, 12, false>,
                  Fmt<16, 6, false>>;
// double -> ap_fixed destinations (quantize and activation-table entries)
using DstF = List<Fmt<2, 1, true>, Fmt<3, -2, true>, Fmt<5, 9, true>, Fmt<8, 3, true>, Fmt<8, -3, true>,
                  Fmt<12, 4, true>, Fmt<16, 2, true>, Fmt<16, 1, true>, Fmt<17, 20, true>, Fmt<32, 16, true>,
                  Fmt<32, 40, true>, Fmt<2, 1, false>, Fmt<8, 3, false>, Fmt<10, 0, false>, Fmt<16, 0, false>,
                  Fmt<32, -4, false>>;

static constexpr ap_q_mode QS[7] = {AP_TRN, AP_TRN_ZERO, AP_RND, AP_RND_ZERO, AP_RND_INF, AP_RND_MIN_INF, AP_RND_CONV};
static constexpr ap_o_mode OS[4] = {AP_WRAP, AP_SAT, AP_SAT_ZERO, AP_SAT_SYM};

typedef unsigned long long u64;
typedef u64 (*ConvFn)(long long);
typedef u64 (*DblFn)(double);

extern ConvFn CONV0[Dst0::n][7][4];
extern ConvFn CONV1[Dst1::n][7][4];
extern DblFn DBL[DstF::n][7][4];
void fill_conv0();
void fill_conv1();
void fill_dbl();

template <class SF, class DF, int QI, int OI>
u64 conv(long long raw) {
  typename SF::template type<AP_TRN, AP_WRAP> x;
  x.range(SF::w - 1, 0) = ap_uint<SF::w>((u64)raw);
  typename DF::template type<QS[QI], OS[OI]> y = x;
  return (u64)y.range(DF::w - 1, 0).to_uint64();
}

template <class DF, int QI, int OI>
u64 from_double(double d) {
  typename DF::template type<QS[QI], OS[OI]> y = d;
  return (u64)y.range(DF::w - 1, 0).to_uint64();
}

template <class SF, class DL, ConvFn (*T)[7][4], int D, int... QO>
void fill_one(std::integer_sequence<int, QO...>) {
  ((T[D][QO / 4][QO % 4] = &conv<SF, typename At<D, DL>::type, QO / 4, QO % 4>), ...);
}
template <class SF, class DL, ConvFn (*T)[7][4], int... D>
void fill_table(std::integer_sequence<int, D...>) {
  (fill_one<SF, DL, T, D>(std::make_integer_sequence<int, 28>{}), ...);
}
template <int D, int... QO>
void fill_dbl_one(std::integer_sequence<int, QO...>) {
  ((DBL[D][QO / 4][QO % 4] = &from_double<typename At<D, DstF>::type, QO / 4, QO % 4>), ...);
}
template <int... D>
void fill_dbl_all(std::integer_sequence<int, D...>) {
  (fill_dbl_one<D>(std::make_integer_sequence<int, 28>{}), ...);
}

#if APH_PART == 0
void fill_conv0() { fill_table<Src0, Dst0, CONV0>(std::make_integer_sequence<int, Dst0::n>{}); }
#elif APH_PART == 2
void fill_dbl() { fill_dbl_all(std::make_integer_sequence<int, DstF::n>{}); }
#elif APH_PART == 1
ConvFn CONV0[Dst0::n][7][4];
ConvFn CONV1[Dst1::n][7][4];
DblFn DBL[DstF::n][7][4];
void fill_conv1() { fill_table<Src1, Dst1, CONV1>(std::make_integer_sequence<int, Dst1::n>{}); }

template <class F>
void print_fmt(const char* prefix) {
  std::cout << prefix << ' ' << F::w << ' ' << F::i << ' ' << (F::s ? 1 : 0) << '\n';
}
template <class L, int... K>
void list_formats(const std::string& tag, std::integer_sequence<int, K...>) {
  (print_fmt<typename At<K, L>::type>((tag + ' ' + std::to_string(K)).c_str()), ...);
}

int main() {
  std::ios::sync_with_stdio(false);
  fill_conv0();
  fill_conv1();
  fill_dbl();
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    char cmd = 0;
    in >> cmd;
    if (cmd == 'L') {
      print_fmt<Src0>("S 0");
      print_fmt<Src1>("S 1");
      list_formats<Dst0>("D 0", std::make_integer_sequence<int, Dst0::n>{});
      list_formats<Dst1>("D 1", std::make_integer_sequence<int, Dst1::n>{});
      list_formats<DstF>("F", std::make_integer_sequence<int, DstF::n>{});
      std::cout << "END\n";
    } else if (cmd == 'C') {
      int s = -1, d = -1, q = -1, o = -1;
      long long r = 0;
      in >> s >> d >> q >> o >> r;
      int nd = s == 0 ? Dst0::n : Dst1::n;
      if (!in || s < 0 || s > 1 || d < 0 || d >= nd || q < 0 || q > 6 || o < 0 || o > 3) {
        std::cout << "ERR " << line << '\n';
        continue;
      }
      std::cout << (s == 0 ? CONV0 : CONV1)[d][q][o](r) << '\n';
    } else if (cmd == 'F') {
      int d = -1, q = -1, o = -1;
      std::string hex;
      in >> d >> q >> o >> hex;
      if (!in || d < 0 || d >= DstF::n || q < 0 || q > 6 || o < 0 || o > 3) {
        std::cout << "ERR " << line << '\n';
        continue;
      }
      u64 bits = std::stoull(hex, nullptr, 16);
      double v;
      std::memcpy(&v, &bits, sizeof v);
      std::cout << DBL[d][q][o](v) << '\n';
    } else {
      std::cout << "ERR " << line << '\n';
    }
  }
  return 0;
}
#endif
