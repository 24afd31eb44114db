"""Differential testing of Mirage against unicorn's RISC-V 64 on random instruction sequences.

gen.py      seeded program generators per category (int, m, a, c, f, d) with their own encoder
harness.py  runs a program on Mirage and on unicorn, compares, bisects to the first divergence
qemu.py     runs a program on qemu-system-riscv64: a check of the reference model itself

Entry points: tests/test_diff_unicorn.py (`just test`), `just fuzz` for the larger sweep
(MIRAGE_FUZZ_PROGRAMS scales it), and a divergence report's one-line command
`MIRAGE_DIFF=category:seed:length:opt python3 -m pytest -q tests/test_diff_unicorn.py::test_reproduce`.
"""
