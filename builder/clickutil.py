"""Click plumbing shared by every command: ONE line on stderr for usage and user errors, never a traceback."""

import json
import signal
import sys

import click


class Terminated(BaseException):
    """SIGTERM/SIGHUP, raised like KeyboardInterrupt so every `finally` and temp-folder cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _terminate(signum, frame):
    raise Terminated(signum)


class Group(click.Group):
    """A Click group whose usage errors and user errors print as ONE line, never a traceback."""

    def main(self, args=None, prog_name="mlcbuild", **extra):
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `mlcbuild`: help is the answer
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            hint = f"; see '{e.ctx.command_path} --help'" if e.ctx else "; see 'mlcbuild --help'"
            click.echo(f"mlcbuild: error: {one_line(e.format_message()).rstrip('.')}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"mlcbuild: error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("mlcbuild: interrupted", err=True)
            sys.exit(130)
        except Terminated as e:
            click.echo(f"mlcbuild: stopped by {signal.Signals(e.signum).name}; nothing half-written was kept", err=True)
            sys.exit(128 + e.signum)
        sys.exit(rv if isinstance(rv, int) else 0)


def one_line(msg: str) -> str:
    return " ".join(msg.split())


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))
