"""A plugin whose hook takes an argument the hookspec does not pass."""

from zoo import hookimpl


@hookimpl
def zoo_register_sources(registrar):
    pass
