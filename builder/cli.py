"""The `mlcbuild` command line: a thin Click layer over the library functions in builder/."""

import json
import sys

import click

from . import __version__
from .errors import MlcbuildError


class Group(click.Group):
    """A Click group whose usage errors and user errors print as ONE line, never a traceback."""

    def main(self, args=None, prog_name="mlcbuild", **extra):
        try:
            rv = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:  # bare `mlcbuild`: help is the answer
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.UsageError as e:
            hint = f"; see '{e.ctx.command_path} --help'" if e.ctx else "; see 'mlcbuild --help'"
            click.echo(f"mlcbuild: error: {one_line(e.format_message())}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as e:
            click.echo(f"mlcbuild: error: {one_line(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except (click.Abort, KeyboardInterrupt):
            click.echo("mlcbuild: interrupted", err=True)
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


def one_line(msg: str) -> str:
    return " ".join(msg.split())


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlcbuild")
def cli():
    """Build WebGPU model libraries that export hidden states, and run RecursiveMAS latent loops."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--no-browser", is_flag=True, help="Skip launching Chromium to probe WebGPU.")
def doctor(as_json, no_browser):
    """Check the toolchain: Python packages, emscripten, node, Chromium, wasm runtime, WebGPU."""
    from .doctor import render_table, run_checks

    checks = run_checks(browser=not no_browser)
    if as_json:
        emit_json({"ok": all(c.ok for c in checks), "checks": [c.as_dict() for c in checks]})
    else:
        click.echo(render_table(checks))
    bad = [c for c in checks if not c.ok]
    if bad:
        if not as_json:
            click.echo(f"\n{len(bad)} check(s) failed; run the fix shown beside each.", err=True)
        sys.exit(1)


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even when a verified cached build exists.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def runtime(force, quiet, as_json):
    """Build (or reuse) TVM's wasm runtime objects with emscripten, cached per TVM and emcc version."""
    from .runtime import ensure_runtime

    rt = ensure_runtime(force=force, progress=not (quiet or as_json))
    info = {"dir": str(rt.dir), "reused": rt.reused, "seconds": round(rt.seconds, 2),
            "objects": {p.name: p.stat().st_size for p in rt.objects}}
    if as_json:
        emit_json(info)
    elif not quiet:
        verb = "reused" if rt.reused else "built"
        click.echo(f"wasm runtime {verb} in {rt.seconds:.1f} s: {rt.dir}")


@cli.command()
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def selfcheck(quiet, as_json):
    """Compile a small TVM module for WebGPU, run it in headless Chromium and compare with numpy."""
    from .selfcheck import run_selfcheck

    res = run_selfcheck(progress=not (quiet or as_json))
    if as_json:
        emit_json(res)
    else:
        click.echo(f"webgpu selfcheck: {'OK' if res['ok'] else 'FAILED'}  max abs err {res['max_abs_err']:.2e}"
                   f"  adapter {res['adapter']}  ({res['seconds']:.1f} s)")
    if not res["ok"]:
        raise MlcbuildError("the WebGPU module's results differ from numpy", "see the numbers above")


def main():
    cli.main()


if __name__ == "__main__":
    main()
