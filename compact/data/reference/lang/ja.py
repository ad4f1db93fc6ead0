"""Japanese: 〜が二つあります / 二つの〜 with the native counter つ, polite style."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, choose
from compact.data.reference.scene import ObjectGroup, Scene

SHAPES: dict[str, str] = {
    "circle": "円", "square": "正方形", "triangle": "三角形", "star": "星形", "cross": "十字形", "diamond": "ひし形",
}
COLOURS: dict[str, str] = {  # attributive forms
    "red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い", "purple": "紫の", "white": "白い",
}
SIZES: dict[str, str] = {"small": "小さな", "large": "大きな"}
COUNTS: dict[int, str] = {1: "一つ", 2: "二つ", 3: "三つ"}
BG_COLOURS: dict[str, str] = {"grey": "灰色", "brown": "茶色", "black": "黒"}
PATTERNS: dict[str, str] = {"plain": "無地", "striped": "縞模様", "dotted": "水玉模様", "checkered": "格子模様"}
POSITIONS: dict[str, str] = {"left": "左側", "right": "右側", "top": "上部", "bottom": "下部", "center": "中央"}


def objects(g: ObjectGroup) -> str:
    return f"{SIZES[g.size]}{COLOURS[g.colour]}{SHAPES[g.shape]}"  # "大きな赤い円" (the count goes elsewhere)


def background_look(scene: Scene) -> str:
    return f"{BG_COLOURS[scene.background]}の{PATTERNS[scene.pattern]}"  # "灰色の縞模様"


def place(scene: Scene) -> str:
    """Where the main group is, ending in に ("" when neither the background nor the position is mentioned)."""
    if scene.mention_background and scene.mention_position:
        return f"{background_look(scene)}の背景の{POSITIONS[scene.position]}に"
    if scene.mention_background:
        return f"{background_look(scene)}の背景に"
    if scene.mention_position:
        return f"画像の{POSITIONS[scene.position]}に"
    return ""


def _arimasu(scene: Scene) -> str:
    # "灰色の縞模様の背景の左側に、大きな赤い円が二つあります。また、小さな青い星形が一つあります。"
    where = place(scene)
    text = f"{where}、" if where else ""
    text += f"{objects(scene.main)}が{COUNTS[scene.main.count]}あります。"
    if scene.distractor:
        text += f"また、{objects(scene.distractor)}が一つあります。"
    return text


def _egakarete(scene: Scene) -> str:
    # "二つの大きな赤い円が、灰色の縞模様の背景の左側に描かれています。小さな青い星形も一つ描かれています。"
    where = place(scene)
    text = f"{COUNTS[scene.main.count]}の{objects(scene.main)}が"
    text += f"、{where}描かれています。" if where else "描かれています。"
    if scene.distractor:
        text += f"{objects(scene.distractor)}も一つ描かれています。"
    return text


def _haikei_wa(scene: Scene) -> str:
    # "背景は灰色の縞模様で、左側には大きな赤い円が二つあります。小さな青い星形も一つあります。"
    if scene.mention_background:
        text = f"背景は{background_look(scene)}で、"
        text += f"{POSITIONS[scene.position]}には" if scene.mention_position else ""
    else:
        text = f"画像の{POSITIONS[scene.position]}には" if scene.mention_position else "画像には"
    text += f"{objects(scene.main)}が{COUNTS[scene.main.count]}あります。"
    if scene.distractor:
        text += f"{objects(scene.distractor)}も一つあります。"
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_arimasu, _egakarete, _haikei_wa))


def class_name(colour: str, shape: str) -> str:
    return f"{COLOURS[colour]}{SHAPES[shape]}"  # "赤い円", "緑の円"


WRITER = Writer(caption, class_name)
