# Mirage task runner. `just test` is the gate every commit on main must pass.
set shell := ["bash", "-euo", "pipefail", "-c"]
export PYTHONPATH := justfile_directory()
# Debian's own Python refuses pip installs without this (PEP 668); others ignore it.
export PIP_BREAK_SYSTEM_PACKAGES := "1"

default: test

# Install what Mirage needs: Debian packages (cross toolchain, QEMU as a reference) and Python deps.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    need=()
    command -v riscv64-linux-gnu-gcc >/dev/null || need+=(gcc-riscv64-linux-gnu binutils-riscv64-linux-gnu)
    command -v qemu-system-riscv64 >/dev/null || need+=(qemu-system-misc)
    command -v gdb-multiarch >/dev/null || need+=(gdb-multiarch)
    command -v dtc >/dev/null || need+=(device-tree-compiler)
    command -v cpio >/dev/null || need+=(cpio)
    [ -f /usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.elf ] || need+=(opensbi)
    if [ ${#need[@]} -gt 0 ]; then
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        echo "setup: installing ${need[*]} (apt)" >&2
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    deps_ok() { python3 -c "import llvmlite, elftools, cffi, click, capstone, rich, matplotlib, unicorn, pytest, ruff" 2>/dev/null; }
    if [ -n "${MIRAGE_GATE_COMMIT:-}" ]; then
        # Inside `mirage gate`'s temporary worktree: never install the project from here (the
        # worktree is deleted afterwards); PYTHONPATH points at it.
        deps_ok || python3 -m pip install -q $(python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print(' '.join(repr(d) for d in p['dependencies'] + p['optional-dependencies']['test']))" | tr -d "'")
    elif ! deps_ok || ! mirage --version >/dev/null 2>&1; then
        # Also when an earlier install's `mirage` no longer starts (modules moved since).
        echo "setup: installing Python dependencies (pip)" >&2
        python3 -m pip install -q -e '.[test]'
    fi

# Run Mirage's main job (default: linux-shell, OpenSBI + Linux + busybox, images built on first
# use), e.g. `just run`, `just run demo` or `just run path/to/prog.elf`.
run *ARGS: setup
    python3 -m runtime jit-run {{ if ARGS == "" { "linux-shell" } else { ARGS } }}

# The full test suite (the per-commit gate).
test *ARGS: setup
    python3 -m ruff check translator runtime vfm platforms tests
    python3 -m pytest -q {{ ARGS }}

# Slow cases, not part of the per-commit gate.
test-slow *ARGS: setup
    python3 -m pytest -q -m slow {{ ARGS }}

# Larger sweeps: unicorn differential testing and hostile guests (MIRAGE_HOSTILE_FUZZ seeds, 300).
fuzz *ARGS: setup
    python3 -m pytest -q -m slow tests/test_diff_unicorn.py tests/test_hostile.py {{ ARGS }}

# Soak: linux-shell loop for MINUTES with Mirage's RSS sampled, e.g. `just soak 30`.
soak MINUTES="30" *ARGS: setup
    python3 -m tests.soak {{ MINUTES }} {{ ARGS }}

# CPU benchmarks side by side with QEMU.
bench *ARGS: setup
    python3 -m tests.bench.run {{ ARGS }}

# Linux boot benchmark: linux-shell to the prompt and back on QEMU and on Mirage (cold and warm pcache).
bench-boot *ARGS: setup
    python3 -m tests.bench.boot {{ ARGS }}

# Monitor micro-benchmarks: host time of a firmware trap and of a world switch (us per operation).
bench-vfm *ARGS: setup
    python3 -m tests.bench.vfm_bench {{ ARGS }}

# Check that every commit not yet verified passes `just test`.
gate *ARGS: setup
    python3 -m runtime gate {{ ARGS }}
