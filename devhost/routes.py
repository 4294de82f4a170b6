"""Azure Functions (ASP.NET Core) route templates -> Starlette paths.

    {name}          -> {name}                    any one segment
    {name:int}      -> {name:int}                also long; Starlette's int takes digits only
    {name:float}    -> {name:float}              also double, decimal
    {name:guid}     -> {name:uuid}
    {name:alpha}    -> {name:fx_alpha}           letters only
    {name:bool}     -> {name:fx_bool}            true/false, any case
    {name?}         -> two paths: with and without that trailing segment
    {name=default}  -> like {name?}; the default fills the missing value
    {*rest} {**rest}-> {rest:path}               catch-all, may be empty

Other constraints (minlength, range, regex, ...) are not enforced: the parameter matches any
segment and `RouteTemplate.unenforced` names them so the host can say so. Route values reach the
function as strings, as in Azure (the worker copies the host's string route values into
`request.path_params`). Like ASP.NET, matching ignores case and a trailing slash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import compile_path


class RouteTemplateError(ValueError):
    """A route template this host cannot serve; the message quotes it."""


class _AlphaConvertor(Convertor[str]):
    regex = "[A-Za-z]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _BoolConvertor(Convertor[str]):
    regex = "(?i:true|false)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("fx_alpha", _AlphaConvertor())
register_url_convertor("fx_bool", _BoolConvertor())

_CONSTRAINTS = {
    "int": "int", "long": "int",
    "float": "float", "double": "float", "decimal": "float",
    "guid": "uuid", "alpha": "fx_alpha", "bool": "fx_bool",
}
_TOKEN = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class _Param:
    name: str
    convertor: str  # starlette convertor name
    optional: bool
    default: str | None
    catch_all: bool
    unenforced: tuple[str, ...]


@dataclass(frozen=True)
class RouteTemplate:
    """One Functions route template, converted."""

    template: str
    paths: tuple[str, ...]  # Starlette paths, the full one first
    defaults: dict[str, str] = field(default_factory=dict)
    unenforced: tuple[str, ...] = ()  # constraints accepted but not checked
    static: bool = False  # no parameters at all

    def precedence(self) -> tuple[int, ...]:
        """ASP.NET-like ordering key: literal segments before parameters before catch-alls."""
        ranks = []
        for seg in self.template.strip("/").split("/"):
            tokens = _TOKEN.findall(seg)
            if not tokens:
                ranks.append(0)
            elif tokens[0].startswith("*"):
                ranks.append(4)
            elif _TOKEN.fullmatch(seg) is None:
                ranks.append(1)  # literal text around a parameter
            elif ":" in tokens[0]:
                ranks.append(2)
            else:
                ranks.append(3)
        return tuple(ranks)


def _parse_param(token: str, template: str) -> _Param:
    body = token
    catch_all = False
    if body.startswith("*"):
        catch_all = True
        body = body.lstrip("*")
    default = None
    if "=" in body:
        body, default = body.split("=", 1)
    optional = default is not None or body.endswith("?")
    body = body.rstrip("?")
    name, _, constraint_text = body.partition(":")
    if not _NAME.match(name):
        raise RouteTemplateError(f"route template {template!r}: bad parameter name {name!r}")
    convertor = "path" if catch_all else "str"
    unenforced: list[str] = []
    if constraint_text and not catch_all:
        for constraint in re.split(r":(?![^(]*\))", constraint_text):
            key = constraint.split("(", 1)[0].strip().lower()
            if key in _CONSTRAINTS and convertor == "str":
                convertor = _CONSTRAINTS[key]
            elif key not in ("required",):
                unenforced.append(f"{name}:{constraint}")
    return _Param(name, convertor, optional or catch_all, default, catch_all, tuple(unenforced))


def convert_route(template: str, prefix: str = "api") -> RouteTemplate:
    """Convert a trigger's route template (and the host's route prefix) to Starlette paths."""
    if "{{" in template or "}}" in template:
        raise RouteTemplateError(f"route template {template!r}: escaped braces are not supported")
    segments = [s for s in template.strip("/").split("/")]
    if any(s == "" for s in segments) and template.strip("/"):
        raise RouteTemplateError(f"route template {template!r}: empty segment")

    out_segments: list[str] = []
    optional_tail: list[bool] = []  # per segment: whole-segment optional parameter
    defaults: dict[str, str] = {}
    unenforced: list[str] = []
    seen: set[str] = set()
    has_params = False
    for index, seg in enumerate(segments):
        tokens = list(_TOKEN.finditer(seg))
        if "{" in _TOKEN.sub("", seg) or "}" in _TOKEN.sub("", seg):
            raise RouteTemplateError(f"route template {template!r}: unbalanced braces in {seg!r}")
        if not tokens:
            out_segments.append(seg)
            optional_tail.append(False)
            continue
        has_params = True
        whole = len(tokens) == 1 and tokens[0].span() == (0, len(seg))
        rebuilt = seg
        seg_optional = False
        for tok in reversed(tokens):
            p = _parse_param(tok.group(1), template)
            if p.name.lower() in seen:
                raise RouteTemplateError(f"route template {template!r}: parameter {p.name!r} repeated")
            seen.add(p.name.lower())
            if p.catch_all and index != len(segments) - 1:
                raise RouteTemplateError(f"route template {template!r}: a catch-all must be the last segment")
            if p.optional and not whole:
                raise RouteTemplateError(
                    f"route template {template!r}: optional parameter {p.name!r} must fill its segment"
                )
            seg_optional = seg_optional or p.optional
            if p.default is not None:
                defaults[p.name] = p.default
            unenforced.extend(p.unenforced)
            rebuilt = rebuilt[: tok.start()] + f"{{{p.name}:{p.convertor}}}" + rebuilt[tok.end():]
        out_segments.append(rebuilt)
        optional_tail.append(seg_optional)

    base = "/" + prefix.strip("/") if prefix.strip("/") else ""
    paths: list[str] = []
    n = len(out_segments)
    cut = n
    while True:
        body = "/".join(out_segments[:cut])
        paths.append((base + "/" + body) if body else (base or "/"))
        if cut == 0 or not optional_tail[cut - 1]:
            break
        cut -= 1
    for path in paths:
        try:
            compile_path(path)
        except (AssertionError, ValueError) as exc:
            raise RouteTemplateError(f"route template {template!r}: {exc}") from exc
    return RouteTemplate(template, tuple(paths), defaults, tuple(unenforced), static=not has_params)


def compile_matcher(path: str) -> re.Pattern[str]:
    """The Starlette path as a regex that ignores case and one trailing slash (as ASP.NET does)."""
    regex, _, _ = compile_path(path)
    pattern = regex.pattern
    if pattern.endswith("$"):
        pattern = pattern[:-1]
    if pattern.endswith("/"):
        pattern = pattern[:-1]
    return re.compile(pattern + "/?$", re.IGNORECASE)
