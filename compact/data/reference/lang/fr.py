"""French: gender and number agreement; size before the noun, colour after it."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, capitalise, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str, str]] = {  # gender, singular, plural
    "circle": ("m", "cercle", "cercles"),
    "square": ("m", "carré", "carrés"),
    "triangle": ("m", "triangle", "triangles"),
    "star": ("f", "étoile", "étoiles"),
    "cross": ("f", "croix", "croix"),
    "diamond": ("m", "losange", "losanges"),
}
Forms = tuple[str, str, str, str]  # masculine singular, feminine singular, masculine plural, feminine plural
COLOURS: dict[str, Forms] = {
    "red": ("rouge", "rouge", "rouges", "rouges"),
    "green": ("vert", "verte", "verts", "vertes"),
    "blue": ("bleu", "bleue", "bleus", "bleues"),
    "yellow": ("jaune", "jaune", "jaunes", "jaunes"),
    "purple": ("violet", "violette", "violets", "violettes"),
    "white": ("blanc", "blanche", "blancs", "blanches"),
}
SIZES: dict[str, Forms] = {
    "small": ("petit", "petite", "petits", "petites"),
    "large": ("grand", "grande", "grands", "grandes"),
}
ARTICLES: dict[str, str] = {"m": "un", "f": "une"}
NUMBERS: dict[int, str] = {2: "deux", 3: "trois"}
# "fond" is masculine singular: "un fond gris rayé", "un fond marron à pois".
BG_COLOURS: dict[str, str] = {"grey": "gris", "brown": "marron", "black": "noir"}
PATTERNS: dict[str, str] = {"plain": "uni", "striped": "rayé", "dotted": "à pois", "checkered": "à carreaux"}
POSITIONS: dict[str, str] = {"left": "à gauche", "right": "à droite", "top": "en haut", "bottom": "en bas", "center": "au centre"}


def agree(forms: Forms, gender: str, count: int) -> str:
    return forms[(gender == "f") + 2 * (count > 1)]


def group(g: ObjectGroup) -> str:
    gender, singular, plural = NOUNS[g.shape]
    head = ARTICLES[gender] if g.count == 1 else NUMBERS[g.count]
    noun = singular if g.count == 1 else plural
    return f"{head} {agree(SIZES[g.size], gender, g.count)} {noun} {agree(COLOURS[g.colour], gender, g.count)}"


def background(scene: Scene) -> str:
    return f"un fond {BG_COLOURS[scene.background]} {PATTERNS[scene.pattern]}"


def _il_y_a(scene: Scene) -> str:
    # "Il y a deux grands cercles rouges à gauche sur un fond gris rayé. Il y a aussi une petite étoile bleue."
    text = f"Il y a {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" sur {background(scene)}"
    text += "."
    if scene.distractor:
        text += f" Il y a aussi {group(scene.distractor)}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "Deux grands cercles rouges à gauche sur un fond gris rayé, ainsi qu'une petite étoile bleue."
    text = group(scene.main)
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" sur {background(scene)}"
    if scene.distractor:
        text += f", ainsi qu'{group(scene.distractor)}"  # the distractor always starts with "un"/"une"
    return capitalise(text) + "."


def _on_voit(scene: Scene) -> str:
    # "Sur un fond gris rayé, on voit deux grands cercles rouges à gauche. Une petite étoile bleue est également
    #  visible."
    text = f"on voit {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text = f"sur {background(scene)}, {text}"
    text = capitalise(text) + "."
    if scene.distractor:
        text += f" {capitalise(group(scene.distractor))} est également visible."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_il_y_a, _noun_phrase, _on_voit))


def class_name(colour: str, shape: str) -> str:
    gender, singular, _ = NOUNS[shape]
    return f"{singular} {agree(COLOURS[colour], gender, 1)}"  # "cercle rouge", "étoile verte"


WRITER = Writer(caption, class_name)
