"""Chinese (simplified): numeral + 个, "大的/小的" before the colour, locative phrases with 上/的."""

from __future__ import annotations

from compact.data.reference.lang.common import Writer, choose
from compact.data.reference.scene import ObjectGroup, Scene

SHAPES: dict[str, str] = {
    "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "cross": "十字形", "diamond": "菱形",
}
COLOURS: dict[str, str] = {
    "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "white": "白色",
}
SIZES: dict[str, str] = {"small": "小的", "large": "大的"}
NUMBERS: dict[int, str] = {1: "一个", 2: "两个", 3: "三个"}
BG_COLOURS: dict[str, str] = {"grey": "灰色", "brown": "棕色", "black": "黑色"}
PATTERNS: dict[str, str] = {"striped": "条纹", "dotted": "圆点", "checkered": "格子"}  # plain: "纯灰色"
POSITIONS: dict[str, str] = {"left": "左边", "right": "右边", "top": "上方", "bottom": "下方", "center": "中间"}
SIDES: dict[str, str] = {"left": "左侧", "right": "右侧", "top": "上方", "bottom": "下方", "center": "中央"}  # after 的


def group(g: ObjectGroup) -> str:
    return f"{NUMBERS[g.count]}{SIZES[g.size]}{COLOURS[g.colour]}{SHAPES[g.shape]}"  # "两个大的红色圆形"


def background_look(scene: Scene) -> str:
    colour = BG_COLOURS[scene.background]
    return f"纯{colour}" if scene.pattern == "plain" else f"{colour}{PATTERNS[scene.pattern]}"  # "灰色条纹"


def _you(scene: Scene) -> str:
    # "灰色条纹背景上，左边有两个大的红色圆形，另外还有一个小的蓝色星形。"
    where = POSITIONS[scene.position] if scene.mention_position else ""
    if scene.mention_background:
        text = f"{background_look(scene)}背景上，{where}有" if where else f"{background_look(scene)}背景上有"
    else:
        text = f"{where}有" if where else "图中有"
    text += group(scene.main)
    if scene.distractor:
        text += f"，另外还有{group(scene.distractor)}"
    return text + "。"


def _located(scene: Scene) -> str:
    # "两个大的红色圆形位于灰色条纹背景的左侧，此外还有一个小的蓝色星形。"
    if scene.mention_position and scene.mention_background:
        text = f"{group(scene.main)}位于{background_look(scene)}背景的{SIDES[scene.position]}"
    elif scene.mention_position:
        text = f"{group(scene.main)}位于画面{SIDES[scene.position]}"
    elif scene.mention_background:
        text = f"{group(scene.main)}位于{background_look(scene)}背景上"
    else:
        text = f"画面中是{group(scene.main)}"
    if scene.distractor:
        text += f"，此外还有{group(scene.distractor)}"
    return text + "。"


def _background_is(scene: Scene) -> str:
    # "画面左边有两个大的红色圆形，背景为灰色条纹。图中还有一个小的蓝色星形。"
    where = POSITIONS[scene.position] if scene.mention_position else "中"
    text = f"画面{where}有{group(scene.main)}"
    if scene.mention_background:
        text += f"，背景为{background_look(scene)}"
    text += "。"
    if scene.distractor:
        text += f"图中还有{group(scene.distractor)}。"
    return text


def caption(scene: Scene) -> str:
    return choose(scene, (_you, _located, _background_is))


def class_name(colour: str, shape: str) -> str:
    return f"{COLOURS[colour]}{SHAPES[shape]}"  # "红色圆形"


WRITER = Writer(caption, class_name)
