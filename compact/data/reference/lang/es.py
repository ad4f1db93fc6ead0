"""Spanish: gender and number agreement; colour then size after the noun."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, capitalise, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str, str]] = {  # gender, singular, plural
    "circle": ("m", "círculo", "círculos"),
    "square": ("m", "cuadrado", "cuadrados"),
    "triangle": ("m", "triángulo", "triángulos"),
    "star": ("f", "estrella", "estrellas"),
    "cross": ("f", "cruz", "cruces"),
    "diamond": ("m", "rombo", "rombos"),
}
Forms = tuple[str, str, str, str]  # masculine singular, feminine singular, masculine plural, feminine plural
COLOURS: dict[str, Forms] = {
    "red": ("rojo", "roja", "rojos", "rojas"),
    "green": ("verde", "verde", "verdes", "verdes"),
    "blue": ("azul", "azul", "azules", "azules"),
    "yellow": ("amarillo", "amarilla", "amarillos", "amarillas"),
    "purple": ("morado", "morada", "morados", "moradas"),
    "white": ("blanco", "blanca", "blancos", "blancas"),
}
SIZES: dict[str, Forms] = {
    "small": ("pequeño", "pequeña", "pequeños", "pequeñas"),
    "large": ("grande", "grande", "grandes", "grandes"),
}
ARTICLES: dict[str, str] = {"m": "un", "f": "una"}
NUMBERS: dict[int, str] = {2: "dos", 3: "tres"}
# "fondo" is masculine singular: "un fondo gris a rayas".
BG_COLOURS: dict[str, str] = {"grey": "gris", "brown": "marrón", "black": "negro"}
PATTERNS: dict[str, str] = {"plain": "liso", "striped": "a rayas", "dotted": "de lunares", "checkered": "a cuadros"}
POSITIONS: dict[str, str] = {
    "left": "a la izquierda", "right": "a la derecha", "top": "arriba", "bottom": "abajo", "center": "en el centro",
}
POSITIONS_OF: dict[str, str] = {  # followed by the background
    "left": "en la parte izquierda de", "right": "en la parte derecha de", "top": "en la parte superior de",
    "bottom": "en la parte inferior de", "center": "en el centro de",
}


def agree(forms: Forms, gender: str, count: int) -> str:
    return forms[(gender == "f") + 2 * (count > 1)]


def group(g: ObjectGroup) -> str:
    gender, singular, plural = NOUNS[g.shape]
    head = ARTICLES[gender] if g.count == 1 else NUMBERS[g.count]
    noun = singular if g.count == 1 else plural
    return f"{head} {noun} {agree(COLOURS[g.colour], gender, g.count)} {agree(SIZES[g.size], gender, g.count)}"


def background(scene: Scene) -> str:
    return f"un fondo {BG_COLOURS[scene.background]} {PATTERNS[scene.pattern]}"


def _hay(scene: Scene) -> str:
    # "Hay dos círculos rojos grandes a la izquierda sobre un fondo gris a rayas. También hay una estrella azul
    #  pequeña."
    text = f"Hay {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" sobre {background(scene)}"
    text += "."
    if scene.distractor:
        text += f" También hay {group(scene.distractor)}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "Dos círculos rojos grandes en la parte izquierda de un fondo gris a rayas, además de una estrella azul pequeña."
    text = group(scene.main)
    if scene.mention_position and scene.mention_background:
        text += f" {POSITIONS_OF[scene.position]} {background(scene)}"
    elif scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    elif scene.mention_background:
        text += f" sobre {background(scene)}"
    if scene.distractor:
        text += f", además de {group(scene.distractor)}"
    return capitalise(text) + "."


def _se_ve(scene: Scene) -> str:
    # "Sobre un fondo gris a rayas, se ven dos círculos rojos grandes a la izquierda. También se ve una estrella
    #  azul pequeña."
    text = f"se {'ve' if scene.main.count == 1 else 'ven'} {group(scene.main)}"
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text = f"sobre {background(scene)}, {text}"
    text = capitalise(text) + "."
    if scene.distractor:
        text += f" También se ve {group(scene.distractor)}."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_hay, _noun_phrase, _se_ve))


def class_name(colour: str, shape: str) -> str:
    gender, singular, _ = NOUNS[shape]
    return f"{singular} {agree(COLOURS[colour], gender, 1)}"  # "círculo rojo", "estrella roja"


WRITER = Writer(caption, class_name)
