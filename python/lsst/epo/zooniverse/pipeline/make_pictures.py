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


"""The ``makePictures`` task: ``extractStamps`` and ``composeRgb`` of one
patch fused into one quantum, the pictures made from the stamps in memory.
"""

from __future__ import annotations

__all__ = [
    "MakeZooniversePicturesConfig",
    "MakeZooniversePicturesConnections",
    "MakeZooniversePicturesTask",
    "stamps_as_read",
]

import functools
from collections.abc import Mapping

import astropy.wcs
from astropy.io import fits
from astropy.table import Table

from lsst.pex.config import ConfigurableField, Field
from lsst.pipe.base import NoWorkFound, PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from ..butler.dataset_types import DEEP_COADD, RGB, RGB_REPORT, STAMPS, TARGETS_PATCH
from ..formats.stamps import Stamp, Stamps
from ..formats.stamps_layout import celestial_wcs, set_wcs_factory, shifted_wcs, wcs_factory
from .compose_rgb import ComposeRgbTask
from .extract_stamps import ExtractStampsTask
from .startup_objects import freeze_startup_objects

# Projections whose stamps a reader gives one WCS construction per
# family (`~lsst.epo.zooniverse.formats.stamps_fast.StampWcs`).
ZENITHAL = frozenset({"AZP", "SZP", "TAN", "STG", "SIN", "ARC", "ZPN", "ZEA", "AIR"})


def stored_float(value: float) -> float:
    """Return a float as a FITS card holds it (astropy shortens values
    longer than 20 characters).

    Parameters
    ----------
    value : `float`
        A finite value.

    Returns
    -------
    stored : `float`
        The value a reader of the card gets.
    """
    if len(str(value)) <= 20:
        return value
    return float(fits.Card.fromstring(str(fits.Card("VALUE", value))).value)


def stored_wcs(wcs: astropy.wcs.WCS, width: int, height: int) -> astropy.wcs.WCS:
    """Return a stamp's WCS as a reader of its ``IMAGE`` header gets it.

    Parameters
    ----------
    wcs : `astropy.wcs.WCS`
        The WCS of the stamp in memory.
    width, height : `int`
        The stamp's size (``NAXIS1``, ``NAXIS2``).

    Returns
    -------
    stored : `astropy.wcs.WCS`
        ``WCS(header)`` of the cards the Stamps writer writes
        (``wcs.to_header(relax=True)`` without ``WCSAXES``).
    """
    header = wcs.to_header(relax=True)
    header.remove("WCSAXES", ignore_missing=True)
    text = "".join(str(card) for card in header.cards)
    parsed = fits.Header([("NAXIS", 2), ("NAXIS1", width), ("NAXIS2", height)])
    parsed.extend(fits.Header.fromstring(text).cards)
    return celestial_wcs(parsed)


def stamps_as_read(stamps: Stamps) -> Stamps:
    """Return stamps as composeRgb reads them back from their file.

    Parameters
    ----------
    stamps : `Stamps`
        Stamps as `ExtractStampsTask.run` makes them (not changed).

    Returns
    -------
    read : `Stamps`
        The same pixels (shared, not copied), without the variance
        planes, with the coverage and the WCS a reader of the written file
        gets: FITS cards round floats to 20 characters, and the WCS goes
        through its header text.

    Notes
    -----
    Stamps of one size whose WCS is the shifted WCS of one zenithal parent
    without SIP share one parse, shifted to each stamp's CRPIX, as the
    reader does (`~lsst.epo.zooniverse.formats.stamps_fast.StampWcs`);
    other WCSs are parsed per stamp when first asked for.
    """
    families: dict[tuple, astropy.wcs.WCS] = {}
    result = []
    for stamp in stamps:
        copy = Stamp(
            image=stamp.image,
            mask=stamp.mask if stamps.use_mask else None,
            x0=stamp.x0,
            y0=stamp.y0,
            ra=stamp.ra,
            dec=stamp.dec,
            object_id=stamp.object_id,
            coverage=stored_float(stamp.coverage),
            edge_distance=stamp.edge_distance,
        )
        make = wcs_factory(stamp)
        if type(make) is functools.partial and make.func is shifted_wcs and _zenithal(make.args[0]):
            parent, crpix = make.args
            key = (id(parent), stamp.width, stamp.height)
            base = families.get(key)
            if base is None:
                base = families[key] = stored_wcs(make(), stamp.width, stamp.height)
            set_wcs_factory(copy, functools.partial(shifted_wcs, base, [float(c) for c in crpix]))
        elif make is not None or stamp.wcs is not None:
            set_wcs_factory(copy, functools.partial(_stored_stamp_wcs, stamp))
        result.append(copy)
    read = Stamps(
        result,
        metadata=stamps.metadata,
        mask_planes=stamps.mask_planes,
        use_mask=stamps.use_mask,
        use_variance=False,
    )
    return read


