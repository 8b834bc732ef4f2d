"""A plugin with one hook: ``zoo_post_export`` waits ``ZOO_TEST_SLOW_EXPORT_S`` seconds (default 0)
after the file is written and before the entry is complete, so that store tests can kill a writer
in that window without racing a real model's export (tests/test_reliability_store.py)."""

import os
import time

from zoo import hookimpl


@hookimpl
def zoo_post_export(path, metadata):
    time.sleep(float(os.environ.get("ZOO_TEST_SLOW_EXPORT_S", "0")))
