"""Export bundles (`compact export ... -o DIR`) as models: their artifacts run on the target's runtime."""

from __future__ import annotations

import json
from pathlib import Path

from compact.models.teachers import TeacherAdapter, TeacherOptions, register_teacher


@register_teacher
class BundleTeacher(TeacherAdapter):
    name = "bundle"

    @classmethod
    def matches(cls, spec: str) -> bool:
        path = Path(spec) / "manifest.json"
        if not path.is_file():
            return False
        try:
            return json.loads(path.read_text()).get("format") == "compact-export"
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return False

    @classmethod
    def load(cls, spec: str, options: TeacherOptions):
        from export.encoder import BundleEncoder

        return BundleEncoder(Path(spec))
