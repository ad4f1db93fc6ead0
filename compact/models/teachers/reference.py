"""The reference teacher, by name: `reference` (full build) or `reference-quick` (the --quick build)."""

from __future__ import annotations

from compact.errors import TeacherError
from compact.models.teachers import TeacherAdapter, TeacherOptions, register_teacher
from compact.models.teachers.openclip import load_open_clip


@register_teacher
class ReferenceTeacher(TeacherAdapter):
    name = "reference"

    @classmethod
    def matches(cls, spec: str) -> bool:
        return spec in ("reference", "reference-quick")

    @classmethod
    def load(cls, spec: str, options: TeacherOptions):
        from compact.reference.build import reference_paths

        paths = reference_paths("quick" if spec == "reference-quick" else "full")
        if not (paths.teacher / "open_clip_config.json").is_file():
            flag = " --quick" if spec == "reference-quick" else ""
            raise TeacherError(f"the reference teacher is not built yet ({paths.teacher}); "
                               f"run `compact reference build{flag}` first")
        return load_open_clip(f"local-dir:{paths.teacher}", None, options)
