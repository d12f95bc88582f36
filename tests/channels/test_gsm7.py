"""SMS text in GSM-7 (issue 15, item 9), checked against a checker of the tests' own, written
from the 3GPP TS 23.038 table (6.2.1 and 6.2.1.1) as code points, apart from the code under
test: typographic punctuation becomes its GSM look-alike, accented Latin its base letter,
text is cut at a word with "...", the link is always kept whole."""

from __future__ import annotations

import random

import pytest

from adapters.channels import gsm7
from tests.gsm7_checker import DEFAULT, EXTENDED, gsm_septets

LINK = "https://status.acme.test/p/acme/incidents/5d34v5z0grp7"


def test_the_checker_has_the_whole_table() -> None:
    assert len(DEFAULT) == 127 and len(EXTENDED) == 10
    assert DEFAULT == set(gsm7.BASIC) - {"\x1b"} and EXTENDED == set(gsm7.EXTENSION)


def test_word_processor_punctuation_becomes_gsm_and_keeps_one_message() -> None:
    text = (
        "ACME \u2014 we\u2019re on it: \u201celevated\u201d errors\u2026\u00a0next update\u2009soon"
    )
    sms = gsm7.fit(text, LINK)
    assert sms == f'ACME - we\'re on it: "elevated" errors... next update soon {LINK}'
    assert gsm_septets(sms) is not None


def test_accented_latin_letters_gsm_lacks_become_their_base_letters() -> None:
    assert gsm7.fit("Zürich: Łódź, Kraków, São Paulo, Ærøskøbing, naïve façade") == (
        "Zürich: Lodz, Krakow, Sao Paulo, Ærøskøbing, naive facade"
    )


def test_a_long_text_is_cut_at_a_word_and_the_link_kept_within_160_septets() -> None:
    text = "ACME Status: Database degraded - " + "elevated errors on the primary " * 10
    sms = gsm7.fit(text, LINK)
    septets = gsm_septets(sms)
    assert septets is not None and septets <= 160
    assert sms.endswith(f"... {LINK}")
    assert sms.removesuffix(f"... {LINK}").endswith(("primary", "errors", "on", "the", "elevated"))


def test_extension_characters_count_twice() -> None:
    text = "{braces} [brackets] cost €2 " * 10
    sms = gsm7.fit(text, LINK)
    septets = gsm_septets(sms)
    assert septets is not None and septets <= 160 and len(sms) < 160


def test_another_script_stays_readable_in_one_ucs2_message() -> None:
    text = "Статус: база данных недоступна, мы работаем над восстановлением уже два часа"
    sms = gsm7.fit(text, "https://s.test/i/1")
    assert gsm_septets(sms) is None  # UCS-2, as it must be
    assert len(sms.encode("utf-16-le")) // 2 <= 70 and sms.endswith("... https://s.test/i/1")
    assert sms.startswith("Статус: база данных")


def test_a_short_text_is_left_whole() -> None:
    assert gsm7.fit("API down", LINK) == f"API down {LINK}"
    assert gsm7.fit("API down") == "API down"


@pytest.mark.parametrize("seed", range(5))
def test_any_mix_of_latin_text_and_punctuation_fits_with_its_link(seed: int) -> None:
    pool = "abcdefghij KLMNOP éüñçøåáőłž \u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0{}[]€^|~\\"
    rng = random.Random(seed)
    for _ in range(200):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 400)))
        sms = gsm7.fit(text, LINK)
        septets = gsm_septets(sms)
        assert septets is not None and septets <= 160, sms
        assert sms.endswith(LINK)
