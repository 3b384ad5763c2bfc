"""Full-scale experiments: architectures, experiment configs and their variants in smoke mode, the training loop's
schedules, augmentation, mid-epoch resume and mixed precision, residual blocks under the converter, receptive
fields, CIFAR grayscale / class subsets. (torchrun: tests/test_distributed.py.)"""
import json
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from edgelearn.cli import main
from edgelearn.errors import ConfigError, DataError, RuleError
from edgelearn.network import config_names, load_network, network_from_dict
from edgelearn.torch_ref import build_model, convert, convert_network
from edgelearn.torch_ref.receptive import isotropy, receptive_fields
from edgelearn.train import (augment_batch, augment_params, check_schedule, lr_at, make_optimizer, normalize_inputs,
                             smoke_spec, train)
from helpers import cli_one_line_error, reachable_leaves

EXPERIMENTS = [n for n in config_names() if n.startswith("experiments/")]
DIRECT = ("dfa", "sdfa", "drtp", "shallow")


# ------------------------------------------------------------------------------------------------ architectures
def test_architectures_have_the_papers_shapes():
    vgg = load_network("vgg-like")
    assert vgg.layer("conv4_2").out_shape == (512, 4, 4) and vgg.layer("gap").out_shape == (512, 1, 1)
    assert vgg.layer("fc1").out_shape == (256,) and vgg.layer("drop1")["p"] == 0.4
    vit = load_network("vit-cifar")
    assert vit.layer("embed").out_shape == (65, 384)
    assert [l.params["heads"] for l in vit.layers if l.type == "transformer"] == [4] * 7
    ret = load_network("retina")
    assert ret.input_shape == (1, 32, 32) and ret.layer("flatten1").out_shape == (32768,)
    assert [ret.layer(n).out_shape for n in ("ret1", "ret2", "vvs3")] == [(32, 32, 32)] * 3
    small = load_network("smallconv")
    assert [small.layer(n)["out"] for n in ("conv1", "conv2", "conv3", "fc1")] == [96, 192, 512, 1024]
    assert small.layer("flatten1").out_shape == (512 * 4 * 4,)
    assert load_network("vgg13").layer("flatten1").out_shape == (512,)
    assert len([l for l in load_network("vgg13").layers if l.type == "conv2d"]) == 10
    assert load_network("lenet").layer("flatten1").out_shape == (400,)
    # He et al. 2016, Table 6: 0.27 M, 0.46 M, 0.85 M parameters; 6n + 2 weighted layers
    for depth, millions in ((20, 0.27), (32, 0.46), (56, 0.85)):
        spec = load_network(f"resnet{depth}")
        model = build_model(spec, seed=0)
        assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == millions
        assert len(spec.site_names()) == depth
        assert spec.layer("stage3").out_shape == (64, 8, 8)


def test_residual_and_pooling_descriptions_are_validated():
    base = {"input_shape": [3, 8, 8], "num_classes": 4, "layers": [
        {"type": "conv2d", "out": 4, "kernel": 3, "padding": 1, "name": "stem"},
        {"type": "residual", "out": 8, "stride": 2, "blocks": 2, "shortcut": "conv", "name": "s1"},
        {"type": "adaptive_avgpool", "size": 1}, {"type": "flatten"}, {"type": "linear", "out": 4, "name": "fc"}]}
    spec = network_from_dict(base)
    assert spec.layer("s1").out_shape == (8, 4, 4)
    assert spec.site_names() == ["stem", "s1.0.conv1", "s1.0.conv2", "s1.0.shortcut.0", "s1.1.conv1", "s1.1.conv2", "fc"]
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec)
    assert [s.name for s in learner.sites] == spec.site_names()
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 4)
    bad = [({"type": "residual", "out": 2, "name": "s1"}, "cannot reduce"),
           ({"type": "residual", "out": 8, "shortcut": "proj", "name": "s1"}, "shortcut must be one of"),
           ({"type": "residual", "out": 8, "blocks": 0, "name": "s1"}, "blocks must be a positive integer")]
    for layer, match in bad:
        raw = json.loads(json.dumps(base))
        raw["layers"][1] = layer
        with pytest.raises(ConfigError, match=match):
            network_from_dict(raw)
    raw = json.loads(json.dumps(base))
    raw["layers"][2] = {"type": "adaptive_avgpool", "size": 9}
    with pytest.raises(ConfigError, match="larger than its input"):
        network_from_dict(raw)
    # rule overrides may name the convs inside blocks; indices count every site (here -1 is the head)
    spec = network_from_dict({**base, "rule": "dfa", "rules": {"s1.1.conv2": "bp", "-1": "bp"}})
    assert spec.rules == {"s1.1.conv2": "bp", "6": "bp"} and spec.layer_rule("s1.1.conv2") == "bp"
    with pytest.raises(ConfigError, match="not a trainable layer"):
        network_from_dict({**base, "rules": {"s1.2.conv1": "bp"}})


