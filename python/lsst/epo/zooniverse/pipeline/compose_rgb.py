# This file is part of epo_zooniverse.
#
# Developed for the LSST Data Management System.
# This product includes software developed by the LSST Project
# (https://www.lsst.org).
# See the COPYRIGHT file at the top-level directory of this distribution
# for details of code ownership.
#
# This program is free software: you can redistribute it and/or modify
# it under the terms of the GNU General Public License as published by
# the Free Software Foundation, either version 3 of the License, or
# (at your option) any later version.
#
# This program is distributed in the hope that it will be useful,
# but WITHOUT ANY WARRANTY; without even the implied warranty of
# MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
# GNU General Public License for more details.
#
# You should have received a copy of the GNU General Public License
# along with this program.  If not, see <https://www.gnu.org/licenses/>.


"""The ``composeRgb`` task: RGB pictures of every catalog object in a patch."""

from __future__ import annotations

__all__ = [
    "ChannelConfig",
    "ComposeRgbConfig",
    "ComposeRgbConnections",
    "ComposeRgbTask",
    "orient_to_north_up",
]

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from lsst.pex.config import (
    ChoiceField,
    Config,
    ConfigDictField,
    ConfigField,
    Field,
    ListField,
)
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..butler.dataset_types import RGB, RGB_REPORT, STAMPS, TARGETS_PATCH
from ..formats.rgb_collection import FRAME_BAND_PATTERN, METADATA_POLICIES, RgbCollection
from ..formats.stamps import Stamps
from .config_errors import ConfigValueError
from .orientation import orient_picture, orient_pictures, orient_to_north_up, oriented_wcs
from .picture_batch import (
    BATCH_SIZE,
    band_frames,
    batch_stretch,
    mix_channels,
    patch_black_levels,
    stacked_planes,
)
from .startup_objects import freeze_startup_objects
from .stretch import StretchConfig

CHANNELS = ("red", "green", "blue")

REPORT_REASONS = {
    "ok": "picture made",
    "no_coadd": "the patch has no coadd in any band this pipeline maps to a colour",
    "missing_band": "a colour channel has no coadd for this patch",
    "no_data": "no coadd pixel with data at the object's position",
    "low_coverage": "too few stamp pixels with data",
}
"""Status codes of the ``zooniverse_rgb_report`` rows."""


class ChannelConfig(Config):
    """How one band contributes to the red, green and blue channels."""

    red = Field[float](doc="Weight of this band in the red channel.", default=0.0)
    green = Field[float](doc="Weight of this band in the green channel.", default=0.0)
    blue = Field[float](doc="Weight of this band in the blue channel.", default=0.0)
    background = Field[float](
        doc="Value subtracted from this band before mixing (e.g. a sky pedestal), in the coadd's units.",
        default=0.0,
    )

    def validate(self):
        super().validate()
        weights = [self.red, self.green, self.blue]
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) == 0:
            raise ConfigValueError(
                ChannelConfig.red, self, weights, "red, green, blue weights finite, >= 0 and not all zero"
            )
        if not math.isfinite(self.background):
            raise ConfigValueError(ChannelConfig.background, self, self.background, "a finite number")


class ComposeRgbConnections(PipelineTaskConnections, dimensions=("skymap", "tract", "patch")):
    """Connections of `ComposeRgbTask`."""

    stamps = STAMPS.connection(
        cT.Input,
        doc="Postage stamps of every band of the patch.",
        multiple=True,
        minimum=0,
        deferLoad=True,  # Read without the variance planes (runQuantum).
    )
    targets_patch = TARGETS_PATCH.connection(
        cT.Input,
        doc="Catalog rows of the patch, so that rows without stamps are reported too.",
    )
    rgb = RGB.connection(
        cT.Output,
        doc="RGB pictures of the patch's objects, stored as a ZIP of PNG.",
    )
    rgb_report = RGB_REPORT.connection(
        cT.Output,
        doc="One row per catalog row of the patch: its picture, or why there is none.",
    )


