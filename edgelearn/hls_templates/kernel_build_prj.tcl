#################################################################################
# edgelearn on-chip learning kernel: Vitis HLS / Vivado HLS project script
#   vitis_hls -f build_prj.tcl                    (steps chosen in build_opt.tcl)
#   vitis-run --mode hls --tcl build_prj.tcl      (Vitis 2024.2 and later)
#   vivado_hls -f build_prj.tcl "csim=1 synth=1 cosim=0 export=0"
#################################################################################
set tcldir [file dirname [info script]]
set project_name "@PROJECT@"
set part "@PART@"
set clock_period @CLOCK@

source [file join $tcldir build_opt.tcl]
if {[info exists ::argv]} {
    foreach arg $::argv {
        foreach o [lsort [array names opt]] {
            regexp "$o=+(\\w+)" $arg unused opt($o)
        }
    }
}

proc report_time { op_name time_start time_end } {
    set time_taken [expr $time_end - $time_start]
    set time_s [expr ($time_taken / 1000) % 60]
    set time_m [expr ($time_taken / (1000*60)) % 60]
    set time_h [expr ($time_taken / (1000*60*60)) % 24]
    puts "***** ${op_name} COMPLETED IN ${time_h}h${time_m}m${time_s}s *****"
}

if {$opt(reset)} {
    open_project -reset ${project_name}_prj
} else {
    open_project ${project_name}_prj
}
set_top ${project_name}
add_files firmware/${project_name}.cpp -cflags "-std=c++14"
add_files -tb ${project_name}_test.cpp -cflags "-std=c++14"
add_files -tb tb_data
if {$opt(reset)} {
    open_solution -reset "solution1"
} else {
    open_solution "solution1"
}
set_part $part
create_clock -period $clock_period -name default

if {$opt(csim)} {
    puts "***** C SIMULATION *****"
    set time_start [clock clicks -milliseconds]
    csim_design -argv tb_data
    set time_end [clock clicks -milliseconds]
    report_time "C SIMULATION" $time_start $time_end
}

if {$opt(synth)} {
    puts "***** C/RTL SYNTHESIS *****"
    set time_start [clock clicks -milliseconds]
    csynth_design
    set time_end [clock clicks -milliseconds]
    report_time "C/RTL SYNTHESIS" $time_start $time_end
}

if {$opt(cosim)} {
    puts "***** C/RTL CO-SIMULATION *****"
    set time_start [clock clicks -milliseconds]
    cosim_design -argv tb_data
    set time_end [clock clicks -milliseconds]
    report_time "C/RTL CO-SIMULATION" $time_start $time_end
}

if {$opt(export)} {
    puts "***** EXPORT IP *****"
    set time_start [clock clicks -milliseconds]
    export_design -format ip_catalog
    set time_end [clock clicks -milliseconds]
    report_time "EXPORT IP" $time_start $time_end
}

exit
