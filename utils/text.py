"""Reading the text files users write: label files, image and source lists, yamls.

UTF-8 is the format; a byte-order mark (BOM) decides otherwise, as Windows tools write one: UTF-8 with BOM,
UTF-16 (Notepad's "Unicode", PowerShell 5's ``>``) and UTF-32 are decoded. Anything else that is not UTF-8 is
one error line naming the file and what its bytes look like, never a silently mangled value. A yaml is read
as plain data (``yaml.safe_load``): a tag that would build a Python object (``!!python/object/apply:os.system``)
is refused with one line naming the file and the line, and nothing from the file is ever run.
"""
from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Type, Union

import yaml

from utils.errors import UserError

# longest first: the UTF-32 LE mark starts with the UTF-16 LE one
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32", "UTF-32"), (codecs.BOM_UTF32_BE, "utf-32", "UTF-32"),
         (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"), (codecs.BOM_UTF16_LE, "utf-16", "UTF-16"),
         (codecs.BOM_UTF16_BE, "utf-16", "UTF-16"))


class TextEncodingError(UserError, ValueError):
    """A text file that is neither UTF-8 nor UTF-16 / UTF-32 with a byte-order mark; the message names it."""


class YamlFileError(UserError, ValueError):
    """A yaml file that cannot be read as plain data (syntax, a code tag, its encoding); the message names it."""


def decode_text(data: bytes, name: Union[str, Path]) -> str:
    """``data`` as text (see the module docstring); ``name`` is the file the error message names."""
    for bom, codec, label in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as e:
                raise TextEncodingError(f"{name}: damaged {label} text (starts with a {label} byte-order mark, "
                                        f"{e.reason} at byte {e.start}); save it as UTF-8") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TextEncodingError(f"{name}: not UTF-8 text ({_looks_like(data)}; byte 0x{data[e.start]:02x} at "
                                f"offset {e.start}); save it as UTF-8") from None
    if "\0" in text:  # valid UTF-8, but no text file the project reads holds NUL characters
        raise TextEncodingError(f"{name}: not UTF-8 text ({_looks_like(data)}; NUL byte at offset "
                                f"{data.index(0)}); save it as UTF-8")
    return text


def _looks_like(data: bytes) -> str:
    head = data[:4096]
    if head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4:
        return "it looks like UTF-16 without a byte-order mark"
    return "it looks like an 8-bit code page such as Windows-1252 / Latin-1"


def read_text(path: Union[str, Path]) -> str:
    """The text of the file at ``path``; ``OSError`` when it cannot be read, :class:`TextEncodingError` when
    its bytes are not text this module decodes."""
    return decode_text(Path(path).read_bytes(), path)


def load_yaml(path: Union[str, Path], error: Type[UserError] = YamlFileError, what: str = "") -> Any:
    """``yaml.safe_load`` of the file at ``path``; any problem is one ``error`` line starting with ``what`` (e.g.
    ``'--hyp '``) and the path: bad syntax with its line, a code tag, an encoding. ``OSError`` passes through."""
    name = f"{what}{path}"
    try:
        text = read_text(path)
    except TextEncodingError as e:
        raise error(f"{what}{e}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise error(f"{name}: {yaml_problem(e)}") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """One line for a PyYAML error: where, and what (a refused code tag said as such)."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if "could not determine a constructor for the tag" in problem:
        tag = problem.split("'")[1] if problem.count("'") >= 2 else "?"
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return (f"{where}tag '{tag}' refused: yaml files are read as plain data (numbers, strings, lists, "
                f"mappings); code tags are never run")
    context = getattr(e, "context", None)
    return f"not valid yaml ({where}{problem}{f', {context}' if context else ''})"
