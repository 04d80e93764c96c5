"""Flint's SPDK-compatible JSON-RPC client package, used by scripts/rpc.py.

Each module covers one area and exposes add_parsers(subparsers), which adds its rpc.py
subcommands; to add methods for a new area, add a module here and list it in MODULES.
"""

from . import app
from . import bdev
from . import client
from . import config
from . import iobuf
from . import log
from . import nvmf

MODULES = [app, log, iobuf, bdev, nvmf, config]


def add_parsers(subparsers):
    for module in MODULES:
        module.add_parsers(subparsers)
