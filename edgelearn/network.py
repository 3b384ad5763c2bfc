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
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .rule_names import RULE_NAMES

RULES = RULE_NAMES  # the float reference registers exactly these (edgelearn.rule_names)
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
    # (C,H,W) -> (C, size, size): average over each of size x size regions (ResNet / VGG-like heads: size 1)
    "adaptive_avgpool": {"size": 1},
    # a stage of `blocks` ResNet basic blocks (He et al. 2016): conv3x3(stride)-BN-ReLU-conv3x3-BN, plus the
    # shortcut, then ReLU; the first block has `stride`, the others 1. shortcut: "pad" (option A: subsample and
    # zero-pad channels, no parameters; the CIFAR ResNets) or "conv" (option B: 1x1 conv + BN where shapes change)
    "residual": {"out": None, "stride": 1, "blocks": 1, "shortcut": "pad"},
}
SHORTCUTS = ("pad", "conv")
#: keys of the ``train`` section (read by edgelearn.train; ``epochs`` and ``batch_size`` also by the engine)
TRAIN_KEYS = ("optimizer", "lr", "batch_size", "epochs", "init", "weight_decay", "momentum", "nesterov", "amsgrad",
              "betas", "eps", "alpha", "schedule", "augment", "normalize", "sync_bn", "eval_batch_size", "zero_init")
#: keys a variant of an experiment may override
VARIANT_KEYS = ("description", "rule", "rules", "rule_params", "train", "dataset", "dataset_params", "layer_overrides",
                "num_classes", "output_dim", "loss", "layers", "input_shape", "experiment")


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
    #: experiment metadata (paper, figure, claim, notes, receptive_fields ...), free-form
    experiment: dict[str, Any] = field(default_factory=dict)
    #: name of the variant of an experiment config this spec is (None: the config itself)
    variant: str | None = None
    #: the experiment's variants: name -> overrides (explicit ``variants`` and the ``grid`` product)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    default_variant: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # the merged description, without variants

    # -- derived views -------------------------------------------------------------------------------------------
    @property
    def trainable_layers(self) -> list[LayerSpec]:
        return [layer for layer in self.layers if layer.trainable]

    def site_names(self) -> list[str]:
        """Names of every ``nn.Linear`` / ``nn.Conv2d`` of the built model in execution order -- the layers the
        converter attaches rules to (``LocalLearner.sites``): the linear/conv2d layers themselves and the ones inside
        patch embeddings, transformer blocks and residual stages (``stage1.0.conv1``)."""
        names: list[str] = []
        for layer in self.layers:
            t, p, n = layer.type, layer.params, layer.name
            if t in TRAINABLE_TYPES:
                names.append(n)
            elif t == "patch_embed":
                names.append(f"{n}.proj")
            elif t == "transformer":
                names += [f"{n}.attn.{k}" for k in ("q", "k", "v", "out")] + [f"{n}.mlp.0", f"{n}.mlp.3"]
            elif t == "residual":
                c = layer.in_shape[0]
                for i in range(int(p["blocks"])):
                    names += [f"{n}.{i}.conv1", f"{n}.{i}.conv2"]
                    stride = int(p["stride"]) if i == 0 else 1
                    if p["shortcut"] == "conv" and (stride != 1 or c != int(p["out"])):
                        names.append(f"{n}.{i}.shortcut.0")
                    c = int(p["out"])
        return names

    def layer_rule(self, layer: LayerSpec | str | int) -> str:
        """Rule of a trainable layer: per-layer override by name or site index (position in :meth:`site_names`),
        else the default. An int argument indexes :attr:`trainable_layers`; a str may also name an inner site."""
        if isinstance(layer, int):
            layer = self.trainable_layers[layer]
        name = layer if isinstance(layer, str) else layer.name
        sites = self.site_names()
        if name not in sites:
            self.layer(name)  # a clear error for an unknown name
            raise ConfigError(f"{self.source}: layer {name!r} is not a trainable layer")
        return self.rules.get(name, self.rules.get(str(sites.index(name)), self.rule))

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

    def variant_names(self) -> list[str]:
        return list(self.variants)

    def with_variant(self, name: str) -> "NetworkSpec":
        """The spec of variant ``name`` of this experiment config (its overrides applied to the shared settings)."""
        if name not in self.variants:
            known = ", ".join(self.variants) if self.variants else "none"
            raise ConfigError(f"{self.source}: no variant {name!r} (variants: {known})")
        raw = _merge(self.raw, self.variants[name])
        spec = _build(raw, f"{self.source} [variant {name}]")
        spec.source, spec.variant = self.source, name
        spec.variants, spec.default_variant, spec.raw = self.variants, self.default_variant, self.raw
        return spec

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
        for key in ("dataset", "dataset_params", "train", "precision", "rule_params", "experiment", "variant"):
            value = getattr(self, key)
            if value:
                out[key] = copy.deepcopy(value)
        return out

    def _validate_rules(self) -> None:
        sites = self.site_names()
        names = set(sites)
        if self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}; choose one of {', '.join(RULES)}")
        n = len(sites)
        for key, rule in self.rules.items():
            if rule not in RULES:
                raise ConfigError(f"{self.source}: unknown rule {rule!r} for layer {key!r}; choose one of {', '.join(RULES)}")
            if str(key) not in names and not (str(key).lstrip("-").isdigit() and -n <= int(key) < n):
                shown = ", ".join(sorted(names)) if len(names) <= 12 else ", ".join(sites[:6]) + f", ... ({len(sites)} layers; see edgelearn info --config)"
                raise ConfigError(f"{self.source}: rules names layer {key!r}, which is not a trainable layer ({shown})")
        if self.task == "regression":
            for layer in sites:
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
    if t == "adaptive_avgpool":
        need(3, "(C, H, W)")
        size = int(p["size"])
        if shape[1] < size or shape[2] < size:
            raise ConfigError(f"{where}: adaptive_avgpool size {size} is larger than its input {list(shape)}")
        return (shape[0], size, size)
    if t == "residual":
        need(3, "(C, H, W)")
        c, h, w = shape
        out, s = int(p["out"]), int(p["stride"])
        if p["shortcut"] == "pad" and out < c:
            raise ConfigError(f"{where}: a 'pad' shortcut cannot reduce {c} channels to {out}; use shortcut: conv")
        return (out, (h - 1) // s + 1, (w - 1) // s + 1)  # 3x3 convs with padding 1
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
            if key in raw and raw[key] is not None:  # an explicit null means "not given"
                params[key] = raw[key]
            elif default is None and not (t in ("maxpool", "avgpool") and key == "stride"):
                raise ConfigError(f"{where} ({t}): missing required key {key!r}")
            else:
                params[key] = default
        for key in ("out", "kernel", "dim", "patch", "heads", "blocks", "size"):
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
        if t == "residual" and params["shortcut"] not in SHORTCUTS:
            raise ConfigError(f"{where}: residual shortcut must be one of {', '.join(SHORTCUTS)}, got {params['shortcut']!r}")
        layers.append(LayerSpec(t, name, params))
    names = [layer.name for layer in layers]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"{source}: duplicate layer name(s) {', '.join(sorted(dup))}")
    return layers


