"""Captions and zero-shot prompts of the reference benchmark: exact sentences, scripts, and fact alignment."""

from __future__ import annotations

import dataclasses
import random
import re
from typing import Any, Callable, Optional

import pytest

from compact.data.reference.captions import LANGS, caption, class_name, class_prompts
from compact.data.reference.scene import (
    BACKGROUND_COLOURS,
    CLASSES,
    COLOURS,
    PATTERNS,
    POSITIONS,
    SHAPES,
    ObjectGroup,
    Scene,
    sample_scene,
)

G = ObjectGroup


def scene(
    main: ObjectGroup,
    distractor: Optional[ObjectGroup] = None,
    *,
    position: str = "left",
    pattern: str = "striped",
    background: str = "grey",
    mention_background: bool = True,
    mention_position: bool = True,
    style: int = 0,
) -> Scene:
    return Scene(main, position, pattern, background, distractor, mention_background, mention_position, style, seed=0)


CIRCLES_AND_STAR = G("circle", "red", 2, "large"), G("star", "blue", 1, "small")

# ---------------------------------------------------------------------------------------------------------------
# Exact sentences (hand-checked).

EXPECTED_CIRCLES_AND_STAR: dict[str, tuple[str, str, str]] = {  # styles 0, 1, 2 of scene(*CIRCLES_AND_STAR)
    "en": (
        "On a striped gray background, there are two large red circles on the left. There is also a small blue star.",
        "Two large red circles on the left side of a striped gray background, along with a small blue star.",
        "The image shows two large red circles on the left against a striped gray background. "
        "A small blue star is also visible.",
    ),
    "de": (
        "Auf einem gestreiften grauen Hintergrund sind links zwei große rote Kreise zu sehen. "
        "Außerdem gibt es einen kleinen blauen Stern.",
        "Zwei große rote Kreise links auf einem gestreiften grauen Hintergrund, dazu ein kleiner blauer Stern.",
        "Das Bild zeigt zwei große rote Kreise im linken Bildbereich vor einem gestreiften grauen Hintergrund. "
        "Außerdem ist ein kleiner blauer Stern zu sehen.",
    ),
    "fr": (
        "Il y a deux grands cercles rouges à gauche sur un fond gris rayé. Il y a aussi une petite étoile bleue.",
        "Deux grands cercles rouges à gauche sur un fond gris rayé, ainsi qu'une petite étoile bleue.",
        "Sur un fond gris rayé, on voit deux grands cercles rouges à gauche. Une petite étoile bleue est également visible.",
    ),
    "es": (
        "Hay dos círculos rojos grandes a la izquierda sobre un fondo gris a rayas. También hay una estrella azul pequeña.",
        "Dos círculos rojos grandes en la parte izquierda de un fondo gris a rayas, además de una estrella azul pequeña.",
        "Sobre un fondo gris a rayas, se ven dos círculos rojos grandes a la izquierda. "
        "También se ve una estrella azul pequeña.",
    ),
    "ru": (
        "Слева на сером полосатом фоне изображены два больших красных круга. "
        "Кроме того, на картинке есть маленькая синяя звезда.",
        "Два больших красных круга слева на сером полосатом фоне и маленькая синяя звезда.",
        "На сером полосатом фоне слева — два больших красных круга. Также видна маленькая синяя звезда.",
    ),
    "zh": (
        "灰色条纹背景上，左边有两个大的红色圆形，另外还有一个小的蓝色星形。",
        "两个大的红色圆形位于灰色条纹背景的左侧，此外还有一个小的蓝色星形。",
        "画面左边有两个大的红色圆形，背景为灰色条纹。图中还有一个小的蓝色星形。",
    ),
    "ja": (
        "灰色の縞模様の背景の左側に、大きな赤い円が二つあります。また、小さな青い星形が一つあります。",
        "二つの大きな赤い円が、灰色の縞模様の背景の左側に描かれています。小さな青い星形も一つ描かれています。",
        "背景は灰色の縞模様で、左側には大きな赤い円が二つあります。小さな青い星形も一つあります。",
    ),
    "ar": (
        "على خلفية رمادية مخططة، توجد دائرتان حمراوان كبيرتان في الجهة اليسرى. كما توجد نجمة زرقاء صغيرة.",
        "دائرتان حمراوان كبيرتان في الجهة اليسرى من خلفية رمادية مخططة، ونجمة زرقاء صغيرة.",
        "على خلفية رمادية مخططة، في الجهة اليسرى دائرتان حمراوان كبيرتان. كما تظهر نجمة زرقاء صغيرة.",
    ),
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("style", [0, 1, 2])
def test_every_structure_of_one_scene(lang: str, style: int) -> None:
    assert caption(scene(*CIRCLES_AND_STAR, style=style), lang) == EXPECTED_CIRCLES_AND_STAR[lang][style]


# (lang, scene, expected) for grammar the scene above does not reach.
EXACT: list[tuple[str, Scene, str]] = [
    # English: "a"/"an", plural "crosses", plain background, no distractor.
    ("en", scene(G("cross", "white", 2, "small"), G("diamond", "green", 1, "small"), position="top", style=1),
     "Two small white crosses at the top of a striped gray background, along with a small green diamond."),
    ("en", scene(G("star", "blue", 1, "small"), pattern="plain", background="brown"),
     "On a plain brown background, there is a small blue star on the left."),
    ("en", scene(G("diamond", "yellow", 3, "large"), mention_background=False, mention_position=False, style=2),
     "The image shows three large yellow diamonds."),
    # German: ein/eine/ein x nominative/accusative, mixed vs strong endings, dative background, plural nouns.
    ("de", scene(G("star", "blue", 1, "small"), G("diamond", "red", 1, "small"), pattern="plain"),
     "Auf einem einfarbig grauen Hintergrund ist links ein kleiner blauer Stern zu sehen. "
     "Außerdem gibt es eine kleine rote Raute."),
    ("de", scene(G("diamond", "red", 1, "large"), G("triangle", "yellow", 1, "small"), pattern="dotted",
                 background="black", mention_position=False, style=2),
     "Das Bild zeigt eine große rote Raute vor einem gepunkteten schwarzen Hintergrund. "
     "Außerdem ist ein kleines gelbes Dreieck zu sehen."),
    ("de", scene(G("square", "white", 3, "small"), G("circle", "green", 1, "small"), position="bottom", style=1),
     "Drei kleine weiße Quadrate unten auf einem gestreiften grauen Hintergrund, dazu ein kleiner grüner Kreis."),
    ("de", scene(G("cross", "purple", 1, "large"), G("star", "white", 1, "small"), mention_background=False,
                 position="center", style=2),
     "Das Bild zeigt ein großes violettes Kreuz in der Bildmitte. Außerdem ist ein kleiner weißer Stern zu sehen."),
    ("de", scene(G("diamond", "yellow", 2, "small"), mention_background=False, mention_position=False),
     "Zu sehen sind zwei kleine gelbe Rauten."),
    # French: feminine croix/étoile, masculine losange/carré, plural agreement, elision "qu'un".
    ("fr", scene(G("cross", "white", 2, "small"), G("diamond", "green", 1, "small"), position="top", style=1),
     "Deux petites croix blanches en haut sur un fond gris rayé, ainsi qu'un petit losange vert."),
    ("fr", scene(G("star", "blue", 1, "small"), G("square", "red", 1, "small"), pattern="plain", background="brown",
                 style=2),
     "Sur un fond marron uni, on voit une petite étoile bleue à gauche. Un petit carré rouge est également visible."),
    ("fr", scene(G("triangle", "purple", 3, "large"), mention_background=False, position="right"),
     "Il y a trois grands triangles violets à droite."),
    # Spanish: cruz/cruces, agreement of colour and size.
    ("es", scene(G("cross", "white", 2, "small"), G("diamond", "green", 1, "small"), position="top", style=1),
     "Dos cruces blancas pequeñas en la parte superior de un fondo gris a rayas, además de un rombo verde pequeño."),
    ("es", scene(G("star", "blue", 1, "small"), G("square", "red", 1, "small"), pattern="plain", background="brown",
                 style=2),
     "Sobre un fondo marrón liso, se ve una estrella azul pequeña a la izquierda. "
     "También se ve un cuadrado rojo pequeño."),
    # Russian: 1 / 2 / 3 with masculine and feminine nouns, participle and short-adjective agreement.
    ("ru", scene(G("star", "red", 2, "large"), G("cross", "blue", 1, "small")),
     "Слева на сером полосатом фоне изображены две большие красные звезды. "
     "Кроме того, на картинке есть маленький синий крест."),
    ("ru", scene(G("triangle", "green", 3, "small"), G("star", "white", 1, "small"), position="right",
                 pattern="dotted", background="brown", style=2),
     "На коричневом фоне в горошек справа — три маленьких зелёных треугольника. Также видна маленькая белая звезда."),
    ("ru", scene(G("star", "yellow", 1, "large"), G("circle", "purple", 1, "small"), pattern="plain",
                 background="black", mention_position=False, style=1),
     "Большая жёлтая звезда на чёрном однотонном фоне и маленький фиолетовый круг."),
    ("ru", scene(G("square", "white", 1, "large"), mention_background=False, position="center"),
     "В центре изображён большой белый квадрат."),
    ("ru", scene(G("star", "blue", 1, "small"), mention_background=False, position="top"),
     "Сверху изображена маленькая синяя звезда."),
    ("ru", scene(G("star", "purple", 3, "large"), mention_position=False, pattern="checkered", background="black",
                 style=1),
     "Три большие фиолетовые звезды на чёрном клетчатом фоне."),
    ("ru", scene(G("diamond", "yellow", 2, "small"), mention_background=False, mention_position=False),
     "На картинке изображены два маленьких жёлтых ромба."),
    ("ru", scene(G("square", "green", 3, "large"), G("star", "white", 1, "small"), mention_background=False,
                 mention_position=False),
     "На картинке изображены три больших зелёных квадрата. Кроме того, есть маленькая белая звезда."),
    # Arabic: dual (both genders), 3 with gender polarity and feminine-singular agreement, verb gender.
    ("ar", scene(G("square", "green", 2, "small"), G("star", "red", 1, "small"), position="top"),
     "على خلفية رمادية مخططة، يوجد مربعان أخضران صغيران في الأعلى. كما توجد نجمة حمراء صغيرة."),
    ("ar", scene(G("circle", "red", 3, "large"), G("diamond", "white", 1, "small"), position="bottom",
                 pattern="checkered", style=1),
     "ثلاث دوائر حمراء كبيرة في الجزء السفلي من خلفية رمادية شطرنجية، ومعين أبيض صغير."),
    ("ar", scene(G("cross", "yellow", 3, "small"), mention_background=False, position="center", style=2),
     "في الوسط ثلاثة صلبان صفراء صغيرة."),
    ("ar", scene(G("star", "white", 2, "large"), mention_position=False, pattern="plain", background="black", style=1),
     "نجمتان بيضاوان كبيرتان على خلفية سوداء سادة."),
    ("ar", scene(G("triangle", "blue", 1, "large"), G("circle", "green", 1, "small"), mention_background=False,
                 mention_position=False),
     "يوجد في الصورة مثلث أزرق كبير. كما توجد دائرة خضراء صغيرة."),
    # Chinese and Japanese: counters, plain background, fallbacks without position or background.
    ("zh", scene(G("cross", "white", 2, "small"), G("diamond", "green", 1, "small"), position="top"),
     "灰色条纹背景上，上方有两个小的白色十字形，另外还有一个小的绿色菱形。"),
    ("zh", scene(G("star", "blue", 1, "small"), pattern="plain", background="brown", style=1),
     "一个小的蓝色星形位于纯棕色背景的左侧。"),
    ("zh", scene(G("star", "blue", 3, "large"), mention_background=False, style=2), "画面左边有三个大的蓝色星形。"),
    ("ja", scene(G("cross", "white", 2, "small"), G("diamond", "green", 1, "small"), position="top"),
     "灰色の縞模様の背景の上部に、小さな白い十字形が二つあります。また、小さな緑のひし形が一つあります。"),
    ("ja", scene(G("star", "blue", 1, "small"), pattern="plain", background="brown", style=1),
     "一つの小さな青い星形が、茶色の無地の背景の左側に描かれています。"),
    ("ja", scene(G("star", "blue", 3, "large"), mention_background=False, style=2),
     "画像の左側には大きな青い星形が三つあります。"),
]


@pytest.mark.parametrize(("lang", "s", "expected"), EXACT)
def test_exact_caption(lang: str, s: Scene, expected: str) -> None:
    assert caption(s, lang) == expected


def test_exact_class_names_and_prompts() -> None:
    assert class_name("red", "circle", "en") == "red circle"
    assert class_prompts("red", "circle", "en")[:3] == [
        "There is a small red circle.", "A small red circle.", "The image shows a small red circle.",
    ]
    assert [class_name("red", s, "de") for s in ("circle", "diamond", "square")] == [
        "roter Kreis", "rote Raute", "rotes Quadrat",
    ]
    assert "Zu sehen ist eine kleine grüne Raute." in class_prompts("green", "diamond", "de")
    assert "Das Bild zeigt einen großen roten Kreis." in class_prompts("red", "circle", "de")
    assert class_name("white", "star", "fr") == "étoile blanche"
    assert class_name("red", "cross", "es") == "cruz roja"
    assert class_name("blue", "star", "ru") == "синяя звезда"
    assert "На картинке изображены две маленькие синие звезды." in class_prompts("blue", "star", "ru")
    assert class_name("red", "circle", "zh") == "红色圆形"
    assert class_name("red", "circle", "ja") == "赤い円"
    assert class_name("red", "circle", "ar") == "دائرة حمراء"
    assert class_name("red", "square", "ar") == "مربع أحمر"


# ---------------------------------------------------------------------------------------------------------------
# Class names and prompts.


@pytest.mark.parametrize("lang", LANGS)
def test_class_names_are_distinct(lang: str) -> None:
    names = [class_name(c, s, lang) for c, s in CLASSES]
    assert len(set(names)) == len(CLASSES)
    assert all(name and name == name.strip() for name in names)


@pytest.mark.parametrize("lang", LANGS)
def test_class_prompts(lang: str) -> None:
    all_prompts: set[str] = set()
    for colour, shape in CLASSES:
        prompts = class_prompts(colour, shape, lang)
        assert len(prompts) >= 3 and len(set(prompts)) == len(prompts)
        for prompt in prompts:
            assert "{" not in prompt and "}" not in prompt and "  " not in prompt
            assert COLOUR_WORDS[lang][colour].search(prompt), prompt
            assert SHAPE_WORDS[lang][shape].search(prompt), prompt
        all_prompts.update(prompts)
    assert len(all_prompts) == sum(len(class_prompts(c, s, lang)) for c, s in CLASSES)  # no two classes share one


# ---------------------------------------------------------------------------------------------------------------
# Words by which each fact can be found in a caption, in any inflected form.


def words(lang: str, table: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """Latin-script words must start at a word boundary (so that "red" does not match "checkered")."""
    prefix = r"\b" if lang in ("en", "de", "fr", "es") else ""
    return {key: re.compile(prefix + f"(?:{pattern})", re.IGNORECASE) for key, pattern in table.items()}


SHAPE_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(SHAPES, table)))
    for lang, table in {
        "en": ("circle", "square", "triangle", "star", "cross", "diamond"),
        "de": ("Kreis", "Quadrat", "Dreieck", "Stern", "Kreuz", "Raute"),
        "fr": ("cercle", "carré", "triangle", "étoile", "croix", "losange"),
        "es": ("círculo", "cuadrado", "triángulo", "estrella", "cruz|cruces", "rombo"),
        "ru": ("круг", "квадрат", "треугольник", "звезд", "крест", "ромб"),
        "zh": ("圆形", "正方形", "三角形", "星形", "十字形", "菱形"),
        "ja": ("円", "正方形", "三角形", "星形", "十字形", "ひし形"),
        "ar": ("دائر|دوائر", "مربع", "مثلث", "نجم", "صليب|صلبان", "معين"),
    }.items()
}
COLOUR_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(COLOURS, table)))
    for lang, table in {
        "en": (r"red\b", r"green\b", r"blue\b", r"yellow\b", r"purple\b", r"white\b"),
        "de": ("rot", "grün", "blau", "gelb", "violett", "weiß"),
        "fr": ("roug", "vert", "bleu", "jaun", "violet", "blanc"),
        "es": ("roj", "verd", "azul", "amarill", "morad", "blanc"),
        "ru": ("красн", "зелён", "син", "жёлт", "фиолетов", "бел"),
        "zh": ("红", "绿", "蓝", "黄", "紫", "白"),
        "ja": ("赤", "緑", "青", "黄", "紫", "白"),
        "ar": ("حمر", "خضر", "زرق", "صفر", "بنفسج", "بيض"),
    }.items()
}
SIZE_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(("small", "large"), table)))
    for lang, table in {
        "en": ("small", "large"),
        "de": ("klein", "groß"),
        "fr": ("petit", "grand"),
        "es": ("pequeñ", "grande"),
        "ru": ("маленьк", "больш"),
        "zh": ("小的", "大的"),
        "ja": ("小さな", "大きな"),
        "ar": ("صغير", "كبير"),
    }.items()
}
BACKGROUND_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(BACKGROUND_COLOURS, table)))
    for lang, table in {
        "en": ("gray", "brown", "black"),
        "de": ("grau", "braun", "schwarz"),
        "fr": ("gris", "marron", "noir"),
        "es": ("gris", "marrón", "negro"),
        "ru": ("сер", "коричнев", "чёрн"),
        "zh": ("灰", "棕", "黑"),
        "ja": ("灰", "茶", "黒"),
        "ar": ("رمادي", "بني", "سوداء"),
    }.items()
}
PATTERN_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(PATTERNS, table)))
    for lang, table in {
        "en": ("plain", "striped", "dotted", "checkered"),
        "de": ("einfarbig", "gestreift", "gepunktet", "kariert"),
        "fr": (r"uni\b", "rayé", "à pois", "à carreaux"),
        "es": ("liso", "a rayas", "de lunares", "a cuadros"),
        "ru": ("однотонн", "полосат", "в горошек", "клетчат"),
        "zh": ("纯", "条纹", "圆点", "格子"),
        "ja": ("無地", "縞模様", "水玉模様", "格子模様"),
        "ar": ("سادة", "مخططة", "منقطة", "شطرنجية"),
    }.items()
}
POSITION_WORDS: dict[str, dict[str, re.Pattern[str]]] = {
    lang: words(lang, dict(zip(POSITIONS, table)))
    for lang, table in {
        "en": ("on the left", "on the right", "at the top", "at the bottom", "in the center"),
        "de": ("links|linken", "rechts|rechten", "oben|oberen", "unten|unteren", "Mitte|Bildmitte"),
        "fr": ("à gauche", "à droite", "en haut", "en bas", "au centre"),
        "es": ("izquierda", "derecha", "arriba|superior", "abajo|inferior", "centro"),
        "ru": ("слева", "справа", "сверху", "снизу", "в центре"),
        "zh": ("左", "右", "上方", "下方", "中间|中央"),
        "ja": ("左側", "右側", "上部", "下部", "中央"),
        "ar": ("اليسرى", "اليمنى", "الأعلى|العلوي", "الأسفل|السفلي", "وسط"),
    }.items()
}
# Only 2 and 3 are tested: a single object reads "a"/"ein"/"un"/... and the distractor is always one.
COUNT_WORDS: dict[str, dict[int, re.Pattern[str]]] = {
    lang: {n: re.compile(pattern) for n, pattern in table.items()}
    for lang, table in {
        "en": {2: r"\b[Tt]wo\b", 3: r"\b[Tt]hree\b"},
        "de": {2: r"\b[Zz]wei\b", 3: r"\b[Dd]rei\b"},
        "fr": {2: r"\b[Dd]eux\b", 3: r"\b[Tt]rois\b"},
        "es": {2: r"\b[Dd]os\b", 3: r"\b[Tt]res\b"},
        "ru": {2: r"\b[Дд]в[ае]\b", 3: r"\b[Тт]ри\b"},
        "zh": {2: "两个", 3: "三个"},
        "ja": {2: "二つ", 3: "三つ"},
        "ar": {2: "دائرتان|مربعان|مثلثان|نجمتان|صليبان|معينان", 3: "ثلاث"},
    }.items()
}

