"""The one exception type for user mistakes: the CLI prints it as a single line and exits 1."""


class SvqbenchError(Exception):
    """A problem the user can fix (bad name, missing file, wrong value); never a bug in svqbench."""