def _build(raw: dict[str, Any], source: str) -> NetworkSpec:
    """Validate a merged raw mapping (no base, no variants) into a :class:`NetworkSpec`."""
    known = {"name", "description", "input_shape", "num_classes", "output_dim", "task", "loss", "rule", "rules",
             "layers", "dataset", "dataset_params", "train", "precision", "rule_params", "experiment", "variant",
             "layer_overrides"}
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
    for key in ("rules", "train", "precision", "dataset_params", "rule_params", "experiment", "layer_overrides"):
        if key in raw and raw[key] is not None and not isinstance(raw[key], dict):
            raise ConfigError(f"{source}: {key!r} must be a mapping")
    bad_train = sorted(set(raw.get("train") or {}) - set(TRAIN_KEYS))
    if bad_train:
        raise ConfigError(f"{source}: unknown train key(s) {', '.join(bad_train)}; known: {', '.join(TRAIN_KEYS)}")
    _check_train_numbers(raw.get("train") or {}, source)
    raw_layers = raw["layers"]
    if raw.get("layer_overrides"):
        raw_layers = _apply_layer_overrides(raw_layers, raw["layer_overrides"], source)
    layers = _parse_layers(raw_layers, source)
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
        experiment=copy.deepcopy(dict(raw.get("experiment") or {})),
        variant=raw.get("variant"),
        source=source,
    )
    spec._validate_rules()
    return spec


# ---------------------------------------------------------------------------------------------------------------------
# Experiment configs: a base description, layer overrides and variants.


