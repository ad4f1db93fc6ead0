"""Fuzzing the parsers of files compact reads from users (hypothesis, bounded: a fixed number of examples per
target, a few seconds each in CI). The property: any input gives a result or a CompactError (one line for the
CLI), never another exception type (a traceback) and never a hang."""

from __future__ import annotations

import json
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compact.errors import CompactError

# CI: a fixed seed and 150 examples per target (a few seconds each), so a red run is a reproducible finding.
# Longer, random runs: COMPACT_FUZZ_EXAMPLES=5000 COMPACT_FUZZ_RANDOM=1 pytest tests/test_fuzz.py
FUZZ = settings(max_examples=int(os.environ.get("COMPACT_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=not os.environ.get("COMPACT_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=True) | \
    st.text(max_size=20)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) |
                           st.dictionaries(st.text(max_size=10), kids, max_size=4), max_leaves=20)
# Values a real file would hold under the keys compact reads, so fuzzing reaches past the first check.
MANIFEST_KEYS = ["format", "version", "target", "embed_dim", "files", "preprocess", "tokenizer", "languages",
                 "normalized", "logit_scale", "path", "tower"]
manifest_like = st.dictionaries(st.sampled_from(MANIFEST_KEYS), json_values, max_size=8).map(
    lambda d: {"format": "compact-export", **d})


def _only_compact_errors(fn):
    try:
        fn()
    except CompactError as e:
        assert str(e).strip(), "empty error message"


@FUZZ
@given(doc=st.one_of(json_values, manifest_like), files=st.lists(
    st.fixed_dictionaries({"path": st.text(max_size=12) | st.sampled_from(["../x", "/etc/passwd", "a.onnx"]),
                           "tower": st.sampled_from(["image", "text", "x"])}), max_size=3))
def test_fuzz_manifest(tmp_path_factory, doc, files):
    from export.bundle import read_manifest

    b = tmp_path_factory.mktemp("m")
    if isinstance(doc, dict) and files:
        doc["files"] = files
    (b / "manifest.json").write_text(json.dumps(doc))
    _only_compact_errors(lambda: read_manifest(b))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_fuzz_manifest_bytes(tmp_path_factory, raw):
    from export.bundle import read_manifest

    b = tmp_path_factory.mktemp("mb")
    (b / "manifest.json").write_bytes(raw)
    _only_compact_errors(lambda: read_manifest(b))


PIPELINE_KEYS = ["name", "teacher", "data", "langs", "seed", "distill", "prune", "quantize", "export", "bench",
                 "eval", "recipe", "max_steps", "keep", "enabled", "targets", "runtimes", "batch", "limit"]


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(PIPELINE_KEYS), json_values, max_size=6) | json_values)
def test_fuzz_pipeline_recipe(tmp_path_factory, doc):
    from compact.pipeline.recipe import load_pipeline

    f = tmp_path_factory.mktemp("r") / "r.yaml"
    f.write_text(json.dumps(doc))  # JSON is YAML
    _only_compact_errors(lambda: load_pipeline(f))


DISTILL_KEYS = ["teacher", "data", "langs", "student", "stages", "seed", "bf16", "val_every", "vision", "text",
                "tokenizer", "inherit", "name", "steps", "batch_size", "lr", "losses"]


@FUZZ
@given(doc=st.dictionaries(st.sampled_from(DISTILL_KEYS), json_values, max_size=6) | json_values,
       text=st.text(string.printable, max_size=80))
def test_fuzz_distill_recipe(tmp_path_factory, doc, text):
    from compact.distill.recipe import load_recipe

    d = tmp_path_factory.mktemp("d")
    (d / "a.yaml").write_text(json.dumps(doc))
    (d / "b.yaml").write_text(text)
    _only_compact_errors(lambda: load_recipe(d / "a.yaml"))
    _only_compact_errors(lambda: load_recipe(d / "b.yaml"))


@FUZZ
@given(rows=st.lists(st.lists(st.text(max_size=12), max_size=4), max_size=5), raw=st.binary(max_size=120),
       lines=st.lists(json_values, max_size=4))
def test_fuzz_csv_and_jsonl_tables(tmp_path_factory, rows, raw, lines):
    import csv

    from compact.data.sources import open_eval_data

    d = tmp_path_factory.mktemp("t")
    with open(d / "a.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["image", "caption"], *rows])
    (d / "b.csv").write_bytes(b"image,caption\n" + raw)
    (d / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    for name in ("a.csv", "b.csv", "c.jsonl"):
        _only_compact_errors(lambda: open_eval_data(str(d / name)))


CONFIG_PATHS = [("embed_dim",), ("vision",), ("text",), ("init_logit_scale",), ("version",),
                *[("vision", k) for k in ("type", "image_size", "patch_size", "width", "depth", "heads", "mlp_dim",
                                          "head_dim", "timm_name", "act")],
                *[("text", k) for k in ("vocab_size", "context_length", "width", "depth", "heads", "mlp_dim",
                                        "head_dim", "pooling", "act")]]


@FUZZ
@given(root=st.none() | st.booleans() | st.lists(json_values, max_size=2),
       edits=st.lists(st.tuples(st.sampled_from(CONFIG_PATHS), json_values | st.sampled_from(
           ["timm", "vit", "nope", "mobilenetv4_conv_small", "gelu", "quick_gelu", "eos", "mean", 0, -1, 1, 3,
            2 ** 40, [1, 2], [0]])), min_size=1, max_size=3),
       use_root=st.booleans())
def test_fuzz_model_folder_config(tmp_path_factory, root, edits, use_root):
    """The real config with 1-3 fields replaced by random JSON (huge ints, lists, strings, nesting), or a config
    that is not an object at all: a one-line error or a model, never a crash or a huge allocation."""
    from helpers import tiny_compact

    from compact.models.folder import load_model, save_model

    d = tmp_path_factory.mktemp("f") / "m"
    model = tiny_compact()
    save_model(model, d)
    cfg = model.cfg.to_dict()
    for path, value in edits:
        target = cfg
        for k in path[:-1]:
            if not isinstance(target.get(k), dict):
                target[k] = {}
            target = target[k]
        target[path[-1]] = value
    (d / "config.json").write_text(json.dumps(root if use_root else cfg))
    _only_compact_errors(lambda: load_model(d))
