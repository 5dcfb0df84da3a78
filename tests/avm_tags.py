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

"""An independent reader of AVM 1.2 spatial tags, for the tests.

It parses the XMP packet with the standard library and applies the AVM 1.2
definitions itself (no pyavm, no astropy.wcs), so a test that agrees with
both this reader and pyavm does not rest on one implementation:

* ``Spatial.Scale`` is (CDELT1, CDELT2) in degrees per pixel; AVM 1.2 says
  the first is negative and the second positive, and readers force those
  signs;
* ``Spatial.Rotation`` is CROTA2, the angle of the image's y axis east of
  north, in degrees;
* ``Spatial.ReferencePixel`` is FITS CRPIX (1-based, (1, 1) at the bottom
  left), ``Spatial.ReferenceDimension`` the (width, height) it refers to;
* CD = [[c1 cos r, -c2 sin r], [c1 sin r, c2 cos r]] (Calabretta &
  Greisen 2002, A&A 395, 1077, eq. 188), and the gnomonic (TAN)
  projection of Calabretta & Greisen 2002 §5.1.3.

Sources: the AVM 1.2 standard (https://www.virtualastronomy.org/avm_metadata.php)
and Calabretta & Greisen 2002 (https://doi.org/10.1051/0004-6361:20021327).
"""

import math
import xml.etree.ElementTree as ElementTree

import numpy as np

AVM_NS = "{http://www.communicatingastronomy.org/avm/1.0/}"
RDF_NS = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


def parse_avm_tags(xmp: bytes | str) -> dict:
    """Return the AVM tags of an XMP packet: name -> text or list of texts."""
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8")
    start = xmp.index("<x:xmpmeta")
    end = xmp.index("</x:xmpmeta>") + len("</x:xmpmeta>")
    root = ElementTree.fromstring(xmp[start:end])
    tags = {}
    for description in root.iter(RDF_NS + "Description"):
        for key, value in description.attrib.items():
            if key.startswith(AVM_NS):
                tags[key[len(AVM_NS) :]] = value
        for element in description:
            if element.tag.startswith(AVM_NS):
                items = [item.text for item in element.iter(RDF_NS + "li")]
                tags[element.tag[len(AVM_NS) :]] = items if items else element.text
    return tags


class AvmTanReader:
    """Pixel to sky with the AVM 1.2 tags of a TAN picture.

    Parameters
    ----------
    xmp : `bytes` or `str`
        The packet.
    width : `int`, optional
        Width of the picture the WCS is used for (rescales CRPIX and the
        scale when it differs from ``Spatial.ReferenceDimension``).
    """

    def __init__(self, xmp: bytes | str, width: int | None = None) -> None:
        tags = parse_avm_tags(xmp)
        if tags["Spatial.CoordsystemProjection"].strip() != "TAN":
            raise ValueError("only TAN is read here")
        self.crval = np.radians([float(v) for v in tags["Spatial.ReferenceValue"]])
        c1, c2 = (float(v) for v in tags["Spatial.Scale"])
        c1, c2 = -abs(c1), abs(c2)
        rho = math.radians(float(tags.get("Spatial.Rotation", 0.0)))
        ratio = 1.0
        if width is not None and "Spatial.ReferenceDimension" in tags:
            ratio = width / float(tags["Spatial.ReferenceDimension"][0])
        self.crpix = np.array([float(v) for v in tags["Spatial.ReferencePixel"]]) * ratio
        self.cd = (
            np.array([[c1 * math.cos(rho), -c2 * math.sin(rho)], [c1 * math.sin(rho), c2 * math.cos(rho)]])
            / ratio
        )

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Return (ra, dec) in degrees of 0-based FITS-order pixels."""
        offsets = np.array(
            [np.asarray(x, float) + 1 - self.crpix[0], np.asarray(y, float) + 1 - self.crpix[1]]
        )
        xi, eta = np.radians(self.cd @ offsets)
        ra0, dec0 = self.crval
        denominator = math.cos(dec0) - eta * math.sin(dec0)
        ra = ra0 + np.arctan2(xi, denominator)
        dec = np.arctan2(math.sin(dec0) + eta * math.cos(dec0), np.hypot(xi, denominator))
        return np.degrees(ra) % 360.0, np.degrees(dec)