def test_direct_rules_cut_resnets_at_block_outputs():
    """DFA on ResNet-20: each conv's signal arrives at its point (conv1: after its ReLU; conv2: the block output,
    after the addition) and the local backward from there reaches no other layer's weight -- not through the
    shortcut either. BP through the converter equals plain autograd."""
    spec = smoke_spec(load_network("resnet20"))
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="dfa")
    weights = {id(s.module.weight): s.name for s in learner.sites}
    ends = {s.name: s.end for s in learner.sites}
    assert isinstance(ends["stage2.0.conv1"], nn.ReLU) and ends["stage2.0.conv1"] is model.stage2[0].relu1
    assert ends["stage2.0.conv2"] is model.stage2[0].relu2
    reached = {}
    for s in learner.sites[:-1]:
        original = s.rule.signal

        def spy(ctx, point, s=s, original=original):
            reached[s.name] = {weights[i] for i in reachable_leaves(point) if i in weights}
            return original(ctx, point)

        s.rule.signal = spy
    x, y = torch.rand(4, 3, 32, 32), torch.arange(4)
    learner.train_step(x, y)
    assert len(reached) == len(learner.sites) - 1
    assert all(v == {k} for k, v in reached.items()), reached
    assert all(s.module.weight.grad is not None for s in learner.sites)
    # bp: the converter changes nothing
    a, b = build_model(spec, seed=0), build_model(spec, seed=0)
    lb = convert_network(b, spec, rule="bp")
    torch.nn.functional.cross_entropy(a(x), y).backward()
    lb.train_step(x, y)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


# ------------------------------------------------------------------------------------------------ experiment configs
def test_experiment_configs_cover_the_seed_experiments():
    names = {n.split("/", 1)[1] for n in EXPERIMENTS}
    for want in ("ldfa-fig3a-layerwise", "ldfa-fig3b-all-layers", "ldfa-fig3c-cifar100-d50", "ldfa-fig3d-direct",
                 "ldfa-fig3e-vgg", "ldfa-fig3f-vit", "ldfa-fig4-retina", "ssa-table1-smallconv", "ssa-table2-vgg13",
                 "ssa-table2-resnet32", "ssa-table3-ablation", "ssa-table4-resnet20", "ssa-table4-resnet56",
                 "ssa-table4-lenet", "ssa-rank-schedule", "drtp-table2-fc1-500", "drtp-table2-conv-trained"):
        assert want in names
    a = load_network("experiments/ldfa-fig3a-layerwise")
    assert a.train["amsgrad"] and a.train["lr"] == 6e-4 and a.train["weight_decay"] == 4e-4
    assert a.train["schedule"] == {"type": "exponential", "gamma": 0.975} and a.train["epochs"] == 160
    assert a.rule_params["rank"] == {"default": "full", "fc3": 10}           # merged over the shared setting
    assert a.with_variant("fc2-r4").rule_params["rank"] == {"default": "full", "fc2": 4}
    c = load_network("experiments/ldfa-fig3c-cifar100-d75")
    assert c.num_classes == 75 and c.dataset == "cifar100" and c.dataset_params == {"classes": 75}
    assert c.layer("out")["out"] == 75 and c.layers[1]["out"] == 512  # the base network's layers
    b = load_network("experiments/ldfa-fig3b-all-layers", variant="narrow64")
    assert [b.layer(f"fc{i}")["out"] for i in range(1, 5)] == [64] * 4
    r = load_network("experiments/ldfa-fig4-retina")
    assert r.rule == "bp" and r.rules == {"vvs1": "ldfa"} and r.rule_params["rank"] == 4
    assert r.with_variant("bp").rules == {}  # rules are replaced whole, not merged
    d = r.with_variant("dldfa-bottleneck4")
    assert d.layer("ret2")["out"] == 4 and d.layer_rule("ret1") == "dldfa" and d.layer_rule("vvs1") == "bp"
    drtp = load_network("experiments/drtp-table2-fc2-500")
    assert len(drtp.variants) == 6 * 4 and drtp.variant == "drtp-do0"
    v = drtp.with_variant("bp-do0.25")
    assert v.rule == "bp" and v.layer("do1")["p"] == v.layer("do2")["p"] == 0.25 and v.learning_rate() == 5e-6
    assert drtp.with_variant("sdfa-da").train["augment"] == {"flip": True}
    conv = load_network("experiments/drtp-table2-conv-random", variant="shallow-do0")
    assert conv.rules == {"conv1": "shallow", "conv2": "shallow"} and conv.learning_rate() == 1.5e-3
    ab = load_network("experiments/ssa-table3-ablation", variant="no-ortho")
    assert ab.rule_params == {"ssa_retraction": "none", "ssa_gamma": 0.0}


