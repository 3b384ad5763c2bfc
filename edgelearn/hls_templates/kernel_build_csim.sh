#!/bin/sh
# C-simulation of the learning kernel without Xilinx tools: g++ and the Xilinx ap_types headers
# (e.g. the copy bundled with hls4ml: python -c "import hls4ml,os;print(os.path.dirname(hls4ml.__file__))"
#  then .../templates/vivado/ap_types).
set -e
cd "$(dirname "$0")"
: "${AP_TYPES:?set AP_TYPES to the directory holding ap_fixed.h}"
${CXX:-g++} -std=c++14 -O2 -w -Ifirmware -I"$AP_TYPES" firmware/@PROJECT@.cpp @PROJECT@_test.cpp -o @PROJECT@_csim
./@PROJECT@_csim tb_data
