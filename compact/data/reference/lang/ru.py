"""Russian: numeral government (1: nominative singular; 2-3: genitive singular noun, genitive plural adjectives
for masculine nouns and nominative plural adjectives for feminine ones) and the prepositional after "на"."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, capitalise, choose
from compact.data.reference.scene import ObjectGroup, Scene

NOUNS: dict[str, tuple[str, str, str]] = {  # gender, nominative singular, genitive singular
    "circle": ("m", "круг", "круга"),
    "square": ("m", "квадрат", "квадрата"),
    "triangle": ("m", "треугольник", "треугольника"),
    "star": ("f", "звезда", "звезды"),
    "cross": ("m", "крест", "креста"),
    "diamond": ("m", "ромб", "ромба"),
}
# Adjective endings by declension type, for the forms used here.
ENDINGS: dict[str, dict[str, str]] = {
    "hard": {"nom_m": "ый", "nom_f": "ая", "gen_m": "ого", "gen_f": "ой", "nom_pl": "ые", "gen_pl": "ых", "prep_m": "ом"},
    "velar": {"nom_m": "ий", "nom_f": "ая", "gen_m": "ого", "gen_f": "ой", "nom_pl": "ие", "gen_pl": "их", "prep_m": "ом"},
    "stressed": {"nom_m": "ой", "nom_f": "ая", "gen_m": "ого", "gen_f": "ой", "nom_pl": "ие", "gen_pl": "их", "prep_m": "ом"},
    "soft": {"nom_m": "ий", "nom_f": "яя", "gen_m": "его", "gen_f": "ей", "nom_pl": "ие", "gen_pl": "их", "prep_m": "ем"},
}
Adjective = tuple[str, str]  # stem, declension type
COLOURS: dict[str, Adjective] = {
    "red": ("красн", "hard"), "green": ("зелён", "hard"), "blue": ("син", "soft"),
    "yellow": ("жёлт", "hard"), "purple": ("фиолетов", "hard"), "white": ("бел", "hard"),
}
SIZES: dict[str, Adjective] = {"small": ("маленьк", "velar"), "large": ("больш", "stressed")}
BG_COLOURS: dict[str, Adjective] = {"grey": ("сер", "hard"), "brown": ("коричнев", "hard"), "black": ("чёрн", "hard")}
# A pattern is an adjective ("на сером полосатом фоне") or a phrase after the noun ("на сером фоне в горошек").
PATTERNS: dict[str, Adjective | str] = {
    "plain": ("однотонн", "hard"), "striped": ("полосат", "hard"), "dotted": "в горошек", "checkered": ("клетчат", "hard"),
}
NUMBERS: dict[tuple[int, str], str] = {(2, "m"): "два", (2, "f"): "две", (3, "m"): "три", (3, "f"): "три"}
POSITIONS: dict[str, str] = {"left": "слева", "right": "справа", "top": "сверху", "bottom": "снизу", "center": "в центре"}
DEPICTED: dict[str, str] = {"m": "изображён", "f": "изображена", "pl": "изображены"}
VISIBLE: dict[str, str] = {"m": "виден", "f": "видна"}


def form(adjective: Adjective, name: str) -> str:
    stem, kind = adjective
    return stem + ENDINGS[kind][name]


def group(g: ObjectGroup) -> str:
    """Nominative: "большой красный круг", "два больших красных круга", "две большие красные звезды"."""
    gender, nominative, genitive = NOUNS[g.shape]
    adjectives = (SIZES[g.size], COLOURS[g.colour])
    if g.count == 1:
        return " ".join((*(form(a, f"nom_{gender}") for a in adjectives), nominative))
    adjective_form = "gen_pl" if gender == "m" else "nom_pl"
    return " ".join((NUMBERS[g.count, gender], *(form(a, adjective_form) for a in adjectives), genitive))


def on_background(scene: Scene) -> str:
    pattern = PATTERNS[scene.pattern]
    colour = form(BG_COLOURS[scene.background], "prep_m")
    if isinstance(pattern, str):
        return f"на {colour} фоне {pattern}"
    return f"на {colour} {form(pattern, 'prep_m')} фоне"


def _depicted(scene: Scene) -> str:
    # "Слева на сером полосатом фоне изображены два больших красных круга. Кроме того, на картинке есть маленькая
    #  синяя звезда."
    adverbials = []
    if scene.mention_position:
        adverbials.append(POSITIONS[scene.position])
    if scene.mention_background:
        adverbials.append(on_background(scene))
    verb = DEPICTED["pl" if scene.main.count > 1 else NOUNS[scene.main.shape][0]]
    text = " ".join((*(adverbials or ["на картинке"]), verb, group(scene.main)))
    text = capitalise(text) + "."
    if scene.distractor:  # say "на картинке" once only
        text += f" Кроме того, {'на картинке ' if adverbials else ''}есть {group(scene.distractor)}."
    return text


def _noun_phrase(scene: Scene) -> str:
    # "Два больших красных круга слева на сером полосатом фоне и маленькая синяя звезда."
    text = group(scene.main)
    if scene.mention_position:
        text += f" {POSITIONS[scene.position]}"
    if scene.mention_background:
        text += f" {on_background(scene)}"
    if scene.distractor:
        text += f" и {group(scene.distractor)}"
    return capitalise(text) + "."


def _dash(scene: Scene) -> str:
    # "На сером полосатом фоне слева — два больших красных круга. Также видна маленькая синяя звезда."
    adverbials = []
    if scene.mention_background:
        adverbials.append(on_background(scene))
    if scene.mention_position:
        adverbials.append(POSITIONS[scene.position])
    text = " ".join(adverbials or ["на картинке"]) + f" — {group(scene.main)}"
    text = capitalise(text) + "."
    if scene.distractor:
        text += f" Также {VISIBLE[NOUNS[scene.distractor.shape][0]]} {group(scene.distractor)}."
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_depicted, _noun_phrase, _dash))


def class_name(colour: str, shape: str) -> str:
    gender, nominative, _ = NOUNS[shape]
    return f"{form(COLOURS[colour], f'nom_{gender}')} {nominative}"  # "красный круг", "красная звезда"


WRITER = Writer(caption, class_name)
