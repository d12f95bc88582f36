"""A GSM-7 checker of the tests' own, written from the 3GPP TS 23.038 table (6.2.1 and
6.2.1.1) as code points, apart from the code under test (adapters/channels/gsm7.py)."""

from __future__ import annotations

# TS 23.038 6.2.1, the default alphabet by column (high nibble 0..7), as Unicode code
# points; 0x1B, the escape to the extension table, is left out.
_COLUMNS = [
    [0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC,
     0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D, 0xC5, 0xE5],
    [0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8,
     0x3A3, 0x398, 0x39E, 0xC6, 0xE6, 0xDF, 0xC9],
    [0x20, 0x21, 0x22, 0x23, 0xA4, *range(0x25, 0x30)],
    list(range(0x30, 0x40)),
    [0xA1, *range(0x41, 0x50)],
    [*range(0x50, 0x5B), 0xC4, 0xD6, 0xD1, 0xDC, 0xA7],
    [0xBF, *range(0x61, 0x70)],
    [*range(0x70, 0x7B), 0xE4, 0xF6, 0xF1, 0xFC, 0xE0],
]  # fmt: skip
DEFAULT = {chr(c) for column in _COLUMNS for c in column}
# 6.2.1.1, the extension table: form feed, ^ { } \ [ ~ ] | and the euro sign.
EXTENDED = {chr(c) for c in (0x0C, 0x5E, 0x7B, 0x7D, 0x5C, 0x5B, 0x7E, 0x5D, 0x7C, 0x20AC)}


def gsm_septets(text: str) -> int | None:
    """Septets `text` takes in one GSM-7 message, or None when a character is not GSM-7."""
    total = 0
    for c in text:
        if c in DEFAULT:
            total += 1
        elif c in EXTENDED:
            total += 2
        else:
            return None
    return total
