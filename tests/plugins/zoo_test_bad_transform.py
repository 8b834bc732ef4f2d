"""A post-export transform that corrupts the file: zoo must undo it."""

from zoo import hookimpl


@hookimpl
def zoo_post_export(path):
    path.write_bytes(b"not an onnx model")
