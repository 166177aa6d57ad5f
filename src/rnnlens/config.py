"""Config checks that run before any job: the JSON schema, with one clear line per problem (key, value, what is
allowed), plus what a schema cannot say (splits sum to 1, files exist, corpus large enough).

The schema is also where the defaults live (`default:` keywords): validation fills them in, once, so the rules and
the Snakefile's helpers read `config[...]` without repeating a default."""

import copy
import json
from pathlib import Path

import jsonschema
import yaml

from rnnlens.errors import RnnlensError
from rnnlens.ids import format_model_id, parse_model_id
from rnnlens.ngram import MAX_ORDER as KENLM_MAX_ORDER  # the paper's n-gram with n context bytes is order n + 1


class ConfigError(RnnlensError):
    """The workflow configuration breaks the schema or a rule the schema cannot express."""


def _key(path):
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _explain(error):
    key = _key(error.absolute_path)
    value = json.dumps(error.instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    schema = error.schema
    if error.validator == "enum":
        allowed = "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    elif error.validator == "additionalProperties":
        allowed = f"only the keys {', '.join(sorted(error.schema.get('properties', {})))}"
        return f"{key}: {error.message}; allowed: {allowed}"
    elif error.validator == "oneOf" and "corpora" in error.absolute_path:
        return (f"{key}: give exactly one source: `path` (a local file), `url` (+ `sha256`), `stdlib: true` "
                f"(the demo corpus) or `tarball` (a kernel source tarball)")
    elif error.validator == "oneOf" and error.context:
        # "one value or a list" settings: explain the failure of the branch of the value's own kind
        branch = 1 if isinstance(error.instance, list) else 0
        inner = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == branch]
        if inner:
            return _explain(max(inner, key=lambda e: len(e.absolute_path))) + " (one value or a list of values)"
        allowed = error.message
    elif error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "type", "pattern",
                             "required", "minItems", "uniqueItems", "propertyNames", "minProperties"):
        allowed = error.message
        return f"{key}: value {value} is not allowed: {allowed}"
    else:
        allowed = error.message
    return f"{key}: value {value} is not allowed; expected {allowed}"


def _filling_defaults(validator_class):
    """The validator class, extended to set every missing property that has a `default:` before checking it."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(name, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": properties})


# the dialect the schema declares ($schema: draft 2020-12)
DefaultsValidator = _filling_defaults(jsonschema.Draft202012Validator)


def schema_problems(config, schema_path):
    """Fill in the schema's defaults (in place) and list every problem of `config`, one line each."""
    validator = DefaultsValidator(load_schema(schema_path))
    return [_explain(e) for e in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))]


