"""The start tags of an HTML document, found in one pass: time linear in its length, whatever it holds.

Agent-written HTML is hostile input. A backtracking regex over the document (how report.html
was once read) takes time quadratic in its length on text such as 60 KB of `<img `: a
minute, holding the GIL. Python's html.parser (3.11) is quadratic on such text too, and
raises on some. This is a small tokenizer after the HTML standard's: comments, doctypes and
processing instructions skipped, the text of `<script>`, `<style>` and the like skipped to
their end tag, and for each start tag its name and attributes with their places in the text,
so a caller can rewrite one value and leave every other byte as it was. Each step moves
forward from where the last one ended (its regexes match at one place and cannot backtrack),
and a tag left open at the end of the text ends the scan, as it ends the document in a browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

SPACE = "\t\n\f\r "
# Elements whose content is text up to their end tag (no tags inside).
RAW_TEXT = frozenset({"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
                      "noscript", "plaintext"})
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_BETWEEN = re.compile(r"[\t\n\f\r /]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />][^\t\n\f\r /=>]*")
_EQUALS = re.compile(r"[\t\n\f\r ]*=[\t\n\f\r ]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")  # keeps the length


@dataclass
class Attribute:
    name: str          # lower case
    value: str         # character references decoded
    start: int = -1    # where the value's text is, quotes included (-1: no value)
    end: int = -1


@dataclass
class StartTag:
    name: str          # lower case
    start: int         # the "<"
    end: int           # just after the ">"
    attrs: list[Attribute] = field(default_factory=list)

    def get(self, name: str) -> Attribute | None:
        """The attribute (the first of that name, as a browser takes it)."""
        return next((a for a in self.attrs if a.name == name), None)


def start_tags(text: str) -> Iterator[StartTag]:
    lower = text.translate(_ASCII_LOWER)
    at = 0
    while (at := text.find("<", at)) >= 0:
        nxt = text[at + 1: at + 2]
        if text.startswith("<!--", at):
            close = text.find("-->", at + 4)
            if close < 0:
                return
            at = close + 3
        elif nxt in ("!", "?", "/"):   # doctype, CDATA, processing instruction, end tag: up to ">"
            close = text.find(">", at + 2)
            if close < 0:
                return
            at = close + 1
        elif nxt.isascii() and nxt.isalpha():
            tag = _start_tag(text, lower, at)
            if tag is None:
                return
            yield tag
            at = tag.end
            if tag.name in RAW_TEXT:
                at = lower.find("</" + tag.name, at)
                if at < 0 or tag.name == "plaintext":
                    return
        else:
            at += 1   # a "<" that starts no tag is text


def _start_tag(text: str, lower: str, at: int) -> StartTag | None:
    """The tag starting at text[at] == "<", or None if the text ends inside it."""
    name_end = _TAG_NAME.match(text, at + 1).end()
    tag = StartTag(lower[at + 1:name_end], at, -1)
    pos = name_end
    while True:
        pos = _BETWEEN.match(text, pos).end()
        if pos >= len(text):
            return None
        if text[pos] == ">":
            tag.end = pos + 1
            return tag
        name = _ATTR_NAME.match(text, pos)
        attr = Attribute(lower[pos:name.end()], "")
        pos = name.end()
        equals = _EQUALS.match(text, pos)
        if equals:
            pos = equals.end()
            if pos >= len(text):
                return None
            quote = text[pos]
            if quote in "\"'":
                close = text.find(quote, pos + 1)
                if close < 0:
                    return None
                raw, attr.start, attr.end = text[pos + 1:close], pos, close + 1
            else:
                value_end = _UNQUOTED.match(text, pos).end()
                raw, attr.start, attr.end = text[pos:value_end], pos, value_end
            attr.value = html.unescape(raw)
            pos = attr.end
        tag.attrs.append(attr)
