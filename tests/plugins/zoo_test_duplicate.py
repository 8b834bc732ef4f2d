"""A plugin that registers a source name a built-in already has."""

from zoo import Source, hookimpl


class Impostor(Source):
    name = "torchvision"


@hookimpl
def zoo_register_sources(register):
    register(Impostor())
