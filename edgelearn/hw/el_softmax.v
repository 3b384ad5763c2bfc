// edgelearn: the output error under loss ce, e = y* - softmax(y) (docs/arithmetic.md §11a), bit for bit with the
// engine's activations.softmax_probs / engine_kernels.output_error_ce.
//
// The output layer streams its logits y_c (its activation `none`, format YW / YF / YS) in class order during its
// forward pass (y_we); a training sample then starts (start) the serial schedule:
//   MAX   m = max_c y_c, tracked while the logits stream in (no extra cycle);
//   EXP   c ascending, one per cycle: d_c = m - y_c (exact, >= 0), table index i_c = min(d_c >> (YF - (TB - RB - 1)),
//         2^TB - 1) (a left shift when the amount is negative), E_c from the exp ROM (synchronous read), S += E_c;
//   DIV   c ascending: p_c = floor((2 E_c 2^PF + S) / (2 S)) by one restoring divider shared over the classes, one
//         quotient bit per cycle (PF + 1 bits: p_c <= 2^PF), then e_c = y*_c 2^PF - p_c assigned to the error
//         format, out on e_we / e_val (c ascending, one class every PF + 2 cycles).
// E_c (XW bits, the table's ufixed<XW,1>), S (SW bits) and the dividend / divisor (NW bits) are exact: their widths
// come from edgelearn.hls.kernel.softmax_words, the HLS kernel's.
// el_convert's ovf (the overflow event of docs/arithmetic.md §13) has no counter in this datapath: its instances
// leave it open
/* verilator lint_off PINCONNECTEMPTY */
module el_softmax #(
    parameter integer NCLS = 10,
    parameter integer YW = 8, parameter integer YF = 4, parameter integer YS = 1,           // logits
    parameter integer TB = 10, parameter integer RB = 3,                                    // exp table
    parameter integer XW = 17, parameter integer SW = 21, parameter integer NW = 25,        // E_c, S, dividend
    parameter integer PF = 7,                                                               // fractional bits of p_c
    parameter integer EW = 8, parameter integer EF = 7, parameter integer ES = 1, parameter integer ER = 2,
    parameter integer EO = 1,                                                               // error
    parameter X_INIT = "exp.hex",
    parameter integer LW = (NCLS > 1) ? $clog2(NCLS) : 1
) (
    input  wire          clk,
    input  wire          rst,
    input  wire          y_we,       // logit y_val of class y_idx (ascending from 0)
    input  wire [LW-1:0] y_idx,
    input  wire [YW-1:0] y_val,
    input  wire          start,      // a training sample's logits are complete
    input  wire [LW-1:0] label,
    output reg           e_we,       // e_c, c ascending
    output reg  [EW-1:0] e_val
);
    localparam integer TN = 1 << TB;
    localparam integer SH = YF - (TB - RB - 1);     // index = d >> SH (d << -SH when SH < 0)
    localparam integer DW = YW + 1;                 // d = m - y_c >= 0
    localparam integer IXW = DW + ((SH < 0) ? -SH : 0);
    localparam integer QW = PF + 1;                 // quotient bits
    localparam integer QCW = (QW > 1) ? $clog2(QW) : 1;
    localparam [1:0] S_IDLE = 2'd0, S_EXP = 2'd1, S_LOAD = 2'd2, S_DIV = 2'd3;

    reg [YW-1:0] ym [0:NCLS-1];
    reg [XW-1:0] em [0:NCLS-1];
    reg [XW-1:0] xrom [0:TN-1];
    initial $readmemh(X_INIT, xrom);
    reg [YW-1:0] m;
    reg [LW-1:0] lab;
    reg [1:0]    state;
    localparam integer NCLS_M1 = NCLS - 1;
    localparam [LW-1:0] C_LAST = NCLS_M1[LW-1:0];  // the last class at c's width
    reg [LW-1:0] c;                 // the class issued (EXP) or divided (LOAD / DIV)
    reg          x_valid;           // xrom read of class xc in flight
    reg [LW-1:0] xc;
    reg [XW-1:0] x_q;
    reg [SW-1:0] S;
    reg [NW-1:0] rem;
    reg [NW+QW-1:0] dsh;            // 2S << (quotient bit)
    reg [QW-1:0] q;
    reg [QCW-1:0] qb;

    wire signed [YW:0] yv = (YS != 0) ? {y_val[YW-1], y_val} : {1'b0, y_val};
    wire signed [YW:0] mv = (YS != 0) ? {m[YW-1], m} : {1'b0, m};

    // EXP: index of class c
    wire [YW-1:0] yc = ym[c];
    wire signed [YW:0] ycv = (YS != 0) ? {yc[YW-1], yc} : {1'b0, yc};
    wire [DW-1:0] d = mv - ycv;
    wire [IXW-1:0] dx;
    el_resize #(.IW(DW), .OW(IXW), .SX(0)) u_dx (.din(d), .dout(dx));
    wire [IXW-1:0] ish = (SH >= 0) ? (dx >> SH) : (dx << ((SH < 0) ? -SH : 0));
    localparam [31:0] TN_M1 = TN - 1;
    wire [IXW-1:0] tn_m1;             // 2^TB - 1 at the index's width (all ones where IXW < TB: the same test)
    el_resize #(.IW(32), .OW(IXW), .SX(0)) u_tnm (.din(TN_M1), .dout(tn_m1));
    wire [TB-1:0] idx = (ish > tn_m1) ? {TB{1'b1}} : ish[TB-1:0];

    // DIV: one restoring step; e_c from the final quotient
    wire [NW+QW-1:0] remx;
    el_resize #(.IW(NW), .OW(NW + QW), .SX(0)) u_remx (.din(rem), .dout(remx));
    wire             qbit = (remx >= dsh);
    wire [QW-1:0]    q_fin;           // {q, qbit}'s low QW bits
    el_resize #(.IW(QW + 1), .OW(QW), .SX(0)) u_qf (.din({q, qbit}), .dout(q_fin));
    wire [XW-1:0]    ec = em[c];
    wire [NW-1:0]    sx;
    el_resize #(.IW(SW), .OW(NW), .SX(0)) u_sx (.din(S), .dout(sx));
    wire [NW-1:0]    num = ({{(NW-XW){1'b0}}, ec} << (PF + 1)) + sx;
    wire [SW-1:0]    x_qs;
    el_resize #(.IW(XW), .OW(SW), .SX(0)) u_xqs (.din(x_q), .dout(x_qs));
    wire [NW+QW-1:0] s2;              // 2S at the divisor register's width
    el_resize #(.IW(QW + SW + 1), .OW(NW + QW), .SX(0)) u_s2 (.din({{QW{1'b0}}, S, 1'b0}), .dout(s2));
    localparam integer QW_M1 = QW - 1;
    localparam [QCW-1:0] QB_LAST = QW_M1[QCW-1:0];
    wire signed [QW+2:0] tmq = ((c == lab) ? ($signed({{(QW+2){1'b0}}, 1'b1}) <<< PF) : 0)
                               - $signed({3'b000, q_fin});
    wire [EW-1:0]    e_conv;
    el_convert #(.IW(QW + 3), .S(PF - EF), .RMODE(ER), .OW(EW), .OSIGNED(ES), .OMODE(EO))
        u_e (.din(tmq), .rnd(32'd0), .dout(e_conv), .ovf());

    always @(posedge clk) begin
        if (y_we) begin
            ym[y_idx] <= y_val;
            if (y_idx == 0 || yv > mv) m <= y_val;
        end
        x_q <= xrom[idx];
        if (x_valid) em[xc] <= x_q;
    end

    always @(posedge clk) begin
        e_we <= 1'b0;
        if (rst) begin
            state <= S_IDLE;
            x_valid <= 1'b0;
        end else begin
            // EXP's second stage: E_c read, S accumulated
            xc <= c;
            x_valid <= (state == S_EXP);
            if (x_valid) S <= S + x_qs;
            case (state)
                S_IDLE: if (start) begin
                    lab <= label;
                    c <= 0;
                    S <= 0;
                    state <= S_EXP;
                end
                S_EXP: begin
                    if (c == C_LAST) c <= 0;
                    else c <= c + 1'b1;
                    if (c == C_LAST) state <= S_LOAD;
                end
                S_LOAD: if (!x_valid) begin  // S complete (the last E_c was added a cycle ago)
                    rem <= num;
                    dsh <= s2 << (QW - 1);
                    q <= 0;
                    qb <= 0;
                    state <= S_DIV;
                end
                S_DIV: begin
                    if (qbit) rem <= rem - dsh[NW-1:0];
                    dsh <= dsh >> 1;
                    q <= q_fin;
                    qb <= qb + 1'b1;
                    if (qb == QB_LAST) begin
                        e_we <= 1'b1;
                        e_val <= e_conv;
                        if (c == C_LAST) begin
                            state <= S_IDLE;
                        end else begin
                            c <= c + 1'b1;
                            state <= S_LOAD;
                        end
                    end
                end
                default: ;
            endcase
        end
    end
endmodule
