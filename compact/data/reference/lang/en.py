"""English (American spelling: "gray", "center")."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, capitalise, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str]] = {  # singular, plural
    "circle": ("circle", "circles"),
    "square": ("square", "squares"),
    "triangle": ("triangle", "triangles"),
    "star": ("star", "stars"),
    "cross": ("cross", "crosses"),
    "diamond": ("diamond", "diamonds"),
}
COLOURS: dict[str, str] = {c: c for c in ("red", "green", "blue", "yellow", "purple", "white")}
SIZES: dict[str, str] = {"small": "small", "large": "large"}
NUMBERS: dict[int, str] = {2: "two", 3: "three"}
BG_COLOURS: dict[str, str] = {"grey": "gray", "brown": "brown", "black": "black"}
PATTERNS: dict[str, str] = {"plain": "plain", "striped": "striped", "dotted": "dotted", "checkered": "checkered"}
POSITIONS: dict[str, str] = {
    "left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
    "center": "in the center",
}
POSITIONS_OF: dict[str, str] = {  # followed by the background
    "left": "on the left side of", "right": "on the right side of", "top": "at the top of",
    "bottom": "at the bottom of", "center": "in the center of",
}


def indefinite(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def group(g: ObjectGroup) -> str:
    words = f"{SIZES[g.size]} {COLOURS[g.colour]} {NOUNS[g.shape][g.count > 1]}"
    return f"{NUMBERS[g.count]} {words}" if g.count > 1 else indefinite(words)


def background(scene: Scene) -> str:
    return indefinite(f"{PATTERNS[scene.pattern]} {BG_COLOURS[scene.background]} background")


def _existential(scene: Scene) -> str:
    # "On a striped gray background, there are two large red circles on the left. There is also a small blue star."
    text = f"there {'is' if scene.main.count == 1 else 'are'} {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text = f"on {background(scene)}, {text}"
    text = capitalise(text) + "."
    if scene.distractor:
        text += f" There is also {group(scene.distractor)}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "Two large red circles on the left side of a striped gray background, along with a small blue star."
    text = group(scene.main)
    if scene.mention_position and scene.mention_background:
        text += f" {POSITIONS_OF[scene.position]} {background(scene)}"
    elif scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    elif scene.mention_background:
        text += f" on {background(scene)}"
    if scene.distractor:
        text += f", along with {group(scene.distractor)}"
    return capitalise(text) + "."


def _shows(scene: Scene) -> str:
    # "The image shows two large red circles on the left against a striped gray background. A small blue star is
    # also visible."
    text = f"The image shows {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" against {background(scene)}"
    text += "."
    if scene.distractor:
        text += f" {capitalise(group(scene.distractor))} is also visible."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_existential, _noun_phrase, _shows))


def class_name(colour: str, shape: str) -> str:
    return f"{COLOURS[colour]} {NOUNS[shape][0]}"


WRITER = Writer(caption, class_name)
