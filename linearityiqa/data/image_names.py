"""The one rule for the names of a data set's images.

It is applied wherever a list of names is built (make_info.py's builders, `write_info`) and
wherever one is read (info files), so that no builder writes a file its reader refuses. A name
is text without control characters, a path relative to the image folder that stays inside it
(not absolute, no `..` part), and is kept in its normal form: `./a.jpg` and `a//b.jpg` are the
images `a.jpg` and `a/b.jpg`. Two names whose normal forms are equal name one image, which a
list may hold only once.
"""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Sequence

from linearityiqa.errors import BadFileError

PLURAL = {"line": "lines", "entry": "entries"}
# The longest name an info file holds (MATLAB char arrays of UTF-16 codes), far beyond any file
# system's 255 bytes per part.
MAX_NAME_LENGTH = 4096
SHOWN = 120  # characters of a name a message quotes


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an image of a data set (a phrase to follow the name), or None."""
    if not name:
        return "is empty"
    # isprintable() first: the categories are looked up only for the rare name it is false for
    # (a non-breaking space, say, is a fair part of a file name; a tab or a NUL is not).
    categories = set() if name.isprintable() else {unicodedata.category(char) for char in name}
    if "Cc" in categories:
        return "holds a control character (a tab, a line break, a NUL ...)"
    if "Cs" in categories:
        return "is not valid text (it holds half of a UTF-16 pair)"
    if len(name) > MAX_NAME_LENGTH // 2 and len(name.encode("utf-16-le")) > 2 * MAX_NAME_LENGTH:
        return f"is longer than the {MAX_NAME_LENGTH:,} UTF-16 codes an info file holds"
    # The ".." test on the text first spares splitting each of KonIQ's 10,073 names.
    if name.startswith("/") or (".." in name and ".." in name.split("/")):
        return "is not a path inside the image folder (relative to it, without '..' or a leading /)"
    if posixpath.normpath(name) == ".":
        return "names the image folder itself, not an image in it"
    return None


def checked_names(
    names: Sequence[str], *, where: str, unit: str, advice: str, numbers: Sequence[int] | None = None
) -> list[str]:
    """`names`, as a file lists them, in their normal forms; else a BadFileError naming the first that
    breaks the rule, its message starting with `where` (the file, and its dataset if any), counting by
    `unit` ("line 4", "entry 4") with `numbers` (by default 1, 2, ...), ending with `advice`."""
    numbers = range(1, len(names) + 1) if numbers is None else numbers
    first: dict[str, int] = {}
    normal_names = []
    for position, (name, number) in enumerate(zip(names, numbers)):
        problem = name_problem(name)
        if problem is not None:
            raise BadFileError(f"{where} {unit} {number}: image name {_shown(name)} {problem}; {advice}")
        normal = posixpath.normpath(name)
        if normal in first:
            earlier = names[first[normal]]
            spelled = "" if earlier == name else f" (written {earlier!r} and {name!r})"
            raise BadFileError(
                f"{where} {PLURAL[unit]} {numbers[first[normal]]} and {number} both name image {normal!r}{spelled}; "
                f"{advice}"
            )
        first[normal] = position
        normal_names.append(normal)
    return normal_names


def _shown(name: str) -> str:
    """The name as a message quotes it: whole, unless it would fill the screen."""
    if len(name) <= SHOWN:
        return repr(name)
    return f"{name[: SHOWN // 2]!r}...{name[-SHOWN // 4 :]!r} ({len(name):,} characters)"
