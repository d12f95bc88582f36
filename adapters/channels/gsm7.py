"""SMS text in the GSM 7-bit default alphabet (3GPP TS 23.038, 6.2.1), within one message.

One SMS holds 160 characters of that alphabet, or 70 when a single character outside it
makes the whole message UCS-2 (a curly quote from a word processor, an em dash, a
non-breaking space): twice the cost, or two messages, for nothing. So punctuation and
accented Latin letters are written as their nearest GSM characters first. Text in another
script (Cyrillic, Chinese) stays as it is: a readable UCS-2 message is worth its cost, and
"????" is not. What is too long is cut at a word with "...", and the link is always kept.
"""

from __future__ import annotations

import unicodedata

# The basic character set, code 0x00 to 0x7F in order; 0x1B (ESC, the way to the extension
# table) is not a character of its own and stands as "\x1b" here.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
#: The extension table's characters: each is sent as ESC and a code, two septets.
EXTENSION = "\f^{}\\[~]|€"
_BASIC = frozenset(BASIC) - {"\x1b"}
_ALL = _BASIC | frozenset(EXTENSION)

SINGLE = 160
#: Characters per message when the text is UCS-2.
SINGLE_UCS2 = 70

# Typographic characters with a plain GSM look-alike.
_LOOKALIKES = {
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark, the apostrophe of word processors
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u00b4": "'",
    "`": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u201f": '"',
    "\u2033": '"',
    "\u00ab": '"',
    "\u00bb": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",
    "\u2212": "-",
    "\u2026": "...",
    "\u2022": "*",
    "\u00b7": "*",
    "\u00a0": " ",  # non-breaking space
    "\u2007": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\u200b": "",  # zero-width space
    "\u00ad": "",  # soft hyphen
    "\ufeff": "",
    "\t": " ",
    "\u00d7": "x",
    "\u2122": "TM",
    "\u00a9": "(c)",
    "\u00ae": "(R)",
    "\u2192": "->",
    "\u00b0": "o",
    # Latin letters that Unicode does not decompose into a base letter and a mark.
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Ħ": "H",
    "ħ": "h",
    "ı": "i",
    "Œ": "OE",
    "œ": "oe",
    "Þ": "Th",
    "þ": "th",
    "ð": "d",
}


def septets(text: str) -> int:
    """How many septets `text` takes in GSM-7 (extension characters take two); only for
    text that `is_gsm7`."""
    return sum(2 if c in EXTENSION else 1 for c in text)


def is_gsm7(text: str) -> bool:
    """Whether every character of `text` is in the default alphabet or its extension."""
    return all(c in _ALL for c in text)


def _letter(c: str) -> str:
    if c in _ALL:
        return c
    if c in _LOOKALIKES:
        return _LOOKALIKES[c]
    # An accented Latin letter GSM lacks (á, ł, ő): its base letter, as phones often do.
    base = "".join(d for d in unicodedata.normalize("NFKD", c) if not unicodedata.combining(d))
    if base and all(b in _ALL for b in base):
        return base
    return c


def transliterate(text: str) -> str:
    """`text` with what has a GSM look-alike replaced by it; characters without one (other
    scripts, emoji) are left as they are."""
    return "".join(_letter(c) for c in text)


def _length(text: str) -> int:
    """What `text` takes of one message: septets in GSM-7, UTF-16 units in UCS-2."""
    if is_gsm7(text):
        return septets(text)
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, link: str = "", limit: int = SINGLE) -> str:
    """`text`, and `link` after it, as one SMS where possible: transliterated to GSM-7, and
    cut at a word with "..." to fit in `limit` septets (70 UCS-2 characters when the text
    cannot be GSM-7). The link is never cut: a message too short for the link and ten
    characters of text keeps the text's start and lets the message take two parts."""
    text = " ".join(transliterate(text).split())
    link = "".join(transliterate(link).split())
    room = limit if is_gsm7(text + link) else SINGLE_UCS2 * limit // SINGLE
    joined = f"{text} {link}" if text and link else text or link
    if _length(joined) <= room:
        return joined
    budget = room - (_length(link) + 1 if link else 0)
    if budget < 10:
        budget = 2 * (room - 7) - (_length(link) + 1 if link else 0)  # two concatenated parts
    cut = _cut(text, max(budget, 0))
    return f"{cut} {link}" if link and cut else cut or link


def _cut(text: str, budget: int) -> str:
    """The longest start of `text` within `budget` that ends at a word, with "..."."""
    if _length(text) <= budget:
        return text
    room = budget - 3
    kept = ""
    for c in text:
        if _length(kept + c) > room:
            break
        kept += c
    space = kept.rfind(" ")
    if space >= len(kept) * 0.5:
        kept = kept[:space]
    kept = kept.rstrip(" ,;:-")
    return kept + "..." if kept else ""
