"""The network description: validation, shape inference, round trip."""
import pytest

from edgelearn.errors import ConfigError
from edgelearn.network import MODELS_DIR, load_network, network_from_dict

BASE = {"input_shape": [1, 8, 8], "num_classes": 10,
        "layers": [{"type": "flatten"}, {"type": "linear", "out": 16, "act": "tanh"}, {"type": "linear", "out": 10}]}


def spec_with(**changes):
    raw = {**BASE, **changes}
    return network_from_dict(raw, source="t.yaml")


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_round_trips(path):
    spec = load_network(path)
    again = network_from_dict(spec.to_dict(), source="again")
    assert [(l.type, l.name, l.params, l.out_shape) for l in again.layers] == \
           [(l.type, l.name, l.params, l.out_shape) for l in spec.layers]
    assert again.rule == spec.rule and again.train == spec.train


def test_shapes_and_mlp_sizes():
    spec = load_network("fc2-500")
    assert spec.is_mlp() and spec.mlp_sizes() == [784, 500, 500, 10]
    conv = load_network("conv-cifar10")
    assert not conv.is_mlp()
    assert conv.layer("flatten1").out_shape == (256 * 8 * 8,)
    vit = load_network("small-vit")
    assert vit.layer("embed").out_shape == (17, 32)


def test_rules_and_learning_rates():
    spec = spec_with(rule="drtp", rules={"linear2": "bp"}, train={"lr": {"drtp": 0.1, "default": 0.2}})
    assert [spec.layer_rule(l) for l in spec.trainable_layers] == ["drtp", "bp"]
    assert spec.learning_rate() == 0.1 and spec.learning_rate("fa") == 0.2
    with pytest.raises(ConfigError, match="no entry for rule"):
        spec_with(train={"lr": {"bp": 0.1}}).learning_rate("fa")


@pytest.mark.parametrize("changes, message", [
    ({"layers": [{"type": "dense", "out": 3}]}, "unknown layer type 'dense'"),
    ({"layers": [{"type": "linear"}]}, "missing required key 'out'"),
    ({"layers": [{"type": "linear", "out": 10, "width": 3}]}, "unknown key(s) width"),
    ({"layers": [{"type": "linear", "out": -1}]}, "positive integer"),
    ({"layers": [{"type": "linear", "out": 10, "act": "swish"}]}, "unknown activation"),
    ({"layers": [{"type": "linear", "out": 10, "name": "a"}, {"type": "linear", "out": 10, "name": "a"}]}, "duplicate layer name"),
    ({"layers": [{"type": "linear", "out": 4}]}, "outputs shape [1, 8, 4]"),
    ({"rule": "backprop"}, "unknown rule 'backprop'"),
    ({"rules": {"nope": "bp"}}, "not a trainable layer"),
    ({"loss": "hinge"}, "unknown loss"),
    ({"input_shape": [0]}, "positive integers"),
    ({"num_classes": 1}, "num_classes >= 2"),
    ({"colour": "red"}, "unknown top-level key"),
    ({"layers": [{"type": "maxpool", "kernel": 16}, {"type": "flatten"}, {"type": "linear", "out": 10}]}, "does not fit"),
    ({"layers": [{"type": "linear", "out": None}, {"type": "linear", "out": 10}]}, "missing required key 'out'"),
])
def test_invalid_descriptions(changes, message):
    with pytest.raises(ConfigError) as exc:
        spec_with(**changes)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_malformed_yaml_is_one_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("layers: [1, 2\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_network(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_network(p)
