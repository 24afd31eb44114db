"""Devices of the machine (each a `runtime.core.device.Device`), and `write_out` for their output to
the host."""

from __future__ import annotations


def write_out(out, data: bytes) -> None:
    """Writes a device's output to the host (stdout, normally). A host that cannot take it (stdout
    closed, full, a broken pipe) stops the machine with one line, instead of a traceback."""
    from runtime.core.hart import GuestExit

    try:
        out.write(data)
        out.flush()
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise GuestExit(2, f"error: cannot write the guest's output: {reason}") from None
