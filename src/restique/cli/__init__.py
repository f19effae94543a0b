"""Command line interface: one module per command, restic's flags, output and exit codes."""
