"""Captions and zero-shot class prompts of the reference benchmark, in every benchmark language.

Each language lives in `lang/<code>.py`: small word tables (nouns with gender and forms, adjective forms) and one
function per sentence structure; `scene.style` picks the structure. Every structure states the same facts: the main
group's count, size, colour and shape, the position if `scene.mention_position`, the background pattern and colour
if `scene.mention_background`, and the distractor if there is one.
"""

from __future__ import annotations

from compact.data.reference.lang import ar, de, en, es, fr, ja, ru, zh
from compact.data.reference.lang.common import Writer
from compact.data.reference.scene import COUNTS, SIZES, ObjectGroup, Scene

LANGS: tuple[str, ...] = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar")

_WRITERS: dict[str, Writer] = {
    "en": en.WRITER,
    "de": de.WRITER,
    "fr": fr.WRITER,
    "es": es.WRITER,
    "ru": ru.WRITER,
    "zh": zh.WRITER,
    "ja": ja.WRITER,
    "ar": ar.WRITER,
}
assert tuple(_WRITERS) == LANGS


def _writer(lang: str) -> Writer:
    try:
        return _WRITERS[lang]
    except KeyError:
        raise ValueError(f"unknown language {lang!r}; the reference benchmark has: {', '.join(LANGS)}") from None


def caption(scene: Scene, lang: str) -> str:
    """The caption of `scene` in `lang`; a pure function of both."""
    return _writer(lang).caption(scene)


def class_name(colour: str, shape: str, lang: str) -> str:
    """The display name of a zero-shot class, e.g. "red circle" / "roter Kreis" / "红色圆形"."""
    return _writer(lang).class_name(colour, shape)


def class_prompts(colour: str, shape: str, lang: str) -> list[str]:
    """Zero-shot prompts for one class: the captions of bare scenes of that class, in every count, size and
    sentence structure.

    Like CLIP's prompt ensembles, but written by the caption grammar itself, so they are complete, grammatical
    sentences in every language (the noun phrase inflects with its frame) and phrased as the captions are.
    """
    writer = _writer(lang)
    prompts = []
    for count in COUNTS:
        for size in SIZES:
            for style in range(3):
                bare = Scene(main=ObjectGroup(shape, colour, count, size), position="center", pattern="plain",
                             background="grey", distractor=None, mention_background=False, mention_position=False,
                             style=style, seed=0)
                prompts.append(writer.caption(bare))
    return list(dict.fromkeys(prompts))
