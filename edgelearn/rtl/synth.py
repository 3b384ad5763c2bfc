"""Resources and clock of a generated design: yosys ``synth_xilinx`` (an estimate: LUT, FF, DSP, BRAM), or yosys
``synth_ice40`` and ``nextpnr-ice40`` (placed and routed on a UP5K / HX8K: LUT4, FF, BRAM, DSP and fmax over seeds).

The Xilinx counts are an estimate for comparing designs (with and without the learning logic, different
parallelism), not a placed-and-routed result; the iCE40 flow places and routes the datapath inside a small wrapper
(``ice40_top.v``: samples, labels and read-back addresses shifted in, read-back data shifted out) because an iCE40
has far fewer pins than the datapath has ports.  The counts are read from ``stat -json``, whose layout is stable
across yosys versions, unlike the text table of ``stat``; fmax from nextpnr's ``--report`` JSON.
"""
from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError

#: the ``stat -json`` report written next to the log
STAT_FILE = "stat.json"
#: cell-name prefixes -> resource class (7-series primitives as emitted by synth_xilinx)
CLASSES = {
    "LUT": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"),
    "LUTRAM": ("RAM16X1D", "RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S", "RAM32M", "RAM64M", "RAM16X1S",
               "RAM32X1S", "RAM64X1S", "RAM128X1S", "RAM32M16", "RAM64M8"),
    "FF": ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1"),
    "DSP": ("DSP48E1", "DSP48E2"),
    "BRAM36": ("RAMB36E1", "RAMB36E2"),
    "BRAM18": ("RAMB18E1", "RAMB18E2"),
    "CARRY": ("CARRY4", "CARRY8"),
    "MUXF": ("MUXF7", "MUXF8"),
    "SRL": ("SRL16E", "SRLC32E"),
}


#: iCE40 cell-name prefixes -> resource class (as emitted by synth_ice40)
ICE40_CLASSES = {"LUT4": ("SB_LUT4",), "FF": ("SB_DFF",), "CARRY": ("SB_CARRY",), "BRAM": ("SB_RAM40_4K",),
                 "SPRAM": ("SB_SPRAM256KA",), "DSP": ("SB_MAC16",)}
#: --synth targets: iCE40 parts -> (nextpnr device flag, package, synth_ice40 options); DSPs exist on the UP5K only
ICE40_PARTS = {"ice40-up5k": ("--up5k", "sg48", ["-dsp"]), "ice40-hx8k": ("--hx8k", "ct256", [])}
TARGETS = ("xilinx", *ICE40_PARTS)
#: the wrapper's module name and file (iCE40 flow)
ICE40_TOP = "el_ice40_top"
ICE40_WRAPPER = "ice40_top.v"
#: nextpnr's target clock (MHz): timing-driven placement aims at it; fmax is what the routed design achieves
ICE40_FREQ = 100


def require_yosys() -> str:
    exe = shutil.which("yosys")
    if exe is None:
        raise ConfigError("yosys not found: install it (apt install yosys), or run scripts/setup.sh")
    return exe


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess:
    """Run a synthesis tool; a run past ``timeout`` is one error line (the tool's log stays in ``cwd``)."""
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{what} did not finish within {timeout:g} s on {cwd} (a smaller design, fewer lanes "
                          f"or a less loaded machine)") from None


def synthesize(prj: Path, top: str | None = None, timeout: float = 1800) -> dict:
    """Run ``synth_xilinx -flatten; stat`` on the design in ``prj`` (its filelist.f); returns the cell counts per
    class, the raw cell table and the yosys run time.  The log goes to ``prj/yosys.log``, the counts to
    ``prj/stat.json``."""
    exe = require_yosys()
    prj = Path(prj)
    if top is None:
        top = json.loads((prj / "design.json").read_text())["top"]
    files = (prj / "filelist.f").read_text().split()
    stat_path = prj / STAT_FILE
    stat_path.unlink(missing_ok=True)  # a report of an earlier run must not stand in for this one
    # the text table stays in the log for people; the counts come from the JSON
    script = "\n".join([f"read_verilog -defer {f}" for f in files] +
                       [f"hierarchy -top {top}", f"synth_xilinx -top {top} -flatten", "stat",
                        f"tee -q -o {STAT_FILE} stat -json"]) + "\n"
    (prj / "synth.ys").write_text(script)
    t0 = time.perf_counter()
    res = _run([exe, "-q", "-l", "yosys.log", "-s", "synth.ys"], prj, timeout, "yosys synth_xilinx")
    secs = time.perf_counter() - t0
    log = (prj / "yosys.log").read_text() if (prj / "yosys.log").exists() else res.stdout + res.stderr
    if res.returncode != 0:
        tail = (res.stderr or log).strip().splitlines()[-3:]
        raise ConfigError(f"yosys failed on {prj}: {' | '.join(tail)}")
    try:
        text = stat_path.read_text()
    except OSError:
        raise ConfigError(f"yosys wrote no {stat_path}; see {prj / 'yosys.log'}") from None
    cells = parse_stat_json(text, where=str(stat_path))
    return {"resources": resources(cells), "cells": cells, "seconds": secs}


