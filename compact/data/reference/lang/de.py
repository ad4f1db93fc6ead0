"""German: adjective declension after "ein" (mixed) and after numerals (strong plural), three cases."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, capitalise, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str, str, str]] = {  # gender, singular, plural, dative plural
    "circle": ("m", "Kreis", "Kreise", "Kreisen"),
    "square": ("n", "Quadrat", "Quadrate", "Quadraten"),
    "triangle": ("n", "Dreieck", "Dreiecke", "Dreiecken"),
    "star": ("m", "Stern", "Sterne", "Sternen"),
    "cross": ("n", "Kreuz", "Kreuze", "Kreuzen"),
    "diamond": ("f", "Raute", "Rauten", "Rauten"),
}
# Adjective stems; "violett" rather than the indeclinable "lila".
COLOURS: dict[str, str] = {
    "red": "rot", "green": "grün", "blue": "blau", "yellow": "gelb", "purple": "violett", "white": "weiß",
}
SIZES: dict[str, str] = {"small": "klein", "large": "groß"}
NUMBERS: dict[int, str] = {2: "zwei", 3: "drei"}
BG_COLOURS: dict[str, str] = {"grey": "grau", "brown": "braun", "black": "schwarz"}
PATTERNS: dict[str, str] = {"striped": "gestreift", "dotted": "gepunktet", "checkered": "kariert"}
PLAIN = "einfarbig"  # used uninflected, as an adverb on the colour: "einem einfarbig grauen Hintergrund"

# "ein" and the adjective endings after it (mixed declension), by (gender, case).
ARTICLE: dict[tuple[str, str], str] = {
    ("m", "nom"): "ein", ("m", "acc"): "einen", ("m", "dat"): "einem",
    ("f", "nom"): "eine", ("f", "acc"): "eine", ("f", "dat"): "einer",
    ("n", "nom"): "ein", ("n", "acc"): "ein", ("n", "dat"): "einem",
}
MIXED: dict[tuple[str, str], str] = {
    ("m", "nom"): "er", ("m", "acc"): "en", ("m", "dat"): "en",
    ("f", "nom"): "e", ("f", "acc"): "e", ("f", "dat"): "en",
    ("n", "nom"): "es", ("n", "acc"): "es", ("n", "dat"): "en",
}
STRONG_PLURAL: dict[str, str] = {"nom": "e", "acc": "e", "dat": "en"}  # after zwei/drei, no article

POSITIONS: dict[str, str] = {"left": "links", "right": "rechts", "top": "oben", "bottom": "unten", "center": "in der Mitte"}
POSITIONS_IN_IMAGE: dict[str, str] = {
    "left": "im linken Bildbereich", "right": "im rechten Bildbereich", "top": "im oberen Bildbereich",
    "bottom": "im unteren Bildbereich", "center": "in der Bildmitte",
}


def group(g: ObjectGroup, case: str) -> str:
    gender, singular, plural, dative_plural = NOUNS[g.shape]
    stems = (SIZES[g.size], COLOURS[g.colour])
    if g.count == 1:
        ending = MIXED[gender, case]
        return " ".join((ARTICLE[gender, case], *(s + ending for s in stems), singular))
    ending = STRONG_PLURAL[case]
    return " ".join((NUMBERS[g.count], *(s + ending for s in stems), dative_plural if case == "dat" else plural))


def background(scene: Scene) -> str:
    """Dative, masculine "Hintergrund" after "ein": "einem gestreiften grauen Hintergrund"."""
    colour = BG_COLOURS[scene.background] + "en"
    pattern = PLAIN if scene.pattern == "plain" else PATTERNS[scene.pattern] + "en"
    return f"einem {pattern} {colour} Hintergrund"


def _zu_sehen(scene: Scene) -> str:
    # "Auf einem gestreiften grauen Hintergrund sind links zwei große rote Kreise zu sehen.
    #  Außerdem gibt es einen kleinen blauen Stern."
    adverbials = []
    if scene.mention_background:
        adverbials.append(f"auf {background(scene)}")
    if scene.mention_position:
        adverbials.append(POSITIONS[scene.position])
    verb = "ist" if scene.main.count == 1 else "sind"
    subject = group(scene.main, "nom")
    if adverbials:  # verb second: one adverbial in front, the rest after the verb
        text = " ".join((adverbials[0], verb, *adverbials[1:], subject, "zu sehen"))
    else:
        text = f"zu sehen {verb} {subject}"
    text = capitalise(text) + "."
    if scene.distractor:
        text += f" Außerdem gibt es {group(scene.distractor, 'acc')}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "Zwei große rote Kreise links auf einem gestreiften grauen Hintergrund, dazu ein kleiner blauer Stern."
    text = group(scene.main, "nom")
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" auf {background(scene)}"
    if scene.distractor:
        text += f", dazu {group(scene.distractor, 'nom')}"
    return capitalise(text) + "."


def _shows(scene: Scene) -> str:
    # "Das Bild zeigt zwei große rote Kreise im linken Bildbereich vor einem gestreiften grauen Hintergrund.
    #  Außerdem ist ein kleiner blauer Stern zu sehen."
    text = f"Das Bild zeigt {group(scene.main, 'acc')}"
    if scene.mention_position:
        text += f" {POSITIONS_IN_IMAGE[scene.position]}"
    if scene.mention_background:
        text += f" vor {background(scene)}"
    text += "."
    if scene.distractor:
        text += f" Außerdem ist {group(scene.distractor, 'nom')} zu sehen."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_zu_sehen, _noun_phrase, _shows))


def _class_np(colour: str, shape: str, case: str, article: bool) -> str:
    gender, singular = NOUNS[shape][:2]
    adjective = COLOURS[colour] + MIXED[gender, case]  # without an article the nominative endings are the same
    return f"{ARTICLE[gender, case]} {adjective} {singular}" if article else f"{adjective} {singular}"


def class_name(colour: str, shape: str) -> str:
    return _class_np(colour, shape, "nom", article=False)  # "roter Kreis", "rote Raute", "rotes Quadrat"


WRITER = Writer(caption, class_name)