def test_experiment_config_errors(tmp_path, capsys):
    def write(name, text):
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    base = write("net.yaml", "input_shape: [4]\nnum_classes: 3\nlayers:\n - {type: linear, out: 5, name: a}\n"
                             " - {type: linear, out: 3, name: b}\n")
    cases = [
        ("base: nope\n", "no config 'nope'"),
        ("base: net\nlayer_overrides: {c: {out: 3}}\n", "layer_overrides names layer 'c'"),
        ("base: net\nlayer_overrides: {a: {type: conv2d}}\n", "cannot change a layer's type"),
        ("base: net\nvariants: {x: {colour: red}}\n", "unknown key(s) colour"),
        ("base: net\ndefault_variant: y\nvariants: {x: {}}\n", "default_variant 'y' is not a variant"),
        ("base: net\nvariants: {a-b: {}}\ngrid: [{a: {}}, {b: {}}]\n", "duplicate variant name 'a-b'"),
        ("base: net\ntrain: {weight_decy: 0.1}\n", "unknown train key(s) weight_decy"),
        ("base: net\nvariants: {x: {layer_overrides: {a: {out: 0}}}}\ndefault_variant: x\n", "positive integer"),
        ("base: loop.yaml\n", "cycle"),
    ]
    write("loop.yaml", "base: loop.yaml\n")
    for i, (text, match) in enumerate(cases):
        cli_one_line_error(capsys, ["train", "--config", write(f"e{i}.yaml", text), "--out", str(tmp_path / f"o{i}")], match)
    ok = write("ok.yaml", "base: net\ngrid: [{p: {rule: dfa}, q: {rule: fa}}, {s: {train: {lr: 0.1}}, t: {}}]\n")
    spec = load_network(ok)
    assert spec.variant_names() == ["p-s", "p-t", "q-s", "q-t"] and spec.with_variant("q-s").rule == "fa"
    cli_one_line_error(capsys, ["train", "--config", ok, "--variant", "zz", "--smoke"], "no variant 'zz'")
    cli_one_line_error(capsys, ["train", "--config", base, "--variant", "x"], "has no variants")


@pytest.mark.parametrize("name", EXPERIMENTS, ids=lambda n: n.split("/")[1])
def test_every_variant_of_every_experiment_trains_in_smoke_mode(name, tmp_path):
    """The default variant end to end through the files (checkpoint, metrics.json), then every variant: 2 epochs of
    tiny-width training, finite losses, the rules each variant asks for on the layers it names."""
    spec = load_network(name)
    assert spec.variants and spec.variant == spec.default_variant
    m = train(spec, smoke=True, progress=False, out=tmp_path / "default", log=lambda *a: None)
    data = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert data["complete"] and data["smoke"] and data["variant"] == spec.variant and len(data["epochs"]) == 2
    assert (tmp_path / "default" / "checkpoint.pt").exists()
    if spec.experiment.get("receptive_fields"):
        assert (tmp_path / "default" / "receptive_fields_ret2.png").stat().st_size > 1000
        assert set(m["receptive_fields"]) == {"ret1", "ret2"}
    for v in spec.variant_names():
        s = spec.with_variant(v)
        small = smoke_spec(s)
        assert [l.name for l in small.layers] == [l.name for l in s.layers] and small.rules == s.rules
        mv = train(s, smoke=True, progress=False, probe=False)
        assert mv["complete"] and all(math.isfinite(e["train_loss"]) for e in mv["epochs"]), v
        learner = mv["learner"]
        assert [site.name for site in learner.sites] == s.site_names()
        for site in learner.sites:
            want = s.layer_rule(site.name)
            if site.is_output and want in DIRECT:
                want = "bp"
            assert site.rule.name == want, (v, site.name)


