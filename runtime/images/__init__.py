"""Named guest images (`mirage jit-run NAME`), built from source on first use and cached."""
