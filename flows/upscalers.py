"""The name → ``Upscaler`` table behind every ``--model``/``model`` option (an explicit table, beside the CLI).

It lives in ``flows/`` and not in ``pipelines/`` because one entry, ``op4ksr:<checkpoint>``, comes from ``training/``
and the data steps never import upward (tests/pipelines/test_imports.py). The protocol, the interpolations and the
runners themselves stay in ``pipelines`` (``pipelines.models``: ``upscalers``, ``ncnn_sr``, ``torch_sr``).
"""

from __future__ import annotations

import cv2

from pipelines.models.upscalers import INTERPOLATIONS, UPSCALERS, Interpolation, Upscaler, check_scale


def get_upscaler(name: str, scale: int) -> Upscaler:
    """The upscaler ``name`` at ``scale``; a clear error listing what exists otherwise."""
    if name in INTERPOLATIONS:
        return Interpolation(name, INTERPOLATIONS[name], scale)
    kind, _, arg = name.partition(":")
    if kind == "spandrel" and arg:
        from pipelines.models.torch_sr import SpandrelUpscaler

        return check_scale(SpandrelUpscaler.load(arg), scale)
    if kind == "diffusers" and arg:
        from pipelines.models.torch_sr import DiffusersUpscaler

        return check_scale(DiffusersUpscaler.load(arg), scale)
    if kind == "op4ksr" and arg:
        from training.sr.upscaler import OP4KSRUpscaler

        return check_scale(OP4KSRUpscaler.load(arg), scale)
    try:
        from pipelines.models.ncnn_sr import NCNN_MODELS, NcnnUpscaler
    except ImportError:  # ncnn not installed: say so rather than 'unknown model'
        NCNN_MODELS, NcnnUpscaler = {}, None
    if name in NCNN_MODELS:
        return check_scale(NcnnUpscaler.load(name), scale)
    known = [*UPSCALERS, *NCNN_MODELS, "spandrel:<file>", "diffusers:<folder>", "op4ksr:<checkpoint>"]
    raise ValueError(f"unknown model {name!r}; available here: {', '.join(known)}")


def list_upscalers() -> list[dict]:
    """What can run here, with versions and where the weights come from (for ``sr4k candidates list``)."""
    rows = [
        {
            "name": n,
            "kind": "opencv",
            "family": "interpolation",
            "scale": "any",
            "version": f"opencv-{cv2.__version__}",
            "weights": "none",
            "ok": True,
            "status": "ok",
        }
        for n in UPSCALERS
    ]
    from pipelines.models.ncnn_sr import NCNN_MODELS, WHEELS, model_files, weights_version

    for n, spec in NCNN_MODELS.items():
        row = {
            "name": n,
            "kind": "ncnn (CPU)",
            "family": spec.family,
            "scale": spec.scale,
            "version": "",
            "weights": "",
            "ok": False,
        }
        try:
            import ncnn  # noqa: F401  (runs the models)

            param_path, bin_path = model_files(n)
            if not param_path.is_file() or not bin_path.is_file():
                raise FileNotFoundError(f"{param_path} missing (reinstall the wheel)")
            version = weights_version(param_path.read_bytes(), bin_path.read_bytes(), spec.extra)
            row |= {"version": version, "weights": f"{WHEELS[spec.package]}: {spec.stem}", "ok": True, "status": "ok"}
        except (ImportError, FileNotFoundError) as e:
            row["status"] = f"not available: {e}"
        rows.append(row)
    return rows
