"""Booting a guest: ELF loading, the device tree, the board's boot layout and the named images."""
