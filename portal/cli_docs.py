"""Documents generated from the code, so they cannot drift: the README's command reference and the
record of processing (docs/privacy.md). tests/test_docs.py fails when a committed copy is stale."""
from __future__ import annotations

import inspect

import click

from portal.cli_common import _settings, config_option


def _first_line(text: str | None) -> str:
    """The first paragraph, on one line."""
    return " ".join(inspect.cleandoc(text or "").split("\n\n")[0].split())


def _metavar(param: click.Option) -> str:
    if param.metavar:
        return param.metavar
    if isinstance(param.type, click.Choice):
        return "|".join(param.type.choices)
    if isinstance(param.type, click.IntRange):
        return "N"
    return param.type.name.upper()


def _option_line(param: click.Parameter) -> str | None:
    # --config is on every command: the reference says so once instead of on every line.
    if not isinstance(param, click.Option) or param.hidden or {"--help", "--config"} & set(param.opts):
        return None
    names = ", ".join((*param.opts, *param.secondary_opts))
    if not param.is_flag:
        names += f" {_metavar(param)}"
    default = f" (default: {param.default})" if param.show_default and param.default not in (None, "") else ""
    required = " (required)" if param.required else ""
    meaning = f": {_first_line(param.help)}" if param.help else ""
    return f"  - `{names}`{required}{meaning}{default}"


def _walk(command: click.Command, path: str, out: list[str]) -> None:
    arguments = " ".join(p.human_readable_name.upper() for p in command.params if isinstance(p, click.Argument))
    usage = f"{path} {arguments}".strip()
    help_line = _first_line(command.help)
    if isinstance(command, click.Group):
        out.append(f"- `{usage} ...`: {help_line}")
    else:
        out.append(f"- `{usage}`: {help_line}")
    out.extend(line for line in map(_option_line, command.params) if line)
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            _walk(command.commands[name], f"{path} {name}", out)


def commands_markdown(root: click.Group) -> str:
    """Every command under `root`, depth first and by name: its usage, first help line, options."""
    out: list[str] = ["Every command takes `--config FILE` (a TOML settings file; default `$FOOTFALL_CONFIG`), "
                      "also before the command's name; `--help` shows the full help.", ""]
    _walk(root, "footfall", out)
    return "\n".join(out)


@click.command("commands")
@click.option("--markdown", is_flag=True, help="Print the command reference the README carries.")
@config_option
@click.pass_context
def commands_command(ctx: click.Context, markdown: bool, config: str | None) -> None:
    """List every command with its options (the README's command reference)."""
    _settings(config)  # like every command: a --config that cannot be read is an error, not ignored
    root = ctx.find_root().command
    text = commands_markdown(root)
    click.echo(text if markdown else text.replace("`", ""))


@click.command("privacy-record")
@click.option("--defaults", is_flag=True,
              help="Use the default policy texts even when the database holds published versions, and name no webhook endpoint.")
@config_option
def privacy_record_command(defaults: bool, config: str | None) -> None:
    """Print the record of processing (markdown) from the settings and the policy texts in force."""
    from portal.privacy_record import render
    from portal.privacy_record_sources import published_endpoints, published_texts, settings_in_force

    settings = settings_in_force(_settings(config))  # with the owner's panel edits, as the portal runs
    texts = None if defaults else published_texts(settings)
    endpoints = None if defaults else published_endpoints(settings)
    click.echo(render(settings, texts, endpoints), nl=False)
