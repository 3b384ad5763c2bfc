// edgelearn: assignment of a raw fixed-point value to a format (docs/arithmetic.md §3-§5, §9).
//
// dout = overflow(round(din, S), OW, OSIGNED, OMODE): S = F_in - F_out fractional bits are dropped (S <= 0: an
// exact left shift by -S), rounded with RMODE, then the rounded integer is fitted into OW bits with OMODE.
// The input is a signed two's-complement integer (callers sign- or zero-extend unsigned sources by one bit).
//
//   RMODE: 0 TRN  1 TRN_ZERO  2 RND  3 RND_ZERO  4 RND_INF  5 RND_MIN_INF  6 RND_CONV  7 STOCH
//   OMODE: 0 WRAP 1 SAT  2 SAT_ZERO  3 SAT_SYM
//
// STOCH adds the 32-bit LFSR draw `rnd` aligned just below the destination LSB (its top S bits when S <= 32,
// `rnd << (S - 32)` when S > 32) and keeps the carry: floor(din * 2^-S + rnd * 2^-32).
// `ovf` is the counter event of docs/arithmetic.md §13 (value out of range, or the signed SAT_SYM minimum).
// Purely combinational; every width is a parameter, so synthesis keeps only the logic a format needs.
module el_convert #(
    parameter integer IW      = 16,
    parameter integer S       = 0,
    parameter integer RMODE   = 0,
    parameter integer OW      = 8,
    parameter integer OSIGNED = 1,
    parameter integer OMODE   = 0
) (
    input  wire [IW-1:0] din,
    /* verilator lint_off UNUSEDSIGNAL */  // the draw: only RMODE 7 (STOCH) reads it
    input  wire [31:0]   rnd,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [OW-1:0] dout,
    output wire          ovf
);
    // ---- rounding: v = round(din, S), width VW ------------------------------------------------------------
    localparam integer XW = ((IW > S) ? IW : S + 1) + 1;     // sign-extended working width when S > 0
    localparam integer VW = (S > 0) ? XW : IW - S;
    wire signed [VW-1:0] v;

    generate
        if (S == 0) begin : g_same
            assign v = $signed(din);
        end else if (S < 0) begin : g_exact   // din << -S at the exact width
            assign v = $signed({din, {(-S){1'b0}}});
        end else begin : g_round
            wire signed [XW-1:0] ext = $signed({{(XW-IW){din[IW-1]}}, din});   // XW > IW
            wire signed [XW-1:0] q   = ext >>> S;
            wire [S-1:0]         rem = ext[S-1:0];
            wire                 neg = din[IW-1];
            wire                 top = rem[S-1];
            wire                 low_nz;
            if (S == 1) begin : g_s1
                assign low_nz = 1'b0;
            end else begin : g_sn
                assign low_nz = |rem[S-2:0];
            end
            wire gt = top & low_nz;       // rem >  half
            wire eq = top & ~low_nz;      // rem == half
            wire [S-1:0] u;               // STOCH addend (S bits)
            if (S <= 32) begin : g_u_top
                assign u = rnd[31:32-S];
            end else begin : g_u_wide
                assign u = {rnd, {(S-32){1'b0}}};
            end
            wire [S:0] rsum = {1'b0, rem} + {1'b0, u};
            reg inc;
            always @* begin
                case (RMODE)
                    0: inc = 1'b0;
                    1: inc = neg & (top | low_nz);
                    2: inc = top;
                    3: inc = gt | (eq & neg);
                    4: inc = gt | (eq & ~neg);
                    5: inc = gt;
                    6: inc = gt | (eq & q[0]);
                    default: inc = rsum[S];
                endcase
            end
            assign v = q + $signed({{(XW-1){1'b0}}, inc});
        end
    endgenerate

    // ---- overflow -------------------------------------------------------------------------------------------
    wire [OW-1:0] wrapped;        // v's low OW bits (sign-extended when v is narrower)
    generate
        if (VW >= OW) begin : g_wrap
            assign wrapped = v[OW-1:0];
        end else begin : g_wext
            assign wrapped = {{(OW-VW){v[VW-1]}}, v};
        end
    endgenerate
    wire pos = ~v[VW-1];
    wire in_range;
    wire is_min;                  // signed destination minimum (SAT_SYM maps it to -max)
    generate
        if (OSIGNED != 0) begin : g_sr
            if (VW > OW) begin : g_chk
                wire [VW-OW:0] hi_bits = v[VW-1:OW-1];
                assign in_range = (&hi_bits) | ~(|hi_bits);
            end else begin : g_fit
                assign in_range = 1'b1;
            end
            assign is_min = in_range & wrapped[OW-1] & ~(|wrapped[OW-2:0]);
        end else begin : g_ur
            if (VW > OW) begin : g_chk
                assign in_range = ~(|v[VW-1:OW]);
            end else begin : g_fit
                assign in_range = pos;
            end
            assign is_min = 1'b0;
        end
    endgenerate

    wire [OW-1:0] max_v = (OSIGNED != 0) ? {1'b0, {(OW-1){1'b1}}} : {OW{1'b1}};
    wire [OW-1:0] min_v = (OSIGNED != 0) ? {1'b1, {(OW-1){1'b0}}} : {OW{1'b0}};
    wire [OW-1:0] msym  = min_v + 1'b1;                                              // -max (signed)

    reg [OW-1:0] r;
    always @* begin
        if (in_range && !(OMODE == 3 && is_min)) r = wrapped;
        else case (OMODE)
            0: r = wrapped;
            1: r = pos ? max_v : min_v;
            2: r = {OW{1'b0}};
            default: r = pos ? max_v : ((OSIGNED != 0) ? msym : min_v);
        endcase
    end
    assign dout = r;
    assign ovf  = ~in_range | ((OSIGNED != 0) && OMODE == 3 && is_min);
endmodule


// din at OW bits: sign- (SX = 1) or zero-extended (SX = 0) when OW > IW, its low OW bits otherwise -- what an
// assignment to a wider or narrower wire does, spelled out where the widths depend on the formats (so that the
// generated RTL lints clean under verilator -Wall).  A helper of the datapath modules, kept beside el_convert.
/* verilator lint_off DECLFILENAME */
module el_resize #(
    parameter integer IW = 8,
    parameter integer OW = 8,
    parameter integer SX = 1
) (
    /* verilator lint_off UNUSEDSIGNAL */  // OW < IW: the bits above OW are dropped, as the assignment did
    input  wire [IW-1:0] din,
    /* verilator lint_on UNUSEDSIGNAL */
    output wire [OW-1:0] dout
);
    generate
        if (OW > IW) begin : g_ext
            assign dout = {{(OW-IW){(SX != 0) & din[IW-1]}}, din};
        end else begin : g_low
            assign dout = din[OW-1:0];
        end
    endgenerate
endmodule

// Word `sel` of the N words of W bits in din (word 0 in the least significant bits; N <= 2^SW), 0 when sel >= N:
// an N-way select written as an AND-OR of decoded words, so that synthesis builds an N:1 mux per output bit. An
// indexed part-select with a variable base (`din[sel*W +: W]`) elaborates as a shifter over all of din by sel*W bits.
module el_select #(
    parameter integer N = 2, parameter integer W = 1, parameter integer SW = 1
) (
    input  wire [N*W-1:0] din,
    input  wire [SW-1:0]  sel,
    output reg  [W-1:0]   dout
);
    integer i;
    always @* begin
        dout = {W{1'b0}};
        for (i = 0; i < N; i = i + 1)
            dout = dout | (din[i*W +: W] & {W{sel == i[SW-1:0]}});
    end
endmodule
