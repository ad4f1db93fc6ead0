"""The photo search web UI: one HTML page with a search box, a JSON API, and the indexed images.

    GET /                      the page (search box; results as <li> items with the file name and the image)
    GET /api/search?q=..&k=5   {"query", "k", "dim", "results": [{rank, row, path, name, score, url}]}
    GET /images/{row}          the image file of index row `row` (only indexed files are ever served)
"""

from __future__ import annotations

import html
from typing import Any

from apps.photo_search.bundle import AppError
from apps.photo_search.index import PhotoIndex

MAX_K = 100

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>compact photo search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; }
  #results { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 1rem; }
  #results li { width: 10rem; }
  #results img { width: 10rem; height: 10rem; object-fit: cover; display: block; }
  .score { color: #666; font-size: 0.8rem; }
  #error { color: #b00; }
</style>
</head>
<body>
<h1>Photo search</h1>
<p>__COUNT__ images, __DIM__-dim embeddings. Type in any language the model knows.</p>
<form id="search"><input id="q" name="q" size="50" autofocus placeholder="a red star / ein roter Stern / 赤い星">
<input id="k" name="k" type="number" min="1" max="__MAX_K__" value="5"> <button type="submit">Search</button></form>
<p id="error"></p>
<ol id="results" data-query=""></ol>
<script>
const form = document.getElementById("search");
const list = document.getElementById("results");
const error = document.getElementById("error");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = document.getElementById("q").value;
  const k = document.getElementById("k").value;
  error.textContent = "";
  try {
    const response = await fetch(`/api/search?q=${encodeURIComponent(q)}&k=${encodeURIComponent(k)}`);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    list.replaceChildren(...body.results.map((hit) => {
      const li = document.createElement("li");
      li.dataset.path = hit.path;
      li.dataset.score = hit.score;
      const img = document.createElement("img");
      img.src = hit.url;
      img.alt = hit.name;
      const name = document.createElement("div");
      name.className = "name";
      name.textContent = hit.name;
      const score = document.createElement("div");
      score.className = "score";
      score.textContent = hit.score.toFixed(3);
      li.append(img, name, score);
      return li;
    }));
  } catch (e) {
    list.replaceChildren();
    error.textContent = String(e.message || e);
  }
  list.dataset.query = q;  // set last: tests wait for it
});
</script>
</body>
</html>
"""


def create_app(index: PhotoIndex) -> Any:
    """The Starlette app serving `index`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = (PAGE.replace("__COUNT__", str(len(index.paths))).replace("__DIM__", str(index.dim))
            .replace("__MAX_K__", str(MAX_K)))

    def home(request: Request) -> Response:
        return HTMLResponse(page)

    def search(request: Request) -> Response:  # sync: Starlette runs it in a worker thread
        q = request.query_params.get("q", "")
        try:
            k = int(request.query_params.get("k", "5"))
        except ValueError:
            return JSONResponse({"error": "k must be an integer"}, status_code=400)
        k = max(1, min(k, MAX_K))
        try:
            hits = index.search(q, k)
        except AppError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"query": q, "k": k, "dim": index.dim,
                             "results": [{**h.to_dict(), "url": f"/images/{h.row}"} for h in hits]})

    def image(request: Request) -> Response:
        row = request.path_params["row"]
        if not 0 <= row < len(index.paths):
            return JSONResponse({"error": f"no image {row}"}, status_code=404)
        path = index.image_path(row)
        if not path.is_file():
            return JSONResponse({"error": f"{html.escape(index.paths[row])} is gone from disk"}, status_code=404)
        return FileResponse(path)

    return Starlette(routes=[Route("/", home), Route("/api/search", search),
                             Route("/images/{row:int}", image)])


def serve(index: PhotoIndex, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the web UI until interrupted."""
    import uvicorn

    uvicorn.run(create_app(index), host=host, port=port, log_level="warning")
