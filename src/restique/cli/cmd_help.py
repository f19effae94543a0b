"""restique help [command]: the help of the program or of one command, as `restic help`."""
import click


@click.command(name="help")
@click.argument("topic", nargs=-1)
@click.pass_context
def help_(ctx, topic):
    """Help about any command."""
    root = ctx.parent
    group = root.command
    if not topic:
        click.echo(group.get_help(root))
        return
    command, info_ctx = group, root
    for name in topic:
        sub = command.get_command(info_ctx, name) if isinstance(command, click.Group) else None
        if sub is None:
            click.echo(f"Unknown help topic [`{' '.join(topic)}`]")
            click.echo(group.get_help(root))
            return
        command = sub
        info_ctx = click.Context(sub, info_name=name, parent=info_ctx)
    click.echo(command.get_help(info_ctx))
