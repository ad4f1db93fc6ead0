"""Apps built on compact's export bundles: local photo search, an in-browser demo, mobile snippets.

They use only what an export bundle ships (its ONNX graphs, `manifest.json`, the tokenizer files and the
standalone `compact_bundle.py` / `compact_tokenizer.py`), never compact's training code.
"""
