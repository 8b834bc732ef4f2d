"""A plugin that calls sys.exit at import: zoo must survive it."""

import sys

sys.exit("plugin exits")
