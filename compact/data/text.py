"""Checks on caption text read from users' files."""

from __future__ import annotations

from compact.errors import DataError


def check_caption_text(text: str, where: str, what: str = "caption") -> str:
    """Refuse a caption holding NUL: binary data in a text column (a mis-saved or truncated file), and a character
    that C strings in the exported apps' tokenizers stop at. Length is not limited here (the tokenizer truncates to
    the model's context length), and right-to-left text, mixed scripts and emoji are text like any other."""
    if "\x00" in text:
        raise DataError(f"{where}: the {what} holds a NUL character (binary data in a text field?); fix or remove "
                        "that row")
    return text