def _zenithal(wcs: astropy.wcs.WCS) -> bool:
    """Whether a reader parses a stamp with this WCS once per family."""
    ctypes = list(wcs.wcs.ctype)
    return wcs.sip is None and len(ctypes) == 2 and all(len(c) == 8 and c[5:] in ZENITHAL for c in ctypes)


def _stored_stamp_wcs(stamp: Stamp) -> astropy.wcs.WCS:
    """`stored_wcs` of one stamp (made when first asked for)."""
    return stored_wcs(stamp.wcs, stamp.width, stamp.height)


class MakeZooniversePicturesConnections(PipelineTaskConnections, dimensions=("skymap", "tract", "patch")):
    """Connections of `MakeZooniversePicturesTask`: the inputs of
    extractStamps (every band at once) and the outputs of extractStamps
    and composeRgb, with the same dataset types.
    """

    targets_patch = TARGETS_PATCH.connection(
        cT.Input,
        doc="Catalog rows inside the patch (output of shardCatalog).",
    )
    coadds = DEEP_COADD.connection(
        cT.PrerequisiteInput,
        doc=(
            "The deep coadd of every band of the patch, each read once. A prerequisite (coadds are made "
            "before this pipeline runs) so that shardCatalog may look up its neighbours' coadds too "
            "(fallback_to_neighbour): pipe_base refuses a dataset type that is a prerequisite of one "
            "task and a regular input of another."
        ),
        multiple=True,
        minimum=0,  # A patch without coadds still gets its report (status no_coadd), as in composeRgb.
        deferLoad=True,  # Read one band at a time, in band order (runQuantum).
    )
    stamps = STAMPS.connection(
        cT.Output,
        doc="One postage stamp per catalog row and band, in the lsst.meas.algorithms Stamps layout.",
        multiple=True,
    )
    rgb = RGB.connection(
        cT.Output,
        doc="RGB pictures of the patch's objects, stored as a ZIP of PNG.",
    )
    rgb_report = RGB_REPORT.connection(
        cT.Output,
        doc="One row per catalog row of the patch: its picture, or why there is none.",
    )

    def __init__(self, *, config=None):
        super().__init__(config=config)
        if config is not None and not config.write_stamps:
            del self.stamps


class MakeZooniversePicturesConfig(PipelineTaskConfig, pipelineConnections=MakeZooniversePicturesConnections):
    """Configuration of `MakeZooniversePicturesTask`.

    Notes
    -----
    The two subtask configs are those of the three-task pipeline's tasks,
    under their labels: ``-c extractStamps:stamp_size=61`` becomes
    ``-c makePictures:extractStamps.stamp_size=61`` and
    ``-c composeRgb:stretch.Q=2`` becomes
    ``-c makePictures:composeRgb.stretch.Q=2``.  A composeRgb override
    file (``-C composeRgb:file.py``) is loaded by a one-line file
    ``config.composeRgb.load("file.py")`` given as
    ``-C makePictures:that.py``.
    """

    extractStamps = ConfigurableField(
        target=ExtractStampsTask,
        doc="How stamps are cut (the config of the three-task pipeline's extractStamps).",
    )
    composeRgb = ConfigurableField(
        target=ComposeRgbTask,
        doc="How pictures are made (the config of the three-task pipeline's composeRgb).",
    )
    write_stamps = Field[bool](
        doc=(
            "Write the zooniverse_stamps dataset of every band (the data contract). False makes the "
            "pictures and their report only, as a script that keeps no stamps would; the pictures are "
            "the same bytes either way."
        ),
        default=True,
    )


