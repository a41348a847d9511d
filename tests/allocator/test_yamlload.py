"""yamlload: MetalLB's YAML reading (scalars as text), and only ConfigError, quickly, for hostile input."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from metallb.allocator import yamlload
from metallb.allocator.errors import ConfigError
from metallb.allocator.yamlload import MAX_DEPTH, MAX_NODES, load_yaml, load_yaml_all, shown

# Every event source this PyYAML has: "libyaml" (when built with it, the default) and "python".
PARSERS = list(yamlload._LOADERS)
# The suite has no derandomized profile: CI must be deterministic, so each property says so.
SETTINGS = settings(
    derandomize=True, database=None, deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)


def load(text, parser, *, max_nodes=MAX_NODES, max_depth=MAX_DEPTH, stream=False):
    """load_yaml (or load_yaml_all) with the events from *parser*."""
    return yamlload._load(text, max_nodes=max_nodes, max_depth=max_depth, stream=stream, parser=parser)


def verdict(text, parser, **limits):
    """("ok", value) or ("error", message); any other exception propagates and fails the test."""
    try:
        return "ok", load(text, parser, **limits)
    except ConfigError as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1 and "\n" not in message and "\r" not in message, message
        assert len(message) < 400, message
        return "error", message


def nested(kind, depth):
    """A document of *depth* nested collections of *kind* around the scalar x."""
    if kind == "flow list":
        return "[" * depth + "x" + "]" * depth
    if kind == "flow map":
        return "{a: " * depth + "x" + "}" * depth
    if kind == "block list":
        return "".join("  " * i + "-\n" for i in range(depth - 1)) + "  " * (depth - 1) + "- x\n"
    if kind == "block map":
        return "".join("  " * i + "a:\n" for i in range(depth - 1)) + "  " * (depth - 1) + "a: x\n"
    # mixed: a block map, compact block lists, a flow list
    return "[x]" if depth == 1 else "a:\n  " + "- " * (depth - 2) + "[x]\n"


def height(value):
    """Nested collections in *value* (a scalar is 0)."""
    if isinstance(value, list):
        return 1 + max(map(height, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(height, value.values()), default=0)
    return 0


def alias_chain(width, levels):
    """A document whose level i is a list of *width* aliases to level i-1, and the nodes aliases add."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    size, added = 1 + width, 0
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
        added += width * size
        size = 1 + width * size
    return "\n".join(lines) + "\n", added


YAML_FRAGMENTS = [
    "- ", "[", "]", "{", "}", ": ", ":", ", ", "&a ", "*a", "&b ", "*b", "!!str ", "!!map ", "!!seq ",
    "!!int ", "!!binary ", "!x ", "! ", "\n", "  ", "? ", "---\n", "...\n", "'", '"', "|\n", ">\n", "# c",
    "%YAML 1.1\n", "%TAG !e! tag:yaml.org,2002:\n", "!e!str ", "a", "1", "~", "null", "\\", "é", "\r\n", "x y",
]  # fmt: skip
yaml_soup = st.lists(st.sampled_from(YAML_FRAGMENTS), max_size=40).map("".join)


