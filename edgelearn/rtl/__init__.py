"""The generated on-chip learning datapath (Verilog) and its simulation with cocotb (Icarus, Verilator).

``generate.py`` turns a fixed-point engine (network, formats, rules, weights, LFSR states) into a Verilog top level,
its parameters and memory-initialisation files around the hand-written modules in ``hw/``; ``sim.py`` builds and
runs cocotb testbenches (``rtl_tb/``) on either simulator; ``synth.py`` estimates resources with yosys.
"""
