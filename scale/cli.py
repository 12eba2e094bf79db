"""Command lines generated from dataclasses: one generator behind every entry point of ``scale``.

An entry point describes its settings as a dataclass whose fields carry their help text (and, for a closed
set of values, their choices) in the field metadata, written with :func:`option`. A field whose value is
itself such a dataclass is a *section*: its fields are addressed as ``section.name`` (``run.max_iters``).
From that one description this module derives

- the ``--help`` text: every field with its type, default and choices (booleans print as ``true``/``false``);
- the parser: ``--name VALUE`` or ``--name=VALUE`` (dashes and underscores are interchangeable in names),
  ``--name a b c`` for tuple fields (a repeated option adds to the list), ``--flag`` / ``--no-flag`` or ``--flag false`` for booleans;
- presets (``--preset NAME``, and ``--NAME`` where the entry point asks for preset flags), TOML files
  (``--config FILE.toml``) and ``--print-config``, which prints the resolved settings as TOML;
- errors that name the problem: an unknown option, key, section or preset is refused with the closest valid
  names (``did you mean``), a bad value with the field's name and expected type; :meth:`Command.main`
  turns them into one ``PROG: error: ...`` line and exit status 2.

Resolution order (later wins): the dataclass defaults, the preset, the TOML file (which may name a preset
itself with a top-level ``preset = "NAME"``; the command line's ``--preset`` wins), then the command line.
A :class:`Command` is one entry point; :class:`CommandGroup` gathers several under sub-command names
(``python -m scale.bench.training quality --seeds 2``).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import os
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Command",
    "CommandGroup",
    "FieldSpec",
    "UsageError",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "config_to_toml",
    "convert_value",
    "did_you_mean",
    "field_specs",
    "load_toml",
    "option",
    "resolve",
]

_MISSING = dataclasses.MISSING


class UsageError(ValueError):
    """A command line, TOML file or preset that cannot be resolved; the message says what is wrong."""


def option(default: Any = _MISSING, help: str = "", *, choices: Sequence[Any] | None = None,  # noqa: A002
           default_factory: Callable[[], Any] | Any = _MISSING, cli: bool = True) -> Any:
    """A dataclass field that documents itself: ``help`` and ``choices`` go into ``--help`` and into the
    errors; ``cli=False`` keeps the field out of the command line (set it from code only)."""
    meta: dict[str, Any] = {"help": help, "cli": cli}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


# ------------------------------------------------------------------------------------------ field specs
@dataclass(frozen=True)
class FieldSpec:
    """One settable field: ``key`` (``"name"`` or ``"section.name"``), type, default, help and valid values."""

    key: str
    section: str | None
    name: str
    type: Any
    default: Any
    help: str
    choices: tuple[Any, ...] | None

    @property
    def flag(self) -> str:
        """The option as ``--help`` prints it (dashes for underscores)."""
        return "--" + self.key.replace("_", "-")

    @property
    def negation(self) -> str:
        """A boolean's off switch: ``--no-html``, ``--run.no-progress``."""
        prefix = f"{self.section}." if self.section else ""
        return f"--{prefix}no-{self.name}".replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that cannot be resolved: fall back on the default's type
        return {}