#: total-area model of the Xilinx estimate, in LUT-equivalents, from the 7-series fabric's tile sizes: a CLB holds
#: 8 LUT6 (a LUTRAM or SRL cell counted as one) and 16 FFs, a RAMB36 tile is as tall as 5 CLBs, a DSP48E1 2.5
AREA_LE_PER_BRAM36 = 40
AREA_LE_PER_DSP = 20


def area_le(r: dict[str, float]) -> float:
    """Total area in LUT-equivalents (:data:`AREA_LE_PER_BRAM36`): the logic (LUTs, or FFs / 2 where the FFs
    outnumber what the LUTs' CLBs hold), block RAM and DSPs, so that memory counts as well as logic."""
    logic = max(r["LUT"] + r["LUTRAM"] + r["SRL"], r["FF"] / 2)
    return logic + AREA_LE_PER_BRAM36 * r["BRAM"] + AREA_LE_PER_DSP * r["DSP"]


def resources(cells: dict[str, int]) -> dict[str, float]:
    """Cell counts per resource class (:data:`CLASSES`), BRAM in RAMB36 equivalents, and the total area
    ``AREA_LE`` (:func:`area_le`)."""
    out: dict[str, float] = {cls: sum(n for c, n in cells.items() if c in names) for cls, names in CLASSES.items()}
    out["BRAM"] = out["BRAM36"] + out["BRAM18"] / 2
    out["AREA_LE"] = area_le(out)
    return out


