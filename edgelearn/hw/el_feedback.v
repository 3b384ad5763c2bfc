// edgelearn: trained feedback of one layer K (docs/arithmetic.md §16, docs/rtl.md "Trained LDFA feedback", "kp",
// "dldfa"), one multiply-accumulate per cycle: ldfa's factors Q P, dldfa's (source: the output error, x: the
// layer's own output activation, served to the layer itself), or kp's B (HAS_P = 0: Q = B, P the identity).
//
// The layer's factors Q (NQ x R) and P (R x M) are state memories, initialised from the engine (their LFSR draws or
// trained values), updated in the schedule's order: the signal of the layer below reads them first, then Q's local
// rule, then P's online Oja step (feedback(K) before update(K); both read the sample's pre-update words).
//   capture  the layer's non-zero inputs x_j (the layer below's output stream, observed) and the sample's label;
//   source   delta_K, the layer's error (words of SPL lanes: the output layer's error vector, or a hidden ldfa
//            layer's modulatory words as its projection writes them);
//   U        u_t = sum_i P[t,i] delta_i (exact, i ascending), assigned to the layer's error format; u goes to the
//            layer below, whose projection p_j = sum_t Q[j,t] u_t reads Q here (port q_ra / q_rd, a synchronous
//            read: Q^T in the layer below's word layout, word t*QG + g = Q[g*QP .. g*QP+QP-1, t], lane 0 in the LSBs);
//   Q        (LEARN_Q, after the projection: proj_done) Q[j,t] += round(u_t x_j 2^-LR), Q's rounding and overflow;
//   Oja      (LEARN_P) s = the source with its binary point moved so that max |s_i| is in [1/4, 1/2) (a leading-one
//            detector), or the one-hot target read as 1/4 (OJA_TGT); held with SF fractional bits (exact);
//            a_t = sum_i P[t,i] s_i, rho_i = s_i - sum_t P[t,i] a_t (exact, each assigned to the error format);
//            P[t,i] += round(a_t rho_i 2^-PLR), P's rounding and overflow (column i right after its rho_i: no other
//            rho reads that column); a and rho in the Oja format K (the layer's error format; dldfa's u takes the
//            output error's, its a and rho the hidden layer's).
// kp (HAS_P = 0): u = delta itself (R = M, exact: kp's signal B delta needs no bottleneck), Q's pass is B's update
// with W's own increment delta_i x_j rounded to B's LSB, no P memory, no Oja step; with QPAR a word of QP entries
// per cycle (QP multipliers), so B keeps pace with W's update instead of taking n_in x n_out cycles.
// Every increment touches its own word once and rounds RND / TRN (no draws), so the loop order does not change a bit.
// el_convert's ovf (the overflow event of docs/arithmetic.md §13) has no counter in this datapath: its instances
// leave it open
/* verilator lint_off PINCONNECTEMPTY */
module el_feedback #(
    parameter integer NQ = 8, parameter integer R = 2, parameter integer M = 4,
    parameter integer QP = 2,              // lanes of a Q word (the layer below's MAC lanes)
    parameter integer QG = (NQ + QP - 1) / QP,
    parameter integer SPL = 4, parameter integer SG = 1,    // source words: SG words of SPL lanes
    parameter integer NCLS = 4,
    parameter integer XW = 8, parameter integer XF = 7, parameter integer XS = 0,            // the layer's input
    parameter integer EW = 8, parameter integer EF = 7, parameter integer ES = 1, parameter integer ER = 2,
    parameter integer EO = 1,                                                                // the layer's error
    parameter integer QW = 8, parameter integer QF = 7, parameter integer QS = 1, parameter integer QR = 2,
    parameter integer QO = 1,                                                                // Q (fb_q)
    parameter integer PW = 8, parameter integer PF = 7, parameter integer PS = 1, parameter integer PR = 2,
    parameter integer PO = 1,                                                                // P (fb_p, + ps)
    parameter integer KW = EW, parameter integer KF = EF, parameter integer KS = ES, parameter integer KR = ER,
    parameter integer KO = EO,                                                               // Oja's a, rho
    parameter integer HAS_P = 1,                           // 0: kp (Q = B, u = the source, no P)
    parameter integer QPAR = 0,                            // 1: Q's pass updates a whole word (QP lanes) per cycle
    parameter integer LR = 6, parameter integer PLR = 2,   // 2^-LR for Q, 2^-(LR - OJA_GAIN) for P
    parameter integer LEARN_Q = 1, parameter integer LEARN_P = 1, parameter integer OJA_TGT = 0,
    parameter Q_INIT = "q.hex", parameter P_INIT = "p.hex",
    parameter integer IDXW = (NQ > 1) ? $clog2(NQ) : 1,
    parameter integer LW = (NCLS > 1) ? $clog2(NCLS) : 1,
    parameter integer SGW = (SG > 1) ? $clog2(SG) : 1,
    parameter integer RAW = 32
) (
    input  wire                 clk,
    input  wire                 rst,
    // the layer's inputs as the layer below writes them (observed), and that stream's end
    input  wire                 x_we,
    input  wire [IDXW-1:0]      x_idx,
    input  wire [XW-1:0]        x_val,
    input  wire                 x_done,
    input  wire [LW-1:0]        x_label,
    input  wire                 x_train,
    // the source delta_K
    input  wire                 s_we,
    input  wire [SGW-1:0]       s_g,
    input  wire [SPL*EW-1:0]    s_word,
    // u to the layer below (a one-cycle pulse), and the end of its projection
    output reg                  u_valid,
    output wire [R*EW-1:0]      u_out,
    input  wire                 proj_done,
    // Q words for the layer below's projection (data one cycle after the address)
    /* verilator lint_off UNUSEDSIGNAL */  // the layer's 32-bit word address: Q has NQW words
    input  wire [31:0]          q_ra,
    /* verilator lint_on UNUSEDSIGNAL */
    output reg  [QP*QW-1:0]     q_rd,
    // read-back (data one cycle after rd_addr): Q word rd_addr, P entry rd_addr (t*M + i)
    /* verilator lint_off UNUSEDSIGNAL */  // the top level's read-back address, as wide as its largest memory
    input  wire [RAW-1:0]       rd_addr,
    /* verilator lint_on UNUSEDSIGNAL */
    output reg  [QP*QW-1:0]     rd_q,
    output reg  [PW-1:0]        rd_p,
    output wire                 idle
);
    localparam integer NQW = R * QG;                  // Q words
    localparam integer NP = (HAS_P != 0) ? R * M : 1;        // P entries
    localparam integer MW = (M > 1) ? $clog2(M) : 1;
    localparam integer TW = (R > 1) ? $clog2(R) : 1;
    localparam integer QAW = (NQW > 1) ? $clog2(NQW) : 1;
    localparam integer PAW = (NP > 1) ? $clog2(NP) : 1;
    localparam integer LNW = (QP > 1) ? $clog2(QP) : 1;
    // the counters' last values at the counters' widths (a part-select of a value that fits), compared unwidened
    localparam integer R_M1 = R - 1, M_M1 = M - 1, SG_M1 = SG - 1, QP_M1 = QP - 1;
    localparam [TW:0]  R_LAST = R_M1[TW:0];
    localparam [MW:0]  M_LAST = M_M1[MW:0];
    localparam [SGW:0] SG_LAST = SG_M1[SGW:0];
    localparam [LNW:0] QP_LAST = QP_M1[LNW:0];
    localparam integer SF = EW + 1;                   // fractional bits of the normalised source s (|s| < 1/2)
    localparam integer FA = PF + KF;                  // P^T a
    localparam integer FR = (FA > SF) ? FA : SF;      // rho's exact sum
    localparam integer CW = $clog2(M + R + 2) + 2;    // carry bits of a sum of at most M (or R) products
    localparam integer UAW = PW + EW + CW;            // u = P delta
    localparam integer AAW = PW + SF + 1 + CW;        // a = P s
    localparam integer BAW = PW + KW + CW;            // P^T a
    // the one P multiplier's second operand (delta_i, s_i or a_t, signed) and the one accumulator: the widest of
    // the three; each sum is exact in its own width, so the low bits of the wide one are its bits
    localparam integer MOW = (SF + 2 > EW + 1) ? ((SF + 2 > KW + 1) ? SF + 2 : KW + 1)
                                               : ((EW + 1 > KW + 1) ? EW + 1 : KW + 1);
    localparam integer XAW = (UAW > AAW) ? ((UAW > BAW) ? UAW : BAW) : ((AAW > BAW) ? AAW : BAW);
    localparam integer RHW = ((BAW + FR - FA > SF + 2 + FR - SF) ? BAW + FR - FA : SF + 2 + FR - SF) + 2;
    localparam integer QIW = EW + XW + 2;             // u_t x_j
    localparam integer PIW = 2 * KW + 1;              // a_t rho_i

    localparam [3:0] F_IDLE = 4'd0, F_SRC = 4'd1, F_U = 4'd2, F_UOUT = 4'd3, F_WPROJ = 4'd4, F_Q = 4'd5,
                     F_OMAX = 4'd6, F_OLEAD = 4'd7, F_OA = 4'd8, F_ORHO = 4'd9, F_OUPD = 4'd10, F_END = 4'd11;
    reg [3:0] state;
    assign idle = (state == F_IDLE);

    // ---------------------------------------------------------------------------------------------------------
    // state memories and the sample's vectors
    reg [QP*QW-1:0] qmem [0:NQW-1];
    reg [PW-1:0]    pmem [0:NP-1];
    initial begin
        $readmemh(Q_INIT, qmem);
        if (HAS_P != 0) $readmemh(P_INIT, pmem);
    end
    reg [XW-1:0]    xv [0:NQ-1];
    reg [NQ-1:0]    xbit;                             // x_j was written this sample (else x_j = 0)
    reg [EW-1:0]    sm [0:M-1];                       // delta_K
    reg [EW-1:0]    uv [0:R-1];
    reg [KW-1:0]    av [0:R-1];
    reg [LW-1:0]    label;
    genvar gt;
    generate
        for (gt = 0; gt < R; gt = gt + 1) begin : g_u
            if (HAS_P != 0) begin : g_p
                assign u_out[gt*EW +: EW] = uv[gt];
            end else begin : g_kp  // kp: u is delta itself
                assign u_out[gt*EW +: EW] = sm[gt];
            end
        end
    endgenerate

    always @(posedge clk) begin
        q_rd <= qmem[q_ra[QAW-1:0]];
        rd_q <= qmem[rd_addr[QAW-1:0]];
        rd_p <= pmem[rd_addr[PAW-1:0]];
    end

    // ---------------------------------------------------------------------------------------------------------
    // counters: t (row of P / column of Q), i (column of P), the Q pass's word, lane and input index
    reg [TW:0]      t;
    reg [MW:0]      i;
    reg [PAW:0]     pa;                               // t*M + i (U, Oja a) or the column walk (rho, update)
    reg [QAW:0]     qa;
    reg [LNW:0]     ql;
    reg [IDXW:0]    qj;
    reg [SGW:0]     sgc;
    reg signed [XAW-1:0] acc;                         // u_t (F_U), a_t (F_OA) or P^T a (F_ORHO)
    reg [EW:0]      big;
    reg [7:0]       fs;
    reg [KW-1:0]    rho_q;

    // ---- operands (asynchronous reads of the small memories)
    wire [PW-1:0] p_raw = pmem[pa[PAW-1:0]];
    wire signed [PW:0] pv = (PS != 0) ? $signed({p_raw[PW-1], p_raw}) : $signed({1'b0, p_raw});
    wire [EW-1:0] src_raw = sm[i[MW-1:0]];
    wire signed [EW:0] srcv = (ES != 0) ? $signed({src_raw[EW-1], src_raw}) : $signed({1'b0, src_raw});
    wire signed [EW:0] srcabs = (srcv < 0) ? -srcv : srcv;
    wire signed [EW+1:0] srcabs_x;
    el_resize #(.IW(EW + 1), .OW(EW + 2)) u_sax (.din(srcabs), .dout(srcabs_x));
    wire signed [SF+1:0] srcv_s;
    el_resize #(.IW(EW + 1), .OW(SF + 2)) u_svs (.din(srcv), .dout(srcv_s));
    // s_i with SF fractional bits: the source raw read with fs fractional bits, or 1/4 at the label (exact)
    localparam integer CMW = (MW > LW) ? MW : LW;
    wire [CMW-1:0] i_c, label_c;                      // column and label at a common width
    el_resize #(.IW(MW), .OW(CMW), .SX(0)) u_ic (.din(i[MW-1:0]), .dout(i_c));
    el_resize #(.IW(LW), .OW(CMW), .SX(0)) u_lc (.din(label), .dout(label_c));
    localparam [31:0] SF_32 = SF;
    wire [31:0] fs32;                                 // the shift SF - fs at the integers' width
    el_resize #(.IW(8), .OW(32), .SX(0)) u_fs32 (.din(fs), .dout(fs32));
    wire signed [SF+1:0] s_i = (OJA_TGT != 0) ? ((i_c == label_c) ? $signed({{(SF+1){1'b0}}, 1'b1}) <<< (SF - 2)
                                                                 : $signed({(SF+2){1'b0}}))
                                       : srcv_s <<< (SF_32 - fs32);
    wire [MW-1:0] t_m;                                // t as an index of sm (kp: R = M)
    el_resize #(.IW(TW), .OW(MW), .SX(0)) u_tm (.din(t[TW-1:0]), .dout(t_m));
    wire [EW-1:0] u_cur = (HAS_P != 0) ? uv[t[TW-1:0]] : sm[t_m];  // kp: u = delta
    wire [KW-1:0] a_cur = av[t[TW-1:0]];
    wire signed [EW:0] uev = (ES != 0) ? $signed({u_cur[EW-1], u_cur}) : $signed({1'b0, u_cur});
    wire signed [KW:0] aev = (KS != 0) ? $signed({a_cur[KW-1], a_cur}) : $signed({1'b0, a_cur});

    // ---- the P multiply-accumulate: u, Oja's a and P^T a each multiply the P entry pv, in different states, so
    // one multiplier takes the state's operand: delta_i (F_U), s_i (F_OA) or a_t (F_ORHO, the column walk over t)
    wire signed [MOW-1:0] srcv_m, s_i_m, aev_m;
    el_resize #(.IW(EW + 1), .OW(MOW)) u_svm (.din(srcv), .dout(srcv_m));
    el_resize #(.IW(SF + 2), .OW(MOW)) u_sim (.din(s_i), .dout(s_i_m));
    el_resize #(.IW(KW + 1), .OW(MOW)) u_aem (.din(aev), .dout(aev_m));
    wire signed [MOW-1:0] mop = (state == F_U) ? srcv_m : (state == F_OA) ? s_i_m : aev_m;
    wire signed [PW+MOW:0] pm = pv * mop;
    wire signed [XAW-1:0] pm_x;
    el_resize #(.IW(PW + MOW + 1), .OW(XAW)) u_pmx (.din(pm), .dout(pm_x));
    wire acc_first = (state == F_ORHO) ? (t == 0) : (i == 0);
    wire signed [XAW-1:0] acc_new = (acc_first ? $signed({XAW{1'b0}}) : acc) + pm_x;

    // ---- U: u_t = sum_i P[t,i] delta_i, assigned to the error format
    wire signed [UAW-1:0] uacc_new = acc_new[UAW-1:0];
    wire [EW-1:0] u_conv;
    el_convert #(.IW(UAW), .S(PF), .RMODE(ER), .OW(EW), .OSIGNED(ES), .OMODE(EO))
        u_cu (.din(uacc_new), .rnd(32'd0), .dout(u_conv), .ovf());

    // ---- Oja a: a_t = sum_i P[t,i] s_i (SF fractional bits in s)
    wire signed [AAW-1:0] aacc_new = acc_new[AAW-1:0];
    wire [KW-1:0] a_conv;
    el_convert #(.IW(AAW), .S(PF + SF - KF), .RMODE(KR), .OW(KW), .OSIGNED(KS), .OMODE(KO))
        u_ca (.din(aacc_new), .rnd(32'd0), .dout(a_conv), .ovf());

    // ---- Oja rho: rho_i = s_i - sum_t P[t,i] a_t, the two aligned to FR fractional bits
    wire signed [BAW-1:0] bacc_new = acc_new[BAW-1:0];
    wire signed [RHW-1:0] s_i_r, bacc_r;
    el_resize #(.IW(SF + 2), .OW(RHW)) u_sir (.din(s_i), .dout(s_i_r));
    el_resize #(.IW(BAW), .OW(RHW)) u_bar (.din(bacc_new), .dout(bacc_r));
    wire signed [RHW-1:0] rho_x = (s_i_r <<< (FR - SF)) - (bacc_r <<< (FR - FA));
    wire [KW-1:0] rho_conv;
    el_convert #(.IW(RHW), .S(FR - KF), .RMODE(KR), .OW(KW), .OSIGNED(KS), .OMODE(KO))
        u_cr (.din(rho_x), .rnd(32'd0), .dout(rho_conv), .ovf());

    // ---- P's increment: P[t,i] + round(a_t rho_i 2^-PLR), then P's overflow
    wire signed [KW:0] rhov = (KS != 0) ? $signed({rho_q[KW-1], rho_q}) : $signed({1'b0, rho_q});
    wire signed [PIW-1:0] pprod = aev * rhov;
    wire [PW-1:0] p_new;
    el_fb_step #(.IW(PIW), .S(2 * KF + PLR - PF), .RMODE(PR), .W(PW), .WSIGNED(PS), .WMODE(PO))
        u_pn (.prod(pprod), .v(pv), .v_new(p_new));

    // ---- Q's increment: lane ql of word qa, input j = qj: Q + round(u_t x_j 2^-LR), then Q's overflow
    wire [QP*QW-1:0] q_word = qmem[qa[QAW-1:0]];
    wire [QW-1:0] q_raw;
    el_select #(.N(QP), .W(QW), .SW(LNW + 1)) u_qr (.din(q_word), .sel(ql), .dout(q_raw));
    wire signed [QW:0] qv = (QS != 0) ? $signed({q_raw[QW-1], q_raw}) : $signed({1'b0, q_raw});
    wire [XW-1:0] x_raw = xv[qj[IDXW-1:0]];
    wire signed [XW:0] xsv = (XS != 0) ? $signed({x_raw[XW-1], x_raw}) : $signed({1'b0, x_raw});
    wire signed [QIW-1:0] qprod = uev * xsv;
    wire [QW-1:0] q_new;
    el_fb_step #(.IW(QIW), .S(EF + XF + LR - QF), .RMODE(QR), .W(QW), .WSIGNED(QS), .WMODE(QO))
        u_qn (.prod(qprod), .v(qv), .v_new(q_new));
    localparam integer NQ_I = NQ, QP_I = QP;
    localparam [IDXW:0] NQ_J = NQ_I[IDXW:0], QP_STEP = QP_I[IDXW:0];   // at qj's width (NQ <= 2^IDXW)
    wire q_live = (qj < NQ_J) && xbit[qj[IDXW-1:0]];
    // QPAR: lane l of word qa is input j = qj + l (a zero or padding input leaves its entry as it is)
    wire [QP*QW-1:0] q_word_par;
    genvar gq;
    generate
        for (gq = 0; gq < QP; gq = gq + 1) begin : g_qpar
            if (QPAR != 0) begin : g_on
                wire [31:0] qj32;
                el_resize #(.IW(IDXW + 1), .OW(32), .SX(0)) u_qj32 (.din(qj), .dout(qj32));
                wire [31:0] jl = qj32 + gq;
                wire live = (jl < NQ) && xbit[jl[IDXW-1:0]];
                wire [XW-1:0] xl_raw = xv[jl[IDXW-1:0]];
                wire signed [XW:0] xl = (XS != 0) ? $signed({xl_raw[XW-1], xl_raw}) : $signed({1'b0, xl_raw});
                wire [QW-1:0] ql_raw = q_word[gq*QW +: QW];
                wire signed [QW:0] qlv = (QS != 0) ? $signed({ql_raw[QW-1], ql_raw}) : $signed({1'b0, ql_raw});
                wire signed [QIW-1:0] lprod = uev * xl;
                wire [QW-1:0] lnew;
                el_fb_step #(.IW(QIW), .S(EF + XF + LR - QF), .RMODE(QR), .W(QW), .WSIGNED(QS), .WMODE(QO))
                    u_ln (.prod(lprod), .v(qlv), .v_new(lnew));
                assign q_word_par[gq*QW +: QW] = live ? lnew : ql_raw;
            end else begin : g_off
                assign q_word_par[gq*QW +: QW] = {QW{1'b0}};
            end
        end
    endgenerate
    // the serial pass writes lane ql of the word: a decoded write per lane, not a shifted mask (el_select's reason)
    wire [QP*QW-1:0] q_word_new;
    generate
        for (gq = 0; gq < QP; gq = gq + 1) begin : g_qnew
            localparam [LNW:0] QL = gq;
            assign q_word_new[gq*QW +: QW] = (ql == QL) ? q_new : q_word[gq*QW +: QW];
        end
    endgenerate

    // leading one of max |delta_i|: fs = its position + 2 (2^(fs-2) <= big < 2^(fs-1))
    reg [7:0] fs_lead;
    integer b;
    always @* begin
        fs_lead = 8'd1;
        for (b = 0; b <= EW; b = b + 1)
            if (big[b]) fs_lead = b[7:0] + 8'd2;
    end

    wire [31:0] qa32;                                 // the Q word's index at the integers' width
    el_resize #(.IW(QAW + 1), .OW(32), .SX(0)) u_qa32 (.din(qa), .dout(qa32));
    wire [PAW:0] i_pa;                                // column i at pa's width (the column walk starts at i)
    el_resize #(.IW(MW + 1), .OW(PAW + 1), .SX(0)) u_ipa (.din(i), .dout(i_pa));
    localparam integer M_I = M;
    localparam [PAW:0] M_STEP = M_I[PAW:0];           // pa + M at pa's width (mod 2^(PAW+1), as the add was)

    integer z;
    always @(posedge clk) begin
        u_valid <= 1'b0;
        if (rst) begin
            state <= F_IDLE;
            xbit <= 0;
        end else begin
            case (state)
                F_IDLE: begin
                    if (x_we) begin
                        xv[x_idx] <= x_val;
                        xbit[x_idx] <= 1'b1;
                    end
                    if (x_done) begin
                        label <= x_label;
                        sgc <= 0;
                        if (x_train) state <= F_SRC;
                        else xbit <= 0;
                    end
                end
                F_SRC: if (s_we) begin
                    for (z = 0; z < SPL; z = z + 1)
                        if (s_g * SPL + z < M) sm[s_g * SPL + z] <= s_word[z*EW +: EW];
                    sgc <= sgc + 1'b1;
                    if (sgc == SG_LAST) begin
                        t <= 0;
                        i <= 0;
                        pa <= 0;
                        state <= (HAS_P != 0) ? F_U : F_UOUT;
                    end
                end
                F_U, F_OA: begin  // one walk over P (pa = t*M + i): u = P delta (F_U) or Oja's a = P s (F_OA)
                    acc <= acc_new;
                    pa <= pa + 1'b1;
                    if (i == M_LAST) begin
                        if (state == F_U) uv[t[TW-1:0]] <= u_conv;
                        else av[t[TW-1:0]] <= a_conv;
                        i <= 0;
                        t <= t + 1'b1;
                        if (t == R_LAST) begin
                            t <= 0;
                            pa <= 0;
                            state <= (state == F_U) ? F_UOUT : F_ORHO;
                        end
                    end else begin
                        i <= i + 1'b1;
                    end
                end
                F_UOUT: begin
                    u_valid <= 1'b1;
                    state <= F_WPROJ;
                end
                F_WPROJ: if (proj_done) begin
                    t <= 0;
                    qa <= 0;
                    ql <= 0;
                    qj <= 0;
                    i <= 0;
                    big <= 0;
                    state <= (LEARN_Q != 0) ? F_Q : ((LEARN_P != 0) ? ((OJA_TGT != 0) ? F_OLEAD : F_OMAX) : F_END);
                end
                F_Q: if (QPAR != 0) begin  // rows t outer, Q words of the row: one word per cycle
                    qmem[qa[QAW-1:0]] <= q_word_par;
                    qa <= qa + 1'b1;
                    if (qa32 % QG == QG - 1) begin
                        qj <= 0;
                        t <= t + 1'b1;
                        if (t == R_LAST) begin
                            t <= 0;
                            state <= (LEARN_P != 0) ? ((OJA_TGT != 0) ? F_OLEAD : F_OMAX) : F_END;
                        end
                    end else begin
                        qj <= qj + QP_STEP;
                    end
                end else begin  // rows t outer, Q words of the row, lanes inner: one lane per cycle
                    if (q_live) qmem[qa[QAW-1:0]] <= q_word_new;
                    if (ql == QP_LAST) begin
                        ql <= 0;
                        qa <= qa + 1'b1;
                        if (qa32 % QG == QG - 1) begin
                            qj <= 0;
                            t <= t + 1'b1;
                            if (t == R_LAST) begin
                                t <= 0;
                                state <= (LEARN_P != 0) ? ((OJA_TGT != 0) ? F_OLEAD : F_OMAX) : F_END;
                            end
                        end else begin
                            qj <= qj + 1'b1;
                        end
                    end else begin
                        ql <= ql + 1'b1;
                        qj <= qj + 1'b1;
                    end
                end
                F_OMAX: begin
                    if (srcabs_x > $signed({1'b0, big})) big <= srcabs;
                    if (i == M_LAST) begin
                        i <= 0;
                        state <= F_OLEAD;
                    end else begin
                        i <= i + 1'b1;
                    end
                end
                F_OLEAD: begin
                    fs <= (OJA_TGT != 0) ? 8'd2 : fs_lead;
                    t <= 0;
                    i <= 0;
                    pa <= 0;
                    state <= ((OJA_TGT != 0) || big != 0) ? F_OA : F_END;  // a zero source takes no step
                end
                F_ORHO: begin  // column i: sum over t of P[t,i] a_t (pa = t*M + i)
                    acc <= acc_new;
                    if (t == R_LAST) begin
                        rho_q <= rho_conv;
                        t <= 0;
                        pa <= i_pa;
                        state <= F_OUPD;
                    end else begin
                        t <= t + 1'b1;
                        pa <= pa + M_STEP;
                    end
                end
                F_OUPD: begin  // column i: P[t,i] for t ascending
                    pmem[pa[PAW-1:0]] <= p_new;
                    if (t == R_LAST) begin
                        t <= 0;
                        if (i == M_LAST) begin
                            state <= F_END;
                        end else begin
                            i <= i + 1'b1;
                            pa <= i_pa + 1'b1;
                            state <= F_ORHO;
                        end
                    end else begin
                        t <= t + 1'b1;
                        pa <= pa + M_STEP;
                    end
                end
                F_END: begin
                    xbit <= 0;
                    state <= F_IDLE;
                end
                default: state <= F_IDLE;
            endcase
        end
    end
endmodule


// One learning step of a feedback word (Q, B or P; docs/arithmetic.md §16, arith.update_weight): the increment
// prod 2^-S rounded with the word's rounding into an exact width, added to the word v (sign- or zero-extended by
// one bit), then the word's overflow. Q's serial and per-lane steps and P's Oja step share it.
// (a helper of el_feedback only, so it lives in el_feedback's file)
/* verilator lint_off DECLFILENAME */
module el_fb_step #(
    parameter integer IW      = 16,
    parameter integer S       = 0,
    parameter integer RMODE   = 0,
    parameter integer W       = 8,
    parameter integer WSIGNED = 1,
    parameter integer WMODE   = 0
) (
    input  wire signed [IW-1:0] prod,
    input  wire signed [W:0]    v,
    output wire [W-1:0]         v_new
);
    // the increment's width: the product's integer bits above the shift (at least one), the left shift's extra
    // bits when S < 0, and two more so that the sum below never wraps
    localparam integer DW = ((IW > S) ? IW - S : 1) + ((S < 0) ? -S : 0) + 2;
    localparam integer VW = ((DW > W) ? DW : W) + 2;
    wire [DW-1:0] d;
    el_convert #(.IW(IW), .S(S), .RMODE(RMODE), .OW(DW), .OSIGNED(1), .OMODE(0))
        u_d (.din(prod), .rnd(32'd0), .dout(d), .ovf());
    wire signed [VW-1:0] vx, dx;
    el_resize #(.IW(W + 1), .OW(VW)) u_vx (.din(v), .dout(vx));
    el_resize #(.IW(DW), .OW(VW)) u_dx (.din(d), .dout(dx));
    wire signed [VW-1:0] sum = vx + dx;
    el_convert #(.IW(VW), .S(0), .RMODE(0), .OW(W), .OSIGNED(WSIGNED), .OMODE(WMODE))
        u_n (.din(sum), .rnd(32'd0), .dout(v_new), .ovf());
endmodule
