"""`mirage images`: builds and locates the linux-shell images (registered in runtime/frontends/cli.py)."""

from __future__ import annotations

import click


def _print_paths() -> None:
    from runtime.boot.images import linux
    from runtime.boot.images.build import ImageError

    try:
        art = linux.artifacts(linux.Inputs.current())
    except ImageError as e:
        from runtime.frontends.cli_args import fail

        fail(str(e))
    missing = []
    for what, path in art.paths().items():
        click.echo(f"{what}: {path}")
        if not path.exists():
            missing.append(what)
    if missing:
        click.echo(f"mirage: not built yet: {', '.join(missing)} (run `mirage images build`)", err=True)


@click.group("images", invoke_without_command=True)
@click.pass_context
def images(ctx: click.Context) -> None:
    """Guest images for `mirage jit-run linux-shell`: OpenSBI fw_jump, Linux 6.1, a busybox initramfs
    and their DTB, built from Debian's packages and cached under ~/.cache/mirage/images (or
    $MIRAGE_CACHE_DIR). Without a subcommand: print their paths."""
    if ctx.invoked_subcommand is None:
        _print_paths()


@images.command("paths")
def paths() -> None:
    """Print the image paths in use (firmware, kernel, initrd, dtb), one per line."""
    _print_paths()


@images.command("build")
@click.option("-j", "--jobs", type=click.IntRange(1, 1024), help="Parallel make jobs (default: one per CPU).")
def build(jobs: int | None) -> None:
    """Build whatever is not cached yet (installing Debian packages on first use), then print the
    paths. A failure names the failing command with the last lines of its output (exit status 2)."""
    from runtime.boot.images import linux
    from runtime.boot.images.build import ImageError
    from runtime.frontends.cli_args import fail

    try:
        art = linux.build_all(linux.Reporter(show_cached=True), jobs=jobs)
    except ImageError as e:
        fail(str(e))
    for what, path in art.paths().items():
        click.echo(f"{what}: {path}")
