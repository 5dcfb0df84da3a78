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

"""Tests of single PNG cutouts (`zooniverse_cutout`): Butler round trips
read back in a fresh process, input checks that leave nothing behind, the
``compress_level`` write parameter, and `png.decode_png` refusals.
"""

import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from zooniverse_test_utils import check_png_bytes, check_png_file, make_test_butler, run_in_fresh_process

from lsst.daf.butler import Butler, Config, DatasetType
from lsst.epo.zooniverse import PngError, make_cutout_image
from lsst.epo.zooniverse.butler.config import CONFIG_DIR, CONFIG_PATH_VARIABLE, SEED_CONFIG
from lsst.epo.zooniverse.formats.cutout import cutout_text_metadata
from lsst.epo.zooniverse.formats.png import (
    DEFAULT_COMPRESS_LEVEL,
    PNG_SIGNATURE,
    decode_png,
    encode_png,
    read_png_text,
)

RNG = np.random.default_rng(20261125)


def _random(shape):
    return RNG.integers(0, 256, size=shape, dtype=np.uint8)


def _compressible_rgb(height=256, width=256):
    """A dark-sky-like picture: mostly black with smooth blobs (deflate
    level 9 beats level 1 on it).
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    picture = np.zeros((height, width, 3))
    for cx, cy, sigma, colour in ((60, 70, 9, (255, 200, 150)), (180, 150, 20, (90, 140, 255))):
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
        picture += blob[:, :, None] * np.array(colour)
    return np.clip(picture, 0, 255).astype(np.uint8)


def _datastore_files(root):
    """Every file under a repository root except the registry database and
    the repository configuration.
    """
    found = set()
    for directory, _, files in os.walk(root):
        for name in files:
            if name.startswith("gen3.sqlite3") or name == "butler.yaml":
                continue
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def _zlib_level_flag(png_bytes):
    """The FLEVEL field (0 fastest ... 3 maximum) of the zlib stream in the
    first IDAT chunk.
    """
    pos = len(PNG_SIGNATURE)
    while pos < len(png_bytes):
        length = int.from_bytes(png_bytes[pos : pos + 4], "big")
        if png_bytes[pos + 4 : pos + 8] == b"IDAT":
            cmf, flg = png_bytes[pos + 8], png_bytes[pos + 9]
            assert cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0, "IDAT is not a zlib stream"
            return flg >> 6
        pos += 12 + length
    raise AssertionError("no IDAT chunk")


def _chunk(chunk_type, payload):
    return (
        len(payload).to_bytes(4, "big")
        + chunk_type
        + payload
        + zlib.crc32(chunk_type + payload).to_bytes(4, "big")
    )


# --------------------------------------------------------------------------
# Round trips through the Butler, read back in a fresh process.

GREY = _random((37, 53))
RGB = _random((41, 29, 3))
RGBA = _random((16, 24, 4))
ROUND_TRIP_CASES = {
    "pil_L": (lambda: Image.fromarray(GREY, mode="L"), "L", GREY),
    "pil_RGB": (lambda: Image.fromarray(RGB, mode="RGB"), "RGB", RGB),
    "pil_RGBA": (lambda: Image.fromarray(RGBA, mode="RGBA"), "RGBA", RGBA),
    "array_L": (lambda: GREY.copy(), "L", GREY),
    "array_RGB": (lambda: RGB.copy(), "RGB", RGB),
    "array_RGBA": (lambda: RGBA.copy(), "RGBA", RGBA),
    "array_HxWx1": (lambda: GREY[:, :, None].copy(), "L", GREY),
    "array_noncontiguous": (lambda: RGB[:, ::-1, :], "RGB", RGB[:, ::-1, :]),
}
METADATA = {"object_id": "42", "ra": 10.5, "dec": -3.25, "note": "Ω Centauri, 10' field"}


def test_round_trip_in_fresh_process(tmp_path):
    root = str(tmp_path / "repo")
    butler = make_test_butler(root)
    refs = {}
    for name, (make, _, _) in ROUND_TRIP_CASES.items():
        butler.registry.registerRun(name)
        refs[name] = butler.put(make(), "zooniverse_cutout", run=name)
    butler.registry.registerRun("metadata")
    tagged = make_cutout_image(RGB, metadata=METADATA)
    refs["metadata"] = butler.put(tagged, "zooniverse_cutout", run="metadata")
    # make_cutout_image copies: the input is not modified.
    assert "object_id" not in Image.fromarray(RGB).info

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = f"""
        import json
        import numpy as np
        from PIL import Image
        from lsst.daf.butler import Butler

        butler = Butler.from_config({root!r})
        result = {{}}
        for name in {sorted(refs)!r}:
            image = butler.get("zooniverse_cutout", collections=name)
            array = butler.get("zooniverse_cutout.array", collections=name)
            np.save({str(out_dir)!r} + "/" + name + ".npy", np.asarray(image))
            try:
                array[0, 0] = 0
                assignable = True
            except ValueError:
                assignable = False
            result[name] = {{
                "is_pil": isinstance(image, Image.Image),
                "mode": image.mode,
                "size": list(image.size),
                "info": {{k: v for k, v in image.info.items() if isinstance(v, str)}},
                "array_type": type(array).__name__,
                "array_dtype": str(array.dtype),
                "array_writeable": bool(array.flags.writeable),
                "array_assignable": assignable,
                "array_equal": bool(np.array_equal(array, np.asarray(image))),
            }}
        print(json.dumps(result))
    """
    result = json.loads(run_in_fresh_process(code).strip().splitlines()[-1])

    for name, (_, mode, expected) in [*ROUND_TRIP_CASES.items(), ("metadata", (None, "RGB", RGB))]:
        got = result[name]
        assert got["is_pil"], name
        assert got["mode"] == mode, name
        assert got["size"] == [expected.shape[1], expected.shape[0]], name
        pixels = np.load(out_dir / f"{name}.npy")
        assert pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, expected, err_msg=name)
        assert got["array_type"] == "ndarray"
        assert got["array_dtype"] == "uint8"
        assert not got["array_writeable"] and not got["array_assignable"], name
        assert got["array_equal"], name
        # The file in the datastore is a valid PNG.
        uri = butler.getURI(refs[name])
        assert uri.getExtension() == ".png"
        check_png_file(uri.ospath)
        if name != "metadata":
            assert got["info"] == {}, name

    expected_text = {key: str(value) for key, value in METADATA.items()}
    assert result["metadata"]["info"] == expected_text
    stored = butler.getURI(refs["metadata"]).read()
    assert read_png_text(stored) == expected_text
    # Latin-1 values are tEXt, the rest iTXt.
    assert b"tEXtobject_id\x0042" in stored
    assert b"iTXtnote\x00" in stored


def test_metadata_survives_a_re_put(test_butler):
    test_butler.put(make_cutout_image(RGBA, metadata={"object_id": "7", "band": "gri"}), "zooniverse_cutout")
    first = test_butler.get("zooniverse_cutout")
    assert cutout_text_metadata(first) == {"object_id": "7", "band": "gri"}
    test_butler.registry.registerRun("again")
    ref = test_butler.put(first, "zooniverse_cutout", run="again")
    second = test_butler.get(ref)
    assert second.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(second), RGBA)
    assert cutout_text_metadata(second) == {"object_id": "7", "band": "gri"}


# --------------------------------------------------------------------------
# Bad input: a clear error and nothing left in the repository.


def _pil_with_key(key):
    image = Image.fromarray(RGB)
    image.info[key] = "x"
    return image


BAD_INPUTS = {
    "float": (
        lambda: np.zeros((4, 5), dtype=np.float32),
        TypeError,
        r"dtype uint8, not float32.*scaled to 0-255",
    ),
    "float_nan": (lambda: np.full((4, 5, 3), np.nan), TypeError, r"dtype uint8, not float64.*NaN"),
    "int64": (lambda: np.zeros((4, 5), dtype=np.int64), TypeError, r"dtype uint8, not int64"),
    "1d": (lambda: np.zeros(5, dtype=np.uint8), ValueError, r"shape \(5,\); expected \(H, W\)"),
    "two_channels": (lambda: np.zeros((4, 5, 2), dtype=np.uint8), ValueError, r"shape \(4, 5, 2\); expected"),
    "five_channels": (
        lambda: np.zeros((4, 5, 5), dtype=np.uint8),
        ValueError,
        r"shape \(4, 5, 5\); expected",
    ),
    "empty": (lambda: np.zeros((0, 5), dtype=np.uint8), ValueError, r"empty \(shape \(0, 5\)\)"),
    "empty_rgb": (lambda: np.zeros((3, 0, 3), dtype=np.uint8), ValueError, r"empty"),
    "pil_F": (
        lambda: Image.new("F", (4, 3)),
        ValueError,
        r"PIL mode 'F'; expected one of \['L', 'RGB', 'RGBA'\]",
    ),
    "pil_P": (lambda: Image.new("P", (4, 3)), ValueError, r"PIL mode 'P'.*convert"),
    "pil_empty": (lambda: Image.new("RGB", (0, 3)), ValueError, r"empty \(0x3\)"),
    "pil_bad_key": (lambda: _pil_with_key("Ω"), ValueError, r"PNG text key 'Ω' must be Latin-1"),
    "list": (lambda: [[1, 2], [3, 4]], TypeError, r"'list'"),
    "none": (lambda: None, TypeError, r"NoneType"),
}


@pytest.fixture(scope="module")
def bad_input_butler(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad") / "repo")
    return make_test_butler(root), root


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_leaves_nothing(bad_input_butler, case):
    butler, root = bad_input_butler
    make, error, message = BAD_INPUTS[case]
    run = f"bad_{case}"
    butler.registry.registerRun(run)
    before = _datastore_files(root)
    with pytest.raises(error, match=message):
        butler.put(make(), "zooniverse_cutout", run=run)
    assert list(butler.registry.queryDatasets("zooniverse_cutout", collections=run)) == []
    assert _datastore_files(root) == before
    assert not os.path.exists(os.path.join(root, run))
    # The same run still takes a good image afterwards (the checks above
    # are not vacuous: a put does write a file there).
    ref = butler.put(GREY, "zooniverse_cutout", run=run)
    assert _datastore_files(root) == before | {os.path.relpath(butler.getURI(ref).ospath, root)}


def test_bad_metadata_key_is_refused_early():
    with pytest.raises(ValueError, match="1 to 79"):
        make_cutout_image(RGB, metadata={"": "x"})
    with pytest.raises(ValueError, match="1 to 79"):
        make_cutout_image(RGB, metadata={"k" * 80: "x"})
    with pytest.raises(ValueError, match="Latin-1"):
        make_cutout_image(RGB, metadata={"Ωmega": "x"})
    with pytest.raises(TypeError, match="must be strings"):
        make_cutout_image(RGB, metadata={3: "x"})
    with pytest.raises(TypeError, match="uint8"):
        make_cutout_image(RGB.astype(np.float64))


# --------------------------------------------------------------------------
# The compress_level write parameter.


def _make_repo_with_cutout_parameters(root, parameters):
    """Create a repository from the seed configuration with write
    parameters for the cutout formatter, and return a writeable Butler.
    """
    config = Config(SEED_CONFIG)
    # seed.yaml includes files that repeat their top-level key
    # (datastore: {datastore: ...}); daf_butler prefers the doubled level,
    # so flatten it before overriding one entry.
    for key in ("datastore", "storageClasses"):
        if (key, key) in config:
            config[key] = Config(config[key, key])
    config["datastore", "formatters", "ZooniverseCutout"] = {
        "formatter": "lsst.epo.zooniverse.butler.formatters.CutoutFormatter",
        "parameters": parameters,
    }
    Butler.makeRepo(root, config=config)
    written = Config(os.path.join(root, "butler.yaml"))
    assert written["datastore", "formatters", "ZooniverseCutout", "parameters"].toDict() == parameters
    butler = Butler.from_config(root, writeable=True, run="run")
    butler.registry.registerDatasetType(
        DatasetType("zooniverse_cutout", butler.dimensions.empty, "ZooniverseCutout")
    )
    return butler


def test_compress_level_write_parameter(tmp_path, monkeypatch):
    # The package configuration on the search path (as the EUPS table or
    # enable_butler_config puts it) must not override the repository's
    # own formatter parameters.
    monkeypatch.setenv(CONFIG_PATH_VARIABLE, CONFIG_DIR)
    assert DEFAULT_COMPRESS_LEVEL == 1
    picture = make_cutout_image(_compressible_rgb(), metadata={"object_id": "1"})

    default_butler = make_test_butler(str(tmp_path / "default"))
    default_bytes = default_butler.getURI(default_butler.put(picture, "zooniverse_cutout")).read()
    level9_butler = _make_repo_with_cutout_parameters(str(tmp_path / "level9"), {"compress_level": 9})
    level9_bytes = level9_butler.getURI(level9_butler.put(picture, "zooniverse_cutout")).read()

    assert level9_bytes != default_bytes
    assert len(level9_bytes) < len(default_bytes)
    text = cutout_text_metadata(picture)
    assert default_bytes == encode_png(picture, text=text, compress_level=1)
    assert level9_bytes == encode_png(picture, text=text, compress_level=9)
    assert _zlib_level_flag(default_bytes) in (0, 1)  # "fastest" (zlib level 1) or "fast" (ISA-L level 1)
    assert _zlib_level_flag(level9_bytes) == 3  # zlib "maximum" (level 7-9)
    for data in (default_bytes, level9_bytes):
        check_png_bytes(data, tmp_path)
        np.testing.assert_array_equal(np.asarray(decode_png(data)), np.asarray(picture))
    np.testing.assert_array_equal(level9_butler.get("zooniverse_cutout.array"), np.asarray(picture))
    assert level9_butler.get("zooniverse_cutout").info["object_id"] == "1"


@pytest.mark.parametrize("level", [12, -1, "9", 2.5])
def test_invalid_compress_level_fails_the_put(tmp_path, level):
    root = str(tmp_path / "repo")
    butler = _make_repo_with_cutout_parameters(root, {"compress_level": level})
    before = _datastore_files(root)
    with pytest.raises(ValueError, match=r"compress_level must be an integer 0-9, not " + repr(level)):
        butler.put(RGB, "zooniverse_cutout")
    with pytest.raises(ValueError, match=r"compress_level"):
        butler.put(Image.fromarray(RGB), "zooniverse_cutout")
    assert list(butler.registry.queryDatasets("zooniverse_cutout", collections="run")) == []
    assert _datastore_files(root) == before


def test_encode_png_refuses_bad_levels():
    for level in (10, -1, None, 1.0):
        with pytest.raises(ValueError, match="compress_level"):
            encode_png(GREY, compress_level=level)


# --------------------------------------------------------------------------
# decode_png refusals.


def _valid_png():
    return encode_png(RGB, text={"a": "b"})


def test_decode_png_round_trip(tmp_path):
    data = _valid_png()
    check_png_bytes(data, tmp_path)
    image = decode_png(data)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), RGB)
    assert read_png_text(data) == {"a": "b"}


def test_decode_png_bad_signature():
    data = _valid_png()
    for bad in (b"GIF89a" + data[6:], b"", b"\x89PNG", data[1:]):
        with pytest.raises(PngError, match="not a PNG file"):
            decode_png(bad, name="x.png")
    with pytest.raises(PngError, match="^x.png: "):
        decode_png(b"junk", name="x.png")
    # PngError is a ValueError.
    with pytest.raises(ValueError):
        decode_png(b"junk")


def test_decode_png_truncated():
    data = _valid_png()
    # Inside a chunk header, inside chunk data, and just before IEND.
    iend = data.rindex(b"IEND") - 4
    for cut, message in (
        (len(PNG_SIGNATURE) + 5, "incomplete chunk header"),
        (len(PNG_SIGNATURE) + 20, "runs past the end"),
        (len(data) - 3, "runs past the end"),
        (iend, "no IEND"),
        (len(PNG_SIGNATURE), "no IEND"),
    ):
        with pytest.raises(PngError, match=f"truncated PNG.*{message}"):
            decode_png(data[:cut])
        with pytest.raises(PngError, match="truncated"):
            read_png_text(data[:cut])


def test_decode_png_crc_mismatch():
    data = bytearray(_valid_png())
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF
    with pytest.raises(PngError, match=r"CRC mismatch in chunk b'IDAT'"):
        decode_png(bytes(data))
    data = bytearray(_valid_png())
    data[data.index(b"IHDR") + 4] ^= 0x01  # The width.
    with pytest.raises(PngError, match=r"CRC mismatch in chunk b'IHDR'"):
        decode_png(bytes(data))


def test_decode_png_bad_pixel_data_with_good_crcs():
    ihdr = struct.pack(">IIBBBBB", 10, 10, 8, 2, 0, 0, 0)
    data = PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"not zlib data") + _chunk(b"IEND", b"")
    with pytest.raises(PngError, match="cannot be decoded"):
        decode_png(data)


def test_decode_png_huge_declared_size():
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    # A small zlib stream that would inflate to a 30 GB image.
    bomb = (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 100_000))
        + _chunk(b"IEND", b"")
    )
    assert len(bomb) < 1000
    with pytest.raises(PngError, match=r"100000x100000 = 10000000000 pixels, more than the limit of 1000000"):
        decode_png(bomb, max_pixels=1_000_000)
    with pytest.raises(PngError, match="decompression bomb"):
        decode_png(bomb)  # The default limit.
    # The limit is on pixels: exactly at it is fine, one over is not.
    data = encode_png(RGB)
    assert decode_png(data, max_pixels=RGB.shape[0] * RGB.shape[1]).size == (29, 41)
    with pytest.raises(PngError, match="more than the limit"):
        decode_png(data, max_pixels=RGB.shape[0] * RGB.shape[1] - 1)


def test_decode_png_empty_and_misplaced_header():
    ihdr = struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0)
    with pytest.raises(PngError, match="empty image"):
        decode_png(PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b""))
    with pytest.raises(PngError, match="not IHDR"):
        decode_png(PNG_SIGNATURE + _chunk(b"tEXt", b"a\0b") + _chunk(b"IEND", b""))


@pytest.mark.parametrize("level", range(1, 10))
def test_zlib_ng_run_length_deflate_equals_zlib(level):
    """zlib-ng's run-length deflate, which the PNG writer uses, gives the
    bytes of zlib's, so pictures do not depend on which is installed.
    """
    import zlib

    from zlib_ng import zlib_ng

    rng = np.random.default_rng(level)
    for size in (16, 101, 256, 1024):
        width = 3 * size + 1  # Filter byte and RGB pixels of a row.
        noise = rng.integers(0, 256, (size, width), dtype=np.uint8)
        sky = rng.normal(40, 3, (size, width)).clip(0, 255).astype(np.uint8)
        padded = np.zeros((size, width), np.uint8)
        padded[size // 3 : size // 2] = noise[size // 3 : size // 2]
        for rows in (noise, sky, padded):
            data = rows.tobytes()
            streams = []
            for library in (zlib, zlib_ng):
                deflater = library.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
                streams.append(deflater.compress(data) + deflater.flush())
            assert streams[0] == streams[1], (size, level)
            assert zlib.decompress(streams[1]) == data


def test_png_without_zlib_ng_is_the_same(monkeypatch):
    """Without zlib-ng the writer falls back to zlib with the same bytes."""
    import zlib

    import lsst.epo.zooniverse.formats.png as png_module

    pixels = np.random.default_rng(3).integers(0, 256, (101, 101, 3), dtype=np.uint8)
    with_ng = png_module.encode_png(pixels, text={"object_id": "1"})
    monkeypatch.setattr(png_module, "_rle_zlib", zlib)
    monkeypatch.setattr(png_module, "_RLE_LIBRARY", "zlib")
    assert png_module.png_deflate_library(1) == "zlib"
    assert png_module.encode_png(pixels, text={"object_id": "1"}) == with_ng


@pytest.mark.parametrize("deflate", ["default", "isal", "no_isal"])
@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (64, 48, 3), (5, 300, 4), (101, 101, 3)])
def test_native_encoder_equals_pillow(tmp_path, monkeypatch, deflate, shape):
    """The package's own PNG writer gives the pixels and text chunks that
    Pillow's encoder gives, valid to pngcheck, with ISA-L or zlib.
    """
    import lsst.epo.zooniverse.formats.png as png_module

    if deflate == "default":
        monkeypatch.delenv(png_module.DEFLATE_VARIABLE, raising=False)
        assert png_module.png_deflate_library(1) == "zlib-ng"  # reproducible bytes
        assert png_module.png_deflate_library(4) == "zlib"
    elif deflate == "isal":
        monkeypatch.setenv(png_module.DEFLATE_VARIABLE, "isal")
        assert png_module.png_deflate_library(1) == "isal"
    else:  # isal asked for but not installed
        monkeypatch.setenv(png_module.DEFLATE_VARIABLE, "isal")
        monkeypatch.setattr(png_module, "_isal_zlib", None)
        assert png_module.png_deflate_library(1) == "zlib-ng"
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pixels[: shape[0] // 2] //= 16  # Some compressible sky.
    text = {"object_id": "42", "bands": "i,r,g", "note": "Å ö", "comment": "μ ≠ latin-1"}
    xmp = '<x:xmpmeta xmlns:x="adobe:ns:meta/">ünïcode</x:xmpmeta>'
    for level in (0, 1, 3, 9):
        ours = encode_png(pixels, text=text, xmp=xmp, compress_level=level)
        reference = png_module._encode_png_pillow(pixels, text=text, xmp=xmp, compress_level=level)
        check_png_bytes(ours, tmp_path)
        decoded = decode_png(ours)
        assert decoded.mode == {2: "L", 3: "RGB", 4: "RGBA"}[len(shape) if len(shape) == 2 else shape[2]]
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(decode_png(reference)))
        assert read_png_text(ours) == read_png_text(reference)
        assert ours == encode_png(Image.fromarray(pixels), text=text, xmp=xmp, compress_level=level)
    if deflate == "default":
        # Exactly filter-0 rows deflated by zlib at the level asked for:
        # run-length matches only at levels 1-3, the full search above.
        rows = np.concatenate([np.zeros((shape[0], 1), np.uint8), pixels.reshape(shape[0], -1)], axis=1)
        for level in (1, 3):
            deflater = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 8, zlib.Z_RLE)
            rle = deflater.compress(rows.tobytes()) + deflater.flush()
            assert rle in encode_png(pixels, compress_level=level)
        assert zlib.compress(rows.tobytes(), 9) in encode_png(pixels, compress_level=9)
        assert zlib.compress(rows.tobytes(), 0) in encode_png(pixels, compress_level=0)


def test_run_length_deflate_is_smaller_and_reproducible_on_sky():
    """On a sky picture (noise, dark sky, black padding) the default level's
    run-length deflate gives a smaller file than zlib's full search at
    level 1, identical bytes every time, and the same pixels.
    """
    rng = np.random.default_rng(3)
    sky = np.clip(rng.normal(12, 6, size=(101, 101, 3)), 0, 255).astype(np.uint8)
    sky[40:60, 40:60] = 255  # A saturated star.
    sky[:, :20] = 0  # Padding off the coadd's edge.
    default = encode_png(sky)
    assert default == encode_png(sky.copy())
    rows = np.concatenate([np.zeros((101, 1), np.uint8), sky.reshape(101, -1)], axis=1)
    assert len(default) < len(zlib.compress(rows.tobytes(), 1))
    np.testing.assert_array_equal(np.asarray(decode_png(default)), sky)


def test_png_text_rules_and_pil_transparency(tmp_path):
    """Keywords and values the PNG specification forbids are refused; a PIL
    image's transparency and ICC profile are kept.
    """
    pixels = np.zeros((4, 5, 3), np.uint8)
    for key in ("a\x7fb", "a\xa0b", "a\x85b"):
        with pytest.raises(ValueError, match="PNG text key"):
            encode_png(pixels, text={key: "v"})
    with pytest.raises(ValueError, match="NUL"):
        encode_png(pixels, text={"k": "a\0b"})
    with pytest.raises(ValueError, match="NUL"):
        make_cutout_image(pixels, metadata={"k": "a\0b"})
    image = Image.fromarray(pixels)
    image.info["transparency"] = (0, 0, 0)
    data = encode_png(image, text={"object_id": "7"})
    check_png_bytes(data, tmp_path)
    decoded = decode_png(data)
    assert decoded.convert("RGBA").getpixel((0, 0)) == (0, 0, 0, 0)
    assert read_png_text(data) == {"object_id": "7"}
