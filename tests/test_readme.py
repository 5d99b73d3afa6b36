"""The README's pictures exist, are real PNGs and include the ones issue 10 asks for."""

from __future__ import annotations

import re
import struct

from tests.conftest import ROOT

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*\bsrc=\"([^\"]+)\"")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_readme_pictures_exist_and_are_referenced():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    referenced = [a or b for a, b in IMAGE.findall(readme)]
    assert referenced
    sizes = {}
    for ref in referenced:
        path = ROOT / ref
        assert path.is_file(), f"README shows {ref}, which does not exist"
        sizes[ref] = _png_size(path.read_bytes())
        assert min(sizes[ref]) >= 100, (ref, sizes[ref])
    # The web page at desktop and phone widths, and the tray's transcription.
    for required in ("docs/images/web-desktop.png", "docs/images/web-phone.png", "docs/images/tray-transcribe.png"):
        assert required in referenced, required
    assert sizes["docs/images/web-desktop.png"][0] >= 1000
    assert sizes["docs/images/web-phone.png"][0] <= 430  # a phone's width, not a shrunk desktop
    unused = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs/images").glob("*.png")} - set(referenced)
    assert unused == set(), f"pictures nobody shows: {unused}"
