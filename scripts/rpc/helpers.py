"""Output helpers shared by the rpc.py command modules."""

import json
import sys


def print_json(value, indent=2):
    """Prints a result as JSON on stdout; nothing for None (no result)."""
    if value is None:
        return
    print(json.dumps(value, indent=indent))


def json_dump(value, fd=sys.stdout, indent=2):
    """Writes value as JSON; indent None means 2 and a negative indent means compact."""
    if indent is None:
        indent = 2
    elif indent < 0:
        indent = None
    json.dump(value, fd, indent=indent)
    fd.write("\n")


def remove_null(params):
    """Drops params that were not given."""
    return {k: v for k, v in params.items() if v is not None}
