"""A plugin that implements a hook zoo does not have (a typo)."""

from zoo import hookimpl


@hookimpl
def zoo_register_sauces(register):
    pass
