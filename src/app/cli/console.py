"""The consoles every command prints through: no wrapping, so output stays greppable, and no
emoji codes, so text such as a revision range ("a:b:c") prints as it is."""

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
