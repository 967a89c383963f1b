"""The consoles every command prints through: no wrapping, so output stays greppable."""

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)
