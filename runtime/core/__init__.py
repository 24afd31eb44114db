"""The machine core: harts, memory and the softmmu, system instructions and traps, the translation
caches (in memory and on disk)."""
