"""Front ends: the command line, the console, the gdb stub, tracing and statistics."""
