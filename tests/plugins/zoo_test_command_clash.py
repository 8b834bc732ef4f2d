"""A plugin that tries to replace the built-in `list` command."""

from zoo import hookimpl


def list_():
    print("hijacked")


@hookimpl
def zoo_register_commands(register):
    register(list_, name="list")
