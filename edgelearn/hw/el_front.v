// edgelearn: the frozen convolutional front end of a generated datapath (docs/rtl.md "Convolutional front end",
// docs/arithmetic.md §15): conv2d (stride, zero padding) -> activation -> optional max / average pool, feeding
// the first el_layer's input list.
//
// A sample's raw image (C x H x WD, C order, one pixel per beat) is written into an image buffer; then one MAC per
// cycle, loops from outer to inner: output channel o, pooled position (py, px), window position (wy, wx), tap
// (c, ky, kx) -- the patch order of §15, so a narrow accumulator rounds exactly as the engine's; a padding tap
// adds an exact 0 (an assignment that changes nothing).  Kernels and biases are ROMs ($readmemh, torch's
// (C_out, C_in, k, k) order), the activation the table / hard-tanh / ReLU / identity of el_layer.v, then max (raw
// compare) or average pooling (exact sum, then a shift by log2(k*k) with the act format's rounding: power-of-two
// windows only).  Without a pool the window is 1 x 1.  Features leave in ascending index (o, py, px) = the
// flattened order; only non-zero ones are written (the list skips zeros, as from the sample stream).
// Pipeline: I (counters, addresses) -> A (image / kernel / bias reads) -> B (multiply-accumulate) -> Z -> T (table
// read, assignment) -> F (pool, feature); one global enable stalls it while a feature waits for the layer below
// to take it (the next sample's first feature while layer 0 still works on the previous one).
// el_convert's ovf (the overflow event of docs/arithmetic.md §13) has no counter in this datapath: its instances
// leave it open
/* verilator lint_off PINCONNECTEMPTY */
module el_front #(
    parameter integer C = 1, parameter integer H = 8, parameter integer WD = 8,       // input (C, H, W)
    parameter integer CO = 2, parameter integer K = 3, parameter integer S = 1, parameter integer PAD = 0,
    // the conv output's size: passed with the shape, the counters need only the features' (HP, WP)
    /* verilator lint_off UNUSEDPARAM */
    parameter integer HO = 6, parameter integer WO = 6,                                // conv output
    /* verilator lint_on UNUSEDPARAM */
    parameter integer POOL = 1,          // 0 none, 1 max, 2 average
    parameter integer PK = 2, parameter integer PS = 2, parameter integer PSH = 2,     // window, stride, log2(PK*PK)
    parameter integer HP = 3, parameter integer WP = 3,                                // features (CO, HP, WP)
    parameter integer A_TANH = -1, parameter integer A_SIGMOID = -1, parameter integer A_HARDTANH = -1,
    parameter integer A_RELU = -1, parameter integer ACT = -1,
    parameter integer XW = 8, parameter integer XF = 8, parameter integer XS = 0,                      // input
    parameter integer WW = 8, parameter integer WF = 6, parameter integer WS = 1,                      // kernel
    parameter integer BW = 8, parameter integer BF = 6, parameter integer BS = 1,                      // bias
    parameter integer AW = 24, parameter integer AF = 14, parameter integer AS = 1, parameter integer AR = 0,
    parameter integer AO = 1,                                                                          // accum
    parameter integer YW = 8, parameter integer YF = 7, parameter integer YS = 1, parameter integer YR = 2,
    parameter integer YO = 1,                                                                          // act
    parameter integer TB = 10, parameter integer RB = 3,
    parameter integer NCLS = 10,
    parameter integer CW = 16,           // loop counter width (edgelearn.rtl.front.COUNTER_BITS: extents < 2^CW)
    parameter W_INIT = "fw.hex", parameter B_INIT = "fb.hex", parameter T_INIT = "ft.hex",
    // derived
    parameter integer NPIX = C * H * WD,
    parameter integer NF = CO * HP * WP,
    parameter integer IAW = (NPIX > 1) ? $clog2(NPIX) : 1,
    parameter integer FIW = (NF > 1) ? $clog2(NF) : 1,
    parameter integer LW = (NCLS > 1) ? $clog2(NCLS) : 1
) (
    input  wire            clk,
    input  wire            rst,
    // the sample stream: every pixel (zeros too), index ascending; in_done with the last one
    output wire            in_ready,
    input  wire            in_we,
    input  wire [IAW-1:0]  in_idx,
    input  wire [XW-1:0]   in_val,
    input  wire            in_done,
    input  wire [LW-1:0]   in_label,
    input  wire            in_train,
    // the first layer's input list (el_layer's in_* ports)
    input  wire            out_ready,
    output wire            out_we,
    output wire [FIW-1:0]  out_idx,
    output wire [YW-1:0]   out_val,
    output wire            out_done,
    output wire [LW-1:0]   out_label,
    output wire            out_train,
    output wire            idle
);
    localparam integer NK = CO * C * K * K;
    localparam integer KAW = (NK > 1) ? $clog2(NK) : 1;
    localparam integer TN = 1 << TB;
    localparam [0:0] TABLE = (ACT == A_TANH || ACT == A_SIGMOID);
    localparam integer SAW = 32;                           // address arithmetic

    localparam [1:0] ST_IN = 2'd0, ST_RUN = 2'd1, ST_DRAIN = 2'd2;
    reg [1:0] state;
    assign in_ready = (state == ST_IN);
    assign idle = (state == ST_IN);

    // ---------------------------------------------------------------------------------------------------------
    // memories: image buffer (1R1W), kernel, bias and table ROMs
    reg [XW-1:0] img [0:NPIX-1];
    always @(posedge clk) if (in_we && state == ST_IN) img[in_idx] <= in_val;
    reg [WW-1:0] krom [0:NK-1];
    reg [BW-1:0] brom [0:CO-1];
    initial begin
        $readmemh(W_INIT, krom);
        $readmemh(B_INIT, brom);
    end

    reg [LW-1:0] label;
    reg          train;
    wire en;                                               // the pipeline moves (no feature waiting)

    // ---------------------------------------------------------------------------------------------------------
    // stage I: loop counters, image and kernel addresses
    reg [CW-1:0] o, py, px, wy, wx, c, ky, kx;
    reg [FIW-1:0] fi;                                      // index of the feature being computed
    // the counters' last values at CW bits (the extents are below 2^CW), compared unwidened
    localparam integer K_M1 = K - 1, C_M1 = C - 1, PK_M1 = PK - 1, WP_M1 = WP - 1, HP_M1 = HP - 1, CO_M1 = CO - 1;
    wire kx_w = (kx == K_M1[CW-1:0]), ky_w = (ky == K_M1[CW-1:0]), c_w = (c == C_M1[CW-1:0]);
    wire wx_w = (wx == PK_M1[CW-1:0]), wy_w = (wy == PK_M1[CW-1:0]);
    wire px_w = (px == WP_M1[CW-1:0]), py_w = (py == HP_M1[CW-1:0]), o_w = (o == CO_M1[CW-1:0]);
    wire t_first = (kx == 0) && (ky == 0) && (c == 0);
    wire t_last = kx_w && ky_w && c_w;                     // last tap of a conv output
    wire w_first = (wx == 0) && (wy == 0);
    wire w_last = wx_w && wy_w;                            // last conv output of a pooling window
    wire f_end = px_w && py_w && o_w;                      // the sample's last feature
    wire issue = (state == ST_RUN) && en;
    wire i_last = t_last && w_last && f_end;

    // input row / column plus the padding (never negative): a tap inside the image when PAD <= iyp < H + PAD
    // (the counters at the address arithmetic's width, zero-extended as the integer parameters take them)
    wire [SAW-1:0] o_a, py_a, px_a, wy_a, wx_a, c_a, ky_a, kx_a;
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_oa (.din(o), .dout(o_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_pya (.din(py), .dout(py_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_pxa (.din(px), .dout(px_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_wya (.din(wy), .dout(wy_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_wxa (.din(wx), .dout(wx_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_ca (.din(c), .dout(c_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_kya (.din(ky), .dout(ky_a));
    el_resize #(.IW(CW), .OW(SAW), .SX(0)) u_kxa (.din(kx), .dout(kx_a));
    wire [SAW-1:0] iyp = (py_a * PS + wy_a) * S + ky_a;
    wire [SAW-1:0] ixp = (px_a * PS + wx_a) * S + kx_a;
    wire inb;
    generate
        if (PAD == 0) begin : g_nopad   // iyp >= 0 always
            assign inb = (iyp < H) && (ixp < WD);
        end else begin : g_pad
            assign inb = (iyp >= PAD) && (iyp < H + PAD) && (ixp >= PAD) && (ixp < WD + PAD);
        end
    endgenerate
    wire [SAW-1:0] iaddr_w = inb ? (c_a * H + (iyp - PAD)) * WD + (ixp - PAD) : {SAW{1'b0}};
    wire [SAW-1:0] kaddr_w = ((o_a * C + c_a) * K + ky_a) * K + kx_a;
    localparam integer OAW = (CO > 1) ? $clog2(CO) : 1;
    wire [IAW-1:0] iaddr;                                  // the addresses at the memories' widths
    wire [KAW-1:0] kaddr;
    wire [OAW-1:0] baddr;
    el_resize #(.IW(SAW), .OW(IAW), .SX(0)) u_ia (.din(iaddr_w), .dout(iaddr));
    el_resize #(.IW(SAW), .OW(KAW), .SX(0)) u_ka (.din(kaddr_w), .dout(kaddr));
    el_resize #(.IW(CW), .OW(OAW), .SX(0)) u_ba (.din(o), .dout(baddr));

    always @(posedge clk) begin
        if (rst || state == ST_IN) begin
            o <= 0; py <= 0; px <= 0; wy <= 0; wx <= 0; c <= 0; ky <= 0; kx <= 0; fi <= 0;
        end else if (issue) begin
            kx <= kx_w ? 0 : kx + 1'b1;
            if (kx_w) begin
                ky <= ky_w ? 0 : ky + 1'b1;
                if (ky_w) begin
                    c <= c_w ? 0 : c + 1'b1;
                    if (c_w) begin
                        wx <= wx_w ? 0 : wx + 1'b1;
                        if (wx_w) begin
                            wy <= wy_w ? 0 : wy + 1'b1;
                            if (wy_w) begin
                                fi <= fi + 1'b1;
                                px <= px_w ? 0 : px + 1'b1;
                                if (px_w) begin
                                    py <= py_w ? 0 : py + 1'b1;
                                    if (py_w) o <= o_w ? 0 : o + 1'b1;
                                end
                            end
                        end
                    end
                end
            end
        end
    end

    // ---------------------------------------------------------------------------------------------------------
    // stage A: reads
    reg [XW-1:0]  a_x;
    reg [WW-1:0]  a_w;
    reg [BW-1:0]  a_b;
    reg           a_valid, a_pad, a_first, a_last, a_wf, a_wl, a_fe;
    reg [FIW-1:0] a_fi;
    always @(posedge clk) if (en) begin
        a_x <= img[iaddr];
        a_w <= krom[kaddr];
        a_b <= brom[baddr];
        a_pad <= !inb;
        a_first <= t_first;
        a_last <= t_last;
        a_wf <= w_first;
        a_wl <= w_last;
        a_fe <= f_end;
        a_fi <= fi;
    end
    always @(posedge clk) begin
        if (rst) a_valid <= 1'b0;
        else if (en) a_valid <= issue;
    end

    // ---------------------------------------------------------------------------------------------------------
    // stage B: acc = (first ? b -> acc : acc) + w * x, assigned to the accumulator (as el_layer's forward MAC)
    localparam integer PW = WW + XW + 2;
    localparam integer FP = WF + XF;
    localparam integer FS = (AF > FP) ? AF : FP;
    localparam integer SW = (((AW + 1 + FS - AF) > (PW + FS - FP)) ? (AW + 1 + FS - AF) : (PW + FS - FP)) + 1;
    wire signed [WW:0] wv = (WS != 0) ? {a_w[WW-1], a_w} : {1'b0, a_w};
    wire [XW-1:0] xr = a_pad ? {XW{1'b0}} : a_x;
    wire signed [XW:0] xv = (XS != 0) ? {xr[XW-1], xr} : {1'b0, xr};
    wire signed [PW-1:0] prod = wv * xv;
    wire signed [BW:0] bv = (BS != 0) ? {a_b[BW-1], a_b} : {1'b0, a_b};
    wire [AW-1:0] binit;
    el_convert #(.IW(BW + 1), .S(BF - AF), .RMODE(AR), .OW(AW), .OSIGNED(AS), .OMODE(AO))
        u_bias (.din(bv), .rnd(32'd0), .dout(binit), .ovf());
    reg  [AW-1:0] acc;
    wire [AW-1:0] a_cur = a_first ? binit : acc;
    wire signed [AW:0] av = (AS != 0) ? {a_cur[AW-1], a_cur} : {1'b0, a_cur};
    wire signed [SW-1:0] a_al, p_al;
    el_resize #(.IW(AW + 1), .OW(SW)) u_aal (.din(av), .dout(a_al));
    el_resize #(.IW(PW), .OW(SW)) u_pal (.din(prod), .dout(p_al));
    wire signed [SW-1:0] sum = (a_al <<< (FS - AF)) + (p_al <<< (FS - FP));
    wire [AW-1:0] acc_new;
    el_convert #(.IW(SW), .S(FS - AF), .RMODE(AR), .OW(AW), .OSIGNED(AS), .OMODE(AO))
        u_acc (.din(sum), .rnd(32'd0), .dout(acc_new), .ovf());

    reg [AW-1:0]  zr;
    reg           z_valid, z_wf, z_wl, z_fe;
    reg [FIW-1:0] z_fi;
    always @(posedge clk) begin
        if (en && a_valid) acc <= acc_new;
        if (en) begin
            zr <= acc_new;
            z_wf <= a_wf;
            z_wl <= a_wl;
            z_fe <= a_fe;
            z_fi <= a_fi;
        end
        if (rst) z_valid <= 1'b0;
        else if (en) z_valid <= a_valid && a_last;
    end

    // ---------------------------------------------------------------------------------------------------------
    // stage T: y = f(z) (table index, clamp and ROM read as el_layer.v; or an assignment)
    wire signed [AW:0] zv = (AS != 0) ? {zr[AW-1], zr} : {1'b0, zr};
    localparam integer TSH = AF - (TB - RB - 1);
    localparam integer IXW = AW + TB + 4 + ((TSH < 0) ? -TSH : 0);
    wire signed [IXW-1:0] t_idx_w;
    localparam [31:0] TN_HALF = TN / 2, TN_M1 = TN - 1;
    wire signed [IXW-1:0] tn_half, tn_m1;          // 2^(TB-1) and 2^TB - 1 at the index's width (IXW > TB)
    el_resize #(.IW(32), .OW(IXW), .SX(0)) u_tnh (.din(TN_HALF), .dout(tn_half));
    el_resize #(.IW(32), .OW(IXW), .SX(0)) u_tnm (.din(TN_M1), .dout(tn_m1));
    generate
        if (TSH >= 0) begin : g_ix_r
            wire signed [AW:0] zs = zv >>> TSH;
            wire signed [IXW-1:0] zsx;
            el_resize #(.IW(AW + 1), .OW(IXW)) u_zsx (.din(zs), .dout(zsx));
            assign t_idx_w = zsx + tn_half;
        end else begin : g_ix_l
            localparam [31:0] TN_32 = TN;
            wire signed [IXW-1:0] zx, tn_x;
            el_resize #(.IW(AW + 1), .OW(IXW)) u_zx (.din(zv), .dout(zx));
            el_resize #(.IW(32), .OW(IXW), .SX(0)) u_tnx (.din(TN_32), .dout(tn_x));
            wire signed [IXW-1:0] zc = (zx > tn_x) ? tn_x : ((zx < -tn_x) ? -tn_x : zx);
            assign t_idx_w = (zc <<< (-TSH)) + tn_half;
        end
    endgenerate
    /* verilator lint_off UNUSEDSIGNAL */  // read where the activation has a table
    wire [TB-1:0] t_idx = (t_idx_w < 0) ? {TB{1'b0}} : ((t_idx_w > tn_m1) ? {TB{1'b1}} : t_idx_w[TB-1:0]);
    /* verilator lint_on UNUSEDSIGNAL */
    localparam integer ONE_AF = (AF >= 0) ? AF : 0;
    wire signed [AW+2:0] one_a = $signed({{(AW+2){1'b0}}, 1'b1}) <<< ONE_AF;
    wire signed [AW+2:0] zvx;
    el_resize #(.IW(AW + 1), .OW(AW + 3)) u_zvx (.din(zv), .dout(zvx));
    wire signed [AW+2:0] ht_src = (zvx >= one_a) ? one_a : ((zvx <= -one_a) ? -one_a : zvx);
    wire [YW-1:0] y_conv;
    el_convert #(.IW(AW + 3), .S(AF - YF), .RMODE(YR), .OW(YW), .OSIGNED(YS), .OMODE(YO))
        u_y (.din((ACT == A_HARDTANH) ? ht_src : zvx), .rnd(32'd0), .dout(y_conv), .ovf());

    reg [YW-1:0]  t_q, yc_q;
    reg           t_valid, t_wf, t_wl, t_fe;
    reg [FIW-1:0] t_fi;
    generate
        if (TABLE) begin : g_table
            reg [YW-1:0] trom [0:TN-1];
            initial $readmemh(T_INIT, trom);
            always @(posedge clk) if (en) t_q <= trom[t_idx];
        end else begin : g_notable
            always @(posedge clk) t_q <= 0;
        end
    endgenerate
    always @(posedge clk) begin
        if (en) begin
            yc_q <= (ACT == A_RELU && zvx < 0) ? {YW{1'b0}} : y_conv;
            t_wf <= z_wf;
            t_wl <= z_wl;
            t_fe <= z_fe;
            t_fi <= z_fi;
        end
        if (rst) t_valid <= 1'b0;
        else if (en) t_valid <= z_valid;
    end

    // ---------------------------------------------------------------------------------------------------------
    // stage F: pooling over the window, the feature
    localparam integer PMW = YW + 2 * PSH + 2;             // exact window sum
    wire [YW-1:0] y = TABLE ? t_q : yc_q;
    wire signed [PMW-1:0] yv;
    el_resize #(.IW(YW), .OW(PMW), .SX(YS)) u_yv (.din(y), .dout(yv));
    reg  signed [PMW-1:0] pm;
    wire signed [PMW-1:0] pnew = t_wf ? yv : ((POOL == 2) ? pm + yv : ((yv > pm) ? yv : pm));
    wire [YW-1:0] avg;
    el_convert #(.IW(PMW), .S(PSH), .RMODE(YR), .OW(YW), .OSIGNED(YS), .OMODE(YO))
        u_avg (.din(pnew), .rnd(32'd0), .dout(avg), .ovf());

    reg [YW-1:0]  f_val;
    reg           f_valid, f_end_r;
    reg [FIW-1:0] f_i;
    always @(posedge clk) begin
        if (en && t_valid) pm <= pnew;
        if (en) begin
            f_val <= (POOL == 2) ? avg : pnew[YW-1:0];
            f_end_r <= t_fe;
            f_i <= t_fi;
        end
        if (rst) f_valid <= 1'b0;
        else if (en) f_valid <= t_valid && t_wl;
    end

    // a feature (or the sample's end) waits until the first layer takes it: the whole pipeline holds
    wire f_nz = (f_val != 0);
    assign en = !(f_valid && (f_nz || f_end_r) && !out_ready);
    assign out_we = f_valid && f_nz && out_ready;
    assign out_done = f_valid && f_end_r && out_ready;
    assign out_idx = f_i;
    assign out_val = f_val;
    assign out_label = label;
    assign out_train = train;

    // ---------------------------------------------------------------------------------------------------------
    // control: receive the image, run the loops, drain the pipeline (the image buffer is single: the next
    // sample streams in once this one's features have all left)
    always @(posedge clk) begin
        if (rst) state <= ST_IN;
        else case (state)
            ST_IN: if (in_done) begin
                state <= ST_RUN;
                label <= in_label;
                train <= in_train;
            end
            ST_RUN: if (issue && i_last) state <= ST_DRAIN;
            ST_DRAIN: if (out_done) state <= ST_IN;
            default: state <= ST_IN;
        endcase
    end
endmodule
