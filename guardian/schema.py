"""A small schema language over YAML nodes, so every error knows its file and line.

The configuration (config.py), the rule packs (policy/rulepacks.py) and the telco's
provisioning (provision.py) describe their files with these parsers: ``mapping``,
``listof``, ``choice``, ``converted`` ... each reports a problem as FILE:LINE: path: what,
and the loader refuses YAML bombs (too deep, too many nodes) before building anything.
At the foundation: imports only names.py and errors.py of Guardian.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml

from .names import normalise_domain


class Bad(Exception):
    """A problem with one value; ``node`` says where."""

    def __init__(self, message: str, node: yaml.Node | None = None) -> None:
        super().__init__(message)
        self.node = node


Parser = Callable[[yaml.Node, str, "Context"], Any]


class Context:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[str] = []

    def report(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        where = f"{path}: " if path else ""
        self.problems.append(f"{self.filename}:{line}: {where}{message}")


MAX_YAML_DEPTH = 50  # lists and mappings inside each other; a household is ~6 deep
MAX_YAML_NODES = 200_000  # values once aliases are expanded; a big household is a few thousand


class YamlTooBig(yaml.MarkedYAMLError):
    """A document nested too deeply, or whose aliases expand too far ("billion laughs")."""


class Loader(yaml.SafeLoader):
    """SafeLoader that reads IPv6 in flow lists, as YAML 1.2 does: ``[::1/128, fe80::/10]``,
    and refuses documents nested deeper than ``MAX_YAML_DEPTH`` or with more than
    ``MAX_YAML_NODES`` values once aliases are expanded, and aliases to the list or
    mapping they are in (``YamlTooBig`` at the offending node) — every reader of the
    tree would otherwise walk each alias again: a 20 KB file of aliases is a million
    values, and 20,000 nested ``[`` a RecursionError.

    YAML 1.1 (PyYAML) takes a ``:`` inside ``[...]`` as a key separator even when a
    non-space follows, so the operator contract's own example would not load.
    """

    _BREAK = "\0 \t\r\n\x85\u2028\u2029,[]{}"

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._sizes: dict[int, int] = {}  # id(node) -> values in it, aliases expanded

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if node is not None and id(node) not in self._sizes:  # still being composed: the alias is inside it
                raise YamlTooBig(None, None, "an alias refers to itself (the list or mapping it is in)", mark)
            return node
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlTooBig(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._sizes[id(child)] for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self._sizes[id(k)] + self._sizes[id(v)] for k, v in node.value)
        else:
            size = 1
        if size > MAX_YAML_NODES:
            raise YamlTooBig(None, None, f"more than {MAX_YAML_NODES:,} values once its aliases are expanded "
                             "(aliases repeating aliases)", node.start_mark)
        self._sizes[id(node)] = size
        return node

    def check_value(self) -> bool:
        if self.flow_level:
            return bool(self.peek(1) in self._BREAK)
        return bool(super().check_value())

    def check_plain(self) -> bool:
        if self.flow_level and self.peek() == ":" and self.peek(1) not in self._BREAK:
            return True
        return bool(super().check_plain())


_constructor = yaml.constructor.SafeConstructor()


def scalar(node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise Bad("expected a single value, not a " + ("list" if isinstance(node, yaml.SequenceNode) else "mapping"), node)
    try:
        return _constructor.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise Bad(str(exc.problem), node) from None
    finally:
        # The constructor remembers every node it built (for aliases within one document);
        # shared across reads, that kept each file's whole node tree: ~0.2 MB per SIGHUP.
        _constructor.constructed_objects.clear()


def string(node: yaml.Node, path: str, ctx: Context) -> str:
    value = scalar(node)
    if not isinstance(value, str) or not value:
        raise Bad(f"expected text, got {value!r}", node)
    return value


def optional_string(node: yaml.Node, path: str, ctx: Context) -> str | None:
    value = scalar(node)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Bad(f"expected text, got {value!r}", node)
    return value


def integer(low: int, high: int) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> int:
        value = scalar(node)
        if isinstance(value, bool) or not isinstance(value, int):
            raise Bad(f"expected a whole number, got {value!r}", node)
        if not low <= value <= high:
            raise Bad(f"{value} is out of range {low}..{high}", node)
        return value
    return parse


def number(low: float, high: float) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> float:
        value = scalar(node)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Bad(f"expected a number, got {value!r}", node)
        if not low <= value <= high:
            raise Bad(f"{value} is out of range {low}..{high}", node)
        return float(value)
    return parse


def boolean(node: yaml.Node, path: str, ctx: Context) -> bool:
    value = scalar(node)
    if not isinstance(value, bool):
        raise Bad(f"expected true or false, got {value!r}", node)
    return value


def choice(*options: str) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> str:
        value = scalar(node)
        if value not in options:
            raise Bad(f"{value!r} is not one of: {', '.join(options)}", node)
        return str(value)
    return parse


def converted(convert: Callable[[str], Any]) -> Parser:
    """A text value turned into something else by ``convert`` (ValueError = problem)."""
    def parse(node: yaml.Node, path: str, ctx: Context) -> Any:
        text = string(node, path, ctx)
        try:
            return convert(text)
        except ValueError as exc:
            raise Bad(str(exc), node) from None
    return parse


def listof(item: Parser, allow_single: bool = False) -> Parser:
    def parse(node: yaml.Node, path: str, ctx: Context) -> tuple[Any, ...]:
        if allow_single and isinstance(node, yaml.ScalarNode):
            return (item(node, path, ctx),)
        if isinstance(node, yaml.ScalarNode) and scalar(node) is None:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise Bad("expected a list", node)
        out = []
        for i, child in enumerate(node.value):
            try:
                out.append(item(child, f"{path}[{i}]", ctx))
            except Bad as bad:
                ctx.report(bad.node or child, f"{path}[{i}]", str(bad))
        return tuple(out)
    return parse


def mapping(schema: dict[str, Parser], required: tuple[str, ...] = ()) -> Parser:
    """A mapping with exactly these keys (unknown keys are problems)."""
    def parse(node: yaml.Node, path: str, ctx: Context) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode) and scalar(node) is None:
            node = yaml.MappingNode("tag:yaml.org,2002:map", [], node.start_mark, node.end_mark)
        if not isinstance(node, yaml.MappingNode):
            raise Bad("expected a mapping of key: value", node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            sub = f"{path}.{key}" if path else str(key)
            if key not in schema:
                ctx.report(key_node, sub, f"unknown key (known: {', '.join(sorted(schema))})")
                continue
            if key in out:
                ctx.report(key_node, sub, "given twice")
                continue
            try:
                out[key] = schema[key](value_node, sub, ctx)
            except Bad as bad:
                ctx.report(bad.node or value_node, sub, str(bad))
                out[key] = FAILED
        for key in required:
            if key not in out:
                ctx.report(node, path, f"missing required key {key!r}")
        return {k: v for k, v in out.items() if v is not FAILED}
    return parse


FAILED = object()


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def domain_name(text: str) -> str:
    name = normalise_domain(text)
    if not name:
        raise ValueError(f"{text!r} is not a domain name")
    return name


def clock(text: str) -> str:
    hours, sep, minutes = str(text).partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or int(hours) > 24 or int(minutes) > 59 \
            or (int(hours) == 24 and int(minutes)):
        raise ValueError(f"{text!r} is not a time of day as HH:MM")
    return f"{int(hours):02d}:{int(minutes):02d}"


def block_targets(ident: Parser) -> Parser:
    """A schedule's ``block:``: 'all', or a list of category/service ids read by ``ident``."""
    def parse(node: yaml.Node, path: str, ctx: Context) -> Any:
        if isinstance(node, yaml.ScalarNode):
            if scalar(node) != "all":
                raise Bad("block: is 'all' or a list of categories/services", node)
            return "all"
        return listof(ident)(node, path, ctx)
    return parse


def schedule_schema(ident: Parser) -> Parser:
    """One schedule window (config household profiles and rules/profiles.yaml templates)."""
    return mapping(
        {
            "name": string,
            "days": listof(choice(*DAYS), allow_single=True),
            "from": converted(clock),
            "to": converted(clock),
            "block": block_targets(ident),
            "allow": listof(converted(domain_name), allow_single=True),
        },
        required=("name", "days", "from", "to", "block"),
    )


def budget_schema(ident: Parser) -> Parser:
    """One daily budget: a category or service id and its minutes."""
    return mapping({"target": ident, "minutes": integer(0, 1440)}, required=("target", "minutes"))


def http_url(text: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r}: lists are fetched over http:// or https:// only")
    return text