class MakeZooniversePicturesTask(PipelineTask):
    """Cut every band's stamps of a patch and compose its RGB pictures in
    one quantum.

    Notes
    -----
    The outputs are those of ``extractStamps`` (one ``zooniverse_stamps``
    per band) and ``composeRgb`` (``zooniverse_rgb``,
    ``zooniverse_rgb_report``), byte for byte, made by their own ``run``
    methods (subtasks ``extractStamps`` and ``composeRgb``); the pictures
    are composed from the stamps in memory instead of the files read back,
    and one quantum per patch replaces the 1 + n_bands quanta of the two
    tasks.  The memory of a quantum is every band's coadd at once (stamps
    inside the coadd are views of it) plus the padded stamps.
    """

    ConfigClass = MakeZooniversePicturesConfig
    _DefaultName = "makePictures"
    config: MakeZooniversePicturesConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.makeSubtask("extractStamps")
        self.makeSubtask("composeRgb")

    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        # Docstring inherited.
        freeze_startup_objects()
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        handles = sorted(inputs["coadds"], key=lambda handle: handle.dataId["band"])
        outputs = self.run(
            targets_patch=inputs["targets_patch"],
            coadds={handle.dataId["band"]: handle.get() for handle in handles},
            skymap=data_id["skymap"],
            tract=data_id["tract"],
            patch=data_id["patch"],
        )
        if self.config.write_stamps:
            stamp_refs = {ref.dataId["band"]: ref for ref in outputRefs.stamps}
            for band, stamps in outputs.stamps.items():
                butlerQC.put(stamps, stamp_refs[band])
        butlerQC.put(outputs.rgb, outputRefs.rgb)
        butlerQC.put(outputs.rgb_report, outputRefs.rgb_report)

    @timeMethod
    def run(self, *, targets_patch: Table, coadds: Mapping, skymap: str, tract: int, patch: int) -> Struct:
        """Cut the stamps of every band, then compose the pictures from
        them.

        Parameters
        ----------
        targets_patch : `astropy.table.Table`
            Catalog rows of the patch (output of shardCatalog).
        coadds : `~collections.abc.Mapping` [`str`, `lsst.images.MaskedImage`]
            The patch's coadd of each band, by band (may be empty).
        skymap : `str`
            Sky map name.
        tract, patch : `int`
            The patch.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``stamps``
                Stamps by band (`dict` [`str`, `Stamps`]), as
                `ExtractStampsTask.run` makes them.
            ``rgb``, ``rgb_report``
                As `ComposeRgbTask.run` makes them.

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            Raised if the catalog has no rows.
        """
        if not len(targets_patch):
            raise NoWorkFound("No catalog rows in this patch.")
        stamps = {
            band: self.extractStamps.run(
                targets_patch=targets_patch, coadd=coadd, skymap=skymap, tract=tract, patch=patch, band=band
            ).stamps
            for band, coadd in coadds.items()
        }
        # Composed from the stamps as composeRgb would read them back from
        # their files (same pixels; coverage and WCS as the files hold
        # them), so that the pictures are those of the three-task pipeline.
        pictures = self.composeRgb.run(
            stamps={band: stamps_as_read(band_stamps) for band, band_stamps in stamps.items()},
            targets_patch=targets_patch,
            skymap=skymap,
            tract=tract,
            patch=patch,
        )
        return Struct(stamps=stamps, rgb=pictures.rgb, rgb_report=pictures.rgb_report)