def _merge(a: Any, b: Any, path: str = "") -> Any:
    """``b`` over ``a``: mappings merge key by key (``rules`` and ``train.lr`` are replaced whole), anything else is
    replaced."""
    if isinstance(a, dict) and isinstance(b, dict) and path not in ("train.lr", "rules", "layers"):
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = _merge(a[k], v, f"{path}.{k}" if path else str(k)) if k in a else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


def _layer_names(raw_layers: list[Any]) -> list[str | None]:
    """The names ``_parse_layers`` gives the raw layers (explicit, or type + running count)."""
    names: list[str | None] = []
    counts: dict[str, int] = {}
    for raw in raw_layers:
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict) or "type" not in raw:
            names.append(None)
            continue
        t = str(raw["type"])
        counts[t] = counts.get(t, 0) + 1
        names.append(str(raw.get("name", f"{t}{counts[t]}")))
    return names


def _apply_layer_overrides(raw_layers: Any, overrides: dict[str, Any], source: str) -> list[Any]:
    """``layer_overrides: {layer name: {key: value}}``: change keys of named layers (widths, dropout, ...)."""
    if not isinstance(raw_layers, list):
        return raw_layers  # _parse_layers reports it
    layers = [dict({"type": r} if isinstance(r, str) else r) if isinstance(r, (str, dict)) else r for r in raw_layers]
    names = _layer_names(layers)
    for name, changes in overrides.items():
        if str(name) not in names:
            raise ConfigError(f"{source}: layer_overrides names layer {name!r}, which is not in the network")
        if not isinstance(changes, dict):
            raise ConfigError(f"{source}: layer_overrides.{name} must be a mapping of layer keys")
        if "type" in changes or "name" in changes:
            raise ConfigError(f"{source}: layer_overrides.{name} cannot change a layer's type or name")
        layers[names.index(str(name))].update(copy.deepcopy(changes))
    return layers


def _check_train_numbers(train: dict[str, Any], source: str) -> None:
    """The counts and learning rates of a ``train`` section: a typo fails at load, not after the data is read."""
    for key, lo in (("epochs", 0), ("batch_size", 1), ("eval_batch_size", 1)):
        v = train.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < lo):
            raise ConfigError(f"{source}: train.{key} must be an integer >= {lo}, got {v!r}")
    lr = train.get("lr")
    entries = lr.items() if isinstance(lr, dict) else [] if lr is None else [(None, lr)]
    for rule, v in entries:
        try:  # YAML reads 1e-3 (no dot) as a string, which float() takes
            ok = not isinstance(v, bool) and math.isfinite(float(v)) and float(v) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ConfigError(f"{source}: train.lr{'' if rule is None else '.' + str(rule)} must be a positive "
                              f"number, got {v!r}")


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None


def _resolve_base(raw: dict[str, Any], source: str, base_dir: Path | None, seen: tuple[str, ...]) -> dict[str, Any]:
    """Merge ``base:`` (a config name or a path relative to this file) under ``raw``, recursively."""
    if "base" not in raw:
        return raw
    ref = raw["base"]
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{source}: base must be the name or path of a config, got {ref!r}")
    path = None
    if base_dir is not None:
        for cand in (base_dir / ref, base_dir / f"{ref}.yaml"):
            if cand.is_file():
                path = cand
                break
    path = (path or resolve_config_path(ref)).resolve()
    if str(path) in seen:
        raise ConfigError(f"{source}: base configs form a cycle ({' -> '.join(seen + (str(path),))})")
    base = _read_yaml(path)
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(base).__name__}")
    base = _resolve_base(base, str(path), path.parent, seen + (str(path),))
    for key in ("variants", "grid", "default_variant", "name", "description", "variant"):
        base.pop(key, None)  # not inherited
    return _merge(base, {k: v for k, v in raw.items() if k != "base"})