def test_cli_smoke_writes_receptive_field_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "-c", "experiments/ldfa-fig4-retina", "-V", "bp-bottleneck4", "--smoke", "-q",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "receptive fields of ret2" in text and (out / "receptive_fields_ret2.png").exists()
    rf = np.load(out / "receptive_fields_ret2.npy")
    assert rf.shape == (2, 1, 17, 17)  # smoke width 4 // 16 -> 2 channels; two 9x9 convs see 17x17


# ------------------------------------------------------------------------------------------------ training loop
def test_learning_rate_schedules():
    def spec(schedule):
        return network_from_dict({"input_shape": [4], "num_classes": 3, "layers": [{"type": "linear", "out": 3}],
                                  "train": {"schedule": schedule}})

    exp = check_schedule(spec({"type": "exponential", "gamma": 0.975}))
    assert [lr_at(exp, 1.0, e, 10) for e in (0, 1, 4)] == [1.0, 0.975, 0.975 ** 4]
    st = check_schedule(spec({"type": "step", "step_size": 3, "gamma": 0.5}))
    assert [lr_at(st, 1.0, e, 10) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    ms = check_schedule(spec({"type": "multistep", "milestones": [2, 5], "gamma": 0.1}))
    assert [lr_at(ms, 1.0, e, 10) for e in (1, 2, 5)] == pytest.approx([1, 0.1, 0.01])
    cos = check_schedule(spec({"type": "cosine", "eta_min": 0.0, "warmup_epochs": 2}))
    assert [lr_at(cos, 1.0, e, 12) for e in (0, 1, 2, 7)] == pytest.approx([0.5, 1.0, 1.0, 0.5])
    assert lr_at(cos, 1.0, 11, 12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 9 / 10)))
    for bad, match in [({"type": "linear"}, "unknown type"), ({"type": "step"}, "step_size"),
                       ({"type": "exponential", "gamma": 2}, "gamma"), ({"type": "cosine", "T": 3}, "unknown key")]:
        with pytest.raises(ConfigError, match=match):
            check_schedule(spec(bad))
    # the trainer applies it: metrics record each epoch's learning rate
    m = train(load_network("experiments/ldfa-fig3a-layerwise"), smoke=True, progress=False, probe=False, epochs=3)
    assert [e["lr"] for e in m["epochs"]] == pytest.approx([6e-4, 6e-4 * 0.975, 6e-4 * 0.975 ** 2])


def test_optimizers_from_the_train_section():
    def opt(**train):
        spec = network_from_dict({"input_shape": [4], "num_classes": 3, "layers": [{"type": "linear", "out": 3}],
                                  "train": train})
        return make_optimizer(spec, nn.Linear(4, 3).parameters(), "bp", None)

    o = opt(optimizer="adam", amsgrad=True, lr=6e-4, weight_decay=4e-4)
    assert isinstance(o, torch.optim.Adam) and o.defaults["amsgrad"] and o.defaults["weight_decay"] == 4e-4
    o = opt(optimizer="rmsprop", lr=1e-4, weight_decay=1e-5, alpha=0.9)
    assert isinstance(o, torch.optim.RMSprop) and o.defaults["alpha"] == 0.9
    o = opt(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True)
    assert o.defaults["nesterov"] and o.defaults["momentum"] == 0.9
    for train_, match in [({"optimizer": "lion"}, "unknown optimizer"), ({"amsgrad": "yes"}, "amsgrad"),
                          ({"betas": [0.9]}, "betas"), ({"weight_decay": -1}, "weight_decay")]:
        with pytest.raises(ConfigError, match=match):
            opt(**train_)


def test_augmentation_is_a_function_of_the_global_batch():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    params = {"dy": torch.tensor([0, 2]), "dx": torch.tensor([1, 2]), "flip": torch.tensor([False, True])}
    out = augment_batch(x, params, pad=1)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    torch.testing.assert_close(out[0], xp[0, :, 0:4, 1:5])
    torch.testing.assert_close(out[1], xp[1, :, 2:6, 2:6].flip(-1))
    aug = {"crop": 4, "flip": True}
    p1, p2 = augment_params(aug, 10, 0, 3, 7), augment_params(aug, 10, 0, 3, 7)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert not torch.equal(p1["dx"], augment_params(aug, 10, 0, 3, 8)["dx"])
    assert int(p1["dy"].max()) <= 8 and p1["flip"].any() and not p1["flip"].all()
    # the share of one process augmented alone = its rows of the whole batch augmented at once
    xb = torch.rand(10, 3, 8, 8)
    whole = augment_batch(xb, p1, 4)
    part = augment_batch(xb[6:], {k: v[6:] for k, v in p1.items()}, 4)
    assert torch.equal(whole[6:], part)


