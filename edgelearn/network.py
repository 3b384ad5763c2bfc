"""The network description: one object that every back end (torch, fixed-point engine, HLS, RTL) consumes.

A description is read from YAML (``models/*.yaml`` or an embedded default) and validated here, once, so that a back
end never sees an inconsistent network. Shapes are inferred analytically (no torch needed), which lets the
fixed-point engine and the hardware generators size their memories from the same source.

YAML layout::

    name: fc1-500
    dataset: mnist                 # default dataset (see edgelearn.data)
    input_shape: [1, 28, 28]
    num_classes: 10                # or output_dim for regression
    task: classification           # or regression
    loss: bce                      # bce (sigmoid outputs), ce (softmax), mse
    rule: drtp                     # default rule of every trainable layer
    rules: {fc_out: bp}            # per-layer overrides, by layer name or index
    layers:
      - {type: flatten}
      - {type: linear, out: 500, act: tanh, name: fc1}
      - {type: linear, out: 10, name: fc_out}
    train: {optimizer: adam, lr: 1.5e-4, batch_size: 60, epochs: 100}
    precision: {...}               # fixed-point formats for the engine / HLS / RTL (hls4ml syntax)
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

RULES = ("bp", "shallow", "fa", "dfa", "sdfa", "drtp", "kp", "ldfa", "dldfa", "ssa")
ACTIVATIONS = ("none", "tanh", "sigmoid", "relu", "hardtanh", "gelu", "leaky_relu")
LOSSES = ("bce", "ce", "mse")
TRAINABLE_TYPES = ("linear", "conv2d")

# Allowed keys per layer type (besides "type" and "name") with their defaults; None = required.
LAYER_SCHEMA: dict[str, dict[str, Any]] = {
    "linear": {"out": None, "bias": True, "act": "none"},
    "conv2d": {"out": None, "kernel": None, "stride": 1, "padding": 0, "bias": True, "act": "none"},
    "maxpool": {"kernel": 2, "stride": None},
    "avgpool": {"kernel": 2, "stride": None},
    "flatten": {},
    "act": {"fn": None},
    "dropout": {"p": 0.0},
    "batchnorm": {},
    "layernorm": {},
    # tokens: (C,H,W) image -> (T, dim) tokens with a class token and learned positions
    "patch_embed": {"dim": None, "patch": None, "cls_token": True},
    # a pre-norm transformer block on (T, dim) tokens; projections are nn.Linear so rules apply to them
    "transformer": {"heads": None, "mlp_ratio": 4.0, "dropout": 0.0},
    "token_pool": {"mode": "cls"},
}


@dataclass
class LayerSpec:
    type: str
    name: str
    params: dict[str, Any]
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()

    @property
    def trainable(self) -> bool:
        return self.type in TRAINABLE_TYPES

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass
class NetworkSpec:
    name: str
    input_shape: tuple[int, ...]
    layers: list[LayerSpec]
    task: str = "classification"
    num_classes: int | None = 10
    output_dim: int = 10
    loss: str = "bce"
    rule: str = "bp"
    rules: dict[str, str] = field(default_factory=dict)
    dataset: str | None = None
    dataset_params: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)
    rule_params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    # -- derived views -------------------------------------------------------------------------------------------
    @property
    def trainable_layers(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.trainable]

    def layer_rule(self, layer: LayerSpec | str | int) -> str:
        """Rule of a trainable layer: per-layer override by name or trainable index, else the default."""
        if isinstance(layer, int):
            layer = self.trainable_layers[layer]
        elif isinstance(layer, str):
            layer = self.layer(layer)
        idx = self.trainable_layers.index(layer)
        return self.rules.get(layer.name, self.rules.get(str(idx), self.rule))

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ConfigError(f"{self.source}: no layer named {name!r}")

    def is_mlp(self) -> bool:
        """True if the network is flatten? + linear layers only (what the engine, HLS kernel and RTL implement)."""
        return all(layer.type in ("linear", "flatten") for layer in self.layers) and self.layers[-1].type == "linear"

    def mlp_sizes(self) -> list[int]:
        """[n_in, n_1, ..., n_out] for an MLP description."""
        if not self.is_mlp():
            raise ConfigError(f"{self.name}: not an MLP (only flatten and linear layers)")
        lin = self.trainable_layers
        return [int(math.prod(lin[0].in_shape))] + [int(layer["out"]) for layer in lin]

    def with_rule(self, rule: str | None = None, rules: dict[str, str] | None = None) -> "NetworkSpec":
        spec = copy.deepcopy(self)
        if rule is not None:
            spec.rule = rule
        if rules is not None:
            spec.rules = dict(rules)
        spec._validate_rules()
        return spec

    def learning_rate(self, rule: str | None = None) -> float:
        lr = self.train.get("lr", 1e-3)
        if isinstance(lr, dict):
            rule = rule or self.rule
            if rule not in lr and "default" not in lr:
                raise ConfigError(f"{self.source}: train.lr has no entry for rule {rule!r} (and no 'default')")
            return float(lr.get(rule, lr.get("default")))
        return float(lr)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "task": self.task,
            "loss": self.loss,
            "rule": self.rule,
            "rules": dict(self.rules),
            "layers": [{"type": layer.type, "name": layer.name, **layer.params} for layer in self.layers],
        }
        if self.task == "classification":
            out["num_classes"] = self.num_classes
        else:
            out["output_dim"] = self.output_dim
        for key in ("dataset", "dataset_params", "train", "precision", "rule_params"):
            value = getattr(self, key)
            if value:
                out[key] = copy.deepcopy(value)
        return out

    def _validate_rules(self) -> None:
        names = {layer.name for layer in self.trainable_layers}
        if self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        n = len(self.trainable_layers)
        for key, rule in self.rules.items():
            if rule not in RULES:
                raise ConfigError(f"{self.source}: unknown rule {rule!r} for layer {key!r}; choose one of {', '.join(RULES)}")
            if str(key) not in names and not (str(key).lstrip("-").isdigit() and -n <= int(key) < n):
                raise ConfigError(f"{self.source}: rules names layer {key!r}, which is not a trainable layer ({', '.join(sorted(names))})")
        if self.task == "regression":
            for layer in self.trainable_layers:
                if self.layer_rule(layer) == "drtp":
                    raise ConfigError(f"rule 'drtp' needs class labels as targets; {self.name} is a regression network")
        if self.rules:  # normalise negative indices
            self.rules = {(str(int(k) % n) if str(k).lstrip("-").isdigit() else str(k)): v for k, v in self.rules.items()}


def _shape_after(layer: LayerSpec, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    t, p = layer.type, layer.params

    def need(rank: int, what: str) -> None:
        if len(shape) != rank:
            raise ConfigError(f"{where}: {t} needs a {what} input but gets shape {list(shape)}")

    if t == "linear":
        return shape[:-1] + (int(p["out"]),)
    if t == "conv2d":
        need(3, "(C, H, W)")
        c, h, w = shape
        k, s, pad = int(p["kernel"]), int(p["stride"]), int(p["padding"])
        ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        if ho < 1 or wo < 1:
            raise ConfigError(f"{where}: conv2d kernel {k} does not fit input {list(shape)}")
        return (int(p["out"]), ho, wo)
    if t in ("maxpool", "avgpool"):
        need(3, "(C, H, W)")
        c, h, w = shape
        k = int(p["kernel"])
        s = int(p["stride"] or k)
        if h < k or w < k:
            raise ConfigError(f"{where}: {t} kernel {k} does not fit input {list(shape)}")
        return (c, (h - k) // s + 1, (w - k) // s + 1)
    if t == "flatten":
        return (int(math.prod(shape)),)
    if t in ("act", "dropout", "batchnorm", "layernorm", "transformer"):
        if t == "transformer":
            need(2, "(tokens, dim)")
            if shape[1] % int(p["heads"]):
                raise ConfigError(f"{where}: dim {shape[1]} is not divisible by heads {p['heads']}")
        if t == "batchnorm" and len(shape) not in (1, 3):
            raise ConfigError(f"{where}: batchnorm needs a (C,) or (C, H, W) input, got {list(shape)}")
        return shape
    if t == "patch_embed":
        need(3, "(C, H, W)")
        c, h, w = shape
        patch = int(p["patch"])
        if h % patch or w % patch:
            raise ConfigError(f"{where}: image {h}x{w} is not divisible into {patch}x{patch} patches")
        return ((h // patch) * (w // patch) + (1 if p["cls_token"] else 0), int(p["dim"]))
    if t == "token_pool":
        need(2, "(tokens, dim)")
        return (shape[1],)
    raise ConfigError(f"{where}: unknown layer type {t!r}")  # pragma: no cover (checked before)


def _parse_layers(raw_layers: Any, source: str) -> list[LayerSpec]:
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ConfigError(f"{source}: 'layers' must be a non-empty list")
    layers: list[LayerSpec] = []
    counts: dict[str, int] = {}
    for i, raw in enumerate(raw_layers):
        where = f"{source}: layers[{i}]"
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict) or "type" not in raw:
            raise ConfigError(f"{where}: each layer is a mapping with a 'type' (got {raw!r})")
        raw = dict(raw)
        t = str(raw.pop("type"))
        if t not in LAYER_SCHEMA:
            raise ConfigError(f"{where}: unknown layer type {t!r}; known: {', '.join(LAYER_SCHEMA)}")
        schema = LAYER_SCHEMA[t]
        counts[t] = counts.get(t, 0) + 1
        name = str(raw.pop("name", f"{t}{counts[t]}"))
        unknown = set(raw) - set(schema)
        if unknown:
            raise ConfigError(f"{where} ({t}): unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(schema) or 'none'}")
        params = {}
        for key, default in schema.items():
            if key in raw:
                params[key] = raw[key]
            elif default is None and not (t in ("maxpool", "avgpool") and key == "stride"):
                raise ConfigError(f"{where} ({t}): missing required key {key!r}")
            else:
                params[key] = default
        for key in ("out", "kernel", "dim", "patch", "heads"):
            if key in params and params[key] is not None:
                v = params[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"{where} ({t}): {key} must be a positive integer, got {v!r}")
        for key in ("stride",):
            v = params.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{where} ({t}): stride must be a positive integer, got {v!r}")
        if "padding" in params and (not isinstance(params["padding"], int) or params["padding"] < 0):
            raise ConfigError(f"{where} ({t}): padding must be a non-negative integer")
        if "p" in params and not (isinstance(params["p"], (int, float)) and 0 <= params["p"] < 1):
            raise ConfigError(f"{where} ({t}): dropout p must be in [0, 1)")
        act_key = "fn" if t == "act" else "act"
        if act_key in params and params[act_key] not in ACTIVATIONS:
            raise ConfigError(f"{where} ({t}): unknown activation {params[act_key]!r}; known: {', '.join(ACTIVATIONS)}")
        if t == "token_pool" and params["mode"] not in ("cls", "mean"):
            raise ConfigError(f"{where}: token_pool mode must be 'cls' or 'mean'")
        layers.append(LayerSpec(t, name, params))
    names = [layer.name for layer in layers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{source}: duplicate layer name(s) {', '.join(sorted(dup))}")
    return layers


def network_from_dict(raw: Any, source: str = "<dict>") -> NetworkSpec:
    """Validate a raw mapping (parsed YAML) into a :class:`NetworkSpec`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    known = {"name", "description", "input_shape", "num_classes", "output_dim", "task", "loss", "rule", "rules",
             "layers", "dataset", "dataset_params", "train", "precision", "rule_params"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    for key in ("input_shape", "layers"):
        if key not in raw:
            raise ConfigError(f"{source}: missing required key {key!r}")
    shape = raw["input_shape"]
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ConfigError(f"{source}: input_shape must be a list of positive integers, got {shape!r}")
    task = raw.get("task", "classification")
    if task not in ("classification", "regression"):
        raise ConfigError(f"{source}: task must be 'classification' or 'regression', got {task!r}")
    loss = raw.get("loss", "bce" if task == "classification" else "mse")
    if loss not in LOSSES:
        raise ConfigError(f"{source}: unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if task == "classification":
        num_classes = raw.get("num_classes")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"{source}: a classification network needs num_classes >= 2")
        output_dim = num_classes
    else:
        num_classes = None
        output_dim = raw.get("output_dim")
        if not isinstance(output_dim, int) or output_dim < 1:
            raise ConfigError(f"{source}: a regression network needs output_dim >= 1")
        if loss != "mse":
            raise ConfigError(f"{source}: regression uses loss 'mse', got {loss!r}")
    for key in ("rules", "train", "precision", "dataset_params", "rule_params"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping")
    layers = _parse_layers(raw["layers"], source)
    # shape inference
    cur = tuple(shape)
    for i, layer in enumerate(layers):
        layer.in_shape = cur
        cur = _shape_after(layer, cur, f"{source}: layers[{i}] ({layer.name})")
        layer.out_shape = cur
    if not layers[-1].trainable and layers[-1].type not in ("act", "dropout"):
        raise ConfigError(f"{source}: the network must end with its output layer (linear), ends with {layers[-1].type}")
    if cur != (output_dim,):
        raise ConfigError(f"{source}: the network outputs shape {list(cur)} but the task needs ({output_dim},); "
                          f"check the last layer's 'out'")
    if not any(layer.trainable for layer in layers):
        raise ConfigError(f"{source}: the network has no trainable layer")
    spec = NetworkSpec(
        name=str(raw.get("name", Path(source).stem)),
        description=str(raw.get("description", "")),
        input_shape=tuple(shape),
        layers=layers,
        task=task,
        num_classes=num_classes,
        output_dim=output_dim,
        loss=loss,
        rule=str(raw.get("rule", "bp")),
        rules={str(k): str(v) for k, v in (raw.get("rules") or {}).items()},
        dataset=raw.get("dataset"),
        dataset_params=dict(raw.get("dataset_params") or {}),
        train=dict(raw.get("train") or {}),
        precision=dict(raw.get("precision") or {}),
        rule_params=dict(raw.get("rule_params") or {}),
        source=source,
    )
    spec._validate_rules()
    return spec


MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
EMBEDDED_DIR = Path(__file__).resolve().parent / "configs"


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path, or the name of a config in ``models/`` (``fc1-500``) or of an embedded default."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    for base in (MODELS_DIR, EMBEDDED_DIR):
        for cand in (base / f"{name_or_path}.yaml", base / str(name_or_path)):
            if cand.is_file():
                return cand
    if p.exists() and p.is_file():
        return p
    known = sorted({q.stem for base in (MODELS_DIR, EMBEDDED_DIR) if base.is_dir() for q in base.glob("*.yaml")})
    raise ConfigError(f"no config {str(name_or_path)!r} (not a file; known names: {', '.join(known)})")


def load_network(name_or_path: str | Path) -> NetworkSpec:
    """Load and validate a network description from a YAML file or a known config name."""
    path = resolve_config_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return network_from_dict(raw, source=str(path))


def default_network() -> NetworkSpec:
    """The embedded default: a small tanh MLP on scikit-learn's digits (ships with a dependency, trains in seconds)."""
    return load_network(EMBEDDED_DIR / "digits-mlp.yaml")