def semantic_problems(config, base_dir="."):
    problems = []
    train = config.get("training", {})
    min_train = train.get("batch_size", 100) * (train.get("seq_len", 100) + 1)
    for name, corpus in config.get("corpora", {}).items():
        split = corpus.get("split", {})
        total = sum(split.get(k, 0) for k in ("train", "val", "test"))
        if split and abs(total - 1) > 1e-6:
            problems.append(f"corpora.{name}.split: fractions {split} sum to {total:g}; they must sum to 1")
        if "path" in corpus:
            path = Path(base_dir, corpus["path"])
            if not path.is_file():
                problems.append(f"corpora.{name}.path: file {corpus['path']} does not exist; fix the path or "
                                f"use `url` + `sha256` to download it")
            elif path.stat().st_size == 0:
                problems.append(f"corpora.{name}.path: file {corpus['path']} is empty")
            elif split and path.stat().st_size * split.get("train", 1) < min_train:
                problems.append(f"corpora.{name}: training split of {corpus['path']} is ~"
                                f"{int(path.stat().st_size * split.get('train', 1))} bytes, fewer than batch_size x "
                                f"(seq_len + 1) = {min_train}; use a larger corpus or smaller training settings")
    seeds = train.get("seeds")
    if seeds and "seed" in train and train["seed"] != seeds[0]:
        problems.append(f"training.seed: {train['seed']} differs from training.seeds[0] = {seeds[0]}, the documented "
                        f"seed; remove training.seed or make it the first of training.seeds")
    for name, override in (config.get("training_overrides") or {}).items():
        if "seeds" in override:
            problems.append(f"training_overrides.{name}.seeds: seeds are trials of the whole grid; set them in "
                            f"training.seeds")
    runs = [train] + list((config.get("training_overrides") or {}).values())
    if any(run.get("precision", train.get("precision")) == "fp16" and run.get("device", train.get("device")) == "cpu"
           for run in runs):
        problems.append("training.precision: fp16 needs a CUDA device, but training.device is cpu; use bf16 or fp32")
    grid = config.get("grid", {})
    arch_problems = architecture_problems(config, base_dir)
    if arch_problems:
        return problems + arch_problems  # the checks below build models of these architectures
    models = [format_model_id(a, l, s) for a in grid.get("arch", []) for l in grid.get("layers", [])
              for s in grid.get("size", [])]
    from rnnlens import archs

    for model in models:
        settings = training_settings(config, model)
        arch = parse_model_id(model).arch
        window, seq_len = archs.spec_options(arch, settings).get("window", 0), settings.get("seq_len", 100)
        if window and window < seq_len:
            problems.append(f"training.window: {model} has a context window of {window} bytes, shorter than its "
                            f"training.seq_len {seq_len}; set training_overrides.{arch}.window >= seq_len")
    dynamic = (config.get("evaluation") or {}).get("dynamic") or {}
    for model in dynamic.get("models", []):
        if model not in models:
            problems.append(f"evaluation.dynamic.models: {model} is not a model of the grid ({', '.join(models)})")
    effects = ((config.get("analysis") or {}).get("cell_effects") or {})
    for model in effects.get("models", []):
        if model not in models:
            problems.append(f"analysis.cell_effects.models: {model} is not a model of the grid ({', '.join(models)})")
    problems += dynamics_problems(config, models)
    for n in config.get("ngram", {}).get("orders", []):
        if n + 1 > KENLM_MAX_ORDER:
            problems.append(f"ngram.orders: n = {n} context bytes needs KenLM order {n + 1}, above the build's "
                            f"maximum order {KENLM_MAX_ORDER}; use n <= {KENLM_MAX_ORDER - 1}")
    return problems


def register_architectures(config, base_dir="."):
    """Make the config's own architectures (`architectures:`) known to this process and to the jobs it starts (the
    environment variable rnnlens.archs.ENV), with file paths made absolute."""
    import os

    from rnnlens import archs

    entries = {name: str(Path(base_dir, source).resolve()) if archs.is_file_source(source) else source
               for name, source in (config.get("architectures") or {}).items()}
    if entries:
        os.environ[archs.ENV] = json.dumps(entries, sort_keys=True)
    else:
        os.environ.pop(archs.ENV, None)
    return entries


def architecture_problems(config, base_dir="."):
    """The config's own architectures import and meet the protocol; every grid architecture is known."""
    from rnnlens import archs

    declared = config.get("architectures") or {}
    problems = archs.check(declared, base_dir)
    if problems:
        return problems
    register_architectures(config, base_dir)
    known = list(archs.BUILTIN) + [n for n in declared if n not in archs.BUILTIN]
    for i, arch in enumerate((config.get("grid") or {}).get("arch", [])):
        if arch not in known:
            problems.append(f"grid.arch[{i}]: value {json.dumps(arch)} is not allowed; expected one of "
                            f"{', '.join(json.dumps(a) for a in known)} (or register it under architectures)")
    return problems


def dynamics_problems(config, models):
    """The training-dynamics figure reads snapshots that only the training of analysis.dynamics.model writes: a
    setting that leaves it none would fail after that (long) training, so say it before any job runs."""
    dynamics = (config.get("analysis") or {}).get("dynamics") or {}
    model = dynamics.get("model")
    nnn_orders = set((config.get("nnn") or {}).get("orders", [])) & set(dynamics.get("nnn_orders", []))
    if model not in models or not nnn_orders:  # no dynamics figure is planned
        return []
    epochs = dynamics.get("snapshot_epochs")
    if not epochs:
        return [f"analysis.dynamics.snapshot_epochs: not set, but the training-dynamics figure compares snapshots "
                f"of analysis.dynamics.model {model} taken during its training; give epoch fractions (e.g. [0.1, "
                f"0.5, 1]), or set analysis.dynamics.model to a model outside the grid to skip the figure"]
    max_epochs = training_settings(config, model).get("max_epochs")
    if max_epochs and min(epochs) > max_epochs:
        return [f"analysis.dynamics.snapshot_epochs: the first snapshot (epoch {min(epochs):g}) comes after "
                f"{model}'s training.max_epochs {max_epochs}, so it would have none; use smaller fractions"]
    return []


