"""The Label Studio labeling interface of a pairwise SR comparison: config XML, hotkeys, instructions.

What the annotator sees (top to bottom):

1. Short instructions (``INSTRUCTIONS``, also the project's expert instructions).
2. A row of three *matched crops* at the same on-screen size: the LR input (the reference, upscaled by the browser
   with smoothing off, so its pixels stay visible), candidate *Left* and candidate *Right* — the same region of each
   (``push.matched_crops``). Label Studio 1.23 has no zoom/pan synchronisation between ``<Image>`` tags (``sync``
   exists for audio/video/paragraphs only), so equal zoom comes from cutting the same region from each image and
   showing the three at the same width; for images no larger than the crop the crop is the whole image.
3. The full images, each zoomable with the mouse wheel (``zoom``/``zoomControl``) for context.
4. Two questions, each *Left / Right / Tie*, and an optional "both unusable" flag.

Values are stored in screen terms (``left`` / ``right`` / ``tie`` via ``alias``): what the annotator clicked. The
pull maps them to candidate terms with the task's ``left`` (which candidate was on the left), so a stored answer never
depends on a display convention it does not record.

Hotkeys (digits, because Label Studio binds letters to its own tools and panels; each key is unique across the
config, which Label Studio requires)::

    consistency with the LR input:  1 = Left better   2 = Right better   3 = Tie
    naturalness:                    4 = Left better   5 = Right better   6 = Tie
    both unusable (optional):       0
    submit:                         Ctrl+Enter (Label Studio's own)

Both questions are ``required``: the browser will not submit without them. The server does not enforce it (API
writes and old configs can store anything), which is why ``pull`` validates every result.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from schemas.labels import CRITERIA

# control name -> (question, {alias: (shown text, hotkey)})
QUESTIONS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "consistency": (
        "1. Which output is more faithful to the LR input (content, colours, structure; nothing invented)?",
        {"left": ("Left is better", "1"), "right": ("Right is better", "2"), "tie": ("Tie", "3")},
    ),
    "naturalness": (
        "2. Which output looks more like a real high-resolution photo (sharp, no artifacts, not plastic)?",
        {"left": ("Left is better", "4"), "right": ("Right is better", "5"), "tie": ("Tie", "6")},
    ),
}
UNUSABLE = "unusable"  # control name of the optional flag
UNUSABLE_VALUE = "both_unusable"
UNUSABLE_HOTKEY = "0"
SCREEN_VALUES = ("left", "right", "tie")

INSTRUCTIONS = (
    "<p>You see the <b>LR input</b> (the reference) and two super-resolved outputs, <b>Left</b> and <b>Right</b>. "
    "The top row shows the same region of all three at the same size; the full images below zoom with the mouse "
    "wheel.</p><ol><li><b>Consistency</b>: which output keeps the content of the LR input — shapes, text, colours, "
    "layout — without inventing or removing things? Keys <b>1</b> Left, <b>2</b> Right, <b>3</b> Tie.</li>"
    "<li><b>Naturalness</b>: which output looks more like a real high-resolution photograph — fine detail, no "
    "repeating patterns, halos, blur or plastic skin? Keys <b>4</b> Left, <b>5</b> Right, <b>6</b> Tie.</li></ol>"
    "<p>Answer <i>Tie</i> only when you really cannot tell. If both outputs are broken (blank, garbled, wrong image) "
    "press <b>0</b> (both unusable) and still answer both questions. Submit with <b>Ctrl+Enter</b>.</p>"
)

_ROW = "display:flex;gap:8px;align-items:flex-start"
_COL = "flex:1;min-width:0"


def _images(row: ET.Element, suffix: str, zoom: bool) -> None:
    for title, field in (("LR input (reference)", "lr"), ("Left", "left"), ("Right", "right")):
        col = ET.SubElement(row, "View", style=_COL)
        ET.SubElement(col, "Header", value=title, size="5")
        attrs = {"name": f"{field}{suffix}", "value": f"${field}{suffix}", "width": "100%", "maxWidth": "100%"}
        if field == "lr":
            attrs["smoothing"] = "false"
        if zoom:
            attrs |= {"zoom": "true", "zoomControl": "true"}
        ET.SubElement(col, "Image", attrs)


def label_config() -> str:
    """The labeling config XML (deterministic: the push compares it with the project's and updates on change)."""
    root = ET.Element("View")
    ET.SubElement(root, "Header", value="Which super-resolved output is better?", size="4")
    crops = ET.SubElement(root, "View", style=_ROW)
    _images(crops, "_crop", zoom=False)
    for criterion in CRITERIA:
        question, choices = QUESTIONS[criterion]
        box = ET.SubElement(root, "View", style="margin-top:8px")
        ET.SubElement(box, "Header", value=question, size="5")
        ch = ET.SubElement(box, "Choices", name=criterion, toName="left_crop", choice="single-radio",
                           required="true", showInline="true")  # fmt: skip
        for alias, (text, key) in choices.items():
            ET.SubElement(ch, "Choice", value=text, alias=alias, hotkey=key)
    flag = ET.SubElement(root, "Choices", name=UNUSABLE, toName="left_crop", choice="multiple", showInline="true")
    ET.SubElement(flag, "Choice", value="Both unusable", alias=UNUSABLE_VALUE, hotkey=UNUSABLE_HOTKEY)
    ET.SubElement(root, "Header", value="Full images (scroll to zoom)", size="6")
    full = ET.SubElement(root, "View", style=_ROW)
    _images(full, "", zoom=True)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def hotkeys(config: str | None = None) -> dict[str, tuple[str, str]]:
    """hotkey -> (control name, alias), parsed back from a config (checks there are no duplicates)."""
    root = ET.fromstring(config or label_config())
    out: dict[str, tuple[str, str]] = {}
    for choices in root.iter("Choices"):
        for c in choices.iter("Choice"):
            key = c.get("hotkey")
            if key in out:
                raise ValueError(f"hotkey {key!r} bound twice: {out[key]} and {(choices.get('name'), c.get('alias'))}")
            out[key] = (choices.get("name"), c.get("alias"))
    return out
