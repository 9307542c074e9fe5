"""Pure tiling grid: pixel windows over a raster, last row/column shifted to the edge, footprints."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from engine.errors import BadInput


@dataclass(frozen=True)
class GridParams:
    """Grid parameters in *output* pixels (``tile``/``stride``) and the source-to-output ``scale``.

    ``scale`` > 1 means each output pixel covers ``scale`` source pixels (gsd resampling).
    """

    tile: int = 256
    stride: int | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= int(self.tile) <= 8192:
            raise BadInput(f"tile must be between 1 and 8192 px, got {self.tile}")
        if self.stride is not None and not 1 <= int(self.stride) <= 8192:
            raise BadInput(f"stride must be between 1 and 8192 px, got {self.stride}")
        if not (math.isfinite(self.scale) and 1e-3 <= self.scale <= 1e3):
            raise BadInput(f"resampling scale out of range: {self.scale}")

    @property
    def step(self) -> int:
        return int(self.stride or self.tile)

    @property
    def source_tile(self) -> int:
        """Tile size in source pixels."""
        return max(1, round(self.tile * self.scale))

    @property
    def source_step(self) -> int:
        """Stride in source pixels."""
        return max(1, round(self.step * self.scale))


@dataclass(frozen=True)
class Window:
    """A pixel window in the source raster, with its grid column and row."""

    index: int
    col: int
    row: int
    x_off: int
    y_off: int
    width: int
    height: int


def axis_offsets(size: int, tile: int, step: int) -> list[int]:
    """Window offsets along one axis: regular steps, the last one shifted so it ends at the edge.

    A raster axis shorter than one tile gives a single offset 0 (the tile is padded at read time).
    """
    if size <= 0:
        raise BadInput(f"raster size must be positive, got {size}")
    if size <= tile:
        return [0]
    offsets = list(range(0, size - tile + 1, step))
    if offsets[-1] + tile < size:
        offsets.append(size - tile)
    return offsets


@dataclass(frozen=True)
class Grid:
    """The tiling grid of one raster."""

    width: int
    height: int
    params: GridParams

    def __post_init__(self) -> None:
        object.__setattr__(self, "_xs", axis_offsets(self.width, self.params.source_tile, self.params.source_step))
        object.__setattr__(self, "_ys", axis_offsets(self.height, self.params.source_tile, self.params.source_step))

    @property
    def n_cols(self) -> int:
        return len(self._xs)  # type: ignore[attr-defined]

    @property
    def n_rows(self) -> int:
        return len(self._ys)  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return self.n_cols * self.n_rows

    def window(self, index: int) -> Window:
        """The window with row-major ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        row, col = divmod(index, self.n_cols)
        x, y = self._xs[col], self._ys[row]  # type: ignore[attr-defined]
        t = self.params.source_tile
        return Window(index, col, row, x, y, min(t, self.width - x), min(t, self.height - y))

    def windows(self, start: int = 0, stop: int | None = None) -> Iterator[Window]:
        """Windows ``start``..``stop`` in row-major order, generated lazily."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(start, stop):
            yield self.window(i)

    def output_shape(self, window: Window) -> tuple[int, int]:
        """(height, width) of a window after resampling, before padding to ``tile``."""
        s = self.params.scale
        return (
            max(1, min(self.params.tile, round(window.height / s))),
            max(1, min(self.params.tile, round(window.width / s))),
        )


def window_corners(transform: tuple[float, ...], x_off: float, y_off: float, w: float, h: float):
    """Four corners (x, y) of a pixel window in CRS coordinates under affine ``transform`` (a, b, c, d, e, f)."""
    a, b, c, d, e, f = transform[:6]
    pts = [(x_off, y_off), (x_off + w, y_off), (x_off + w, y_off + h), (x_off, y_off + h)]
    return [(a * px + b * py + c, d * px + e * py + f) for px, py in pts]