def _variants(raw: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """``variants: {name: overrides}`` and ``grid: [{name: overrides}, ...]`` (every combination, names joined
    with '-', later axes over earlier ones)."""
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, over: Any, where: str) -> None:
        if not isinstance(over, dict):
            raise ConfigError(f"{source}: {where} must be a mapping of overrides, got {over!r}")
        bad = sorted(set(over) - set(VARIANT_KEYS))
        if bad:
            raise ConfigError(f"{source}: {where}: unknown key(s) {', '.join(bad)}; a variant may set "
                              f"{', '.join(VARIANT_KEYS)}")
        if name in out:
            raise ConfigError(f"{source}: duplicate variant name {name!r}")
        if name == "all" or not name or "/" in name:
            raise ConfigError(f"{source}: {name!r} is not a valid variant name")
        out[name] = over

    variants = raw.get("variants") or {}
    if not isinstance(variants, dict):
        raise ConfigError(f"{source}: 'variants' must be a mapping name -> overrides")
    for name, over in variants.items():
        add(str(name), over if over is not None else {}, f"variants.{name}")
    grid = raw.get("grid")
    if grid is not None:
        if not isinstance(grid, list) or not grid or not all(isinstance(ax, dict) and ax for ax in grid):
            raise ConfigError(f"{source}: 'grid' must be a list of non-empty mappings name -> overrides")
        combos: list[tuple[str, dict[str, Any]]] = [("", {})]
        for axis in grid:
            combos = [(f"{n}-{k}" if n else str(k), _merge(o, v if v is not None else {})) for n, o in combos
                      for k, v in axis.items()]
        for name, over in combos:
            add(name, over, f"grid combination {name}")
    default = raw.get("default_variant")
    if default is not None and str(default) not in out:
        raise ConfigError(f"{source}: default_variant {default!r} is not a variant ({', '.join(out) or 'none'})")
    return out


def network_from_dict(raw: Any, source: str = "<dict>", base_dir: Path | None = None) -> NetworkSpec:
    """Validate a raw mapping (parsed YAML) into a :class:`NetworkSpec`.

    Experiment configs may name a ``base`` config (merged under them), change layers with ``layer_overrides`` and
    list ``variants`` / a ``grid`` of variants with a ``default_variant``; the spec returned is the default
    variant's (or the config itself without one), and :meth:`NetworkSpec.with_variant` gives the others.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(raw).__name__}")
    raw = _resolve_base(raw, source, base_dir, (str(Path(source).resolve()),) if base_dir else ())
    variants = _variants(raw, source)
    default = raw.get("default_variant")
    shared = {k: v for k, v in raw.items() if k not in ("variants", "grid", "default_variant")}
    spec = _build(shared, source)
    spec.variants, spec.default_variant, spec.raw = variants, (str(default) if default is not None else None), shared
    if default is not None:
        return spec.with_variant(str(default))
    return spec


# package resources (not paths beside a checkout), so a wheel installed without -e finds its configs
MODELS_DIR = Path(str(resources.files("edgelearn") / "models"))
EMBEDDED_DIR = Path(str(resources.files("edgelearn") / "configs"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path, or the name of a config in ``edgelearn/models/`` (``fc1-500``) or of an embedded default."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    for base in (MODELS_DIR, EMBEDDED_DIR):
        for cand in (base / f"{name_or_path}.yaml", base / str(name_or_path)):
            if cand.is_file():
                return cand
    if p.exists() and p.is_file():
        return p
    known = [n for n in config_names() if not n.startswith("experiments/")]
    n_exp = len(config_names()) - len(known)
    more = f"; and {n_exp} experiments/NAME configs, see edgelearn info" if n_exp else ""
    raise ConfigError(f"no config {str(name_or_path)!r} (not a file; known names: {', '.join(sorted(known))}{more})")


def config_names() -> list[str]:
    """Names of the shipped configs: embedded defaults, ``models/*.yaml`` and ``experiments/NAME``."""
    names = [q.stem for base in (EMBEDDED_DIR, MODELS_DIR) if base.is_dir() for q in sorted(base.glob("*.yaml"))]
    exp = MODELS_DIR / "experiments"
    if exp.is_dir():
        names += [f"experiments/{q.stem}" for q in sorted(exp.glob("*.yaml"))]
    return names


def load_network(name_or_path: str | Path, variant: str | None = None) -> NetworkSpec:
    """Load and validate a network description from a YAML file or a known config name (``experiments/NAME`` for
    the experiment configs); ``variant`` selects a variant of an experiment config (default: its default_variant)."""
    path = resolve_config_path(name_or_path)
    raw = _read_yaml(path)
    spec = network_from_dict(raw, source=str(path), base_dir=path.parent)
    if variant is not None and variant != spec.variant:
        spec = spec.with_variant(variant)
    return spec


def default_network() -> NetworkSpec:
    """The embedded default: a small tanh MLP on scikit-learn's digits (ships with a dependency, trains in seconds)."""
    return load_network(EMBEDDED_DIR / "digits-mlp.yaml")