class ComposeRgbConfig(PipelineTaskConfig, pipelineConnections=ComposeRgbConnections):
    """Configuration of `ComposeRgbTask`."""

    channels = ConfigDictField(
        doc="Band name -> its weights in the red, green and blue channels (and a background to "
        "subtract first).  A weight is a gain: a channel is the mean, over the bands available for "
        "the patch that feed it, of weight times band (one band with weight 1.3 gives 1.3 times that "
        "band; two bands with weight 1 give their mean).  Bands not listed are ignored.",
        keytype=str,
        itemtype=ChannelConfig,
        default={},
    )
    stretch = ConfigField(dtype=StretchConfig, doc="How channel values become 0-255 (see StretchConfig).")
    missing_band_policy = ChoiceField[str](
        doc="What to do when a colour channel has no coadd for the patch.",
        allowed={
            "skip": "make no picture; report each object with the reason 'missing_band'",
            "fill": "fill the empty channel with the mean of the others (the picture is then recorded "
            "with the bands it really has)",
        },
        default="skip",
    )
    single_band_policy = ChoiceField[str](
        doc="What to do when the patch has stamps of one band only and that band, as mapped in "
        "'channels', leaves a colour channel empty (or is not mapped at all).",
        allowed={
            "grey": "make grey pictures of that band: it feeds all three channels with its largest "
            "weight in 'channels' (1 if not mapped) and its background (0 if not mapped)",
            "channels": "use the band only in the channels it is mapped to; missing_band_policy decides "
            "about the others",
        },
        default="grey",
    )
    min_coverage = Field[float](
        doc="Smallest fraction of stamp pixels with data (in every band used) for a picture to be made.",
        default=0.5,
    )
    output_size = Field[int](
        doc="Side of the output pictures in pixels (square stamps are resampled with Lanczos); 0 keeps "
        "the stamp size.",
        default=0,
    )
    orientation = ChoiceField[str](
        doc="Orientation of the pictures.",
        allowed={
            "north_up": "north up and east left: the pixel grid is flipped and turned by multiples of "
            "90 degrees to the orientation nearest to that (exact for a standard sky map WCS)",
            "pixel": "the coadd pixel grid as it is, with pixel y increasing upwards (FITS viewers' default)",
        },
        default="north_up",
    )
    metadata_policy = ChoiceField[str](
        doc="What metadata each PNG carries (the ZIP's index.csv always has everything).",
        allowed={p: p for p in METADATA_POLICIES},
        default="full",
    )
    bad_mask_planes = ListField[str](
        doc="Mask planes whose pixels are bad: set to zero before mixing; a pixel bad in every band "
        "used is shown black in the picture, and a band's bad pixels are black in its band frame.",
        default=["NO_DATA"],
    )
    band_frames = Field[bool](
        doc="Also make one grey 8-bit frame per band used (in band order) for every picture, for "
        "multi-frame (flipbook) subjects that show the RGB picture then each band.  A frame is its band "
        "alone (background subtracted, bad pixels zeroed, times its weight in the channel it weighs "
        "most in) stretched like the RGB picture: the same "
        "algorithm and the same levels (with scaling='per_image', those measured on the picture's "
        "channels), the band's image given as all three channels with the black/white level of the "
        "channel the band weighs most in, reduced to grey (for lupton the Lupton stretch of the band's "
        "own intensity: in the linear part of the stretch a source seen only in this band has the same "
        "value in its frame as in its RGB channel; for asinh and linear a band alone in its channel "
        "gives exactly that channel).  Frames are oriented and resized exactly like the picture, so "
        "their pixels line up with it and share its WCS.  Band names must match [A-Za-z0-9_-]{1,16}.",
        default=False,
    )

    def setDefaults(self):
        super().setDefaults()
        # Rubin's own choice (PrettyPictureConfig): i red, r green, g blue.
        self.channels["i"] = ChannelConfig(red=1.0)
        self.channels["r"] = ChannelConfig(green=1.0)
        self.channels["g"] = ChannelConfig(blue=1.0)
        # Deep coadds are in nJy; a linear range of 400 nJy with Q=8 shows
        # the sky noise of a deep coadd without burning stars out.
        self.stretch.stretch = 400.0

    def validate(self):
        super().validate()
        if not self.channels:
            raise ConfigValueError(ComposeRgbConfig.channels, self, {}, "at least one band")
        for channel in CHANNELS:
            if not any(getattr(c, channel) > 0 for c in self.channels.values()):
                raise ConfigValueError(
                    ComposeRgbConfig.channels, self, sorted(self.channels), f"a band with {channel} > 0"
                )
        if not (0.0 <= self.min_coverage <= 1.0):
            raise ConfigValueError(
                ComposeRgbConfig.min_coverage, self, self.min_coverage, "a number in [0, 1]"
            )
        if not (self.output_size == 0 or 8 <= self.output_size <= 8192):
            raise ConfigValueError(ComposeRgbConfig.output_size, self, self.output_size, "0 or in [8, 8192]")
        if self.band_frames:
            bad = sorted(b for b in self.channels if not FRAME_BAND_PATTERN.fullmatch(b))
            if bad:
                raise ConfigValueError(
                    ComposeRgbConfig.band_frames,
                    self,
                    bad,
                    "band names of 1-16 characters from A-Z a-z 0-9 _ -",
                )


