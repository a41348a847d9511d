"""Load YAML as MetalLB's Go decoder reads its config, for any input: a value or one ``ConfigError``.

Values: every scalar is its literal text (``1:30``, ``no``, ``2001-13-45`` and a 5 000-digit
number stay strings; the field parsers convert them), a plain empty, ``~`` or ``null`` scalar
is None, mapping keys are plain strings and never repeat. Anchors and aliases are accepted,
as Go's YAML accepts them; ``<<`` merge keys are not special.

Hostile input costs bounded time and memory, and every failure is one ``ConfigError`` line:

- input must be UTF-8 (the error gives the byte offset) without characters YAML refuses (NUL...);
- nesting deeper than ``max_depth`` collections is refused as the collection opens; an alias
  counts as the collections it names, so aliases cannot build deeper values either;
- aliases may add at most ``max_nodes`` nodes to a stream: each alias costs the full expanded
  size of the value it names (aliases inside included), known once that value is complete, so
  an alias bomb fails before anything is copied (an alias shares its value). Nodes written out
  literally are not counted: their number is bounded by the input's length, and a 10 000-pool
  config must still load;
- explicit tags: only ``!!str`` on a scalar, ``!!seq`` on a sequence, ``!!map`` on a mapping
  and the non-specific ``!`` are accepted (an explicitly tagged scalar is text even when it
  reads ``null``); any other tag (``!!int``, ``!!binary``, ``!!python/...``, ``!custom``...) is
  an error naming its line and the tag.

Events come from libyaml when PyYAML has it (about ten times faster; Go's YAML is a port of
libyaml), else from PyYAML's own scanner and parser. Values are built from the events in one
loop, without PyYAML's node graph, recursion or constructor (five times faster than composing
and constructing), with every check above on the way. Errors come in PyYAML's order: any error
of the YAML itself (syntax, limits, anchors) before a key error (duplicate, not text) of the
same document, and, in a single-document load, before a second document.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml
from metallb.allocator.errors import ConfigError
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

__all__ = ["MAX_DEPTH", "MAX_NODES", "Quoted", "load_yaml", "load_yaml_all", "shown"]

#: Default limits (issue 11): nodes added by aliases per stream, and nested collections.
MAX_NODES = 10_000
MAX_DEPTH = 100

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_STD = "tag:yaml.org,2002:"
# The one explicit tag each kind of node may carry, and the kind's name in errors.
_TAGS: dict[type, tuple[str, str]] = {
    ScalarEvent: (_STD + "str", "scalar"),
    SequenceStartEvent: (_STD + "seq", "sequence"),
    MappingStartEvent: (_STD + "map", "mapping"),
}

_SCALAR = (1, 0)  # a scalar's (expanded size, height in collections)
_KEY = object()  # a mapping frame waiting for its next key
_BAD_KEY = object()  # a key that is not text: its value is read and dropped


class _Repr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        # Past 4 300 digits int has no decimal text (ValueError); past 60 it is cut anyway.
        return f"<a {x.bit_length()}-bit integer>" if x.bit_length() > 200 else super().repr_int(x, level)


_REPR = _Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 4, 4, 60, 60


def shown(value: object, *, limit: int = 60) -> str:
    """*value* for an error message: one line, at most *limit* characters (then "…").

    Text is shown as is (the caller quotes it); other values as a bounded repr. Control
    characters, line breaks and other non-printable characters are escaped (``\\n``,
    ``\\x00``, ``\\u2028``). Cost depends on *limit* only, never on the value's size.
    """
    text = value if isinstance(value, str) else _REPR.repr(value)
    if len(text) <= limit and text.isprintable():  # the usual case, and on every error path: fast
        return text
    out: list[str] = []
    length = 0
    for char in text:
        if length >= limit:
            return "".join(out) + "…"
        piece = char if char.isprintable() else repr(char)[1:-1]
        out.append(piece)
        length += len(piece)
    return "".join(out)


class Quoted(str):
    """Text written quoted, as a block scalar or tagged ``!!str``: a string, never a number or boolean.

    Returned by the loaders with ``quoted=True`` (plain scalars stay ``str``), so a parser can
    tell ``my-asn: "1"`` (text, which Go's YAML refuses for a number) from ``my-asn: 1``.
    Equal to, and hashing as, the same ``str``.
    """

    __slots__ = ()


# Dumped like any str (yaml refuses str subclasses it does not know).
yaml.SafeDumper.add_representer(Quoted, yaml.representer.SafeRepresenter.represent_str)
yaml.Dumper.add_representer(Quoted, yaml.representer.SafeRepresenter.represent_str)


def _invalid(problem: str, mark: Any) -> ConfigError:
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return ConfigError(f"invalid YAML: {where}{shown(problem, limit=200)}")


class _Frame:
    """A collection being read: its value, and what the checks need to know of it."""

    __slots__ = ("anchor", "height", "key", "line", "mapping", "size", "value")

    def __init__(self, value: dict[str, Any] | list[Any], anchor: str | None, line: int) -> None:
        self.value = value
        self.mapping = isinstance(value, dict)
        self.key: object = _KEY  # mappings: the key waiting for its value
        self.size, self.height = 1, 1  # expanded nodes (itself included), collections deep
        self.anchor = anchor
        self.line = line  # where it starts, 1-based


class _Builder:
    """Values straight from parser events, with the limits, tag and key checks; no nodes, no recursion.

    Mixed in after a parser (libyaml's or PyYAML's), which gives ``get_event``, ``peek_event``
    and ``check_event``.
    """

    if TYPE_CHECKING:  # from the parser

        def get_event(self) -> Any: ...
        def peek_event(self) -> Any: ...
        def check_event(self, *choices: type) -> bool: ...
        def dispose(self) -> None: ...

    def __init__(self, *, max_nodes: int, max_depth: int) -> None:
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.added = 0  # nodes added by alias expansion, over the whole stream
        self.quoted = False  # build non-plain scalars as Quoted

    def single_document(self) -> Any:
        """The one document of the stream (None when empty); PyYAML's errors for a second one."""
        self.get_event()  # StreamStartEvent
        if self.check_event(StreamEndEvent):
            self.get_event()
            return None
        value, start_mark, deferred = self._document()
        if not self.check_event(StreamEndEvent):
            raise ComposerError(
                "expected a single document in the stream", start_mark, "but found another document",
                self.get_event().start_mark,
            )  # fmt: skip
        self.get_event()
        if deferred is not None:
            raise deferred
        return value

    def all_documents(self) -> list[Any]:
        """Every document of the stream, in order; a document's key error fails it before the next is read."""
        self.get_event()  # StreamStartEvent
        documents = []
        while not self.check_event(StreamEndEvent):
            value, _, deferred = self._document()
            if deferred is not None:
                raise deferred
            documents.append(value)
        self.get_event()
        return documents

    def _document(self) -> tuple[Any, Any, ConfigError | None]:
        """One document: its value, the start of its root, and the first key error, raised by the caller.

        Key errors wait for the end of the document: PyYAML composes a whole document before it
        constructs keys, so an error of the YAML itself anywhere in the document comes first.
        """
        get_event = self.get_event
        max_depth = self.max_depth
        anchors: dict[str, tuple[Any, tuple[int, int] | None, Any]] = {}  # name -> value, shape (None: open), mark
        stack: list[_Frame] = []
        deferred: ConfigError | None = None
        root: Any = None
        root_mark: Any = None
        get_event()  # DocumentStartEvent
        while True:
            event = get_event()
            kind = type(event)
            if kind is DocumentEndEvent:
                break
            if root_mark is None:
                root_mark = event.start_mark
            if kind is AliasEvent:
                name = event.anchor
                if name not in anchors:
                    raise ComposerError(None, None, f"found undefined alias {name!r}", event.start_mark)
                value, shape, _ = anchors[name]
                label = f"alias *{shown(name)}"
                if shape is None:  # a collection still open: it would contain itself
                    raise _invalid(f"{label} refers to a collection that contains it", event.start_mark)
                self.added += shape[0]
                if self.added > self.max_nodes:
                    raise _invalid(f"{label}: aliases expand to more than {self.max_nodes} nodes", event.start_mark)
                if len(stack) + shape[1] > max_depth:
                    raise _invalid(f"{label}: nested deeper than {max_depth} levels", event.start_mark)
            elif kind is ScalarEvent or kind is SequenceStartEvent or kind is MappingStartEvent:
                tag, noun = _TAGS[kind]
                if event.tag is not None and event.tag != "!" and event.tag != tag:
                    short = "!!" + event.tag.removeprefix(_STD) if event.tag.startswith(_STD) else event.tag
                    raise _invalid(
                        f'tag "{shown(short)}" on a {noun} is not supported '
                        "(only !!str on a scalar, !!seq on a sequence and !!map on a mapping)",
                        event.start_mark,
                    )
                if kind is not ScalarEvent and len(stack) >= max_depth:
                    raise _invalid(f"nested deeper than {max_depth} levels", event.start_mark)
                name = event.anchor
                if name is not None and name in anchors:
                    raise ComposerError(
                        f"found duplicate anchor {name!r}; first occurrence", anchors[name][2],
                        "second occurrence", event.start_mark,
                    )  # fmt: skip
                if kind is ScalarEvent:
                    # A plain empty, ~ or null scalar is null (Go: the zero value), unless tagged.
                    text = event.value
                    if not event.style and event.tag is None:
                        value = None if text in _NULLS else text
                    else:
                        value = Quoted(text) if self.quoted else text
                    shape = _SCALAR
                    if name is not None:
                        anchors[name] = (value, _SCALAR, event.start_mark)
                else:
                    frame = _Frame({} if kind is MappingStartEvent else [], name, event.start_mark.line + 1)
                    if name is not None:
                        anchors[name] = (frame.value, None, event.start_mark)
                    if stack and stack[-1].mapping and stack[-1].key is _KEY and deferred is None:
                        deferred = ConfigError(f"line {frame.line}: mapping keys must be plain strings")
                    stack.append(frame)
                    continue
            elif kind is SequenceEndEvent or kind is MappingEndEvent:
                frame = stack.pop()
                value, shape = frame.value, (frame.size, frame.height)
                if frame.anchor is not None:
                    anchors[frame.anchor] = (value, shape, anchors[frame.anchor][2])
            else:  # no other event comes inside a document
                raise ComposerError(None, None, f"unexpected {kind.__name__}", event.start_mark)
            if not stack:
                root = value
                continue
            parent = stack[-1]
            parent.size += shape[0]
            if shape[1] >= parent.height:
                parent.height = shape[1] + 1
            if not parent.mapping:
                parent.value.append(value)  # type: ignore[union-attr]
            elif parent.key is _KEY:  # this value is a key
                line = event.start_mark.line + 1
                if not isinstance(value, str):
                    # null, or an alias naming a collection (a collection written here was said at its start)
                    if deferred is None and kind is not SequenceEndEvent and kind is not MappingEndEvent:
                        deferred = ConfigError(f"line {line}: mapping keys must be plain strings")
                    parent.key = _BAD_KEY
                elif value in parent.value:
                    if deferred is None:
                        deferred = ConfigError(
                            f'line {line}: duplicate key "{shown(value)}" (first set on an earlier line); '
                            "remove one of them"
                        )
                    parent.key = _BAD_KEY
                else:
                    parent.key = value
            else:
                if parent.key is not _BAD_KEY:
                    parent.value[parent.key] = value  # type: ignore[call-overload,index]
                parent.key = _KEY
        return root, root_mark, deferred


class _PythonLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Builder):
    """Events from PyYAML's own scanner and parser."""

    def __init__(self, text: str, *, max_nodes: int, max_depth: int) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Builder.__init__(self, max_nodes=max_nodes, max_depth=max_depth)

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner looks ahead over one possible key per open flow collection, walking them
        # all per token: refuse the nesting here already, or "[" * 60000 costs half a second.
        if self.flow_level >= self.max_depth:
            raise _invalid(f"nested deeper than {self.max_depth} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


_LOADERS: dict[str, Callable[..., _Builder]] = {"python": _PythonLoader}

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    pass
else:

    class _LibyamlLoader(CParser, _Builder):  # type: ignore[misc]
        """Events from libyaml (CParser would compose in C, unchecked: only its events are used)."""

        def __init__(self, text: str, *, max_nodes: int, max_depth: int) -> None:
            CParser.__init__(self, text)
            _Builder.__init__(self, max_nodes=max_nodes, max_depth=max_depth)

    _LOADERS = {"libyaml": _LibyamlLoader, **_LOADERS}


def _source(text: str | bytes) -> str:
    """*text* as checked text: UTF-8 and only characters YAML allows (both parsers agree then)."""
    if isinstance(text, bytes):
        data = text
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ConfigError(
                f"invalid YAML: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line}) is not UTF-8; "
                "save the file as UTF-8"
            ) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        position = bad.start()
        line = text.count("\n", 0, position) + 1
        column = position - text.rfind("\n", 0, position)
        raise ConfigError(
            f"invalid YAML: line {line}, column {column}: character U+{ord(bad.group()):04X} is not allowed in YAML"
        )
    return text.removeprefix("\ufeff")


def _load(
    text: str | bytes, *, max_nodes: int, max_depth: int, stream: bool, parser: str = "", quoted: bool = False
) -> Any:
    loader = (_LOADERS[parser] if parser else next(iter(_LOADERS.values())))(
        _source(text), max_nodes=max_nodes, max_depth=max_depth
    )
    loader.quoted = quoted
    try:
        return loader.all_documents() if stream else loader.single_document()
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid"
        if exc.problem and exc.context:
            where = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
            problem = f"{exc.problem} ({exc.context}{where})"
        raise _invalid(problem, exc.problem_mark) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {shown(str(exc), limit=200)}") from None
    finally:
        loader.dispose()


def load_yaml(
    text: str | bytes, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH, quoted: bool = False
) -> Any:
    """The one YAML document in *text* (None if empty), scalars as text; ``ConfigError`` otherwise.

    *max_nodes* bounds the nodes aliases add, *max_depth* the nesting of collections.
    With *quoted*, scalars written quoted (or as block scalars, or tagged ``!!str``) are
    :class:`Quoted`, so a parser can refuse them where Go's YAML wants a number or boolean.
    """
    return _load(text, max_nodes=max_nodes, max_depth=max_depth, stream=False, quoted=quoted)


def load_yaml_all(
    text: str | bytes, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH, quoted: bool = False
) -> list[Any]:
    """Every document of a YAML stream, in order (an empty document is None); ``ConfigError`` otherwise.

    The limits and *quoted* are those of ``load_yaml``; *max_nodes* counts over the whole stream.
    """
    documents: list[Any] = _load(text, max_nodes=max_nodes, max_depth=max_depth, stream=True, quoted=quoted)
    return documents