class TestValues:
    @pytest.mark.parametrize("parser", PARSERS)
    def test_scalars_are_literal_text(self, parser):
        """Booleans, numbers, sexagesimals, timestamps and huge integers stay their literal text."""
        big = "9" * 5000
        doc = load(f"a: [yes, No, on, 1:30, 0x1F, 1e3, 2001-13-45, 2001-12-14t21:59:43.10-05:00, {big}]\n", parser)
        assert doc == {
            "a": ["yes", "No", "on", "1:30", "0x1F", "1e3", "2001-13-45", "2001-12-14t21:59:43.10-05:00", big]
        }

    @pytest.mark.parametrize("parser", PARSERS)
    def test_plain_null_scalars_are_none_and_quoted_ones_text(self, parser):
        """A plain empty, ~ or null scalar is None; quoted or explicitly tagged, it is text."""
        doc = load("a:\nb: ~\nc: [null, Null, NULL, -]\nd: 'null'\ne: ''\nf: !!str ~\ng: ! null\n", parser)
        assert doc == {"a": None, "b": None, "c": [None, None, None, "-"], "d": "null", "e": "", "f": "~", "g": "null"}

    @pytest.mark.parametrize("parser", PARSERS)
    def test_empty_document_is_none(self, parser):
        """An empty or comment-only document is None."""
        assert load("", parser) is None
        assert load("# nothing\n", parser) is None

    @pytest.mark.parametrize("parser", PARSERS)
    def test_duplicate_keys_name_key_and_line(self, parser):
        """A key repeated in one mapping is an error naming the key and its line."""
        with pytest.raises(ConfigError, match=r'^line 3: duplicate key "b" \(first set on an earlier line\)'):
            load("a: 1\nb: 2\nb: 3\n", parser)

    @pytest.mark.parametrize("parser", PARSERS)
    @pytest.mark.parametrize("text", ["[a]: 1", "{a: b}: 1", "? [a]\n: 1", "?\n: 1", "~: 1", "a: &k [x]\n*k : 1"])
    def test_keys_must_be_plain_strings(self, parser, text):
        """A null, list or mapping as a key is an error."""
        with pytest.raises(ConfigError, match="mapping keys must be plain strings"):
            load(text, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_aliases_repeat_the_anchored_value(self, parser):
        """Anchors and aliases are accepted, as MetalLB's Go YAML accepts them; merge keys are plain keys."""
        doc = load("a: &x {k: [1, 2]}\nb: *x\nc: {<<: *x}\n", parser)
        assert doc == {"a": {"k": ["1", "2"]}, "b": {"k": ["1", "2"]}, "c": {"<<": {"k": ["1", "2"]}}}

    @pytest.mark.parametrize("parser", PARSERS)
    def test_more_than_one_document_is_an_error(self, parser):
        """load_yaml reads exactly one document."""
        with pytest.raises(ConfigError, match="expected a single document"):
            load("a\n---\nb\n", parser)

    def test_bytes_read_as_utf8_with_or_without_bom(self):
        """Bytes are UTF-8 text; a leading byte-order mark is dropped."""
        assert load_yaml("name: café\n".encode()) == {"name": "café"}
        assert load_yaml(b"\xef\xbb\xbfname: x\n") == {"name": "x"}
        assert load_yaml("\ufeffname: x\n") == {"name": "x"}

    def test_default_parser_is_libyaml_when_pyyaml_has_it(self):
        """The faster libyaml events are used whenever PyYAML was built with them."""
        assert PARSERS[0] == ("libyaml" if yaml.__with_libyaml__ else "python")


class TestStreams:
    @pytest.mark.parametrize("parser", PARSERS)
    def test_documents_in_order_with_empty_ones_as_none(self, parser):
        """load_yaml_all gives every document of a stream in order; an empty one is None."""
        text = "kind: A\n---\nkind: B\n---\n---\n- x\n"
        assert load(text, parser, stream=True) == [{"kind": "A"}, {"kind": "B"}, None, ["x"]]

    def test_empty_stream_has_no_documents(self):
        """An empty stream is an empty list."""
        assert load_yaml_all("") == []
        assert load_yaml_all(b"# only a comment\n") == []

    @pytest.mark.parametrize("parser", PARSERS)
    def test_anchors_do_not_cross_documents(self, parser):
        """An alias names an anchor of its own document only."""
        with pytest.raises(ConfigError, match="undefined alias"):
            load("a: &x 1\n---\nb: *x\n", parser, stream=True)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_alias_budget_counts_over_the_whole_stream(self, parser):
        """Aliases in many small documents add up against one max_nodes."""
        doc = "a: &x [1, 2, 3, 4]\nb: [*x, *x]\n"  # each document adds 10 nodes
        assert len(load("---\n".join([doc] * 10), parser, stream=True, max_nodes=100)) == 10
        with pytest.raises(ConfigError, match="more than 100 nodes"):
            load("---\n".join([doc] * 11), parser, stream=True, max_nodes=100)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_an_error_in_a_later_document_fails_the_stream(self, parser):
        """A stream loads whole or not at all."""
        with pytest.raises(ConfigError, match="line 3"):
            load("a: 1\n---\nb: !!int 2\n", parser, stream=True)


class TestEncoding:
    def test_invalid_utf8_names_the_byte_offset(self):
        """Bytes that are not UTF-8 give the offending byte, its offset and line."""
        with pytest.raises(ConfigError, match=r"^invalid YAML: byte 0xe9 at offset 14 \(line 2\) is not UTF-8"):
            load_yaml(b"a: b\nname: caf\xe9\n")

    @pytest.mark.parametrize("parser", PARSERS)
    @pytest.mark.parametrize(("text", "char", "where"), [("name: a\x00b", "0000", "line 1, column 8"), ("a: 1\nb: \x1b[31m", "001B", "line 2, column 4"), ("a: \ud800", "D800", "line 1, column 4"), ("a: \ufffe", "FFFE", "line 1, column 4")])  # fmt: skip
    def test_characters_yaml_refuses_are_named(self, parser, text, char, where):
        """A NUL, a control character, a lone surrogate or a non-character gives its code point and position."""
        with pytest.raises(ConfigError, match=rf"^invalid YAML: {where}: character U\+{char} is not allowed in YAML$"):
            load(text, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_syntax_errors_give_line_and_column(self, parser):
        """Broken YAML names the position, on one line."""
        with pytest.raises(
            ConfigError, match=r"^invalid YAML: line 3, column 1: .*\(while parsing a flow node on line 3\)$"
        ):
            load("address-pools:\n - name: [\n", parser)


class TestDepth:
    @pytest.mark.parametrize("parser", PARSERS)
    @pytest.mark.parametrize("kind", ["flow list", "flow map", "block list", "block map", "mixed"])
    def test_max_depth_loads_and_one_more_fails(self, parser, kind):
        """Exactly max_depth nested collections load; one more is an error naming the line."""
        assert height(load(nested(kind, MAX_DEPTH), parser)) == MAX_DEPTH
        with pytest.raises(ConfigError, match=r"^invalid YAML: line \d+, column \d+: nested deeper than 100 levels$"):
            load(nested(kind, MAX_DEPTH + 1), parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_issue_example_3000_open_brackets(self, parser):
        """The issue's 3 000 nested flow sequences are a ConfigError, not a RecursionError."""
        with pytest.raises(ConfigError, match="nested deeper than 100 levels|exceeded maximum nesting depth"):
            load("peers: " + "[" * 3000 + "]" * 3000, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_64k_of_open_brackets(self, parser):
        """A 64 KiB run of "[" or "- " fails on the nesting, long before the end."""
        for text in ("[" * 65536, "{" * 65536, "- " * 32768 + "x"):
            with pytest.raises(ConfigError, match="depth|deeper"):
                load(text, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_aliases_cannot_nest_deeper(self, parser):
        """An alias counts as the collections it names: placed deep, it cannot exceed max_depth."""
        text = "a: &a " + nested("flow list", 60) + "\nb: " + "[" * 39 + "*a" + "]" * 39 + "\n"
        assert height(load(text, parser)["b"]) == 99
        text = text.replace("[" * 39 + "*a" + "]" * 39, "[" * 40 + "*a" + "]" * 40)
        with pytest.raises(ConfigError, match=r"line 2, column 44: alias \*a: nested deeper than 100 levels"):
            load(text, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_max_depth_is_a_parameter(self, parser):
        """A smaller max_depth is honoured (scalars are not levels)."""
        assert load("[[x]]", parser, max_depth=2) == [["x"]]
        with pytest.raises(ConfigError, match="nested deeper than 1 levels"):
            load("[[x]]", parser, max_depth=1)

    @SETTINGS
    @given(kind=st.sampled_from(["flow list", "flow map", "block list", "block map", "mixed"]), depth=st.integers(101, 400), parser=st.sampled_from(PARSERS))  # fmt: skip
    def test_generated_nesting_beyond_max_depth_fails(self, kind, depth, parser):
        """Any nesting deeper than max_depth, of any kind, is a ConfigError."""
        outcome, message = verdict(nested(kind, depth), parser)
        assert outcome == "error"
        assert "deeper than 100" in message or "maximum nesting depth" in message

    @SETTINGS
    @given(kind=st.sampled_from(["flow list", "flow map", "block list", "block map", "mixed"]), depth=st.integers(1, 100), parser=st.sampled_from(PARSERS))  # fmt: skip
    def test_generated_nesting_within_max_depth_loads(self, kind, depth, parser):
        """Nesting up to max_depth loads to a value of that depth."""
        assert height(load(nested(kind, depth), parser)) == depth


class TestAliases:
    BOMB = alias_chain(9, 9)[0]

    @pytest.mark.parametrize("parser", PARSERS)
    def test_alias_bomb_fails_fast(self, parser):
        """A few hundred bytes of nested aliases (a billion expanded nodes) fail on the node budget."""
        assert len(self.BOMB) < 600
        with pytest.raises(ConfigError, match=r"^invalid YAML: line 5, column \d+: alias \*l3: aliases expand to more than 10000 nodes$"):  # fmt: skip
            load(self.BOMB, parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_recursive_alias_is_an_error(self, parser):
        """An alias inside the collection it names is an error, not an endless value."""
        with pytest.raises(ConfigError, match=r"alias \*a refers to a collection that contains it"):
            load("a: &a [x, *a]\n", parser)

    @pytest.mark.parametrize("parser", PARSERS)
    def test_literal_nodes_are_not_counted(self, parser):
        """Nodes written out are bounded by the input's size: 30 000 of them load with the default limits."""
        assert len(load("[" + "a, " * 30_000 + "]", parser)) == 30_000

    @pytest.mark.parametrize("parser", PARSERS)
    def test_aliases_to_scalars_count_one_each(self, parser):
        """Every alias costs the expanded size of what it names, a scalar one node."""
        assert load("[&s x" + ", *s" * 10 + "]", parser, max_nodes=10) == ["x"] * 11
        with pytest.raises(ConfigError, match="more than 10 nodes"):
            load("[&s x" + ", *s" * 11 + "]", parser, max_nodes=10)

    @SETTINGS
    @given(width=st.integers(1, 10), levels=st.integers(1, 8), max_nodes=st.integers(0, 5000), parser=st.sampled_from(PARSERS))  # fmt: skip
    def test_generated_alias_chains_fail_exactly_beyond_the_budget(self, width, levels, max_nodes, parser):
        """An alias chain loads if the nodes it adds are within max_nodes, else it is a ConfigError."""
        text, added = alias_chain(width, levels)
        outcome, value = verdict(text, parser, max_nodes=max_nodes)
        assert outcome == ("ok" if added <= max_nodes else "error")
        if outcome == "error":
            assert f"aliases expand to more than {max_nodes} nodes" in value
        else:
            assert value[f"l{levels}"] == [value[f"l{levels - 1}"]] * width


class TestTags:
    @pytest.mark.parametrize("parser", PARSERS)
    def test_standard_tags_on_their_kind_are_accepted(self, parser):
        """!!str on a scalar, !!seq on a list, !!map on a mapping and the plain ! change nothing."""
        text = "%TAG !e! tag:yaml.org,2002:\n---\na: !!str 5\nb: !!seq [x]\nc: !!map {k: v}\nd: !e!str 6\ne: ! 7\nf: !<tag:yaml.org,2002:str> 8\n"  # fmt: skip
        assert load(text, parser) == {"a": "5", "b": ["x"], "c": {"k": "v"}, "d": "6", "e": "7", "f": "8"}

    @pytest.mark.parametrize("parser", PARSERS)
    @pytest.mark.parametrize(
        ("text", "tag", "kind"),
        [
            ("peers: !!str {a: b}", "!!str", "mapping"),
            ("peers: !!map abc", "!!map", "scalar"),
            ("peers: !!seq {a: b}", "!!seq", "mapping"),
            ("x: !!binary aGVsbG8=", "!!binary", "scalar"),
            ("x: !!int 5", "!!int", "scalar"),
            ("x: !!null ''", "!!null", "scalar"),
            ("x: !!timestamp 2001-13-45", "!!timestamp", "scalar"),
            ("x: !!python/object/apply:os.system [id]", "!!python/object/apply:os.system", "sequence"),
            ("x: !!set {a: ~}", "!!set", "mapping"),
            ("x: !custom a", "!custom", "scalar"),
        ],
    )
    def test_other_tags_are_errors_naming_line_and_tag(self, parser, text, tag, kind):
        """Any other tag, or a standard one on the wrong kind, is an error naming the line and the tag."""
        with pytest.raises(ConfigError) as caught:
            load("a: 1\n" + text, parser)
        assert str(caught.value).startswith(f'invalid YAML: line 2, column {text.index("!") + 1}: tag "{tag}" on a {kind} is not supported')  # fmt: skip


class TestShown:
    def test_short_text_is_unchanged(self):
        """Text up to the limit is shown as is, without quotes."""
        assert shown("192.0.2.0/24") == "192.0.2.0/24"
        assert shown("é" * 60) == "é" * 60

    def test_long_text_is_cut_with_an_ellipsis(self):
        """More than 60 characters shows the first 60 and "…", whatever the size."""
        assert shown("x" * 10_000_000) == "x" * 60 + "…"
        assert shown("abcdef", limit=3) == "abc…"

    def test_line_breaks_and_control_characters_are_escaped(self):
        """The result is always one printable line."""
        assert shown("a\nb\r\tc\x00\x1b\u2028\u202e") == r"a\nb\r\tc\x00\x1b\u2028\u202e"

    def test_other_values_are_a_bounded_repr(self):
        """Lists, mappings and None are shown as a short repr, even when shared aliases make them huge."""
        assert shown(None) == "None"
        assert shown(["a", "b"]) == "['a', 'b']"
        level = ["lol"] * 10
        for _ in range(30):  # 10**30 leaves, shared
            level = [level] * 10
        assert len(shown(level)) <= 61
        assert shown({"a": "x\ny"}) == r"{'a': 'x\ny'}"

    def test_huge_integers_are_described_not_converted(self):
        """An integer too long for its decimal text (Python's 4 300-digit limit) is shown by its size."""
        assert shown(10**5000) == "<a 16610-bit integer>"
        assert shown([-(10**5000)]) == "[<a 16610-bit integer>]"
        assert shown(12345) == "12345"

    @SETTINGS
    @given(
        st.text() | st.binary() | st.integers() | st.lists(st.text() | st.integers(-(10**6000), 10**6000)),
        st.integers(1, 100),
    )
    def test_always_one_short_printable_line(self, value, limit):
        """Any value gives one printable line of at most the limit plus an escape and "…"."""
        out = shown(value, limit=limit)
        assert out.isprintable() and len(out) <= limit + 10


class TestAnyInput:
    @SETTINGS
    @given(text=st.text(), parser=st.sampled_from(PARSERS))
    def test_any_text_gives_a_value_or_config_error(self, text, parser):
        """Arbitrary text never raises anything but a one-line ConfigError."""
        verdict(text, parser)
        verdict(text, parser, stream=True)

    @SETTINGS
    @given(data=st.binary(), parser=st.sampled_from(PARSERS))
    def test_any_bytes_give_a_value_or_config_error(self, data, parser):
        """Arbitrary bytes never raise anything but a one-line ConfigError."""
        verdict(data, parser)

    @settings(SETTINGS, max_examples=500)
    @given(text=yaml_soup, parser=st.sampled_from(PARSERS))
    def test_any_yaml_soup_gives_a_value_or_config_error(self, text, parser):
        """Text made of YAML's indicators, tags, anchors and directives gives a value or a ConfigError."""
        verdict(text, parser)
        verdict(text, parser, stream=True)

    @settings(SETTINGS, max_examples=500)
    @given(text=yaml_soup)
    def test_libyaml_and_python_events_agree(self, text):
        """Both event sources give the same value or both an error (tabs aside: PyYAML refuses some libyaml allows)."""
        libyaml, python = verdict(text, PARSERS[0], stream=True), verdict(text, PARSERS[-1], stream=True)
        assert libyaml[0] == python[0]
        if libyaml[0] == "ok":
            assert libyaml == python


# Without NEL: with allow_unicode PyYAML's emitter writes it raw, and YAML reads that as a line break.
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x85"))


def _nest(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4)


PLAIN_DATA = st.recursive(_text, _nest, max_leaves=20)


class TestRoundTrip:
    @SETTINGS
    @given(data=PLAIN_DATA, flow=st.sampled_from([None, True, False]), unicode=st.booleans(), parser=st.sampled_from(PARSERS))  # fmt: skip
    def test_safe_dump_output_loads_to_the_same_data(self, data, flow, unicode, parser):
        """Whatever yaml.safe_dump writes for strings, lists and mappings loads back equal, scalars as text."""
        text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=unicode)
        assert load(text, parser) == data

    @SETTINGS
    @given(documents=st.lists(PLAIN_DATA, max_size=4), parser=st.sampled_from(PARSERS))
    def test_safe_dump_all_output_loads_to_the_same_documents(self, documents, parser):
        """A stream written by yaml.safe_dump_all loads back to the same documents."""
        assert load(yaml.safe_dump_all(documents), parser, stream=True) == documents
