"""The reference teacher: an English-only open_clip CLIP trained on the reference benchmark."""