SCENES: list[Scene] = [sample_scene(rng) for rng in [random.Random(0)] for _ in range(400)]


def test_the_sample_covers_every_case() -> None:
    assert {s.main.count for s in SCENES} == {1, 2, 3}
    assert any(s.distractor for s in SCENES) and not all(s.distractor for s in SCENES)
    assert {(s.mention_background, s.mention_position) for s in SCENES} == {(a, b) for a in (0, 1) for b in (0, 1)}
    assert {s.style % 3 for s in SCENES} == {0, 1, 2}


@pytest.mark.parametrize("lang", LANGS)
def test_sampled_captions_are_clean(lang: str) -> None:
    for s in SCENES:
        text = caption(s, lang)
        assert text and text == text.strip(), text
        assert "{" not in text and "}" not in text and "  " not in text and " ," not in text and " ." not in text
        assert text.endswith("。" if lang in ("zh", "ja") else "."), text
        letters = [ch for ch in text if ch.isalpha()]
        if lang in ("zh", "ja"):
            assert not re.search(r"[A-Za-z]", text), text
            assert re.search(r"[\u4e00-\u9fff]", text), text
            assert " " not in text, text
        elif lang == "ar":
            assert all("\u0600" <= ch <= "\u06ff" for ch in letters), text
        elif lang == "ru":
            assert all("\u0400" <= ch <= "\u04ff" for ch in letters), text
        else:
            assert all(ch.isascii() or "\u00c0" <= ch <= "\u00ff" for ch in letters), text
        if lang in ("en", "de", "fr", "es", "ru"):
            assert text[0].isupper(), text


