"""Logos and favicons: raster images must decode as what they claim to be; SVGs are
reduced to svg-hush's allowlist, and the reduced file is what is kept."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine.assets import MAX_PIXELS, check_bytes
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples" / "assets"


def _png(width: int, height: int, mode: str = "1") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def test_real_images_are_kept_as_they_are() -> None:
    for name, role in (("logo.png", "logo"), ("favicon.ico", "favicon")):
        data = (EXAMPLES / name).read_bytes()
        assert check_bytes(data, role=role).data == data
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 32), "navy").save(jpeg, "JPEG")
    assert check_bytes(jpeg.getvalue(), role="logo").content_type == "image/jpeg"


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + b"<script>alert(1)</script>" * 4,  # a PNG header on HTML
        b"GIF89a/*<html><script>alert(1)</script>*/",  # the classic GIF/JS polyglot
        b"\xff\xd8\xff\xe0" + b"\x00" * 64,  # a JPEG that stops after its marker
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 16,
    ],
)
def test_a_raster_image_that_does_not_decode_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="is not a valid"):
        check_bytes(data, role="logo")


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    side = int(MAX_PIXELS**0.5) + 1
    bomb = _png(side, side)
    assert len(bomb) < 512 * 1024  # small on disk, huge in memory
    with pytest.raises(ValueError, match=f"{side}x{side} pixels"):
        check_bytes(bomb, role="logo")


def test_an_svg_is_kept_as_svg_hush_rewrites_it() -> None:
    svg = (
        b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10" onload="alert(1)">'
        b'<circle cx="5" cy="5" r="4" fill="#123456"/><script>alert(2)</script></svg>'
    )
    kept = check_bytes(svg, role="logo")
    assert kept.content_type == "image/svg+xml"
    assert b"onload" not in kept.data and b"<script" not in kept.data
    assert b'viewBox="0 0 10 10"' in kept.data and b"<circle" in kept.data
    assert check_bytes((EXAMPLES / "logo.svg").read_bytes(), role="logo").data.startswith(b"<?xml")


def test_an_svg_that_is_not_xml_is_refused() -> None:
    with pytest.raises(ValueError, match="logo SVG cannot be read"):
        check_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><g></svg>', role="logo")
