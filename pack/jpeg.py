"""Read a JPEG's structure without decoding it.

Why: most of ImageNet is baseline YCbCr JPEG that goes into the shards byte for byte, so the
packer only needs to know (a) what kind of JPEG a file is and (b) that it is whole. Walking the
marker segments costs microseconds, where decoding costs a millisecond (even at 1/8 scale, DCT
scaling still Huffman-decodes everything). So the walk checks every segment length and the frame
header up to the first scan, and then: if the file ends with EOI it is whole (inside entropy-coded
data 0xFF is always followed by 0x00 or a restart marker, so a cut-off file cannot end in FF D9);
otherwise it scans on marker by marker, which accepts files with bytes after EOI and rejects
truncated ones, which would otherwise decode half grey. Damage in the middle of a scan is not
detected here (decoders do not fail on it either); `python -m pack verify` decodes every packed
image afterwards.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SOI = b"\xff\xd8"
EOI = 0xD9
SOS = 0xDA
APP14 = 0xEE
# Frame markers SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
BASELINE_SOF = frozenset({0xC0, 0xC1})  # Huffman, sequential (baseline / extended sequential)
PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})
LOSSLESS_SOF = frozenset({0xC3, 0xC7, 0xCB, 0xCF})
ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM and RSTn carry no length field
# Inside entropy-coded data 0xFF is followed by 0x00 (stuffing) or RSTn; anything else is a marker.
NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class BrokenJpeg(ValueError):
    """The bytes start like a JPEG but cannot be a whole one; the message is the reject reason."""


@dataclass(frozen=True)
class JpegInfo:
    sof: int                    # frame marker code, e.g. 0xC0 baseline, 0xC2 progressive
    precision: int              # bits per sample (8 for everything PIL writes)
    width: int
    height: int
    components: int             # 1 gray, 3 YCbCr (or RGB), 4 CMYK / YCCK
    adobe_transform: int | None  # APP14 "Adobe" colour transform flag; None without the marker

    @property
    def passes_through(self) -> bool:
        """8-bit sequential Huffman with 3 components: what every JPEG decoder reads as RGB."""
        return (self.sof in BASELINE_SOF and self.precision == 8 and self.components == 3
                and self.width > 0 and self.height > 0)

    def describe(self) -> str:
        """Why this JPEG needs re-encoding, e.g. "cmyk jpeg", "progressive grayscale jpeg"."""
        words = []
        if self.sof in PROGRESSIVE_SOF:
            words.append("progressive")
        elif self.sof in LOSSLESS_SOF:
            words.append("lossless")
        if self.sof in ARITHMETIC_SOF:
            words.append("arithmetic-coded")
        if self.precision != 8:
            words.append(f"{self.precision}-bit")
        if self.components == 1:
            words.append("grayscale")
        elif self.components == 4:
            words.append("ycck" if self.adobe_transform == 2 else "cmyk")
        elif self.components != 3:
            words.append(f"{self.components}-component")
        return " ".join(words + ["jpeg"])


def is_jpeg(data: bytes) -> bool:
    return data[:2] == SOI


def sniff_jpeg(data: bytes) -> JpegInfo:
    """Walk the marker segments from SOI to EOI; raise BrokenJpeg if the file is not whole."""
    if not is_jpeg(data):
        raise BrokenJpeg("not a jpeg")
    end = len(data)
    pos = 2
    frame: tuple[int, int, int, int, int] | None = None
    adobe: int | None = None
    saw_scan = False
    while True:
        if pos + 2 > end:
            raise BrokenJpeg("truncated jpeg (no EOI marker)")
        if data[pos] != 0xFF:
            raise BrokenJpeg(f"corrupt jpeg (no marker at byte {pos})")
        while pos + 1 < end and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        marker = data[pos + 1]
        pos += 2
        if marker == EOI:
            if not saw_scan:
                raise BrokenJpeg("corrupt jpeg (EOI before any image data)")
            break
        if marker in STANDALONE:
            continue
        if pos + 2 > end:
            raise BrokenJpeg("truncated jpeg (no EOI marker)")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise BrokenJpeg(f"corrupt jpeg (segment length {length} at byte {pos})")
        if pos + length > end:
            raise BrokenJpeg("truncated jpeg (no EOI marker)")
        start, pos = pos + 2, pos + length
        if marker in SOF_MARKERS:
            frame = _parse_frame(marker, data[start:pos])
        elif marker == APP14 and data[start:start + 5] == b"Adobe" and length >= 14:
            adobe = data[start + 11]
        elif marker == SOS:
            if frame is None:
                raise BrokenJpeg("corrupt jpeg (scan before frame header)")
            saw_scan = True
            if data.endswith(b"\xff\xd9"):  # whole file: skip scanning the entropy-coded data
                break
            found = NEXT_MARKER.search(data, pos)
            if found is None:
                raise BrokenJpeg("truncated jpeg (no EOI marker)")
            pos = found.start()
    assert frame is not None  # a scan (required above) needs a frame header first
    sof, precision, height, width, components = frame
    return JpegInfo(sof, precision, width, height, components, adobe)


def _parse_frame(marker: int, segment: bytes) -> tuple[int, int, int, int, int]:
    if len(segment) < 6:
        raise BrokenJpeg("corrupt jpeg (short frame header)")
    precision, height, width, components = segment[0], int.from_bytes(segment[1:3], "big"), \
        int.from_bytes(segment[3:5], "big"), segment[5]
    if width == 0 or components == 0 or len(segment) < 6 + 3 * components:
        raise BrokenJpeg("corrupt jpeg (bad frame header)")
    return marker, precision, height, width, components
