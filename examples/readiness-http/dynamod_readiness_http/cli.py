"""``dynamodctl http-probe URL``: one check of type ``http``, by hand.

Registered under the entry-point group ``dynamodctl`` (not ``dynamod``), so
``dynamodctl`` never imports the daemon-side plugin module and the service
manager never imports this one. ``dynamodctl`` loads this hook only for
commands it does not know itself, yet imports stay inside the command body:
help output and ``dynamodctl plugins`` load it too.

No ``from __future__ import annotations`` here: typer reads the parameter
annotations at run time to build the options.
"""

import dynamod


@dynamod.ctl_hookimpl
def dynamodctl_register_commands(app):  # app: the root typer.Typer
    @app.command("http-probe")
    def http_probe(url: str, status: int = 200, timeout: float = 5.0) -> None:
        """GET URL once, as the http readiness type would; exit 0 if the
        answer has the expected status."""
        import asyncio

        import typer

        from dynamod_readiness_http.detector import fetch_status

        try:
            code = asyncio.run(asyncio.wait_for(fetch_status(url), timeout))
        except TimeoutError:
            typer.echo(f"{url}: no answer within {timeout:g}s", err=True)
            raise typer.Exit(1) from None
        except (OSError, ValueError) as exc:
            typer.echo(f"{url}: {exc}", err=True)
            raise typer.Exit(1) from None
        typer.echo(f"{url}: {code}" + ("" if code == status else f" (expected {status})"))
        raise typer.Exit(0 if code == status else 1)
