"""Modern Standard Arabic, written without short vowels.

All noun phrases are indefinite and nominative (or genitive, which looks the same without vowels). Agreement:
- one object: noun + colour + size in the noun's gender ("دائرة حمراء كبيرة", "مربع أحمر كبير");
- two: the dual, adjectives dual too ("دائرتان حمراوان كبيرتان", "مربعان أحمران كبيران");
- three: the numeral takes the opposite gender of the singular noun, the noun is a genitive plural, and the
  adjectives of a non-human plural are feminine singular ("ثلاث دوائر حمراء كبيرة", "ثلاثة مربعات حمراء كبيرة").
"""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str, str, str]] = {  # gender, singular, dual (nominative), plural
    "circle": ("f", "دائرة", "دائرتان", "دوائر"),
    "square": ("m", "مربع", "مربعان", "مربعات"),
    "triangle": ("m", "مثلث", "مثلثان", "مثلثات"),
    "star": ("f", "نجمة", "نجمتان", "نجمات"),
    "cross": ("m", "صليب", "صليبان", "صلبان"),
    "diamond": ("m", "معين", "معينان", "معينات"),
}
Forms = tuple[str, str, str, str]  # masculine singular, feminine singular, masculine dual, feminine dual
COLOURS: dict[str, Forms] = {
    "red": ("أحمر", "حمراء", "أحمران", "حمراوان"),
    "green": ("أخضر", "خضراء", "أخضران", "خضراوان"),
    "blue": ("أزرق", "زرقاء", "أزرقان", "زرقاوان"),
    "yellow": ("أصفر", "صفراء", "أصفران", "صفراوان"),
    "purple": ("بنفسجي", "بنفسجية", "بنفسجيان", "بنفسجيتان"),
    "white": ("أبيض", "بيضاء", "أبيضان", "بيضاوان"),
}
SIZES: dict[str, Forms] = {
    "small": ("صغير", "صغيرة", "صغيران", "صغيرتان"),
    "large": ("كبير", "كبيرة", "كبيران", "كبيرتان"),
}
THREE: dict[str, str] = {"m": "ثلاثة", "f": "ثلاث"}  # gender polarity: keyed by the singular noun's gender
# "خلفية" is feminine: "خلفية رمادية مخططة".
BG_COLOURS: dict[str, str] = {"grey": "رمادية", "brown": "بنية", "black": "سوداء"}
PATTERNS: dict[str, str] = {"plain": "سادة", "striped": "مخططة", "dotted": "منقطة", "checkered": "شطرنجية"}
POSITIONS: dict[str, str] = {
    "left": "في الجهة اليسرى", "right": "في الجهة اليمنى", "top": "في الأعلى", "bottom": "في الأسفل",
    "center": "في الوسط",
}
POSITIONS_OF: dict[str, str] = {  # followed by the background
    "left": "في الجهة اليسرى من", "right": "في الجهة اليمنى من", "top": "في الجزء العلوي من",
    "bottom": "في الجزء السفلي من", "center": "في وسط",
}
THERE_IS: dict[str, str] = {"m": "يوجد", "f": "توجد"}  # the verb agrees with the gender of the noun
APPEARS: dict[str, str] = {"m": "يظهر", "f": "تظهر"}


def agree(forms: Forms, gender: str, count: int) -> str:
    if count == 3:
        return forms[1]  # non-human plural: feminine singular
    return forms[(gender == "f") + 2 * (count == 2)]


def group(g: ObjectGroup) -> str:
    gender, singular, dual, plural = NOUNS[g.shape]
    adjectives = f"{agree(COLOURS[g.colour], gender, g.count)} {agree(SIZES[g.size], gender, g.count)}"
    if g.count == 3:
        return f"{THREE[gender]} {plural} {adjectives}"
    return f"{dual if g.count == 2 else singular} {adjectives}"


def background(scene: Scene) -> str:
    return f"خلفية {BG_COLOURS[scene.background]} {PATTERNS[scene.pattern]}"


def gender(g: ObjectGroup) -> str:
    return NOUNS[g.shape][0]


def _there_is(scene: Scene) -> str:
    # "على خلفية رمادية مخططة، توجد دائرتان حمراوان كبيرتان في الجهة اليسرى. كما توجد نجمة زرقاء صغيرة."
    verb = THERE_IS[gender(scene.main)]
    if scene.mention_position:
        text = f"{verb} {group(scene.main)} {POSITIONS[scene.position]}"
    elif scene.mention_background:
        text = f"{verb} {group(scene.main)}"
    else:
        text = f"{verb} في الصورة {group(scene.main)}"
    if scene.mention_background:
        text = f"على {background(scene)}، {text}"
    text += "."
    if scene.distractor:
        text += f" كما {THERE_IS[gender(scene.distractor)]} {group(scene.distractor)}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "دائرتان حمراوان كبيرتان في الجهة اليسرى من خلفية رمادية مخططة، ونجمة زرقاء صغيرة."
    text = group(scene.main)
    if scene.mention_position and scene.mention_background:
        text += f" {POSITIONS_OF[scene.position]} {background(scene)}"
    elif scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    elif scene.mention_background:
        text += f" على {background(scene)}"
    if scene.distractor:
        text += f"، و{group(scene.distractor)}"
    return text + "."


def _fronted(scene: Scene) -> str:
    # Nominal sentence with the predicate in front of the indefinite subject:
    # "على خلفية رمادية مخططة، في الجهة اليسرى دائرتان حمراوان كبيرتان. كما تظهر نجمة زرقاء صغيرة."
    fronted = []
    if scene.mention_background:
        fronted.append(f"على {background(scene)}")
    if scene.mention_position:
        fronted.append(POSITIONS[scene.position])
    text = "، ".join(fronted or ["في الصورة"]) + f" {group(scene.main)}."
    if scene.distractor:
        text += f" كما {APPEARS[gender(scene.distractor)]} {group(scene.distractor)}."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_there_is, _noun_phrase, _fronted))


def class_name(colour: str, shape: str) -> str:
    gender_, singular = NOUNS[shape][:2]
    return f"{singular} {agree(COLOURS[colour], gender_, 1)}"  # "دائرة حمراء", "مربع أحمر"


WRITER = Writer(caption, class_name)
