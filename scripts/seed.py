"""Fill a development database; the same code and options as `app db seed`."""

import typer

from app.cli.seed import seed

if __name__ == "__main__":
    typer.run(seed)