def _is_section(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def field_specs(config: Any) -> list[FieldSpec]:
    """Every settable field of the dataclass instance (or class) ``config``, sections flattened in order.

    Help texts come from the field metadata, else from the class attribute ``__field_help__`` (a mapping
    ``key -> (help, choices)``) of the outermost class, which lets a config embed a dataclass that carries
    no metadata of its own.
    """
    instance = config() if isinstance(config, type) else config
    overrides: Mapping[str, tuple[str, Sequence[Any] | None]] = getattr(type(instance), "__field_help__", {})
    specs: list[FieldSpec] = []

    def walk(obj: Any, section: str | None) -> None:
        hints = _hints(type(obj))
        for f in dataclasses.fields(obj):
            if not f.init or not f.metadata.get("cli", True):
                continue
            value = getattr(obj, f.name)
            if section is None and _is_section(value):
                walk(value, f.name)
                continue
            key = f.name if section is None else f"{section}.{f.name}"
            help_text, choices = f.metadata.get("help"), f.metadata.get("choices")
            if key in overrides:
                help_text = help_text or overrides[key][0]
                choices = choices or overrides[key][1]
            typ = hints.get(f.name, type(value) if value is not None else str)
            specs.append(FieldSpec(key, section, f.name, typ, value, help_text or f"{key}",
                                   tuple(choices) if choices else None))

    walk(instance, None)
    return specs


def did_you_mean(word: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest names in ``valid``, or ``""``."""
    close = difflib.get_close_matches(word, list(valid), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _unknown(kind: str, word: str, valid: Sequence[str]) -> UsageError:
    return UsageError(f"unknown {kind} {word!r}{did_you_mean(word, valid)}; valid {kind}s: "
                      f"{', '.join(sorted(valid))}")


# ------------------------------------------------------------------------------------------ values
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _base_types(typ: Any) -> tuple[list[Any], bool]:
    """The non-None member types of ``typ`` and whether None is allowed."""
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(typ)
        return [a for a in args if a is not type(None)], type(None) in args
    return [typ], False


def _sequence_item(typ: Any) -> Any | None:
    """The item type of a ``tuple[X, ...]`` / ``Sequence[X]`` / ``list[X]`` field, else None."""
    origin = typing.get_origin(typ)
    if origin in (tuple, list, Sequence):
        args = [a for a in typing.get_args(typ) if a is not Ellipsis]
        return args[0] if args else str
    return None


def is_sequence(spec: FieldSpec) -> bool:
    return any(_sequence_item(b) is not None for b in _base_types(spec.type)[0])


def is_bool(spec: FieldSpec) -> bool:
    return _base_types(spec.type)[0] == [bool]


def convert_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` (a command-line string, a list of them, or a TOML value) as the field's type; a
    :class:`UsageError` naming the field otherwise."""
    bases, nullable = _base_types(spec.type)
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str) and is_sequence(spec):
        value = value[0] if value[0].strip().lower() in ("none", "null") else value  # "--problems none"
    if nullable and (value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))):
        return None
    if value is None:
        raise UsageError(f"{spec.key} cannot be none")
    errors = []
    for base in bases:
        item = _sequence_item(base)
        try:
            if item is not None:
                items = [value] if isinstance(value, (str, int, float)) else list(value)
                out: Any = tuple(_convert_one(item, v) for v in items)
                bad = [v for v in out if spec.choices is not None and v not in spec.choices]
            else:
                out = _convert_one(base, value)
                bad = [out] if spec.choices is not None and out not in spec.choices else []
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
            continue
        if bad:
            raise UsageError(f"{spec.key}: invalid value {bad[0]!r}"
                             f"{did_you_mean(str(bad[0]), [str(c) for c in spec.choices or ()])}; valid values: "
                             f"{', '.join(str(c) for c in spec.choices or ())}")
        return out
    raise UsageError(f"{spec.key}: expected {_type_name(spec.type)}, got {value!r}")