def _resolve(schema, root):
    while isinstance(schema, dict) and "$ref" in schema:
        node = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _typed(text, types):
    """The value YAML would give `text`, if that value has one of the schema's non-string types."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if parsed is None and "null" in types:
        return None
    if isinstance(parsed, bool):
        return parsed if "boolean" in types else text
    if isinstance(parsed, int) and types & {"integer", "number"}:
        return parsed
    if isinstance(parsed, float) and "number" in types:
        return parsed
    if isinstance(parsed, (list, dict)) and types & {"array", "object"}:
        return parsed
    if "number" in types:  # YAML 1.1 reads 2e-3 (no dot) as a string
        try:
            return float(text)
        except ValueError:
            pass
    return text


def coerce_strings(value, schema, root=None):
    """Snakemake parses nested --config values (and a profile's `config:` block) with YAML's BaseLoader, so every
    leaf arrives as a string. Give back the type YAML would give, but only where the schema asks for a number,
    boolean or null: a sha256 of zeros or a cell name like "1:0" stays a string."""
    root = root or schema
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return value
    if isinstance(value, str) and "string" not in (types := set(
            [schema["type"]] if isinstance(schema.get("type"), str) else schema.get("type", []))):
        value = _typed(value, types)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce_strings(v, props[k] if k in props else (extra if isinstance(extra, dict) else {}), root)
                for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(v, schema["items"], root) for v in value]
    return value


def load_schema(schema_path):
    return yaml.safe_load(Path(schema_path).read_text())


def check_config(config, schema_path, base_dir="."):
    """Fill in the schema's defaults (in place), then raise ConfigError listing every problem, or return quietly."""
    problems = schema_problems(config, schema_path)
    if not problems:
        problems = semantic_problems(config, base_dir)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def training_settings(config, model):
    """The training settings of one model: `training`, then its architecture's defaults (rnnlens.archs: e.g. the
    transformer's optimiser and window), then the overrides for its size label (`size-256`), for its arch, then for
    its id."""
    from rnnlens import archs

    arch, _, size = parse_model_id(model)
    settings = {k: v for k, v in config["training"].items() if k != "seeds"}  # seeds are trials, not a setting
    settings.update(archs.training_defaults(arch, settings))
    overrides = config.get("training_overrides") or {}
    settings.update(overrides.get(f"size-{size}", {}))
    settings.update(overrides.get(arch, {}))
    settings.update(overrides.get(model, {}))
    dynamics = (config.get("analysis") or {}).get("dynamics") or {}
    if dynamics.get("model") == model:
        settings["snapshot_epochs"] = dynamics.get("snapshot_epochs", [])
    return settings


def dropout_values(config, model):
    """The dropout values tried for one model (training.dropout may be a list, chosen on validation)."""
    dropout = training_settings(config, model).get("dropout", 0.0)
    return list(dropout) if isinstance(dropout, list) else [dropout]


def dropout_label(value):
    """The folder name of one dropout trial: dropout-0, dropout-0.25."""
    return f"dropout-{float(value):g}"


DEFAULT_SEED = 1  # rnnlens.train.TrainConfig.seed: the seed of a config without training.seed


def seed_values(config):
    """The training seeds: training.seeds, else the one seed. The first is the documented seed (its models keep the
    paths of a single-seed workflow; the analyses of one model read it)."""
    train = config["training"]
    return list(train.get("seeds") or [train.get("seed", DEFAULT_SEED)])


def trial_settings(config, model, dropout, seed=None):
    """The settings of one trial of a model: its settings with a single dropout value, and the seed `seed` (None:
    the documented seed). The documented seed is written only where it differs from what the settings already
    give, so that listing training.seeds leaves the settings of the existing trials, and their jobs, as they were."""
    settings = training_settings(config, model)
    settings["dropout"] = float(dropout)
    seeds = config["training"].get("seeds")
    if seed is None and seeds:
        seed = seeds[0]
    if seed is not None and int(seed) != settings.get("seed", DEFAULT_SEED):
        settings["seed"] = int(seed)
    if seeds and seed is not None and int(seed) != seeds[0]:
        settings["snapshot_epochs"] = []  # training dynamics study the documented seed's model only
    return settings
