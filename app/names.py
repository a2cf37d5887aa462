"""Names people see (account names, room nicknames): which are refused as look-alikes.

Unicode Technical Standard #39 (Unicode Security Mechanisms), with the confusables data and
script tables of `confusable-homoglyphs` (built from Unicode's confusables.txt and Scripts.txt):
- **Mixed scripts** are refused: Latin `r` with a Cyrillic `о` in "rоot", or a combining mark
  left over after NFKC ("Root" followed by U+0301). Han with Hiragana and Katakana (Japanese),
  with Hangul (Korean) or with Bopomofo (Chinese) count as one script, as UTS #39's augmented
  script sets have them; digits and punctuation (`COMMON`) go with any script.
- **Look-alikes** are refused: two names with the same `skeleton` look the same to a reader,
  so a name whose skeleton is another name's is taken.
- **Invisible and blank characters** are refused (`invisible_characters`): controls, format
  characters (bidi overrides such as U+202E, which made "\u202etoor" read "root"), private-use,
  surrogates and unassigned code points (Unicode category C), Unicode's
  `Default_Ignorable_Code_Point` (Hangul fillers U+3164, U+115F, U+1160; soft hyphen; zero
  widths), blank-rendering characters (U+2800 Braille pattern blank) and every space but
  U+0020. The `regex` library reads these properties from the Unicode data it ships.

`skeleton` follows UTS #39 §4 (NFD, each character to its class's prototype, NFD), after
NFKC and case folding (as `models.name_key`), and drops combining marks and invisible format
characters, which add nothing a reader can tell apart. Its classes are the transitive closure
of the library's confusable pairs, so they may join slightly more than confusables.txt's own
prototypes do: such names are refused as look-alikes, never the other way round. A change to
this mapping needs a migration that recomputes `users.name_skeleton`.
"""

from __future__ import annotations

import json
import unicodedata
from functools import cache
from importlib.resources import files

import regex
from confusable_homoglyphs import categories

# UTS #39 §5.1, augmented script sets: these mixes are one writing system.
_ONE_WRITING_SYSTEM = (
    frozenset({"HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"HAN", "HANGUL"}),
    frozenset({"HAN", "BOPOMOFO"}),
)
_ANY_SCRIPT = frozenset({"COMMON"})
_DIRECTION_MARKS = str.maketrans("", "", "\u200e\u200f")  # around RTL glyphs in the data
_DROPPED = frozenset({"Mn", "Me", "Cf"})  # combining marks; invisible format characters
_INVISIBLE = regex.compile(
    r"[\p{C}\p{Default_Ignorable_Code_Point}\u2800\p{Z}--\x20]", flags=regex.VERSION1
)
_SMALL_CAPITAL = "LATIN LETTER SMALL CAPITAL "


def invisible_characters(name: str) -> list[str]:
    """The characters of `name` a reader cannot see or tell apart from a space, as `U+XXXX`."""
    return [f"U+{ord(found):04X}" for found in _INVISIBLE.findall(name)]


def scripts(name: str) -> frozenset[str]:
    """The scripts of `name`'s characters (Unicode Script property aliases, e.g. `LATIN`,
    `CYRILLIC`, `INHERITED` for combining marks), `COMMON` left out."""
    return frozenset(categories.unique_aliases(name)) - _ANY_SCRIPT


def is_mixed_script(name: str) -> bool:
    """Whether `name` (after NFKC) mixes scripts that are not one writing system."""
    found = scripts(unicodedata.normalize("NFKC", name))
    if len(found) <= 1:
        return False
    return not any(found <= system for system in _ONE_WRITING_SYSTEM)


@cache
def _prototypes() -> dict[str, str]:
    """Each confusable character's class representative: the class's ASCII character with the
    lowest code point, or else its character with the lowest code point."""
    data = json.loads(files("confusable_homoglyphs").joinpath("confusables.json").read_text())
    parent: dict[str, str] = {}

    def find(character: str) -> str:
        root = character
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(character, character) != root:  # path compression
            parent[character], character = root, parent[character]
        return root

    def rank(character: str) -> tuple[bool, int]:
        return (not character.isascii(), ord(character))

    for character, homoglyphs in data.items():
        for homoglyph in homoglyphs:
            other = homoglyph["c"].translate(_DIRECTION_MARKS)
            if len(character) != 1 or len(other) != 1:
                continue  # UTS #39 maps characters; sequences ("rn") are left to the eye
            first, second = find(character), find(other)
            if first != second:
                low, high = sorted((first, second), key=rank)
                parent[high] = low
    return {character: find(character) for character in parent}


def skeleton(name: str) -> str:
    """The form two look-alike names share (UTS #39 §4, see the module's docstring): compare
    skeletons, never show them."""
    folded = unicodedata.normalize(
        "NFD", _fold_small_capitals(unicodedata.normalize("NFKC", name)).casefold()
    )
    prototypes = _prototypes()
    mapped = "".join(
        prototypes.get(character, character)
        for character in folded
        if unicodedata.category(character) not in _DROPPED
    )
    return unicodedata.normalize("NFD", mapped)


def _fold_small_capitals(name: str) -> str:
    """Latin small capitals (`ʀᴏᴏᴛ`) as the letters they are drawn as: confusables.txt leaves
    most of them out, and to a reader `ʀᴏᴏᴛ` is `root`."""
    if name.isascii():
        return name
    folded = []
    for character in name:
        character_name = unicodedata.name(character, "")
        letter = character_name.removeprefix(_SMALL_CAPITAL)
        if letter != character_name and len(letter) == 1:
            folded.append(letter.lower())
        else:
            folded.append(character)
    return "".join(folded)


def refusal(name: str) -> str | None:
    """Why `name` cannot be a name people see (without the field), or None if it can."""
    invisible = invisible_characters(name)
    if invisible:
        return (
            "must not contain control, bidi, invisible or blank characters "
            f"({', '.join(invisible[:3])})"
        )
    if is_mixed_script(name):
        return (
            "mixes scripts (for example Latin with Cyrillic letters, or a combining mark): "
            "write it in one script"
        )
    return None
