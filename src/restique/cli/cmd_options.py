"""restique options: the extended options (`-o scheme.name=value`) of every backend."""
import click


@click.command()
def options():
    """Print list of extended options.

    The "options" command prints a list of extended options.

    \b
    EXIT STATUS
    ===========
    Exit status is 0 if the command was successful.
    Exit status is 1 if there was any error.
    """
    from ..backend.location import extended_options

    listed = extended_options()
    width = max(len(name) for name, _ in listed)
    print("All Extended Options:")
    for name, text in listed:
        print(f"  {name:<{width}}  {text}")