def present(patterns: dict[Any, re.Pattern[str]], text: str) -> set[Any]:
    """The keys of the patterns that occur in `text`."""
    return {key for key, pattern in patterns.items() if pattern.search(text)}


@pytest.mark.parametrize("lang", LANGS)
def test_captions_state_exactly_the_scene_facts(lang: str) -> None:
    for s in SCENES:
        text = caption(s, lang)
        groups = [s.main] + ([s.distractor] if s.distractor else [])
        assert present(SHAPE_WORDS[lang], text) == {g.shape for g in groups}, text
        assert present(COLOUR_WORDS[lang], text) == {g.colour for g in groups}, text
        assert present(SIZE_WORDS[lang], text) == {g.size for g in groups}, text
        assert present(COUNT_WORDS[lang], text) == ({s.main.count} - {1}), text
        expected_background = {s.background} if s.mention_background else set()
        assert present(BACKGROUND_WORDS[lang], text) == expected_background, text
        expected_pattern = {s.pattern} if s.mention_background else set()
        assert present(PATTERN_WORDS[lang], text) == expected_pattern, text
        expected_position = {s.position} if s.mention_position else set()
        assert present(POSITION_WORDS[lang], text) == expected_position, text


def test_a_distractor_is_named_in_every_language() -> None:
    for s in SCENES:
        if s.distractor is None:
            continue
        for lang in LANGS:
            text = caption(s, lang)
            assert SHAPE_WORDS[lang][s.distractor.shape].search(text), (lang, text)
            assert COLOUR_WORDS[lang][s.distractor.colour].search(text), (lang, text)


