"""Names people see (account names, room nicknames): which are refused as look-alikes.

Unicode Technical Standard #39 (Unicode Security Mechanisms), with the confusables data and
script tables of `confusable-homoglyphs` (built from Unicode's confusables.txt and Scripts.txt):
- **Mixed scripts** are refused: Latin `r` with a Cyrillic `о` in "rоot", or a combining mark
  left over after NFKC ("Root" followed by U+0301). Han with Hiragana and Katakana (Japanese),
  with Hangul (Korean) or with Bopomofo (Chinese) count as one script, as UTS #39's augmented
  script sets have them; digits and punctuation (`COMMON`) go with any script.
- **Look-alikes** are refused: two names with the same `skeleton` look the same to a reader,
  so a name whose skeleton is another name's is taken.

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
    folded = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name).casefold())
    prototypes = _prototypes()
    mapped = "".join(
        prototypes.get(character, character)
        for character in folded
        if unicodedata.category(character) not in _DROPPED
    )
    return unicodedata.normalize("NFD", mapped)


def refusal(name: str) -> str | None:
    """Why `name` cannot be a name people see (without the field), or None if it can."""
    if is_mixed_script(name):
        return (
            "mixes scripts (for example Latin with Cyrillic letters, or a combining mark): "
            "write it in one script"
        )
    return None
