"""Command line: thin click commands; the only place that turns errors into exit codes."""
