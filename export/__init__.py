"""Export bundles: a compact (or open_clip / Hugging Face CLIP) model as per-tower artifacts for one target,
plus `manifest.json`, the tokenizer and a standalone tokenizer reader, parity-checked against torch.

    from export import ExportConfig, export_model
    export_model("runs/student", "onnx", "bundles/student-onnx", ExportConfig())

Targets live in `export.targets` (one file each, found through `TARGETS`).
"""



def __getattr__(name):  # lazy, so `import export.targets` does not pull in every exporter
    if name in ("ExportConfig", "export_model", "export_all"):
        from export import bundle

        return getattr(bundle, name)
    raise AttributeError(name)
