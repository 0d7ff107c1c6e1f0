"""Commands of the documentation's ```bash blocks, for the tests that check or run them."""

from __future__ import annotations

import re
import shlex


def bash_commands(markdown: str) -> list[list[str]]:
    """The commands of the ```bash blocks of a markdown text, continuation lines joined, split as a shell would
    (comments dropped, blank lines skipped)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args:
                commands.append(args)
    return commands
