"""Load YAML as MetalLB's Go decoder reads its config, for any input: a value or one ``ConfigError``.

Values: every scalar is its literal text (``1:30``, ``no``, ``2001-13-45`` and a 5 000-digit
number stay strings; the field parsers convert them), a plain empty, ``~`` or ``null`` scalar
is None, mapping keys are plain strings and never repeat. Anchors and aliases are accepted,
as Go's YAML accepts them; ``<<`` merge keys are not special.

Hostile input costs bounded time and memory, and every failure is one ``ConfigError`` line:

- input must be UTF-8 (the error gives the byte offset) without characters YAML refuses (NUL...);
- nesting deeper than ``max_depth`` collections is refused while composing, before PyYAML's
  recursive composer and constructor go deeper than that; an alias counts as the collections
  it names, so aliases cannot build deeper values either;
- aliases may add at most ``max_nodes`` nodes to a stream: each alias costs the full expanded
  size of the node it names (aliases inside included), known from the composed nodes, so an
  alias bomb fails before any value is built. Nodes written out literally are not counted:
  their number is bounded by the input's length, and a 10 000-pool config must still load;
- explicit tags: only ``!!str`` on a scalar, ``!!seq`` on a sequence, ``!!map`` on a mapping
  and the non-specific ``!`` are accepted (an explicitly tagged scalar is text even when it
  reads ``null``); any other tag (``!!int``, ``!!binary``, ``!!python/...``, ``!custom``...) is
  an error naming its line and the tag.

Events come from libyaml when PyYAML has it (about ten times faster; Go's YAML is a port of
libyaml), else from PyYAML's own scanner and parser. Composing, and so every check above, is
PyYAML's Python composer in both cases.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import yaml
from metallb.allocator.errors import ConfigError
from yaml.composer import Composer
from yaml.constructor import BaseConstructor
from yaml.events import AliasEvent, CollectionStartEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

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


class _Composer(Composer, BaseConstructor, BaseResolver):
    """PyYAML's composer with the limits checked per node, and strict text-only construction.

    The events come from a parser mixed in before it by the loaders below.
    """

    if TYPE_CHECKING:  # from the parser, and BaseConstructor's untyped ones

        def peek_event(self) -> Any: ...
        def dispose(self) -> None: ...
        def check_data(self) -> bool: ...

    def __init__(self, *, max_nodes: int, max_depth: int) -> None:
        Composer.__init__(self)
        BaseConstructor.__init__(self)
        BaseResolver.__init__(self)
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.depth = 0  # collections open around the node being composed
        self.added = 0  # nodes added by alias expansion, over the whole stream
        self.shapes: dict[int, tuple[int, int]] = {}  # id(collection node) -> (expanded size, height)
        self.tagged: set[int] = set()  # ids of scalars with an explicit tag: text, never null
        self.quoted = False  # construct non-plain scalars as Quoted

    def compose_document(self) -> Node | None:
        # Ids are only meaningful while the document's nodes are alive.
        self.shapes.clear()
        self.tagged.clear()
        return Composer.compose_document(self)

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            return self._compose_alias(event, parent, index)
        tag, kind = _TAGS[type(event)]
        if event.tag not in (None, "!", tag):
            short = "!!" + event.tag.removeprefix(_STD) if event.tag.startswith(_STD) else event.tag
            raise _invalid(
                f'tag "{shown(short)}" on a {kind} is not supported '
                "(only !!str on a scalar, !!seq on a sequence and !!map on a mapping)",
                event.start_mark,
            )
        if isinstance(event, CollectionStartEvent):
            self.depth += 1
            if self.depth > self.max_depth:
                raise _invalid(f"nested deeper than {self.max_depth} levels", event.start_mark)
        node = Composer.compose_node(self, parent, index)
        if not isinstance(node, SequenceNode | MappingNode):
            if event.tag is not None:
                self.tagged.add(id(node))
            return node
        self.depth -= 1
        size, height = 1, 1
        shapes = self.shapes
        children = node.value if isinstance(node, SequenceNode) else [n for pair in node.value for n in pair]
        for child in children:
            s, h = shapes.get(id(child), _SCALAR)  # collections are all there: composed, or refused as recursive
            size += s
            height = max(height, h + 1)
        shapes[id(node)] = (size, height)
        return node

    def _compose_alias(self, event: AliasEvent, parent: Node | None, index: int) -> Node | None:
        node = Composer.compose_node(self, parent, index)  # the anchored node; an undefined alias raises
        shape = _SCALAR if isinstance(node, ScalarNode) else self.shapes.get(id(node))
        name = f"alias *{shown(event.anchor)}"
        if shape is None:  # a collection still being composed: it would contain itself
            raise _invalid(f"{name} refers to a collection that contains it", event.start_mark)
        size, height = shape
        self.added += size
        if self.added > self.max_nodes:
            raise _invalid(f"{name}: aliases expand to more than {self.max_nodes} nodes", event.start_mark)
        if self.depth + height > self.max_depth:
            raise _invalid(f"{name}: nested deeper than {self.max_depth} levels", event.start_mark)
        return node


def _construct_scalar(loader: _Composer, node: ScalarNode) -> str | None:
    # A plain empty scalar ("key:" or "- ") is YAML null: Go decodes it to the
    # zero value, which is how "bgp-advertisements: [ - ]" gives one default entry.
    if not node.style and node.value in _NULLS and id(node) not in loader.tagged:  # plain: None or ""
        return None
    if loader.quoted and (node.style or id(node) in loader.tagged):
        return Quoted(node.value)
    return str(node.value)


def _construct_mapping(loader: _Composer, node: MappingNode) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node) if isinstance(key_node, ScalarNode) else None
        if not isinstance(key, str):
            raise ConfigError(f"line {key_node.start_mark.line + 1}: mapping keys must be plain strings")
        if key in out:
            raise ConfigError(
                f'line {key_node.start_mark.line + 1}: duplicate key "{shown(key)}" '
                f"(first set on an earlier line); remove one of them"
            )
        out[key] = loader.construct_object(value_node, deep=True)
    return out


# Tags are checked while composing, so each node reaching the constructor has its kind's tag
# (sequences use BaseConstructor's own).
_Composer.yaml_constructors = {_STD + "str": _construct_scalar, _STD + "map": _construct_mapping}


class _PythonLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Composer):
    """Events from PyYAML's own scanner and parser."""

    def __init__(self, text: str, *, max_nodes: int, max_depth: int) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _Composer.__init__(self, max_nodes=max_nodes, max_depth=max_depth)

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner looks ahead over one possible key per open flow collection, walking them
        # all per token: refuse the nesting here already, or "[" * 60000 costs half a second.
        if self.flow_level >= self.max_depth:
            raise _invalid(f"nested deeper than {self.max_depth} levels", self.get_mark())
        super().fetch_flow_collection_start(token_class)


_LOADERS: dict[str, Callable[..., _Composer]] = {"python": _PythonLoader}

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    pass
else:

    class _LibyamlLoader(CParser, _Composer):  # type: ignore[misc]
        """Events from libyaml; composed in Python (CParser would compose in C, unchecked)."""

        def __init__(self, text: str, *, max_nodes: int, max_depth: int) -> None:
            CParser.__init__(self, text)
            _Composer.__init__(self, max_nodes=max_nodes, max_depth=max_depth)

        check_node = Composer.check_node
        get_node = Composer.get_node
        get_single_node = Composer.get_single_node

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
        if not stream:
            return loader.get_single_data()
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or exc.context or "invalid"
        if exc.problem and exc.context:
            where = f" on line {exc.context_mark.line + 1}" if exc.context_mark else ""
            problem = f"{exc.problem} ({exc.context}{where})"
        raise _invalid(problem, exc.problem_mark) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {shown(str(exc), limit=200)}") from None
    except RecursionError:  # last resort: the limits keep PyYAML's recursion well inside Python's
        raise ConfigError("invalid YAML: nested too deeply") from None
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