# ---------------------------------------------------------------------------------------------------------------
# Structures, determinism, errors.


@pytest.mark.parametrize("lang", LANGS)
def test_style_picks_different_structures(lang: str) -> None:
    for s in SCENES[:50]:
        variants = {caption(dataclasses.replace(s, style=style), lang) for style in range(3)}
        if s.mention_background or s.mention_position or s.distractor:
            assert len(variants) == 3, variants
        else:
            assert len(variants) >= 2, variants


def test_captions_are_deterministic() -> None:
    again = [sample_scene(rng) for rng in [random.Random(0)] for _ in range(400)]
    assert again == SCENES
    for lang in LANGS:
        assert [caption(s, lang) for s in SCENES] == [caption(s, lang) for s in again]


def test_languages_do_not_all_share_one_structure() -> None:
    """Same style, different languages: the sentences are not word-for-word copies of the English one."""
    s = scene(*CIRCLES_AND_STAR, style=1)
    assert caption(s, "en").startswith("Two") and caption(s, "ja").startswith("二つの")
    assert caption(scene(*CIRCLES_AND_STAR, style=0), "ru").startswith("Слева")


@pytest.mark.parametrize("call", [
    lambda: caption(scene(*CIRCLES_AND_STAR), "it"),
    lambda: class_name("red", "circle", "EN"),
    lambda: class_prompts("red", "circle", ""),
])
def test_unknown_language(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError, match="unknown language .*the reference benchmark has: en, de, fr, es, ru, zh"):
        call()
