// Oracle harness: Xilinx ap_fixed (headers bundled with hls4ml) conversions, for tests/test_fixed_oracles.py.
//
// Build:  g++ -std=c++17 -O1 -I<hls4ml>/templates/vivado/ap_types ap_harness.cpp -o ap_harness
// Protocol (stdin -> stdout, one output line per input line):
//   L                          -> lists the compiled formats: "S <id> <W> <I> <signed>" / "D <id> <W> <I> <signed>", then "END"
//   C <src> <dst> <q> <o> <r>  -> dst = src (ap_fixed assignment); src built from raw bits r (decimal int64, low W bits);
//                                 prints the destination raw bits as an unsigned decimal
//   F <dst> <q> <o> <hex>      -> dst = double (the 64-bit pattern <hex> of an IEEE double); prints raw bits
// q uses edgelearn codes TRN=0 TRN_ZERO=1 RND=2 RND_ZERO=3 RND_INF=4 RND_MIN_INF=5 RND_CONV=6,
// o uses WRAP=0 SAT=1 SAT_ZERO=2 SAT_SYM=3.
// The formats are compile-time template arguments: every (src, dst, q, o) combination is instantiated.
#include <ap_fixed.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

template <int W, int I, bool S>
struct Fmt {
  static constexpr int w = W, i = I;
  static constexpr bool s = S;
  template <ap_q_mode Q, ap_o_mode O>
  using type = typename std::conditional<S, ap_fixed<W, I, Q, O>, ap_ufixed<W, I, Q, O>>::type;
};

// ---- formats under test (keep in sync with nothing: the test reads them back with "L") ----
#define SRC_FORMATS Fmt<40, 20, true>, Fmt<48, 10, true>, Fmt<24, 30, true>, Fmt<32, 16, false>
#define DST_FORMATS                                                                                        \
  Fmt<2, 1, true>, Fmt<3, -2, true>, Fmt<4, 2, true>, Fmt<5, 9, true>, Fmt<8, 3, true>, Fmt<8, 0, true>,   \
      Fmt<8, -3, true>, Fmt<12, 4, true>, Fmt<16, 2, true>, Fmt<17, 20, true>, Fmt<24, 8, true>,           \
      Fmt<32, 16, true>, Fmt<32, -4, true>, Fmt<32, 40, true>, Fmt<2, 1, false>, Fmt<3, -2, false>,        \
      Fmt<4, 2, false>, Fmt<5, 9, false>, Fmt<8, 3, false>, Fmt<8, 0, false>, Fmt<10, 0, false>,           \
      Fmt<12, 4, false>, Fmt<16, 2, false>, Fmt<24, 8, false>, Fmt<32, 16, false>, Fmt<32, -4, false>

template <class... T>
struct List {
  static constexpr int n = sizeof...(T);
};
using Srcs = List<SRC_FORMATS>;
using Dsts = List<DST_FORMATS>;

template <int K, class L>
struct At;
template <int K, class H, class... T>
struct At<K, List<H, T...>> : At<K - 1, List<T...>> {};
template <class H, class... T>
struct At<0, List<H, T...>> {
  using type = H;
};

static constexpr ap_q_mode QS[7] = {AP_TRN, AP_TRN_ZERO, AP_RND, AP_RND_ZERO, AP_RND_INF, AP_RND_MIN_INF, AP_RND_CONV};
static constexpr ap_o_mode OS[4] = {AP_WRAP, AP_SAT, AP_SAT_ZERO, AP_SAT_SYM};

typedef unsigned long long u64;
typedef u64 (*ConvFn)(long long);
typedef u64 (*DblFn)(double);

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

static ConvFn CONV[Srcs::n][Dsts::n][7][4];
static DblFn DBL[Dsts::n][7][4];

template <int S, int D, int... QO>
void fill_conv(std::integer_sequence<int, QO...>) {
  using SF = typename At<S, Srcs>::type;
  using DF = typename At<D, Dsts>::type;
  ((CONV[S][D][QO / 4][QO % 4] = &conv<SF, DF, QO / 4, QO % 4>), ...);
  if (S == 0) ((DBL[D][QO / 4][QO % 4] = &from_double<DF, QO / 4, QO % 4>), ...);
}
template <int S, int... D>
void fill_src(std::integer_sequence<int, D...>) {
  (fill_conv<S, D>(std::make_integer_sequence<int, 28>{}), ...);
}
template <int... S>
void fill_all(std::integer_sequence<int, S...>) {
  (fill_src<S>(std::make_integer_sequence<int, Dsts::n>{}), ...);
}

template <class L, int... K>
void list_formats(const char* tag, std::integer_sequence<int, K...>) {
  ((std::cout << tag << ' ' << K << ' ' << At<K, L>::type::w << ' ' << At<K, L>::type::i << ' '
              << (At<K, L>::type::s ? 1 : 0) << '\n'),
   ...);
}

int main() {
  std::ios::sync_with_stdio(false);
  fill_all(std::make_integer_sequence<int, Srcs::n>{});
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    std::istringstream in(line);
    char cmd;
    in >> cmd;
    if (cmd == 'L') {
      list_formats<Srcs>("S", std::make_integer_sequence<int, Srcs::n>{});
      list_formats<Dsts>("D", std::make_integer_sequence<int, Dsts::n>{});
      std::cout << "END\n";
    } else if (cmd == 'C') {
      int s, d, q, o;
      long long r;
      in >> s >> d >> q >> o >> r;
      if (!in || s < 0 || s >= Srcs::n || d < 0 || d >= Dsts::n || q < 0 || q > 6 || o < 0 || o > 3) {
        std::cout << "ERR " << line << '\n';
        continue;
      }
      std::cout << CONV[s][d][q][o](r) << '\n';
    } else if (cmd == 'F') {
      int d, q, o;
      std::string hex;
      in >> d >> q >> o >> hex;
      if (!in || d < 0 || d >= Dsts::n || q < 0 || q > 6 || o < 0 || o > 3) {
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
