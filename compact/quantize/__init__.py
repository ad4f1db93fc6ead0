"""quantize: not built yet (see the project's open issues). Nothing here runs."""