def test_input_standardisation_uses_training_statistics():
    from edgelearn.data import Dataset

    rng = np.random.default_rng(0)
    xtr = (rng.random((50, 3, 4, 4)) * np.array([1, 2, 3]).reshape(1, 3, 1, 1) + 5).astype(np.float32)
    xte = xtr[:10] + 1
    ds = Dataset("t", xtr, np.arange(50) % 3, xte, np.arange(10) % 3, task="classification", num_classes=3,
                 input_shape=(3, 4, 4))
    spec = network_from_dict({"input_shape": [3, 4, 4], "num_classes": 3, "train": {"normalize": True},
                              "layers": [{"type": "flatten"}, {"type": "linear", "out": 3}]})
    stats = normalize_inputs(spec, ds)
    np.testing.assert_allclose(ds.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.std(axis=(0, 2, 3)), 1, atol=1e-4)
    np.testing.assert_allclose(ds.x_test, ds.x_train[:10] + 1 / np.array(stats["std"]).reshape(1, 3, 1, 1), atol=1e-5)
    spec.train["normalize"] = "yes"
    with pytest.raises(ConfigError, match="normalize"):
        normalize_inputs(spec, ds)


@pytest.mark.parametrize("name", ["experiments/ssa-table1-smallconv", "experiments/ldfa-fig3e-vgg"])
def test_resume_mid_epoch_reproduces_the_uninterrupted_run(name, tmp_path):
    """Batch norm, dropout (VGG-like), augmentation and SSA's rank schedule (Small-Conv): stopped after 2 steps
    with a checkpoint every 2, resumed, the run ends bit for bit where the uninterrupted one does."""
    spec = load_network(name)
    kw = dict(smoke=True, progress=False, n_train=24, seed=3, log=lambda *a: None)
    full = train(spec, **kw)
    part = train(spec, out=tmp_path, checkpoint_every=2, max_steps=2, **kw)
    assert not part["complete"] and part["epochs"] == []
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 2)
    logs = []
    resumed = train(spec, out=tmp_path, checkpoint_every=2, **{**kw, "log": logs.append})
    assert any("step 2 of epoch 1" in line for line in logs)
    sf, sr = full["model"].state_dict(), resumed["model"].state_dict()
    assert sf.keys() == sr.keys() and all(torch.equal(sf[k], sr[k]) for k in sf)
    keep = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "layers")
    assert [{k: e[k] for k in keep} for e in full["epochs"]] == [{k: e[k] for k in keep} for e in resumed["epochs"]]
    if "ssa" in name:
        assert [s.rule.rank_history for s in full["learner"].sites] == [s.rule.rank_history for s in resumed["learner"].sites]
        assert any(len(set(s.rule.rank_history)) > 1 for s in resumed["learner"].sites)  # the schedule did cut


def test_mixed_precision_runs_the_feedback_products_in_float32():
    x = torch.rand(4, 3, 32, 32)
    spec = smoke_spec(load_network("vgg-like"))
    for rule in ("fa", "ldfa"):
        model = build_model(spec, seed=0)
        learner = convert_network(model, spec, rule=rule)
        seen = {}
        model.conv2_1.register_forward_hook(lambda m, i, o: seen.__setitem__("dtype", o.dtype))
        model.fc1.register_forward_hook(lambda m, i, o: seen.__setitem__("fc", o.dtype))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            res = learner.train_step(x, torch.arange(4))
        assert seen == {"dtype": torch.float32, "fc": torch.float32} and math.isfinite(res.loss)
        assert all(p.grad is None or p.grad.dtype == torch.float32 for p in learner.parameters())
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="dfa")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16  # plain layers do use the low precision
    for cfg in ("experiments/ldfa-fig3f-vit", "experiments/ssa-table4-resnet20", "experiments/drtp-table2-conv-trained",
                "experiments/ldfa-fig3d-direct"):
        m = train(load_network(cfg), smoke=True, progress=False, probe=False, amp="on")
        assert m["amp"] == "bfloat16" and m["complete"] and math.isfinite(m["final"]["train_loss"]), cfg
    assert train(load_network("vgg-like"), smoke=True, progress=False, probe=False, epochs=1)["amp"] is None


