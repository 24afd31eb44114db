"""The machine at run time: harts, memory, dispatch, devices, loaders, CLI."""
