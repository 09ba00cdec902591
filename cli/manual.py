"""docs/cli.md, rendered from the click commands themselves, so the reference cannot drift
from the flags: ``python -m edgediff.cli.manual > docs/cli.md`` regenerates it, and
tests/docs/test_cli_md.py fails when the file in the repository differs from a fresh render.

The help text is laid out for a fixed terminal width, so the file does not depend on the
terminal of whoever regenerates it."""

from __future__ import annotations

import click

WIDTH = 78  # what click wraps to in any terminal of 80 columns or more (its 80, less 2)

_HEADER = """\
# Command-line reference

Every `edgediff` command's `--help`, as click prints it in a terminal of 80 columns or more.

This file is generated from the commands' own definitions; do not edit it by hand.
After changing a command, regenerate it from the repository root:

```bash
python -m edgediff.cli.manual > docs/cli.md
```

`tests/docs/test_cli_md.py` fails when this file is stale.
"""


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    # make_context applies the command's context_settings (-h as well as --help);
    # resilient parsing lets it stand without the command's required arguments
    return command.make_context(name, [], parent=parent, resilient_parsing=True,
                                terminal_width=WIDTH, max_content_width=WIDTH)


def render(group: click.Group | None = None) -> str:
    """The Markdown of docs/cli.md: the group's help, then each subcommand's, in the
    order ``edgediff --help`` lists them."""
    if group is None:
        from edgediff.cli import main as group
    root = _context(group, "edgediff", None)
    parts = [_HEADER, "## edgediff\n", "```text", root.get_help(), "```\n"]
    for name in group.list_commands(root):
        command = group.get_command(root, name)
        parts += [f"## edgediff {name}\n", "```text",
                  _context(command, name, root).get_help(), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    click.echo(render(), nl=False)
