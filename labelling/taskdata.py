"""What a pair's task shows the annotator: the task data made by ``ImageCache.task_data``.

Task data (what the browser receives): ``pair_id``, ``sr4k_left`` ("a"/"b": which candidate is on the left, the
truth of what was displayed, copied into the mapping), the image URLs ``lr``, ``left``, ``right`` (the full images),
``view`` (the comparison page: the regions where the two candidates differ most, ``LR | Left | Right`` at 1:1, see
``labelling.compare``) and ``preload`` (the next task's comparison images, hidden, so the browser has them before the
annotator gets there). Model names are not shown. Every URL is ``/data/local-files/?d=<workspace-relative path>``:
paths are recorded relative to the workspace (``pairs.build.recorded_path``), so the tasks of a moved or copied
workspace still load. ``crop`` is the region side in HR pixels (default ``compare.SIDE``). A pair's comparison is
rendered once, when ``sr4k pairs build`` records the pair (``compare.record_views``), so the push only assembles task
JSON; gold pairs, and pairs recorded before that (or for another ``crop``), are rendered during the push, once each,
and counted in the report (``rendered_gold``, ``rendered_unrecorded`` with a ``note``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from labelling import compare
from pipelines.store.workspace import Workspace


def url(rel: str) -> str:
    """The local-files URL of a workspace-relative image path. Label Studio's document root is ``<ws>/served``, whose
    only entry ``images`` links to ``../images`` (``accounts.served_root``), so ``d`` is the path as recorded;
    anything else cannot be served, and says how to fix it."""
    if not rel.startswith("images/") or ".." in rel.split("/"):
        raise ValueError(
            f"image path {rel!r} is not a workspace-relative path under images/ (a pairs table "
            "written before paths were recorded so?): rebuild it with `sr4k pairs build`"
        )
    return f"/data/local-files/?d={rel}"


def _store_png(ws: Workspace, rgb: np.ndarray) -> str:
    """``compare.store_png`` into this workspace: content-addressed, lossless."""
    return compare.store_png(ws.root, rgb)


LR_CACHE = 32  # LR images kept in memory by ImageCache


class ImageCache:
    """Task data of pairs: the LR image and the comparison panels (``labelling.compare``). A pair's comparison comes
    from its recorded view (``views``: pair_id -> ``compare.VIEWS`` row, rendered by ``sr4k pairs build``) when one
    was rendered with this region side and count; otherwise (gold pairs, pairs built before views were recorded) it
    is rendered here, once per push, and counted in ``rendered``. ``order`` (the import order of the pairs) lets each
    task preload the images of the task after it."""

    def __init__(
        self, ws: Workspace, crop: int, order: list[dict] | None = None, views: dict[str, dict] | None = None
    ):
        self.ws, self.crop = ws, crop
        self.views = {k: v for k, v in (views or {}).items() if v["side"] == crop and v["regions"] == compare.REGIONS}
        # the stored LR copy a recorded view names serves every pair of that LR (gold pairs too): read it back instead
        # of opening the LR set (its readers cost seconds of imports)
        self.lr_copies = {p["lr_key"]: views[p["pair_id"]]["lr"] for p in order or [] if p["pair_id"] in (views or {})}
        self.rendered: set[str] = set()  # pair_ids whose comparison was rendered here (no usable recorded view)
        self.lr_loaders: dict[str, dict[str, Callable[[], np.ndarray]]] = {}
        self.lr: OrderedDict[str, np.ndarray] = OrderedDict()  # the last LR_CACHE LR images (pairs come shuffled)
        self.lr_paths: dict[str, str] = {}
        self.panels: dict[tuple[str, str, str], compare.Comparison] = {}
        self.following = {p["pair_id"]: q for p, q in zip(order or [], (order or [])[1:], strict=False)}

    def lr_image(self, lr_set: str | None, lr_key: str) -> tuple[str, np.ndarray]:
        """The LR image (workspace path of its stored copy, RGB), loaded at most once while it stays among the
        ``LR_CACHE`` most recent: 18,000 pairs over 1,500 4K-sized LRs (~1.5 MB each) must not all stay in memory."""
        if lr_key in self.lr:
            self.lr.move_to_end(lr_key)
            return self.lr_paths[lr_key], self.lr[lr_key]
        if lr_key in self.lr_copies:
            self.lr_paths[lr_key] = self.lr_copies[lr_key]
            self.lr[lr_key] = compare.read_rgb(self.ws.root, self.lr_copies[lr_key])
            return self._keep(lr_key)
        if lr_set is None:
            raise ValueError(f"LR {lr_key!r} has no row in the candidates table: cannot find its LR image")
        if lr_set not in self.lr_loaders:
            self.lr_loaders[lr_set] = _lr_loaders(self.ws, lr_set)
        rgb = self.lr_loaders[lr_set][lr_key]()
        if lr_key not in self.lr_paths:
            self.lr_paths[lr_key] = _store_png(self.ws, rgb)
        self.lr[lr_key] = rgb
        return self._keep(lr_key)

    def _keep(self, lr_key: str) -> tuple[str, np.ndarray]:
        if len(self.lr) > LR_CACHE:
            self.lr.popitem(last=False)
        return self.lr_paths[lr_key], self.lr[lr_key]

    def comparison(self, pair: dict) -> compare.Comparison:
        """The pair's comparison in screen order (Left = the candidate that ``pair["left"]`` names)."""
        view = self.views.get(pair["pair_id"])
        if view is not None:
            return compare.from_view(view, pair["left"])
        _lr_rel, lr = self.lr_image(pair.get("lr_set"), pair["lr_key"])
        left, right = ("a", "b") if pair["left"] == "a" else ("b", "a")
        key = (pair["lr_key"], pair[f"path_{left}"], pair[f"path_{right}"])
        if key not in self.panels:
            self.rendered.add(pair["pair_id"])
            self.panels[key] = compare.render(
                lr,
                compare.read_rgb(self.ws.root, key[1]),
                compare.read_rgb(self.ws.root, key[2]),
                lambda rgb: _store_png(self.ws, rgb),
                self.crop,
            )
        return self.panels[key]

    def task_data(self, pair: dict) -> dict[str, str]:
        """What the browser receives (module doc): ids, the full images' URLs, the comparison page and a preload of
        the next task's images."""
        view = self.views.get(pair["pair_id"])
        lr_rel = view["lr"] if view is not None else self.lr_image(pair.get("lr_set"), pair["lr_key"])[0]
        left, right = ("a", "b") if pair["left"] == "a" else ("b", "a")
        nxt = self.following.get(pair["pair_id"])
        return {
            "pair_id": pair["pair_id"],
            "sr4k_left": pair["left"],
            "lr": url(lr_rel),
            "left": url(pair[f"path_{left}"]),
            "right": url(pair[f"path_{right}"]),
            "view": self.comparison(pair).html(url),
            "preload": self.comparison(nxt).preload(url) if nxt else compare.Comparison([], None).preload(url),
        }


def _lr_loaders(ws: Workspace, lr_set: str) -> dict[str, Callable[[], np.ndarray]]:
    """key -> RGB loader of an LR set (a benchmark or a shard dataset)."""
    from pipelines.pairs.candidates import lr_items

    return {it.key: it.load for it in lr_items(ws, lr_set)}
