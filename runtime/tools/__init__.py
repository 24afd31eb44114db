"""Developer tools that are not part of the machine (the git gate)."""
