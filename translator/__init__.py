"""Mirage: RISC-V guest code to native code through LLVM."""
