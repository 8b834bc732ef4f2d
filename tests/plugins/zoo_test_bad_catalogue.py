"""A source whose catalogue fails (its service is down): `zoo list --available` must list the others."""

from zoo import Source, hookimpl


class BadCatalogue(Source):
    name = "badcat"

    def models(self, pattern=None):
        raise RuntimeError("catalogue service down")


@hookimpl
def zoo_register_sources(register):
    register(BadCatalogue())
