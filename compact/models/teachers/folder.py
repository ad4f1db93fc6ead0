"""A compact model folder as a teacher (e.g. a distilled student teaching a smaller one)."""

from __future__ import annotations

from pathlib import Path

from compact.models.folder import is_model_folder, load_model
from compact.models.teachers import TeacherAdapter, TeacherOptions, register_teacher


@register_teacher
class FolderTeacher(TeacherAdapter):
    name = "folder"

    @classmethod
    def matches(cls, spec: str) -> bool:
        return is_model_folder(Path(spec))

    @classmethod
    def load(cls, spec: str, options: TeacherOptions):
        return load_model(Path(spec))
