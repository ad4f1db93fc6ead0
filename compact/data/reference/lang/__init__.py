"""Per-language caption writers of the reference benchmark; `captions.py` is the public front."""
