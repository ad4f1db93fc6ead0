"""`python -m apps.photo_search`: index a photo folder, search it in any language, or serve a web UI.

    python -m apps.photo_search index PHOTOS --bundle BUNDLE -o INDEX [--dim 64] [--dtype float16]
    python -m apps.photo_search search "ein roter Stern" --index INDEX -k 5 [--json]
    python -m apps.photo_search serve --index INDEX --port 8000
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence

from apps.photo_search.bundle import AppError
from apps.photo_search.index import DTYPES, MatryoshkaWarning, PhotoIndex, build_index


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m apps.photo_search",
                                description="Local multilingual photo search with a compact ONNX export bundle.")
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", help="embed a folder of images into an index")
    ix.add_argument("images", help="folder of images (searched recursively)")
    ix.add_argument("--bundle", required=True, help="ONNX export bundle (compact export onnx MODEL -o BUNDLE)")
    ix.add_argument("-o", "--output", required=True, help="index folder to write")
    ix.add_argument("--dim", type=int, default=None,
                    help="keep the first N embedding dims (Matryoshka), re-normalised; default: all")
    ix.add_argument("--dtype", choices=DTYPES, default="float32", help="storage type of the vectors")
    ix.add_argument("--batch", type=int, default=32, help="images per graph call")
    ix.add_argument("--overwrite", action="store_true", help="replace an existing index")

    se = sub.add_parser("search", help="print the top-k images for a query")
    se.add_argument("query", help="text in any language the model knows")
    se.add_argument("--index", required=True, help="index folder")
    se.add_argument("-k", type=int, default=5, help="how many results")
    se.add_argument("--bundle", default=None, help="bundle to embed the query with (default: the index's)")
    se.add_argument("--json", action="store_true", help="print JSON instead of a table")

    sv = sub.add_parser("serve", help="serve a search web UI")
    sv.add_argument("--index", required=True, help="index folder")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--bundle", default=None, help="bundle to embed queries with (default: the index's)")
    return p


def _index(args: argparse.Namespace) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MatryoshkaWarning)
        stats = build_index(args.images, args.bundle, args.output, dim=args.dim, dtype=args.dtype,
                            batch=args.batch, overwrite=args.overwrite)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    for s in stats.skipped:
        print(f"skipped {s}", file=sys.stderr)
    print(f"indexed {stats.images} images in {stats.seconds:.1f} s -> {args.output}")
    print(f"{stats.dim} dims x {stats.dtype}: {stats.vector_bytes_per_image:.0f} bytes/image of vectors, "
          f"{stats.bytes_per_image:.0f} bytes/image on disk with the path list")


def _search(args: argparse.Namespace) -> None:
    hits = PhotoIndex.open(args.index, args.bundle).search(args.query, args.k)
    if args.json:
        print(json.dumps({"query": args.query, "results": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return
    for h in hits:
        print(f"{h.rank:>3}  {h.score:+.4f}  {h.path}")


def _serve(args: argparse.Namespace) -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise AppError("serve needs starlette and uvicorn: run apps/setup.sh or pip install starlette uvicorn") from None
    from apps.photo_search.server import serve

    index = PhotoIndex.open(args.index, args.bundle)
    print(f"serving {len(index.paths)} images on http://{args.host}:{args.port}/", flush=True)
    serve(index, args.host, args.port)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        {"index": _index, "search": _search, "serve": _serve}[args.command](args)
    except AppError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