class ComposeRgbTask(PipelineTask):
    """Compose RGB pictures from the stamps of every band of a patch.

    Notes
    -----
    Each band's stamp (background subtracted, ``bad_mask_planes`` pixels
    and NaN set to zero) is mixed into the red, green and blue channels
    with the configured weights (gains): a channel is the mean of weight
    times band over the bands available for the patch that feed it.  A
    patch with stamps of one band only gives grey pictures of it
    (``single_band_policy``).  The channels are stretched to 0-255
    with ``stretch`` (the same numbers for every picture unless
    ``stretch.scaling`` is ``per_image``), turned north up / east left,
    resized if asked, and stored with their WCS as a ZIP of PNG.  Every
    catalog row of the patch gets a line in ``zooniverse_rgb_report``.
    With ``band_frames``, every picture also gets one grey frame per band
    used, aligned pixel for pixel with it (see the field's doc).
    """

    ConfigClass = ComposeRgbConfig
    _DefaultName = "composeRgb"
    config: ComposeRgbConfig

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        freeze_startup_objects()
        inputs = butlerQC.get(inputRefs)
        bands = [ref.dataId["band"] for ref in inputRefs.stamps]
        # Pictures need the image and mask planes only: the variance
        # planes (a third of the file) are skipped, not read.
        stamps = [handle.get(parameters={"use_variance": False}) for handle in inputs["stamps"]]
        data_id = butlerQC.quantum.dataId
        outputs = self.run(
            stamps=dict(zip(bands, stamps)),
            targets_patch=inputs["targets_patch"],
            skymap=data_id["skymap"],
            tract=data_id["tract"],
            patch=data_id["patch"],
        )
        butlerQC.put(outputs, outputRefs)

    def _mixing(self, available: Sequence[str]) -> tuple[list[str], np.ndarray, list[str]]:
        """Bands used, their (n_bands, 3) weights, and empty channels."""
        channels = self.config.channels
        used = sorted(b for b in available if b in channels)
        weights = np.array(
            [[getattr(channels[b], c) for c in CHANNELS] for b in used], dtype=np.float64
        ).reshape(len(used), 3)
        empty = [c for k, c in enumerate(CHANNELS) if not (weights[:, k] > 0).any()]
        if len(available) == 1 and self.config.single_band_policy == "grey" and (empty or not used):
            # One band only: grey pictures of it, with its largest gain.
            band = next(iter(available))
            gain = float(weights.max()) if used else 1.0
            return [band], np.full((1, 3), gain), []
        return used, weights, empty

    def _background(self, band: str) -> float:
        """Return the background subtracted from a band (0 for an unmapped
        band pictured alone in grey).
        """
        channel = self.config.channels.get(band)
        return 0.0 if channel is None else channel.background

    @timeMethod
    def run(
        self, *, stamps: Mapping[str, Stamps], targets_patch: Table, skymap: str, tract: int, patch: int
    ) -> Struct:
        # Over 80 lines with its docstring: one loop over the rows, kept whole.
        """Make one picture per catalog row that has data in the patch.

        Parameters
        ----------
        stamps : `~collections.abc.Mapping` [`str`, `Stamps`]
            Stamps of the patch by band (bands the config does not map are
            ignored).
        targets_patch : `astropy.table.Table`
            Catalog rows of the patch (``row_index``, ``object_id``, ...).
        skymap : `str`
            Sky map name.
        tract, patch : `int`
            The patch.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``rgb``
                The pictures (`RgbCollection`),
                with their band frames if ``band_frames`` is set.
            ``rgb_report``
                One row per catalog row (`astropy.table.Table`): ``row_index``,
                ``object_id``, ``tract``, ``patch``, ``status`` (a key of
                `REPORT_REASONS`), ``detail``, ``coverage``,
                ``edge_distance``, ``file``.
        """
        config = self.config
        used, weights, empty = self._mixing(list(stamps))
        fill = config.missing_band_policy == "fill" and used
        stretch_text = config.stretch.describe()
        bad_bits = [self._bad_bits(stamps[band]) for band in used]
        by_id = {band: {stamp.object_id: stamp for stamp in stamps[band]} for band in used}
        n_rows = len(targets_patch)
        status = np.full(n_rows, "ok", dtype=object)
        detail = np.full(n_rows, "", dtype=object)
        coverage_column = np.full(n_rows, np.nan)
        images, wcs_list, index_rows = [], [], []
        frames: list[dict[str, np.ndarray] | None] = []
        orientation = (0, False)
        # Plain Python values, read once (astropy Row access is slow).
        object_ids = [str(value) for value in targets_patch["object_id"]]
        ras = np.asarray(targets_patch["ra"], dtype=float).tolist()
        decs = np.asarray(targets_patch["dec"], dtype=float).tolist()
        row_indices = np.asarray(targets_patch["row_index"]).tolist()
        edge_distances = (
            np.asarray(targets_patch["edge_distance"], dtype=float).tolist()
            if "edge_distance" in targets_patch.colnames
            else [math.nan] * n_rows
        )
        eligible = []  # (row, its stamp in each band used)
        for k in range(n_rows):
            band_stamps = [by_id[b].get(object_ids[k]) for b in used]
            skip, coverage = self._skip_reason(stamps, used, empty, fill, band_stamps)
            coverage_column[k] = coverage
            if skip is not None:
                status[k], detail[k] = skip
            else:
                eligible.append((k, band_stamps, coverage))
        backgrounds = [self._background(band) for band in used]
        black = patch_black_levels(
            config.stretch, [e[1] for e in eligible], n_rows, weights, backgrounds, bad_bits
        )
        if eligible:
            reference = eligible[0][1][0]
            if config.orientation == "north_up" and reference.wcs is not None:
                orientation = orient_to_north_up(reference.wcs)
        # Batches of consecutive pictures whose stamps have one shape.
        for batch in _batches(eligible):
            pictures = self._compose_batch(
                [e[1] for e in batch], used, weights, backgrounds, bad_bits, orientation, black
            )
            for (k, _, coverage), (picture, picture_wcs, picture_frames) in zip(batch, pictures):
                images.append(picture)
                wcs_list.append(picture_wcs)
                frames.append(picture_frames)
                index_rows.append(
                    {
                        "object_id": object_ids[k],
                        "ra": ras[k],
                        "dec": decs[k],
                        "skymap": skymap,
                        "tract": int(tract),
                        "patch": int(patch),
                        "bands": ",".join(used),
                        "coverage": coverage,
                        "stretch": stretch_text,
                        "row_index": int(row_indices[k]),
                        "edge_distance": edge_distances[k],
                    }
                )
        collection = RgbCollection(
            images,
            _index_table(index_rows),
            wcs=wcs_list,
            metadata_policy=config.metadata_policy,
            frames=frames if config.band_frames else None,
        )
        files = dict(zip(collection.index["object_id"], collection.index["file"]))
        report = _report_table(targets_patch, status, detail, coverage_column, files, tract, patch)
        report.meta = {"skymap": skymap, "tract": int(tract), "patch": int(patch), "bands": ",".join(used)}
        counts = {s: int((status == s).sum()) for s in REPORT_REASONS}
        for key, value in counts.items():
            self.metadata[f"n_{key}"] = value
        self.log.info(
            "Tract %d patch %d: %d pictures from bands %s; skipped %s.",
            tract,
            patch,
            len(images),
            ",".join(used) or "none",
            {k: v for k, v in counts.items() if k != "ok" and v} or "none",
        )
        return Struct(rgb=collection, rgb_report=report)

    def _skip_reason(
        self,
        stamps: Mapping[str, Stamps],
        used: Sequence[str],
        empty: Sequence[str],
        fill: bool,
        band_stamps: Sequence[Stamps | None],
    ) -> tuple[tuple[str, str] | None, float]:
        """Return why one catalog row gets no picture (status and detail,
        or `None`) and its coverage (NaN if not measured).
        """
        if not used:
            return ("no_coadd", f"bands present: {sorted(stamps) or 'none'}"), math.nan
        if empty and not fill:
            return (
                "missing_band",
                f"no coadd for the {', '.join(empty)} channel(s); bands present: {', '.join(used)}",
            ), math.nan
        if any(s is None for s in band_stamps):
            missing = [b for b, s in zip(used, band_stamps) if s is None]
            return ("missing_band", f"no stamp in band(s) {', '.join(missing)}"), math.nan
        coverage = min(s.coverage for s in band_stamps)
        if coverage == 0:
            return ("no_data", "coverage 0 in at least one band"), coverage
        if coverage < self.config.min_coverage:
            return (
                "low_coverage",
                f"coverage {coverage:.3f} < min_coverage {self.config.min_coverage}",
            ), coverage
        return None, coverage

    def _bad_bits(self, stamps: Stamps) -> int:
        """Mask bits of ``bad_mask_planes`` in one band's stamps."""
        bits = 0
        for name in self.config.bad_mask_planes:
            bit = stamps.mask_planes.get(name)
            if bit is not None:
                bits |= 1 << bit
        return bits

    def _compose_batch(
        self,
        band_stamps: Sequence[Sequence[Stamps]],
        used: Sequence[str],
        weights: np.ndarray,
        backgrounds: Sequence[float],
        bad_bits: Sequence[int],
        orientation: tuple[int, bool],
        black: list[float | None] | None,
    ) -> list[tuple[np.ndarray, Any, dict[str, np.ndarray] | None]]:
        """Make the pictures of objects whose stamps have one shape (see
        `picture_batch`): each picture, its WCS and its band frames (or
        `None`).
        """
        config = self.config
        planes, bad = stacked_planes(band_stamps, backgrounds, bad_bits)
        channels = mix_channels(planes, weights, batched=True)
        rgb = batch_stretch(config.stretch, channels, black)
        if rgb is None:
            red, green, blue = channels
            rgb = np.stack([config.stretch.apply(red[i], green[i], blue[i], black) for i in range(len(red))])
        # Bad in every band (no data): black, whatever the black point.
        rgb[np.logical_and.reduce(bad)] = 0
        size = config.output_size
        height, width = rgb.shape[1:3]
        resized = size and (height, width) != (size, size)
        if not resized:
            oriented = orient_pictures(rgb, *orientation)
        # The stamp's own grid (the usual north-up sky map): its WCS as is.
        own_grid = not resized and tuple(orientation) == (0, False)
        results = []
        for i, objects in enumerate(band_stamps):
            wcs = objects[0].wcs
            if resized:
                picture, picture_wcs = orient_picture(rgb[i], wcs, *orientation, size)
            else:
                picture = oriented[i]
                picture_wcs = wcs if own_grid else oriented_wcs(wcs, height, width, *orientation, 0)
            picture_frames = None
            if config.band_frames:
                picture_frames = band_frames(
                    config,
                    [p[i] for p in planes],
                    [b[i] if b[i].any() else None for b in bad],
                    used,
                    weights,
                    [c[i] for c in channels],
                    orientation,
                    black,
                )
            results.append((picture, picture_wcs, picture_frames))
        return results