def _convert_one(base: Any, value: Any) -> Any:
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"not a boolean (true/false): {value!r}")
    if base is int:
        if isinstance(value, bool):
            raise TypeError("a boolean is not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            s = value.strip().replace("_", "")
            try:
                return int(s)
            except ValueError:
                x = float(s)  # "1e3"
                if x.is_integer():
                    return int(x)
                raise
        raise TypeError(f"not an integer: {value!r}")
    if base is float:
        if isinstance(value, bool):
            raise TypeError("a boolean is not a number")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(f"not a number: {value!r}")
    if base is str or base is Any:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise TypeError(f"not a string: {value!r}")
    if base is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
        raise TypeError(f"not a path: {value!r}")
    raise TypeError(f"unsupported field type {base!r}")


def _type_name(typ: Any) -> str:
    bases, nullable = _base_types(typ)
    names = []
    for b in bases:
        item = _sequence_item(b)
        names.append(f"{getattr(item, '__name__', str(item))}..." if item is not None
                     else getattr(b, "__name__", str(b)))
    return "|".join(names) + ("|none" if nullable else "")


def _show(value: Any) -> str:
    """A default as ``--help`` and TOML show it: ``true``/``false``, ``none``, space-separated tuples."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return " ".join(_show(v) for v in value) if value else "empty"
    return str(value)


# ------------------------------------------------------------------------------------------ dicts and TOML
def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain values only (str/int/float/bool/None/lists): sections as nested dicts. What records store."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if not f.metadata.get("cli", True):
            continue  # set from code only (e.g. objects that have no plain form)
        value = getattr(config, f.name)
        out[f.name] = config_to_dict(value) if _is_section(value) else _plain(value)
    return out


def _flatten(d: Mapping[str, Any], config: Any, origin: str) -> dict[str, Any]:
    sections = {f.name for f in dataclasses.fields(config) if _is_section(getattr(config, f.name))}
    out = {}
    for key, value in d.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise UsageError(f"{origin}: [{key}] must be a table of key = value pairs, got {value!r}")
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, Mapping):
            raise UsageError(f"{origin}: unknown section [{key}]{did_you_mean(key, sorted(sections))}; sections: "
                             f"{', '.join(sorted(sections)) or 'none (this command has top-level keys only)'}")
        else:
            out[key] = value
    return out


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """A copy of ``config`` with ``{"key" or "section.key": value}`` applied, values converted to the field types."""
    specs = {s.key: s for s in field_specs(config)}
    changes: dict[str | None, dict[str, Any]] = {}
    for key, value in overrides.items():
        key = key.replace("-", "_")
        if key not in specs:
            raise _unknown("option", key, list(specs))
        spec = specs[key]
        changes.setdefault(spec.section, {})[spec.name] = convert_value(spec, value)
    top = dict(changes.pop(None, {}))
    for section, values in changes.items():
        top[section] = dataclasses.replace(getattr(config, section), **values)
    return dataclasses.replace(config, **top)


def config_from_dict(cls: type, d: Mapping[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict` (unknown sections or keys raise :class:`UsageError`)."""
    base = cls()
    return apply_overrides(base, _flatten(d, base, "config"))


def load_toml(path: str | Path, cls: type) -> tuple[str | None, dict[str, Any]]:
    """``(preset, overrides)`` from a TOML file of ``cls``'s keys and sections, with an optional top-level
    ``preset = "NAME"``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {str(path)!r} not found")
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from exc
    preset = doc.pop("preset", None)
    if preset is not None and not isinstance(preset, str):
        raise UsageError(f"{path}: preset must be a string, got {preset!r}")
    return preset, _flatten(doc, cls(), f"config file {str(path)!r}")


def resolve(cls: type, presets: Mapping[str, Mapping[str, Any]] | None = None, preset: str | None = None,
            config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Any:
    """Defaults, then the preset, then the TOML file, then ``overrides`` (later wins)."""
    presets = presets or {}
    file_preset, file_overrides = (None, {}) if config_file is None else load_toml(config_file, cls)
    preset = preset or file_preset
    config = cls()
    if preset:
        if preset not in presets:
            raise _unknown("preset", preset, list(presets))
        config = apply_overrides(config, presets[preset])
    config = apply_overrides(config, file_overrides)
    return apply_overrides(config, overrides or {})


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if v is None:
        return '"none"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def config_to_toml(config: Any) -> str:
    """The settings as a TOML document that :func:`resolve` reads back to the same settings."""
    plain = config_to_dict(config)
    keys = {s.key for s in field_specs(config)}
    top = [f"{k} = {_toml_value(v)}" for k, v in plain.items() if not isinstance(v, dict) and k in keys]
    lines = top + ([""] if top else [])
    for section, values in plain.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if f"{section}.{k}" in keys)
            lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the command line
class _ParagraphFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that descriptions keep their paragraphs (each wrapped on its own)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n")]
        return "\n\n".join(super(_ParagraphFormatter, self)._fill_text(p, width, indent) for p in paragraphs if p)


def _normalize_argv(argv: Sequence[str]) -> list[str]:
    """``--a_b.c_d=v`` -> ``--a-b.c-d=v``: either spelling of a name is accepted."""
    out = []
    for tok in argv:
        if tok.startswith("--") and len(tok) > 2:
            key, eq, val = tok.partition("=")
            tok = key.replace("_", "-") + eq + val
        out.append(tok)
    return out


@dataclass
class Command:
    """One entry point: its settings class, presets and action.

    ``run(config) -> int`` is called by :meth:`main` with the resolved settings; a ``ValueError`` it raises
    becomes an ``error:`` line and exit status 2. ``preset_flags`` adds ``--NAME`` for every preset
    (``--quick`` for ``--preset quick``).
    """

    prog: str
    description: str
    config: type
    run: Callable[[Any], int | None] | None = None
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    preset_flags: bool = False
    epilog: str | None = None
    help: str | None = None  # one line, shown in a CommandGroup's list

    def specs(self) -> list[FieldSpec]:
        return field_specs(self.config)

    def parser(self, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
        p = parser or argparse.ArgumentParser(prog=self.prog, allow_abbrev=False)
        p.description, p.epilog = self.description, self.epilog
        p.formatter_class = _ParagraphFormatter
        generic = p.add_argument_group("settings files")
        if self.presets:
            names = ", ".join(self.presets)
            generic.add_argument("--preset", metavar="NAME", default=None,
                                 help=f"start from a named set of settings: {names}")
            if self.preset_flags:
                for name in self.presets:
                    generic.add_argument(f"--{name}", dest="preset_flag", action="append_const", const=name,
                                         help=f"the same as --preset {name}")
        generic.add_argument("--config", metavar="FILE.toml", default=None,
                             help="read settings from a TOML file (keys as below; sections as [tables]; "
                                  "an optional top-level preset = \"NAME\")")
        generic.add_argument("--print-config", action="store_true",
                             help="print the resolved settings as TOML and exit")
        groups: dict[str | None, Any] = {}
        sections = {f.name: getattr(self.config(), f.name) for f in dataclasses.fields(self.config)}
        for spec in self.specs():
            if spec.section not in groups:
                if spec.section is None:
                    groups[None] = p  # argparse's own "options" group, beside --help
                else:
                    doc = (type(sections[spec.section]).__doc__ or "").strip().splitlines()
                    groups[spec.section] = p.add_argument_group(f"[{spec.section}]", doc[0] if doc else None)
            group = groups[spec.section]
            extra = f" (default: {_show(spec.default)}"
            if spec.choices:
                extra += f"; choices: {', '.join(_show(c) for c in spec.choices)}"
            extra += ")"
            text = spec.help.replace("%", "%%") + extra
            if is_bool(spec):
                group.add_argument(spec.flag, dest=spec.key, nargs="?", const="true", metavar="BOOL",
                                   default=argparse.SUPPRESS, help=text + f"; {spec.negation} is the same as false")
                group.add_argument(spec.negation, dest=spec.key, action="store_const", const="false",
                                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)
            elif is_sequence(spec):
                item = _sequence_item(_base_types(spec.type)[0][0])
                group.add_argument(spec.flag, dest=spec.key, nargs="+", metavar=getattr(item, "__name__", "X").upper(),
                                   action="extend", default=argparse.SUPPRESS, help=text + "; repeating the "
                                   "option adds to the list")
            else:
                group.add_argument(spec.flag, dest=spec.key, metavar=_type_name(spec.type).upper(),
                                   default=argparse.SUPPRESS, help=text)
        return p

    def parse(self, argv: Sequence[str] | None = None) -> tuple[Any, argparse.Namespace]:
        """``(settings, namespace)``; :class:`UsageError` for anything that cannot be resolved."""
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = self.parser()
        args, unknown = _parse_known(parser, _normalize_argv(argv))
        if unknown:
            raise self._unknown_argument(unknown)
        flags = getattr(args, "preset_flag", None) or []
        preset = getattr(args, "preset", None)
        chosen = {*flags, *([preset] if preset else [])}
        if len(chosen) > 1:
            raise UsageError(f"choose one preset, got {', '.join(sorted(chosen))}")
        keys = {s.key for s in self.specs()}
        overrides = {k: v for k, v in vars(args).items() if k in keys}
        config = resolve(self.config, self.presets, next(iter(chosen), None), args.config, overrides)
        return config, args

    def _unknown_argument(self, unknown: Sequence[str]) -> UsageError:
        flags = [tok for tok in unknown if tok.startswith("-")]
        if flags:
            word = flags[0].split("=", 1)[0]
            valid = [s.flag for s in self.specs()] + ["--config", "--print-config", "--help"]
            valid += ["--preset"] + ([f"--{n}" for n in self.presets] if self.preset_flags else [])
            return UsageError(f"unknown option {word!r}{did_you_mean(word, valid)}; run {self.prog} --help "
                              "for the list")
        return UsageError(f"unexpected argument(s) {' '.join(unknown)}: settings are given as --name VALUE")

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse, then ``--print-config`` or :attr:`run`; returns the exit status (2 for a usage error)."""
        try:
            config, args = self.parse(argv)
        except SystemExit as exc:  # --help, or argparse's own usage errors (already printed)
            return exc.code if isinstance(exc.code, int) else 2
        except ValueError as exc:
            return fail(self.prog, exc)
        if args.print_config:
            try:
                print(config_to_toml(config))
            except BrokenPipeError:  # "--print-config | head": the reader left, which is fine
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stdout stays open until exit
            return 0
        if self.run is None:
            return 0
        try:
            status = self.run(config)
        except ValueError as exc:
            return fail(self.prog, exc)
        return int(status or 0)


def fail(prog: str, exc: BaseException | str) -> int:
    """Print ``PROG: error: MESSAGE`` on stderr (argparse's form) and return exit status 2."""
    print(f"{prog}: error: {exc}", file=sys.stderr)
    return 2


def _parse_known(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    # argparse exits on a malformed option (a missing value); turn its message into a UsageError so that
    # every usage problem takes the same path.
    def error(message: str) -> typing.NoReturn:
        raise UsageError(message)

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_known_args(argv)


@dataclass
class CommandGroup:
    """Several :class:`Command` s behind sub-command names: ``PROG NAME [settings]``."""

    prog: str
    description: str
    commands: Mapping[str, Command]

    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=self.prog, description=self.description, allow_abbrev=False,
                                    formatter_class=_ParagraphFormatter)
        sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
        for name, cmd in self.commands.items():
            cmd.parser(sub.add_parser(name, help=cmd.help, allow_abbrev=False))
        return p

    def main(self, argv: Sequence[str] | None = None) -> int:
        argv = list(sys.argv[1:] if argv is None else argv)
        if not argv or argv[0] in ("-h", "--help"):
            self.parser().print_help() if argv else self.parser().print_usage(sys.stderr)
            return 0 if argv else 2
        name = argv[0]
        if name not in self.commands:
            return fail(self.prog, _unknown("command", name, list(self.commands)))
        return self.commands[name].main(argv[1:])