def parse_stat_json(text: str, where: str = "stat -json") -> dict[str, int]:
    """Cell counts by type from yosys ``stat -json`` output: the ``design`` totals, or the only module's counts
    when yosys gave no totals.  Anything else is an error, never an empty table (which would read as zero LUTs)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: not a yosys stat -json report (unreadable JSON)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: not a yosys stat -json report")
    stats = data.get("design")
    if stats is None:
        modules = data.get("modules")
        if not isinstance(modules, dict) or len(modules) != 1:
            n = len(modules) if isinstance(modules, dict) else 0
            raise ConfigError(f"{where}: no design totals and {n} modules; cannot read the cell counts")
        stats = next(iter(modules.values()))
    by_type = stats.get("num_cells_by_type") if isinstance(stats, dict) else None
    total = stats.get("num_cells") if isinstance(stats, dict) else None
    if not isinstance(by_type, dict) or isinstance(total, bool) or not isinstance(total, int):
        raise ConfigError(f"{where}: no num_cells / num_cells_by_type; cannot read the cell counts")
    cells: dict[str, int] = {}
    for name, n in by_type.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{where}: cell count of {name} is {n!r}, not a count")
        name = name[1:] if name.startswith("\\") else name  # escaped identifiers of user cells
        cells[name] = cells.get(name, 0) + n
    if sum(cells.values()) != total:
        raise ConfigError(f"{where}: the cell counts by type add up to {sum(cells.values())}, not num_cells {total}")
    return cells


# ----------------------------------------------------------------------------------------------------------------
# iCE40: yosys synth_ice40 + nextpnr-ice40


def require_nextpnr() -> str:
    exe = shutil.which("nextpnr-ice40")
    if exe is None:
        raise ConfigError("nextpnr-ice40 not found: install it (apt install nextpnr-ice40 fpga-icestorm), "
                          "or run scripts/setup.sh")
    return exe


def require_target(target: str) -> None:
    """The tools a --synth target needs (before anything is written)."""
    if target not in TARGETS:
        raise ConfigError(f"unknown synthesis target {target!r}; choose one of {', '.join(TARGETS)}")
    require_yosys()
    if target in ICE40_PARTS:
        require_nextpnr()


def ice40_wrapper(meta: dict, upd_mul: bool = False) -> str:
    """The pin-light wrapper of the datapath ``meta`` (design.json): the sample word, label, train flag and
    read-back layer / address enter through a shift register (``sh_in`` while ``sh_en``); ``rd_load`` captures
    the read-back data into a shift register that leaves through ``sh_out``.  Handshakes, prediction and busy
    stay pins.  Every datapath port stays driven or observed, so synthesis removes nothing of the datapath, except
    the weight load port, tied off (the figures are those of a design loaded at configuration).  ``upd_mul``:
    the datapath's ``UPD_MUL`` (the update's own multipliers, for parts without DSPs)."""
    pw = meta["ports"]
    ins = [("s_data", pw["s_data"]), ("s_label", pw["s_label"]), ("s_train", 1), ("rd_layer", pw["rd_layer"]),
           ("rd_addr", pw["rd_addr"])]
    iw = sum(w for _, w in ins)
    ow = pw["rd_wdata"] + pw["rd_bdata"]
    o = [f"// Generated by edgelearn (edgelearn rtl --synth ice40-*): pin-light wrapper of {meta['top']} for place "
         "and route.",
         f"module {ICE40_TOP} (",
         "    input  wire clk, rst, s_valid, m_ready, sh_en, sh_in, rd_load,",
         "    output wire s_ready, m_valid, busy, sh_out,",
         f"    output wire [{pw['m_pred'] - 1}:0] m_pred",
         ");",
         f"    reg [{iw - 1}:0] si;",
         f"    reg [{ow - 1}:0] so;",
         f"    wire [{pw['rd_wdata'] - 1}:0] rd_wdata;",
         f"    wire [{pw['rd_bdata'] - 1}:0] rd_bdata;",
         "    always @(posedge clk) begin",
         f"        if (sh_en) si <= {{si[{iw - 2}:0], sh_in}};" if iw > 1 else "        if (sh_en) si <= sh_in;",
         "        if (rd_load) so <= {rd_bdata, rd_wdata};",
         f"        else if (sh_en) so <= {{1'b0, so[{ow - 1}:1]}};" if ow > 1
         else "        else if (sh_en) so <= 1'b0;",
         "    end",
         "    assign sh_out = so[0];"]
    conns, lo = [], 0
    for name, w in ins:
        conns.append(f".{name}(si[{lo + w - 1}:{lo}])")
        lo += w
    o.append(f"    {meta['top']} #(.UPD_MUL({int(upd_mul)})) u_dp (.clk(clk), .rst(rst), .s_valid(s_valid), "
             ".s_ready(s_ready), "
             + ", ".join(conns[:3]) + ",")
    o.append("        .m_valid(m_valid), .m_ready(m_ready), .m_pred(m_pred), " + ", ".join(conns[3:]) +
             ", .rd_wdata(rd_wdata), .rd_bdata(rd_bdata),")
    o.append("        .wr_wen(1'b0), .wr_ben(1'b0), .wr_wdata({%d{1'b0}}), .wr_bdata({%d{1'b0}}), .busy(busy));"
             % (pw["wr_wdata"], pw["wr_bdata"]))
    o.append("endmodule")
    return "\n".join(o) + "\n"


def ice40_resources(cells: dict[str, int]) -> dict[str, int]:
    """Cell counts per iCE40 resource class (:data:`ICE40_CLASSES`, by name prefix: every SB_DFF* is a FF)."""
    return {cls: sum(n for c, n in cells.items() if c.startswith(prefixes)) for cls, prefixes in ICE40_CLASSES.items()}


#: name prefixes of nextpnr-ice40's constant nets (its packer's GND / VCC), never a clock of the design
CONSTANT_NETS = ("$PACKER_GND_NET", "$PACKER_VCC_NET")


def parse_nextpnr_report(text: str, where: str = "nextpnr report") -> float:
    """The achieved fmax (MHz) of the one clock in a nextpnr ``--report`` JSON; anything else is an error."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where}: not a nextpnr --report file (unreadable JSON)") from None
    fmax = data.get("fmax") if isinstance(data, dict) else None
    if isinstance(fmax, dict):
        # nextpnr lists the constant nets it routes to clock pins (a DSP or RAM port used without its register) as
        # clocks of their own: no clock of the design
        fmax = {k: v for k, v in fmax.items() if not k.startswith(CONSTANT_NETS)}
    if not isinstance(fmax, dict) or len(fmax) != 1:
        n = len(fmax) if isinstance(fmax, dict) else 0
        raise ConfigError(f"{where}: {n} clocks in 'fmax', expected exactly one (clk)")
    clk = next(iter(fmax.values()))
    mhz = clk.get("achieved") if isinstance(clk, dict) else None
    if isinstance(mhz, bool) or not isinstance(mhz, (int, float)) or not mhz > 0:
        raise ConfigError(f"{where}: no achieved fmax of the clock ({mhz!r})")
    return float(mhz)


