"""``edgelearn rtl --check`` and ``--synth`` end to end, and the reading of yosys ``stat -json``."""
import copy
import json
from pathlib import Path

import pytest

from edgelearn.cli import main
from edgelearn.errors import ConfigError
from edgelearn.rtl.synth import CLASSES, STAT_FILE, parse_nextpnr_report, parse_stat_json, resources
from needs import require_tool

#: ``stat -json`` of yosys 0.23 (Debian 12's) after synth_xilinx of a 4-3-2 el_mlp, 4 bits, inference only
SAMPLE = Path(__file__).parent / "data" / "yosys-0.23-stat.json"

#: the smallest network the generator builds, so that yosys takes seconds
TINY = {"name": "tiny", "input_shape": [4], "num_classes": 2, "loss": "bce", "rule": "drtp",
        "layers": [{"type": "linear", "out": 3, "act": "tanh", "name": "fc1"},
                   {"type": "linear", "out": 2, "name": "out"}]}
#: smaller still for place and route (2-2-2, ReLU: no table ROM)
TINIEST = {**TINY, "input_shape": [2], "layers": [{"type": "linear", "out": 2, "act": "relu", "name": "fc1"},
                                                  {"type": "linear", "out": 2, "name": "out"}]}


def test_check_icarus_on_the_embedded_default(tmp_path, capsys, monkeypatch):
    """The README's command with a relative --out (the cocotb run happens in other folders): 0 mismatching bits."""
    require_tool("icarus")
    monkeypatch.chdir(tmp_path)
    rc = main(["rtl", "--out", "prj", "--parallel", "16", "--check", "icarus", "--check-samples", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.out + captured.err
    rep = json.loads((tmp_path / "prj" / "check_icarus.json").read_text())
    assert rep["samples"] == 2 and rep["weights_compared"] > 0 and rep["biases_compared"] > 0
    assert rep["pred_mismatches"] == 0
    assert rep["weight_bits_mismatched"] == 0 and rep["bias_bits_mismatched"] == 0
    assert "mismatching bits 0" in captured.out
    assert not list(tmp_path.glob(".*")), "a staging folder was left behind"


def test_synth_reads_the_cell_counts_from_stat_json(tmp_path, capsys):
    require_tool("yosys")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINY))  # JSON is YAML
    out = tmp_path / "prj"
    assert main(["rtl", "--config", str(cfg), "--bits", "4", "--parallel", "1", "--inference-only", "--synth",
                 "--out", str(out)]) == 0
    res = json.loads((out / "resources.json").read_text())
    assert res["resources"]["LUT"] > 0 and res["resources"]["FF"] > 0
    assert res["cells"] == parse_stat_json((out / STAT_FILE).read_text())
    printed = capsys.readouterr().out
    assert f"LUT {res['resources']['LUT']:,}  FF {res['resources']['FF']:,}" in printed
    assert f"area {res['resources']['AREA_LE']:,.0f} LUT-eq." in printed


def test_synth_ice40_places_and_routes_behind_the_pin_light_wrapper(tmp_path, capsys):
    """synth_ice40 + nextpnr on a UP5K (48 pins): the learning datapath's ports would not fit without the wrapper;
    counts from stat -json, fmax from nextpnr's report."""
    require_tool("yosys", "nextpnr-ice40")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(TINIEST))
    out = tmp_path / "prj"
    assert main(["rtl", "--config", str(cfg), "--bits", "4", "--parallel", "1", "--inference-only",
                 "--synth", "ice40-up5k", "--pnr-seeds", "1", "--out", str(out)]) == 0
    res = json.loads((out / "resources_ice40-up5k.json").read_text())
    r, f = res["resources"], res["fmax"]
    assert r["LUT4"] > 0 and r["FF"] > 0
    assert f["min"] == f["median"] == f["max"] == res["fmax_mhz"]["1"] > 1
    assert res["fmax_mhz"]["1"] == parse_nextpnr_report((out / "nextpnr_ice40-up5k_s1.json").read_text())
    assert f"LUT4 {r['LUT4']:,}  FF {r['FF']:,}" in capsys.readouterr().out
    assert not (out / "resources.json").exists()  # no Xilinx run was asked for


