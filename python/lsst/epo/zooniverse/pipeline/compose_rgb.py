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

import collections
import math
from collections.abc import Mapping, Sequence

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

from ..formats.rgb_collection import FRAME_BAND_PATTERN, METADATA_POLICIES, RgbCollection
from ..formats.stamps import Stamps
from .config_errors import ConfigValueError
from .orientation import orient_picture, orient_to_north_up
from .stretch import StretchConfig
from .stretch_parameters import STRETCH_FUNCTIONS, stretch_parameters
from .stretch_sky import sample_stride, sky_black_levels, uses_sky_black

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

    stamps = cT.Input(
        doc="Postage stamps of every band of the patch.",
        name="zooniverse_stamps",
        storageClass="ZooniverseStamps",
        dimensions=("skymap", "tract", "patch", "band"),
        multiple=True,
        minimum=0,
        deferLoad=True,  # Read without the variance planes (runQuantum).
    )
    targets_patch = cT.Input(
        doc="Catalog rows of the patch, so that rows without stamps are reported too.",
        name="zooniverse_targets_patch",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract", "patch"),
    )
    rgb = cT.Output(
        doc="RGB pictures of the patch's objects, stored as a ZIP of PNG.",
        name="zooniverse_rgb",
        storageClass="ZooniverseRgb",
        dimensions=("skymap", "tract", "patch"),
    )
    rgb_report = cT.Output(
        doc="One row per catalog row of the patch: its picture, or why there is none.",
        name="zooniverse_rgb_report",
        storageClass="ArrowAstropy",
        dimensions=("skymap", "tract", "patch"),
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
        frames: list[dict[str, np.ndarray]] = []
        orientation = None
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
        black = self._patch_black(stamps, used, weights, empty, fill, by_id, object_ids, bad_bits)
        for k in range(n_rows):
            object_id = object_ids[k]
            band_stamps = [by_id[b].get(object_id) for b in used]
            skip, coverage = self._skip_reason(stamps, used, empty, fill, band_stamps)
            coverage_column[k] = coverage
            if skip is not None:
                status[k], detail[k] = skip
                continue
            planes, bad = self._planes(band_stamps, used, bad_bits)
            channels = self._mix(planes, weights)
            rgb = config.stretch.apply(channels[0], channels[1], channels[2], black)
            if all(b is not None for b in bad):
                # Bad in every band (no data): black, whatever the black point.
                rgb[np.logical_and.reduce(bad)] = 0
            reference = band_stamps[0]
            if orientation is None:
                if config.orientation == "north_up" and reference.wcs is not None:
                    orientation = orient_to_north_up(reference.wcs)
                else:
                    orientation = (0, False)
            picture, picture_wcs = orient_picture(rgb, reference.wcs, *orientation, config.output_size)
            images.append(picture)
            if config.band_frames:
                frames.append(self._band_frames(planes, bad, used, weights, channels, orientation, black))
            wcs_list.append(picture_wcs)
            index_rows.append(
                {
                    "object_id": object_id,
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

    def _planes(self, band_stamps, used, bad_bits) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """One object's stamps, background subtracted, with bad and
        non-finite pixels set to zero; and each band's bad pixels (`None`
        where it has none).
        """
        planes, bad_pixels = [], []
        for stamp, band, bits in zip(band_stamps, used, bad_bits):
            image = stamp.image - np.float32(self._background(band))
            bad = ~np.isfinite(image)
            if stamp.mask is not None and bits:
                bad |= (stamp.mask & bits) != 0
            np.copyto(image, np.float32(0), where=bad)
            planes.append(image)
            bad_pixels.append(bad if bad.any() else None)
        return planes, bad_pixels

    def _band_frames(
        self,
        planes: Sequence[np.ndarray],
        bad: Sequence[np.ndarray | None],
        used: Sequence[str],
        weights: np.ndarray,
        channels: Sequence[np.ndarray],
        orientation: tuple[int, bool],
        black: list[float | None] | None,
    ) -> dict[str, np.ndarray]:
        """Grey frames of one picture, band -> ``(H, W)`` uint8, oriented
        and resized like the picture (see ``band_frames``).
        """
        stretch = self.config.stretch
        # The levels the RGB picture was stretched with.
        kwargs = stretch_parameters(stretch, tuple(np.asarray(c) for c in channels), black)
        frames = {}
        for j, band in enumerate(used):
            # The band with its gain in the channel it weighs most in (red
            # first on a tie): alone in that channel, it is that channel.
            channel = int(np.argmax(weights[j]))
            plane = _gained(planes[j], float(weights[j, channel]))
            if kwargs is None:  # No finite pixel: the picture is black, and so is the frame.
                grey = np.zeros(plane.shape, dtype=np.uint8)
            else:
                # The level of that channel.
                band_kwargs = dict(kwargs)
                for name in ("minimum", "maximum"):
                    if name in band_kwargs:
                        levels = list(np.atleast_1d(band_kwargs[name]))
                        band_kwargs[name] = [float(levels[channel if len(levels) == 3 else 0])]
                rgb = STRETCH_FUNCTIONS[stretch.algorithm](plane, plane, plane, **band_kwargs)
                # Equal channels give grey (to rounding, for perceptual):
                # their rounded mean.
                grey = ((rgb.astype(np.uint16).sum(axis=2) + 1) // 3).astype(np.uint8)
                if bad[j] is not None:
                    grey[bad[j]] = 0
            # Through the picture's own orientation and resampling, so that
            # frame pixels line up exactly with the picture's.
            frame, _ = orient_picture(
                np.repeat(grey[:, :, None], 3, axis=2), None, *orientation, self.config.output_size
            )
            frames[band] = np.ascontiguousarray(frame[:, :, 0])
        return frames

    def _patch_black(self, stamps, used, weights, empty, fill, by_id, object_ids, bad_bits):
        """Black level of each channel over all the patch's pictures
        (``scaling="global"`` with the sky black point), else `None`.
        """
        stretch = self.config.stretch
        if stretch.scaling != "global" or not uses_sky_black(stretch) or not used:
            return None
        samples: list[list[np.ndarray]] = [[], [], []]
        stride = None
        # With no channel summing bands, a channel pixel depends on the same
        # pixel of the stamps only: the sampled pixels alone are mixed.
        pixelwise = bool(((weights > 0).sum(axis=0) <= 1).all())
        for object_id in object_ids:
            band_stamps = [by_id[b].get(object_id) for b in used]
            if self._skip_reason(stamps, used, empty, fill, band_stamps)[0] is None:
                if stride is None:  # Keep at most about MAX_SKY_SAMPLES pixels per channel.
                    shape = band_stamps[0].image.shape
                    stride = sample_stride(len(object_ids) * math.prod(shape), shape[-1])
                if pixelwise:
                    band_stamps = [
                        _Sampled(s.image.ravel()[::stride], _every(s.mask, stride)) for s in band_stamps
                    ]
                channels = self._mix(self._planes(band_stamps, used, bad_bits)[0], weights)
                for k in range(3):
                    samples[k].append(channels[k] if pixelwise else channels[k].ravel()[::stride])
        if stride is None:
            return None
        return sky_black_levels(stretch, [np.concatenate(s) for s in samples])

    def _mix(self, planes: Sequence[np.ndarray], weights: np.ndarray) -> list[np.ndarray]:
        """Channels of one object's planes (see `_planes`): each the mean
        of weight times plane over the bands that feed it; a channel no
        band feeds is the mean of the others.
        """
        stack = None
        channels: list[np.ndarray | None] = []
        for k in range(3):
            w = weights[:, k]
            fed = np.flatnonzero(w > 0)
            if len(fed) == 1:
                # One band feeds the channel (the usual mapping): its gain
                # times its plane (the plane itself for a gain of 1).
                channels.append(_gained(planes[int(fed[0])], float(w[fed[0]])))
            elif len(fed) > 1:
                if stack is None:
                    stack = np.stack(planes)  # (n_bands, H, W)
                channels.append(np.tensordot((w / len(fed)).astype(np.float32), stack, axes=1))
            else:
                channels.append(None)
        if all(c is not None for c in channels):
            return channels
        mean = np.mean([c for c in channels if c is not None], axis=0).astype(np.float32)
        return [c if c is not None else mean for c in channels]


_Sampled = collections.namedtuple("_Sampled", ["image", "mask"])
"""Every ``stride``-th pixel of a stamp's image and mask (`_patch_black`)."""


def _every(plane: np.ndarray | None, stride: int) -> np.ndarray | None:
    return None if plane is None else plane.ravel()[::stride]


def _gained(plane: np.ndarray, gain: float) -> np.ndarray:
    """Return ``gain`` times ``plane`` (``plane`` itself for a gain of 1)."""
    return plane if gain == 1.0 else plane * np.float32(gain)


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
