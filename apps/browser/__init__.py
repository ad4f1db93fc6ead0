"""The in-browser app: static files (index.html, app.js, tokenizer.js) and `serve.py`, a local static server."""
