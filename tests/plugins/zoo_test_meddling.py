"""A post-export transform that changes the file and the metadata, then raises: zoo must undo both."""

from zoo.plugin import hookimpl


@hookimpl
def zoo_post_export(path, metadata):
    path.write_bytes(b"half-written")
    metadata["meddling"] = {"nodes": 0}
    metadata["stats"]["meddled"] = True
    metadata["labels"] = ["wrong"]
    raise RuntimeError("optimizer crashed")
