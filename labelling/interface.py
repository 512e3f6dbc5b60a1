"""The Label Studio labeling interface of a pairwise SR comparison: config XML, styles, hotkeys, instructions.

What the annotator sees at a 1440 x 900 laptop viewport, without scrolling (``labelling.compare`` renders it):

1. Left: one row per region, ``LR input | Left | Right``, the regions where the two candidates differ most, every
   panel drawn at 1:1 (CSS pixels) and the LR reference as the same region enlarged by nearest neighbour, so all three
   show the same pixels at the same scale. The rows come as HTML in the task (``$view``) shown by an inline
   ``<HyperText>``: plain ``<img>`` elements at their natural size, which Label Studio's ``<Image>`` (a canvas fitted
   to its column, no zoom sync between tags) cannot guarantee.
2. Right: the two questions (*Left / Right / Tie* each), the optional "both unusable" flag, the flip toggle and a
   one-line key reminder. Instructions are in the page, so no popup has to be dismissed per session.

The flip (key **F**): the same ``$view`` is rendered a second time inside a ``View`` with class ``sr4k-flipped``,
whose style swaps the Left and Right panels in place (CSS ``order``), each with its caption. Label Studio's own
``visibleWhen="choice-selected"`` / ``"choice-unselected"`` on the ``flip`` choice shows one of the two (the hidden one
is ``display: none``, still mounted and decoded), so pressing F flips the spot under the eye from one candidate to the
other and back, instantly. Chosen over the alternatives because it uses only documented config features (``Style``,
``View className``, ``visibleWhen``, ``Choice hotkey``) and plain HTML/CSS: no script (Label Studio strips them), no
patched frontend, no second server. Its one cost: Label Studio stores the flip toggle's state as a result
(``from_name == "flip"``) when it is on at submit; ``pull`` ignores the controls in ``VIEW_CONTROLS``.

Side panels: the config's ``<Style>`` hides Label Studio's side panels (regions, history, info: unused here, and
they take ~300 px) by their BEM classes (``lsf-sidepanels``); if a later Label Studio renames them the panels simply
come back (nothing breaks). Errors: each question has a ``requiredMessage`` in the annotator's words.

Values are stored in screen terms (``left`` / ``right`` / ``tie`` via ``alias``): what the annotator clicked. The
pull maps them to candidate terms with the task's ``sr4k_left`` (which candidate was on the left), so a stored answer
never depends on a display convention it does not record. The flip changes no answer: the captions travel with the
pixels, and "Left" is always the candidate captioned Left.

Hotkeys (digits, because Label Studio binds many letters to its own tools and panels; F is free; each key is unique
across the config, which Label Studio requires)::

    consistency with the LR input:  1 = Left better   2 = Right better   3 = Tie
    naturalness:                    4 = Left better   5 = Right better   6 = Tie
    both unusable (optional):       0
    flip Left/Right in place:       F (again: back)
    submit:                         Ctrl+Enter (Label Studio's own)

So a pair takes three keystrokes. Both questions are ``required``: the browser will not submit without them. The
server does not enforce it (API writes and old configs can store anything), which is why ``pull`` validates every
result. The object tag that results point to keeps the name ``left_crop`` of earlier configs: Label Studio refuses a
new config that orphans the ``to_name`` of annotations it already stores.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from schemas.labels import CRITERIA

TO_NAME = "left_crop"  # the object tag every result points to (kept from earlier configs, see the module doc)

# control name -> (question, required message, {alias: (shown text, hotkey)})
QUESTIONS: dict[str, tuple[str, str, dict[str, tuple[str, str]]]] = {
    "consistency": (
        "1. Which output is more faithful to the LR input (content, colours, structure; nothing invented)?",
        "Please answer question 1 — which output is more faithful to the LR input: Left, Right or Tie (keys 1, 2, 3).",
        {"left": ("Left is better", "1"), "right": ("Right is better", "2"), "tie": ("Tie", "3")},
    ),
    "naturalness": (
        "2. Which output looks more like a real high-resolution photo (sharp, no artifacts, not plastic)?",
        "Please answer question 2 — which output looks more like a real photo: Left, Right or Tie (keys 4, 5, 6).",
        {"left": ("Left is better", "4"), "right": ("Right is better", "5"), "tie": ("Tie", "6")},
    ),
}
UNUSABLE = "unusable"  # control name of the optional flag
UNUSABLE_VALUE = "both_unusable"
UNUSABLE_HOTKEY = "0"
FLIP = "flip"  # control name of the flip toggle (a view control: not an answer)
FLIP_VALUE = "swapped"
FLIP_HOTKEY = "f"
VIEW_CONTROLS = frozenset({FLIP})  # results of these controls are display state, ignored by the pull
SCREEN_VALUES = ("left", "right", "tie")
# Project settings of the annotator's view (the push keeps existing projects in step): instructions live in the page,
# so no popup per session; tasks come in import order (the push shuffles it with its seed), so the task after this
# one is the one whose images this one preloads (``compare``).
VIEW_SETTINGS = {"show_instruction": False, "sampling": "Sequential sampling"}

INSTRUCTIONS = (
    "<p>You see regions of the <b>LR input</b> (the reference, enlarged without smoothing) and of two "
    "super-resolved outputs, <b>Left</b> and <b>Right</b>, all at the same scale (1:1). Press <b>F</b> to swap "
    "Left and Right in place and back, to see both at the same spot.</p><ol><li><b>Consistency</b>: which output "
    "keeps the content of the LR input — shapes, text, colours, layout — without inventing or removing things? Keys "
    "<b>1</b> Left, <b>2</b> Right, <b>3</b> Tie.</li><li><b>Naturalness</b>: which output looks more like a real "
    "high-resolution photograph — fine detail, no repeating patterns, halos, blur or plastic skin? Keys <b>4</b> "
    "Left, <b>5</b> Right, <b>6</b> Tie.</li></ol><p>Answer <i>Tie</i> only when you really cannot tell. If both "
    "outputs are broken (blank, garbled, wrong image) press <b>0</b> (both unusable) and still answer both "
    "questions. Submit with <b>Ctrl+Enter</b>.</p>"
)

# Label Studio's side panels (regions / history / info) are unused here; the comparison must be drawn at 1:1.
STYLE = """
.lsf-sidepanels { padding-left: 0 !important; padding-right: 0 !important; }
.lsf-sidepanels__wrapper { display: none !important; }
.lsf-main-view__annotation { padding: 8px 12px !important; }
.sr4k-page { display: flex; gap: 24px; align-items: flex-start; }
.sr4k-views { flex: none; }
.sr4k-side { flex: 1 1 320px; min-width: 280px; max-width: 560px; }
.sr4k-cmp { display: flex; flex-direction: column; gap: 6px; }
.sr4k-row { display: flex; gap: 6px; }
.sr4k-row figure { margin: 0; display: flex; flex-direction: column; }
.sr4k-row figcaption { font: 600 12px/16px sans-serif; padding: 0 4px; color: #fff; background: #666; }
.sr4k-row .sr4k-left figcaption { background: #1565c0; }
.sr4k-row .sr4k-right figcaption { background: #c2410c; }
.sr4k-row img { display: block; max-width: none !important; max-height: none !important; image-rendering: pixelated; }
.sr4k-flipped .sr4k-left { order: 3; }
.sr4k-flipped .sr4k-right { order: 2; }
.sr4k-flipped .sr4k-row figcaption::after { content: " (swapped: F)"; font-weight: 400; }
.sr4k-preload { display: none !important; }
.sr4k-side h3 { font-size: 18px !important; line-height: 24px !important; }
.sr4k-side h4 { font-size: 15px !important; line-height: 20px !important; }
.sr4k-keys h4 { font-size: 12px !important; font-weight: 400 !important; color: #555; }
"""

KEYS_LINE = (
    "Keys: 1/2/3 and 4/5/6 = Left/Right/Tie, 0 = both unusable, F = swap Left and Right in place, Ctrl+Enter = submit."
)


def label_config() -> str:
    """The labeling config XML (deterministic: the push compares it with the project's and updates on change)."""
    root = ET.Element("View")
    ET.SubElement(root, "Style").text = STYLE
    page = ET.SubElement(root, "View", className="sr4k-page")
    views = ET.SubElement(page, "View", className="sr4k-views")
    for cls, when, name in (
        ("sr4k-normal", "choice-unselected", TO_NAME),
        ("sr4k-flipped", "choice-selected", "flipped"),
    ):
        box = ET.SubElement(views, "View", className=cls, visibleWhen=when, whenTagName=FLIP)
        ET.SubElement(box, "HyperText", name=name, value="$view", inline="true", saveTextResult="no")
    hidden = ET.SubElement(views, "View", className="sr4k-preload")
    ET.SubElement(hidden, "HyperText", name="preload", value="$preload", inline="true", saveTextResult="no")
    side = ET.SubElement(page, "View", className="sr4k-side")
    ET.SubElement(side, "Header", value="Which super-resolved output is better?", size="4")
    for criterion in CRITERIA:
        question, message, choices = QUESTIONS[criterion]
        box = ET.SubElement(side, "View", style="margin-top:8px")
        ET.SubElement(box, "Header", value=question, size="6")
        ch = ET.SubElement(
            box,
            "Choices",
            name=criterion,
            toName=TO_NAME,
            choice="single-radio",
            required="true",
            requiredMessage=message,
            showInline="true",
        )
        for alias, (text, key) in choices.items():
            ET.SubElement(ch, "Choice", value=text, alias=alias, hotkey=key)
    box = ET.SubElement(side, "View", style="margin-top:12px")
    flag = ET.SubElement(box, "Choices", name=UNUSABLE, toName=TO_NAME, choice="multiple", showInline="true")
    ET.SubElement(flag, "Choice", value="Both unusable", alias=UNUSABLE_VALUE, hotkey=UNUSABLE_HOTKEY)
    flip = ET.SubElement(box, "Choices", name=FLIP, toName=TO_NAME, choice="multiple", showInline="true")
    ET.SubElement(flip, "Choice", value="Swap Left and Right in place", alias=FLIP_VALUE, hotkey=FLIP_HOTKEY)
    keys = ET.SubElement(side, "View", className="sr4k-keys")
    ET.SubElement(keys, "Header", value=KEYS_LINE, size="6", underline="false")
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
