"""Files copied verbatim into every export bundle; they import nothing outside the Python standard library."""