def synthesize_ice40(prj: Path, part: str = "ice40-up5k", seeds=(1,), top: str | None = None,
                     timeout: float = 1800) -> dict:
    """``synth_ice40`` of the datapath in ``prj`` inside the pin-light wrapper, then ``nextpnr-ice40`` once per
    seed: cell counts (``stat_<part>.json``), fmax per seed (``nextpnr_<part>_s<seed>.json``) and their
    min / median / max."""
    if part not in ICE40_PARTS:
        raise ConfigError(f"unknown iCE40 part {part!r}; choose one of {', '.join(ICE40_PARTS)}")
    yosys, pnr = require_yosys(), require_nextpnr()
    prj = Path(prj)
    meta = json.loads((prj / "design.json").read_text())
    if top is not None:
        meta["top"] = top
    dev, package, opts = ICE40_PARTS[part]
    # without DSPs the multipliers are LUTs, and a shared one puts its operand mux on the forward pass's path
    (prj / ICE40_WRAPPER).write_text(ice40_wrapper(meta, upd_mul="-dsp" not in opts))
    files = (prj / "filelist.f").read_text().split() + [ICE40_WRAPPER]
    net, stat_path, log = f"{part}.json", prj / f"stat_{part}.json", f"yosys_{part}.log"
    for stale in [prj / net, stat_path, *prj.glob(f"nextpnr_{part}_s*.json")]:
        stale.unlink(missing_ok=True)  # a report of an earlier run must not stand in for this one
    script = "\n".join([f"read_verilog -defer {f}" for f in files] +
                       [f"hierarchy -top {ICE40_TOP}", f"synth_ice40 -top {ICE40_TOP} {' '.join(opts)} -json {net}",
                        "stat", f"tee -q -o {stat_path.name} stat -json"]) + "\n"
    (prj / f"synth_{part}.ys").write_text(script)
    t0 = time.perf_counter()
    res = _run([yosys, "-q", "-l", log, "-s", f"synth_{part}.ys"], prj, timeout, "yosys synth_ice40")
    if res.returncode != 0:
        text = (prj / log).read_text() if (prj / log).exists() else res.stdout + res.stderr
        raise ConfigError(f"yosys synth_ice40 failed on {prj}: {' | '.join(text.strip().splitlines()[-3:])}")
    try:
        cells = parse_stat_json(stat_path.read_text(), where=str(stat_path))
    except OSError:
        raise ConfigError(f"yosys wrote no {stat_path}; see {prj / log}") from None
    fmax = {}
    for seed in seeds:
        rep = prj / f"nextpnr_{part}_s{seed}.json"
        plog = f"nextpnr_{part}_s{seed}.log"
        res = _run([pnr, dev, "--package", package, "--json", net, "--pcf-allow-unconstrained",
                    "--freq", str(ICE40_FREQ), "--timing-allow-fail", "--seed", str(seed),
                    "--report", rep.name, "-q", "-l", plog], prj, timeout, f"nextpnr-ice40 (seed {seed})")
        if res.returncode != 0:
            text = (prj / plog).read_text() if (prj / plog).exists() else res.stdout + res.stderr
            errs = [ln for ln in text.splitlines() if "ERROR" in ln] or text.strip().splitlines()[-2:]
            raise ConfigError(f"nextpnr-ice40 {dev[2:]} failed on {prj} (seed {seed}): {' | '.join(errs[:2])}")
        try:
            fmax[seed] = parse_nextpnr_report(rep.read_text(), where=str(rep))
        except OSError:
            raise ConfigError(f"nextpnr wrote no {rep}; see {prj / plog}") from None
    vals = sorted(fmax.values())
    return {"part": part, "resources": ice40_resources(cells), "cells": cells, "fmax_mhz": fmax,
            "fmax": {"min": vals[0], "median": statistics.median(vals), "max": vals[-1]},
            "seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------------------------------------------
# where the LUTs go (benchmarks/lut_breakdown.py): a flattened synth_xilinx netlist (yosys write_json)

#: cells charged: the logic a LUT count is made of
LOGIC = re.compile(r"^(LUT[1-6]|CARRY4|CARRY8|MUXF7|MUXF8)$")
#: cells a path goes through (the logic and inverters / buffers); every other cell (FF, memory, DSP) ends it
_COMB = re.compile(r"^(LUT[1-6]|CARRY4|CARRY8|MUXF7|MUXF8|INV|BUF)$")
_INDEX = re.compile(r"\[\d+\]")


def _fold(name: str) -> str:
    """A net or cell name with its bit and generate-loop indices folded, so that lanes and bits add up."""
    return _INDEX.sub("[*]", re.sub(r"\$flatten\\?", "", name.lstrip("\\")))


def charge_logic(mod: dict) -> tuple[dict[str, float], dict[str, int]]:
    """Charge each logic cell (:data:`LOGIC`) of the module ``mod`` (a module of yosys ``write_json``) to the items
    its output reaches through logic: registers, memories and DSPs (named by their output net, indices folded, with
    the names of the wires that alias it, and the cell type) and top-level outputs; a cell that reaches several
    items counts evenly in each.  Returns ({item: cells charged}, {cell type: count})."""
    aliases: dict[int, list[str]] = defaultdict(list)      # bit -> its user-visible names
    for n, info in mod["netnames"].items():
        if not n.startswith("$") and not info.get("hide_name", 0):
            for b in info["bits"]:
                if isinstance(b, int) and _fold(n) not in aliases[b]:
                    aliases[b].append(_fold(n))
    for names in aliases.values():  # a name with its instance path first, then the shortest
        names.sort(key=lambda n: ("." not in n, len(n)))
    cells = mod["cells"]
    readers: dict[int, list[str]] = defaultdict(list)      # bit -> the cells that read it
    outputs: dict[str, list[int]] = {}
    for cname, c in cells.items():
        dirs = c.get("port_directions", {})
        outputs[cname] = []
        for port, bits in c["connections"].items():
            for b in bits:
                if isinstance(b, int):
                    if dirs.get(port) == "input":
                        readers[b].append(cname)
                    elif dirs.get(port) == "output":
                        outputs[cname].append(b)
    out_ports = {b: name for name, p in mod["ports"].items() if p["direction"] == "output"
                 for b in p["bits"] if isinstance(b, int)}

    def item(cname: str) -> str:
        c = cells[cname]
        for b in outputs[cname]:
            if b in aliases:
                return f"{'='.join(aliases[b][:3])} ({c['type']})"
        src = c.get("attributes", {}).get("src", "").split("|")[0].split("/")[-1]
        return f"{src or _fold(cname)} ({c['type']})"

    def succ(cname: str) -> list[str]:
        return [r for b in outputs[cname] for r in readers.get(b, ()) if _COMB.match(cells[r]["type"])]

    reach: dict[str, frozenset] = {}
    visiting: set[str] = set()
    for root in cells:  # depth first, iterative (logic chains are long): the items each logic cell reaches
        if root in reach or not _COMB.match(cells[root]["type"]):
            continue
        stack = [root]
        while stack:
            cname = stack[-1]
            if cname in reach:
                stack.pop()
            elif cname not in visiting:  # first its successors (a combinational loop, none expected, ends)
                visiting.add(cname)
                stack.extend(r for r in succ(cname) if r not in reach and r not in visiting)
            else:
                stack.pop()
                acc = {f"output {out_ports[b]}" for b in outputs[cname] if b in out_ports}
                for b in outputs[cname]:
                    for r in readers.get(b, ()):
                        acc |= reach.get(r, frozenset()) if _COMB.match(cells[r]["type"]) else {item(r)}
                reach[cname] = frozenset(acc)
    charge: dict[str, float] = defaultdict(float)
    types: dict[str, int] = defaultdict(int)
    for cname, c in cells.items():
        types[c["type"]] += 1
        if LOGIC.match(c["type"]):
            its = reach[cname] or frozenset({"(drives nothing)"})
            for it in its:
                charge[it] += 1.0 / len(its)
    return dict(charge), dict(types)
