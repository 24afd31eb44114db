"""The virtual firmware monitor: firmware in virtual M-mode."""
