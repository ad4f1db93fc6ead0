"""Serve the browser app next to a bundle, on localhost, with nothing but the standard library.

    python -m apps.browser.serve --bundle BUNDLE [--port 8080] [--files DIR]

    /            apps/browser (index.html, app.js, tokenizer.js, node_modules/onnxruntime-web)
    /bundle/     the export bundle
    /files/      DIR, optional (images to embed from the page's URL: ?image=/files/x.png)

Then open http://127.0.0.1:8080/ . Any static server works the same way; this one only maps the three folders
and gives .mjs and .wasm files the MIME types browsers insist on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

APP = Path(__file__).resolve().parent
ORT = APP / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.js"


class Handler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, ".js": "text/javascript",
                      ".mjs": "text/javascript", ".wasm": "application/wasm", ".onnx": "application/octet-stream",
                      ".json": "application/json"}

    def __init__(self, *args, mounts: dict[str, Path], quiet: bool, **kwargs):
        self.mounts = mounts
        self.quiet = quiet
        super().__init__(*args, directory=str(APP), **kwargs)

    def translate_path(self, path: str) -> str:
        for prefix, folder in self.mounts.items():
            if path.startswith(prefix):
                self.directory = str(folder)
                return super().translate_path("/" + path[len(prefix):])
        self.directory = str(APP)
        return super().translate_path(path)

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(bundle: str | Path, port: int = 8080, host: str = "127.0.0.1", files: str | Path | None = None,
                quiet: bool = True) -> ThreadingHTTPServer:
    """A server (not yet serving: call serve_forever, e.g. in a thread) for the app, `bundle` and `files`."""
    bundle = Path(bundle).resolve()
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(f"{bundle} has no manifest.json; make a bundle with `compact export onnx MODEL -o DIR`")
    if not ORT.is_file():
        raise FileNotFoundError(f"{ORT} is missing; run apps/setup.sh (npm installs onnxruntime-web there)")
    mounts = {"/bundle/": bundle}
    if files is not None:
        mounts["/files/"] = Path(files).resolve()
    return ThreadingHTTPServer((host, port), partial(Handler, mounts=mounts, quiet=quiet))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m apps.browser.serve", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, help="ONNX export bundle folder")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--files", default=None, help="a folder to serve at /files/")
    args = p.parse_args(argv)
    try:
        server = make_server(args.bundle, args.port, args.host, args.files, quiet=False)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"serving http://{args.host}:{server.server_address[1]}/ (bundle {args.bundle})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
