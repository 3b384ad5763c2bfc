# Steps run by build_prj.tcl (1 = run). Edit here, or (Vivado HLS) pass "csim=1 synth=0 ..." on the command line.
array set opt {
    reset  1
    csim   1
    synth  1
    cosim  0
    export 0
}
