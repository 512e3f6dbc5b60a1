"""The bad-input suite through the whole curate flow: no crash, each case gets its documented outcome, nothing lost."""

import os

import duckdb
import pytest
from imagefixtures import write_bad_input_suite

from pipelines.curate.build import CurateConfig

pytestmark = pytest.mark.slow

REJECTED = {
    "truncated_jpeg": ("decode", "truncated"),
    "corrupt_png": ("decode", "truncated"),
    "zero_byte": ("decode", "empty_file"),
    "text_as_jpg": ("decode", "not_an_image"),
    "decompression_bomb_png": ("decode", "decompression_bomb"),
    "header_bomb_png": ("decode", "truncated"),  # 9000x9000 is under the default 134 MP limit: decoded, found cut
    "animated_gif": ("decode", "animated"),
    "animated_webp": ("decode", "animated"),
    "animated_png": ("decode", "animated"),
}
NORMALISED = {  # decoded, whatever the quality filters then decide; the decode note says which rule applied
    "wrong_extension": "ext_mismatch",
    "cmyk_jpeg": "cmyk_to_rgb",
    "sixteen_bit_png": "sixteen_bit_to_8",
    "sixteen_bit_rgb_png": "sixteen_bit_to_8",
    "palette_transparency_png": "alpha_over_white",
    "rgba_png": "alpha_over_white",
    "exif_rotated_jpeg": "exif_rotate",
    "gray_png": "gray_to_rgb",
}


def test_bad_input_suite_outcomes(tmp_path, prefect_local):
    from flows.curate import curate_flow

    root = tmp_path / "in"
    cases = write_bad_input_suite(root)
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(cases["exif_rotated_jpeg"].read_bytes())
    os.symlink(outside, root / "escape.jpg")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "x.jpg").write_bytes(cases["exif_rotated_jpeg"].read_bytes())
    os.mkfifo(root / "pipe.jpg")  # reading it would block forever
    cfg = CurateConfig.model_validate({"hr_size": "32", "scale": 4, "filters": {"min_short_side": 32}})
    s = curate_flow(input=str(root), out=str(tmp_path / "ws"), cfg=cfg, show_progress=False)

    entries = {os.path.join(d, f) for d, _, files in os.walk(root) for f in files}  # every non-folder entry
    assert s["seen"] == len(entries) == s["kept"] + s["rejected"] and s["hidden"] == 2
    ws = tmp_path / "ws"
    rows = duckdb.sql(
        f"select uri from '{ws}/tables/rejects/*.parquet' union all "
        f"select distinct uri from '{ws}/tables/samples/*.parquet'"
    ).fetchall()
    assert sorted(u for (u,) in rows) == sorted(entries)  # exactly one outcome row per entry, hidden ones included
    rejects = {
        u: (st, r)
        for u, st, r in duckdb.sql(f"select uri, stage, reason from '{ws}/tables/rejects/*.parquet'").fetchall()
    }
    notes = dict(duckdb.sql(f"select uri, decode_notes from '{ws}/tables/images/*.parquet'").fetchall())
    for case, want in REJECTED.items():
        assert rejects[str(cases[case])] == want, case
    for case, note in NORMALISED.items():
        uri = str(cases[case])
        assert uri in notes, f"{case} did not decode: {rejects.get(uri)}"
        assert note in notes[uri].split(","), (case, notes[uri])
        assert rejects.get(uri, ("filter",))[0] in ("filter", "crop", "dedup")
    assert rejects[str(root / "escape.jpg")] == ("ingest", "symlink_outside_root")
    assert rejects[str(root / ".DS_Store")] == rejects[str(root / ".thumbnails" / "x.jpg")] == ("ingest", "hidden")
    assert rejects[str(root / "pipe.jpg")] == ("ingest", "not_a_file")


def test_bad_urls_in_a_list_are_rows_not_an_abort(tmp_path, prefect_local):
    import socket

    from flows.curate import curate_flow

    root = tmp_path / "in"
    cases = write_bad_input_suite(root)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "served"
    served.mkdir()
    (served / "real.png").write_bytes(cases["gray_png"].read_bytes())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=served))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    web = f"http://127.0.0.1:{httpd.server_address[1]}"
    urls = {
        f"http://127.0.0.1:{port}/a.jpg": "unreadable",
        "nosuchproto://host/b.jpg": "unknown_protocol",
        "memory:///nowhere/c.jpg": "missing",
        "/dev/null": "not_a_file",
        f"{web}/gone.jpg": "missing",
    }
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([*urls, str(cases["gray_png"]), f"{web}/real.png"]) + "\n")
    cfg = CurateConfig.model_validate({"hr_size": "32", "scale": 4, "filters": {"min_short_side": 32}})
    try:
        s = curate_flow(input=str(listing), out=str(tmp_path / "ws"), cfg=cfg, show_progress=False)
    finally:
        httpd.shutdown()
    assert s["seen"] == 7 == s["kept"] + s["rejected"]
    got = dict(duckdb.sql(f"select uri, reason from '{tmp_path}/ws/tables/rejects/*.parquet'").fetchall())
    for url, reason in urls.items():
        assert got[url] == reason, url
    # the served copy of the local file was fetched over HTTP and decoded: the same outcome as the local file
    local = got.get(str(cases["gray_png"]), "kept")
    assert local not in ("missing", "unreadable") and got.get(f"{web}/real.png", "kept") in (local, "exact_duplicate")