@pytest.mark.parametrize("report, message", [
    ("fmax: 12", "unreadable JSON"),
    ({"utilization": {}}, "0 clocks"),
    ({"fmax": {"clk": {"achieved": 10.0}, "clk2": {"achieved": 11.0}}}, "2 clocks"),
    ({"fmax": {"clk": {"constraint": 100.0}}}, "no achieved fmax"),
    ({"fmax": {"clk": {"achieved": "fast"}}}, "no achieved fmax"),
])
def test_unreadable_nextpnr_reports_are_errors(report, message):
    with pytest.raises(ConfigError, match=message):
        parse_nextpnr_report(report if isinstance(report, str) else json.dumps(report))
    assert parse_nextpnr_report(json.dumps({"fmax": {"clk": {"achieved": 27.5, "constraint": 100.0}}})) == 27.5
    # a constant net on a clock pin (a DSP used without its registers) is listed as a clock; it is not the design's
    gnd = {"$PACKER_GND_NET_$glb_clk": {"achieved": 153.5, "constraint": 100}, "clk$SB_IO_IN_$glb_clk":
           {"achieved": 26.7, "constraint": 100}}
    assert parse_nextpnr_report(json.dumps({"fmax": gnd})) == 26.7


def _sample() -> dict:
    return json.loads(SAMPLE.read_text())


def test_stat_json_sample():
    cells = parse_stat_json(SAMPLE.read_text())
    r = resources(cells)
    assert r["LUT"] > 0 and r["FF"] > 0 and r["DSP"] > 0 and r["LUTRAM"] > 0
    assert r["LUT"] == sum(cells.get(c, 0) for c in CLASSES["LUT"])
    # the total-area model: logic (LUTs, or FFs / 2 when they outnumber the LUTs' CLBs) + 40 per RAMB36 + 20 per DSP
    from edgelearn.rtl.synth import area_le
    assert area_le({"LUT": 100, "LUTRAM": 2, "SRL": 3, "FF": 50, "BRAM": 1.5, "DSP": 2}) == 105 + 60 + 40
    assert area_le({"LUT": 100, "LUTRAM": 2, "SRL": 3, "FF": 400, "BRAM": 1.5, "DSP": 2}) == 200 + 60 + 40
    assert r["AREA_LE"] == area_le(r) > r["LUT"]
    # yosys without design totals: the only module's counts; escaped names lose their backslash
    data = _sample()
    only = data.pop("design")
    assert parse_stat_json(json.dumps(data)) == cells
    only["num_cells_by_type"] = {"\\" + c: n for c, n in only["num_cells_by_type"].items()}
    assert parse_stat_json(json.dumps({"modules": {"\\top": only}})) == cells


def _without_design(data: dict) -> dict:
    data.pop("design")
    return data


def _miscounted(data: dict) -> dict:
    data["design"]["num_cells_by_type"].pop("FDRE")
    return data


def _text_count(data: dict) -> dict:
    data["design"]["num_cells_by_type"]["FDRE"] = str(data["design"]["num_cells_by_type"]["FDRE"])
    return data


def _two_modules(data: dict) -> dict:
    data = _without_design(data)
    data["modules"]["\\other"] = copy.deepcopy(next(iter(data["modules"].values())))
    return data


def _no_table(data: dict) -> dict:
    del data["design"]["num_cells_by_type"]
    return data


@pytest.mark.parametrize("damage, message", [
    (_two_modules, "no design totals and 2 modules"),
    (_no_table, "no num_cells / num_cells_by_type"),
    (_miscounted, "add up to"),
    (_text_count, "not a count"),
])
def test_unreadable_cell_counts_are_errors_not_zeros(damage, message):
    with pytest.raises(ConfigError, match=message):
        parse_stat_json(json.dumps(damage(_sample())))


def test_the_text_table_is_not_json():
    text = "   Number of cells:                625\n     FDRE                          229\n"
    with pytest.raises(ConfigError, match="unreadable JSON"):
        parse_stat_json(text)


def test_a_synthesis_run_past_its_time_limit_is_one_error_line(tmp_path, monkeypatch):
    """yosys running past ``timeout`` raises the tool's one-line ConfigError, not subprocess's traceback."""
    import subprocess

    from edgelearn.rtl import synth

    def too_slow(cmd, **kw):
        raise subprocess.TimeoutExpired(cmd, kw.get("timeout"))

    (tmp_path / "filelist.f").write_text("a.v\n")
    monkeypatch.setattr(synth, "require_yosys", lambda: "yosys")
    monkeypatch.setattr(synth.subprocess, "run", too_slow)
    with pytest.raises(ConfigError, match=r"yosys synth_xilinx did not finish within 5 s"):
        synth.synthesize(tmp_path, top="el_mlp", timeout=5)
