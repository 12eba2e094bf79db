"""scale.cli: the one command-line generator (help, presets, TOML, sections, booleans, sequences, errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from scale.cli import (
    Command,
    CommandGroup,
    UsageError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    config_to_toml,
    field_specs,
    option,
    resolve,
)


@dataclass
class Run:
    """How long to run."""

    max_iters: int = option(10, "optimizer steps")
    schedule: str = option("cosine", "learning-rate schedule", choices=("cosine", "wsd"))
    verbose: bool = option(True, "print a summary")


@dataclass
class Settings:
    out: Path = option(Path("reports/x"), "output folder")
    html: bool = option(True, "write report.html too")
    problems: tuple[str, ...] | None = option(None, "problems (none = all)")
    threads: tuple[int, ...] = option((1, 2), "thread counts")
    target: float = option(1e-8, "target")
    hidden: str = option("code only", cli=False)
    run: Run = option(default_factory=Run)


PRESETS = {"quick": {"run.max_iters": 2, "html": False}, "long": {"run.max_iters": 1000}}
SEEN: list[Settings] = []
COMMAND = Command("prog", "A test command.", Settings, run=SEEN.append, presets=PRESETS, preset_flags=True)


def parse(*argv: str) -> Settings:
    return COMMAND.parse(list(argv))[0]


def test_fields_flatten_sections_and_skip_code_only_fields():
    keys = [s.key for s in field_specs(Settings)]
    assert keys == ["out", "html", "problems", "threads", "target", "run.max_iters", "run.schedule", "run.verbose"]


def test_values_of_every_kind():
    s = parse("--out", "o", "--no-html", "--problems", "a", "b", "--threads", "4", "--target=1e-6",
              "--run.max_iters", "1e3", "--run.schedule", "wsd")
    assert s == Settings(out=Path("o"), html=False, problems=("a", "b"), threads=(4,), target=1e-6,
                         run=Run(max_iters=1000, schedule="wsd", verbose=True))
    assert parse("--html").html is True and parse("--html", "false").html is False
    assert parse("--problems", "none").problems is None
    assert parse("--run.no-verbose").run.verbose is False and parse("--run.verbose").run.verbose is True
    assert parse("--run.max-iters", "3").run.max_iters == 3  # dashes and underscores alike
    assert parse("--problems", "a", "--problems", "b", "c").problems == ("a", "b", "c")  # repeats add up


def test_presets_flags_and_order(tmp_path):
    assert parse("--quick").run.max_iters == 2 and parse("--preset", "quick").html is False
    assert parse("--quick", "--run.max_iters", "5").run.max_iters == 5  # the command line wins
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "long"\nhtml = false\n[run]\nschedule = "wsd"\n')
    s = parse("--config", str(toml))
    assert (s.run.max_iters, s.html, s.run.schedule) == (1000, False, "wsd")
    assert parse("--config", str(toml), "--quick").run.max_iters == 2  # --preset beats the file's preset


@pytest.mark.parametrize("argv, message", [
    (["--htm"], "unknown option '--htm' (did you mean '--html'"),
    (["--run.schedule", "wds"], "invalid value 'wds' (did you mean 'wsd'?)"),
    (["--run.max_iters", "2.5"], "run.max_iters: expected int, got '2.5'"),
    (["--html", "maybe"], "html: expected bool"),
    (["--preset", "quik"], "unknown preset 'quik' (did you mean 'quick'?)"),
    (["--quick", "--long"], "choose one preset"),
    (["--run.max_iters"], "expected one argument"),
    (["stray"], "unexpected argument(s) stray"),
])
def test_errors_name_the_problem(argv, message, capsys):
    assert COMMAND.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("prog: error: ") and message in err, err


def test_bad_toml_files_are_usage_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        parse("--config", str(bad))
    with pytest.raises(UsageError, match="not found"):
        parse("--config", str(tmp_path / "missing.toml"))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[rnu]\nmax_iters = 3\n")
    with pytest.raises(UsageError, match=r"unknown section \[rnu\] \(did you mean 'run'\?\)"):
        parse("--config", str(wrong))


def test_print_config_round_trips(tmp_path, capsys):
    assert COMMAND.main(["--quick", "--problems", "a", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "html = false" in text and "[run]" in text and "max_iters = 2" in text
    path = tmp_path / "round.toml"
    path.write_text(text)
    assert parse("--config", str(path)) == parse("--quick", "--problems", "a")
    s = parse("--quick")
    assert config_from_dict(Settings, config_to_dict(s)) == s
    assert resolve(Settings, PRESETS, "quick") == s
    assert "hidden" not in config_to_toml(s)


def test_help_prints_booleans_as_booleans_and_every_field(capsys):
    with pytest.raises(SystemExit):
        COMMAND.parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in ("--out", "--html", "--problems", "--threads", "--target", "--run.max-iters", "--run.schedule",
                 "--preset", "--quick", "--config", "--print-config"):
        assert flag in text
    assert "(default: true)" in text and "True" not in text and "choices: cosine, wsd" in text


def test_run_receives_the_settings_and_value_errors_become_exit_2(capsys):
    SEEN.clear()
    assert COMMAND.main(["--quick"]) == 0 and SEEN[-1].run.max_iters == 2

    def refuse(settings):
        raise ValueError("threads must be positive")

    assert Command("p", "d", Settings, run=refuse).main([]) == 2
    assert "p: error: threads must be positive" in capsys.readouterr().err


def test_apply_overrides_checks_keys():
    with pytest.raises(UsageError, match="unknown option 'run.max_iter' \\(did you mean 'run.max_iters'"):
        apply_overrides(Settings(), {"run.max_iter": 1})


def test_command_group_dispatches_and_refuses_unknown_commands(capsys):
    group = CommandGroup("tool", "Two commands.", {"a": COMMAND, "b": Command("tool b", "B.", Run)})
    SEEN.clear()
    assert group.main(["a", "--long"]) == 0 and SEEN[-1].run.max_iters == 1000
    assert group.main(["c"]) == 2
    assert "unknown command 'c'" in capsys.readouterr().err
    assert group.main([]) == 2
    assert group.main(["--help"]) == 0
    assert "COMMAND" in capsys.readouterr().out