def _batches(eligible: list) -> Iterator[list]:
    """Split ``(row, band stamps, coverage)`` items into runs of at most
    `BATCH_SIZE` consecutive items whose stamps all have one shape.
    """
    batch: list = []
    batch_shapes = None
    for item in eligible:
        shapes = [stamp.image.shape for stamp in item[1]]
        if batch and (len(batch) == BATCH_SIZE or shapes != batch_shapes):
            yield batch
            batch = []
        batch_shapes = shapes
        batch.append(item)
    if batch:
        yield batch


_INDEX_COLUMNS = [
    "object_id",
    "ra",
    "dec",
    "skymap",
    "tract",
    "patch",
    "bands",
    "coverage",
    "stretch",
    "row_index",
    "edge_distance",
]


def _index_table(index_rows: list[dict]) -> Table:
    """Return the index of the pictures, one row each (see `RgbCollection`)."""
    columns = _INDEX_COLUMNS
    if index_rows:
        return Table(rows=[[r[c] for c in columns] for r in index_rows], names=columns)
    return Table(
        {c: [] for c in columns},
        dtype=[str, float, float, str, int, int, str, float, str, int, float],
    )


def _report_table(
    targets_patch: Table,
    status: np.ndarray,
    detail: np.ndarray,
    coverage: np.ndarray,
    files: Mapping[str, str],
    tract: int,
    patch: int,
) -> Table:
    """Return the ``zooniverse_rgb_report`` rows, one per catalog row."""
    n_rows = len(targets_patch)
    return Table(
        {
            "row_index": np.asarray(targets_patch["row_index"], dtype=np.int64),
            "object_id": np.asarray(targets_patch["object_id"], dtype=str),
            "tract": np.full(n_rows, tract, dtype=np.int64),
            "patch": np.full(n_rows, patch, dtype=np.int64),
            "status": status.astype(str),
            "detail": detail.astype(str),
            "coverage": coverage,
            "edge_distance": (
                np.asarray(targets_patch["edge_distance"], dtype=float)
                if "edge_distance" in targets_patch.colnames
                else np.full(n_rows, np.nan)
            ),
            "file": np.array([files.get(str(i), "") for i in targets_patch["object_id"]], dtype=str),
        }
    )
