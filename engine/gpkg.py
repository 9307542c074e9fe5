"""Minimal GeoPackage (OGC 12-128r18) polygon-layer writer on the standard library's sqlite3.

Writes the required metadata tables, one feature table and standard GeoPackage geometry blobs
(``GP`` header with an XY envelope + little-endian WKB). GDAL/OGR and QGIS 3.22 open the result.
"""

from __future__ import annotations

import os
import re
import sqlite3
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import shapely

GPKG_APPLICATION_ID = 0x47504B47
GPKG_USER_VERSION = 10200
CUSTOM_SRS_ID = 100000

_WGS84_WKT = (
    'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],'
    'AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,'
    'AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]'
)

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    """A validated SQL identifier (layer and column names are ours, never user input; checked anyway)."""
    if not _IDENT.match(name):
        raise ValueError(f"invalid identifier: {name!r}")
    return name


def geometry_blob(geom, srs_id: int) -> bytes:
    """GeoPackage geometry blob: magic, version 0, flags (little endian, XY envelope), srs_id, envelope, WKB."""
    minx, miny, maxx, maxy = geom.bounds
    header = b"GP" + bytes([0, 0b00000011]) + struct.pack("<i4d", srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geom, byte_order=1)


def srs_row(crs_wkt: str, authid: str) -> tuple[int, str, str, int, str]:
    """(srs_id, name, organization, org_id, definition) for a raster CRS; -1 (undefined) without one."""
    if not crs_wkt:
        return -1, "Undefined cartesian SRS", "NONE", -1, "undefined"
    if authid.upper().startswith("EPSG:"):
        code = int(authid.split(":", 1)[1])
        return code, authid, "EPSG", code, crs_wkt
    return CUSTOM_SRS_ID, "custom", "NONE", CUSTOM_SRS_ID, crs_wkt


def write_layer(
    path: str | os.PathLike,
    layer: str,
    columns: Sequence[tuple[str, type]],
    rows: Iterable[Sequence],
    geometries: Iterable,
    crs_wkt: str,
    authid: str,
) -> None:
    """Write a new GeoPackage at ``path`` with one POLYGON layer (``rows`` align with ``geometries``)."""
    p = Path(path)
    layer = _ident(layer)
    columns = [(_ident(n), t) for n, t in columns]
    if p.exists():
        p.unlink()
    srs_id, srs_name, org, org_id, definition = srs_row(crs_wkt, authid)
    con = sqlite3.connect(p)
    try:
        cur = con.cursor()
        cur.execute(f"PRAGMA application_id = {GPKG_APPLICATION_ID}")
        cur.execute(f"PRAGMA user_version = {GPKG_USER_VERSION}")
        cur.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (
              srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
              organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
            CREATE TABLE gpkg_contents (
              table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
              description TEXT DEFAULT '',
              last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
              min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
              CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (
              table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
              srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
              CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
              CONSTRAINT uk_gc_table_name UNIQUE (table_name),
              CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
              CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
            """
        )
        base = [
            ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian coordinate reference system"),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
            ("WGS 84 geodetic", 4326, "EPSG", 4326, _WGS84_WKT, "longitude/latitude coordinates in decimal degrees"),
        ]
        if srs_id not in (-1, 0, 4326):
            base.append((srs_name, srs_id, org, org_id, definition, ""))
        cur.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)", base)
        coldefs = ", ".join(f'"{name}" {_SQL_TYPES[typ]}' for name, typ in columns)
        cur.execute(f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POLYGON, {coldefs})')
        names = ", ".join(f'"{n}"' for n, _ in columns)
        marks = ", ".join("?" for _ in range(len(columns) + 1))
        minx = miny = float("inf")
        maxx = maxy = float("-inf")
        batch = []
        for row, geom in zip(rows, geometries, strict=True):
            b = geom.bounds
            minx, miny, maxx, maxy = min(minx, b[0]), min(miny, b[1]), max(maxx, b[2]), max(maxy, b[3])
            batch.append((geometry_blob(geom, srs_id), *row))
            if len(batch) >= 10_000:
                cur.executemany(f'INSERT INTO "{layer}" (geom, {names}) VALUES ({marks})', batch)  # nosec B608
                batch.clear()
        if batch:
            cur.executemany(f'INSERT INTO "{layer}" (geom, {names}) VALUES ({marks})', batch)  # nosec B608
        extent = (minx, miny, maxx, maxy) if minx != float("inf") else (None, None, None, None)
        cur.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x, max_y, srs_id)"
            " VALUES (?, 'features', ?, ?, ?, ?, ?, ?)",
            (layer, layer, *extent, srs_id),
        )
        cur.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'POLYGON', ?, 0, 0)", (layer, srs_id))
        con.commit()
    finally:
        con.close()


def read_columns(path: str | os.PathLike, layer: str, columns: Sequence[str], order_by: str) -> list[tuple]:
    """Read plain attribute columns of a layer (read-only connection)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro"
    con = sqlite3.connect(uri, uri=True)
    try:
        cols = ", ".join(f'"{_ident(c)}"' for c in columns)
        sql = f'SELECT {cols} FROM "{_ident(layer)}" ORDER BY "{_ident(order_by)}"'  # nosec B608
        return con.execute(sql).fetchall()
    finally:
        con.close()