# ------------------------------------------------------------------------------------------------ LDFA ranks
def test_ldfa_rank_full_fraction_and_patterns():
    spec = smoke_spec(load_network("vgg-like"))  # conv widths 4, 4, 8, 8, 16, 16, 32, 32; fc1 16
    model = build_model(spec, seed=0)
    learner = convert_network(model, spec, rule="ldfa")
    learner2 = convert(build_model(spec, seed=0), rule="ldfa", input_shape=spec.input_shape, num_classes=10,
                       rule_params={"rank": {"conv4_*": 3, "conv1_1": 1, "conv*": 0.5, "default": "full"}})
    ranks = {s.name: s.module.el_ldfa_p.shape[0] for s in learner2.sites}
    assert ranks == {"conv1_1": 1, "conv1_2": 2, "conv2_1": 4, "conv2_2": 4, "conv3_1": 8, "conv3_2": 8,
                     "conv4_1": 3, "conv4_2": 3, "fc1": 16, "out": 10}
    assert all(s.module.el_ldfa_p.shape[0] == 10 for s in learner.sites)  # default: the number of classes
    for bad, match in [({"rank": {"zz*": 3}}, "not trainable layers"), ({"rank": 1.5}, "fraction"),
                       ({"rank": "half"}, "positive integer")]:
        with pytest.raises(RuleError, match=match):
            convert(build_model(spec, seed=0), rule="ldfa", input_shape=spec.input_shape, num_classes=10, rule_params=bad)


# ------------------------------------------------------------------------------------------------ receptive fields
def test_receptive_fields_of_the_first_layer_are_its_filters_and_isotropy_separates_shapes():
    spec = smoke_spec(load_network("retina"))
    model = build_model(spec, seed=0).double()
    rf = receptive_fields(model, "ret1", torch.rand(8, 1, 32, 32, dtype=torch.float64))
    assert rf.shape == (2, 1, 9, 9)
    np.testing.assert_allclose(rf, model.ret1.weight.detach().numpy(), rtol=1e-12, atol=1e-12)
    rf2 = receptive_fields(model, "ret2", torch.rand(8, 1, 32, 32, dtype=torch.float64))
    assert rf2.shape[2:] == (17, 17)
    yy, xx = np.mgrid[-8:9, -8:9]
    dog = np.exp(-(xx ** 2 + yy ** 2) / 4.0) - 0.5 * np.exp(-(xx ** 2 + yy ** 2) / 16.0)
    gabor = np.exp(-(xx ** 2 + yy ** 2) / 18.0) * np.cos(xx * 0.9)
    assert isotropy(dog) > 0.95 and isotropy(gabor) < 0.5
    with pytest.raises(ConfigError, match="not a conv layer"):
        receptive_fields(model, "fc1", torch.rand(2, 1, 32, 32, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ data
def _cifar_folder(tmp_path, n=40):
    folder = tmp_path / "c10"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, k in (("data_batch_1", n), ("test_batch", n // 2)):
        batch = {b"data": rng.integers(0, 256, (k, 3072), dtype=np.uint8), b"labels": [i % 10 for i in range(k)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder


def test_cifar_grayscale_and_class_subsets(tmp_path):
    from edgelearn.data import load_dataset

    folder = _cifar_folder(tmp_path)
    rgb = load_dataset("cifar10", folder)
    gray = load_dataset("cifar10", folder, grayscale=True)
    assert gray.input_shape == (1, 32, 32)
    np.testing.assert_allclose(gray.x_train[:, 0], 0.299 * rgb.x_train[:, 0] + 0.587 * rgb.x_train[:, 1]
                               + 0.114 * rgb.x_train[:, 2], rtol=1e-6)
    sub = load_dataset("cifar10", folder, classes=[7, 2, 5], n_train=6)
    assert sub.num_classes == 3 and sub.y_train.tolist() == [1, 2, 0, 1, 2, 0]  # labels 2, 5, 7, 2, 5, 7
    np.testing.assert_array_equal(sub.x_train[0], rgb.x_train[2])
    assert load_dataset("cifar10", folder, classes=4).num_classes == 4
    for bad in (1, [3, 3], [0, 10], "four"):
        with pytest.raises(DataError, match="classes"):
            load_dataset("cifar10", folder, classes=bad)
    with pytest.raises(DataError, match="grayscale"):
        load_dataset("cifar10", folder, grayscale="yes")
    # the retina model trains on it (grayscale from its dataset_params)
    m = train(load_network("retina"), data_dir=str(folder), smoke=True, progress=False, probe=False, epochs=1)
    assert m["complete"] and m["dataset"] == "cifar10"
