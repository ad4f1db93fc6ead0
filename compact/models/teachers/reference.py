"""The reference teacher, by name: `reference` (full build), `reference-small` or `reference-quick`."""

from __future__ import annotations

from compact.data.sources.reference import NAMES
from compact.errors import TeacherError
from compact.models.teachers import TeacherAdapter, TeacherOptions, register_teacher
from compact.models.teachers.openclip import load_open_clip


@register_teacher
class ReferenceTeacher(TeacherAdapter):
    name = "reference"

    @classmethod
    def matches(cls, spec: str) -> bool:
        return spec in NAMES

    @classmethod
    def load(cls, spec: str, options: TeacherOptions):
        from compact.reference.build import reference_paths

        paths = reference_paths(NAMES[spec])
        if not (paths.teacher / "open_clip_config.json").is_file():
            flag = "" if spec == "reference" else f" --size {NAMES[spec]}"
            raise TeacherError(f"the reference teacher is not built yet ({paths.teacher}); "
                               f"run `compact reference build{flag}` first")
        return load_open_clip(f"local-dir:{paths.teacher}", None, options)
