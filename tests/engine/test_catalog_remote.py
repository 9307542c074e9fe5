"""Remote COGs in a STAC catalog (engine/remote.py): two real COGs of ../shared/rasters served by a real HTTP server on
127.0.0.1 (Range requests) are indexed through GDAL's /vsicurl/; the catalog equals the same files indexed locally;
a 404 asset and a non-http scheme are one clear line; every connection stays on loopback."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import sys

import numpy as np
import pytest

from engine import remote as remote_mod
from engine.catalog import resolve_sources
from engine.cli import main
from engine.errors import BadInput, Conflict, NotFound
from engine.indexer import IndexParams
from engine.store import current_fingerprint
from tests.http_files import serve_files

COGS = ("cogeo.tif", "naip_2020.tif")
QUERIES = ("a river crossing farmland", "dense residential area", "a large blue lake")


def _stac(hrefs: list[str]) -> dict:
    items = [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": href.rsplit("/", 1)[-1],
            "geometry": None,
            "properties": {},
            "assets": {
                "thumbnail": {"href": href + ".png", "type": "image/png", "roles": ["thumbnail"]},
                "visual": {"href": href, "type": "image/tiff; application=geotiff", "roles": ["visual"]},
            },
        }
        for href in hrefs
    ]
    return {"type": "FeatureCollection", "features": items}


@pytest.fixture
def served(shared, tmp_path, monkeypatch):
    """The two COGs (copied to a tmp folder) behind a loopback HTTP server; no proxy; a socket audit hook that
    fails any Python connection off loopback."""
    folder = tmp_path / "www"
    folder.mkdir()
    for name in COGS:
        shutil.copyfile(shared / "rasters" / name, folder / name)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "GDAL_HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    off_loopback: list = []

    def audit(event: str, args: tuple) -> None:
        if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
            if not ipaddress.ip_address(args[1][0]).is_loopback:
                off_loopback.append(args[1])

    sys.addaudithook(audit)  # hooks cannot be removed; this one only records while the list is checked
    with serve_files(folder) as server:
        yield server, folder
    assert off_loopback == []


def test_remote_stac_catalog_equals_local(engine, served, shared, tmp_path):
    server, folder = served
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps(_stac([server.url + n for n in COGS])))
    assert resolve_sources([stac]) == [server.url + n for n in COGS]
    params = IndexParams(tile=128)
    remote = engine.index_many([stac], "remote", params)
    assert [m["raster"] for m in remote["members"]] == [server.url + n for n in COGS]
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"  # engine/settings.py, applied at start-up
    assert {p for p, _ in server.requests} == {"/" + n for n in COGS}  # no directory listing, no sidecar probes
    ranged = [r for p, r in server.requests if p.endswith(".tif") and r and r != "bytes=0-"]
    assert len(ranged) >= 4  # pixels came as byte ranges (COG blocks), not whole-file downloads
    fps = [engine.store(m["store_id"]).manifest["raster"]["fingerprint"] for m in remote["members"]]
    assert all(
        fp["size"] == (folder / n).stat().st_size and fp["last_modified"] for fp, n in zip(fps, COGS, strict=True)
    )
    assert all("mtime_ns" not in fp for fp in fps)

    local = engine.index_many([folder / n for n in COGS], "local", params)
    assert [m["n_tiles"] for m in remote["members"]] == [m["n_tiles"] for m in local["members"]]
    for r, lo in zip(remote["members"], local["members"], strict=True):  # same pixels -> same embeddings
        a, b = engine.store(r["store_id"]), engine.store(lo["store_id"])
        np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
        np.testing.assert_array_equal(a.windows, b.windows)
    for q in QUERIES:
        got = engine.search(q, catalog="remote", k=30)["results"]
        ref = engine.search(q, catalog="local", k=30)["results"]
        assert [(r["raster"].rsplit("/", 1)[-1], r["tile_id"], r["score"]) for r in got] == [
            (r["raster"].rsplit("/", 1)[-1], r["tile_id"], r["score"]) for r in ref
        ]
    both = engine.search("farmland", catalog="remote", k=200)["results"]
    assert {r["raster"] for r in both} == {server.url + n for n in COGS}  # tiles of both COGs ranked together

    # the server replaces a file: the remote store is stale (size / Last-Modified changed)
    (folder / COGS[0]).write_bytes((shared / "rasters" / COGS[1]).read_bytes())
    remote_mod._CACHE.clear()  # the staleness check asks the server again after FINGERPRINT_TTL_S
    assert current_fingerprint(server.url + COGS[0]) != fps[0]
    with pytest.raises(Conflict, match="stale"):
        engine.search("farmland", catalog="remote", k=5)

    # the server goes away: the indexed embeddings stay searchable (unreachable is not stale)
    server.shutdown()
    server.server_close()
    remote_mod._CACHE.clear()
    offline = engine.search("farmland", catalog="remote", k=200)["results"]
    assert {r["raster"] for r in offline} == {server.url + n for n in COGS}


def test_remote_errors_are_one_line(engine, served, tmp_path, capsys, cache):
    server, _ = served
    stac = tmp_path / "items.json"
    stac.write_text(json.dumps(_stac([server.url + COGS[0], server.url + "missing.tif"])))
    with pytest.raises(NotFound, match=r"^remote raster not found \(HTTP 404\): http://127\.0\.0\.1:\d+/missing\.tif$"):
        engine.index_many([stac], "broken", IndexParams(tile=128))
    assert engine.catalogs() == []
    assert main(["index-many", str(stac), "--catalog", "broken", "--tile", "128"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("index-many: ")]  # progress
    assert len(err) == 1 and "HTTP 404" in err[0] and err[0].endswith("/missing.tif"), err

    s3 = tmp_path / "s3.json"
    s3.write_text(json.dumps(_stac(["s3://bucket/scene.tif"])))
    with pytest.raises(BadInput, match=r"only http:// and https:// URLs are supported, not s3://"):
        resolve_sources([s3])
    assert main(["index-many", str(s3), "--catalog", "s3"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only http:// and https://" in err, err
