#!/usr/bin/env python3
"""Command-line client for Flint's JSON-RPC interface, compatible with SPDK's scripts/rpc.py.

    rpc.py [-s SOCK] [-t TIMEOUT] [-r CONN_RETRIES] [-v] METHOD [args]

Results are printed as JSON on stdout. An error response is printed on stderr and the exit
status is 1. With no METHOD and commands piped on stdin, each line is run as one command
line over a single connection.
"""

import argparse
import logging
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import rpc  # noqa: E402  (the scripts/rpc/ package)
from rpc.client import JSONRPCClient, JSONRPCException  # noqa: E402

DEFAULT_SOCKET = "/var/tmp/spdk.sock"


def build_parser():
    parser = argparse.ArgumentParser(
        description="Flint (SPDK-compatible) JSON-RPC 2.0 command line interface")
    parser.add_argument("-s", dest="server_addr", default=DEFAULT_SOCKET,
                        help="RPC Unix domain socket path. Default: %s" % DEFAULT_SOCKET)
    parser.add_argument("-t", dest="timeout", type=float, default=60.0,
                        help="Timeout as a floating point number expressed in seconds waiting"
                             " for response. Default: 60.0")
    parser.add_argument("-r", dest="conn_retries", type=int, default=0,
                        help="Retry connecting to the RPC server N times with 0.2s interval."
                             " Default: 0")
    parser.add_argument("-v", dest="verbose", action="store_const", const="INFO",
                        default="ERROR", help="Set verbose mode to INFO")
    parser.add_argument("--verbose", dest="verbose", choices=["DEBUG", "INFO", "ERROR"],
                        help="Set verbose level.")
    subparsers = parser.add_subparsers(help="RPC methods", dest="called_rpc_name",
                                       metavar="METHOD")
    rpc.add_parsers(subparsers)
    return parser


def connect(args):
    return JSONRPCClient(args.server_addr, timeout=args.timeout,
                         conn_retries=args.conn_retries,
                         log_level=getattr(logging, args.verbose.upper()))


def execute_script(parser, client, fd):
    executed = ""
    for line in map(str.rstrip, fd):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        executed = "\n".join([executed, line])
        args = parser.parse_args(shlex.split(line))
        if not hasattr(args, "func"):
            parser.error("no method given in line: %s" % line)
        args.client = client
        try:
            args.func(args)
        except JSONRPCException as ex:
            print("Exception:", file=sys.stderr)
            print(executed.strip() + " <<<", file=sys.stderr)
            print(ex.message, file=sys.stderr)
            return 1
    return 0


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)

    if not hasattr(args, "func") and sys.stdin.isatty():
        parser.print_help()
        return 1

    try:
        client = connect(args)
    except JSONRPCException as ex:
        print(ex.message, file=sys.stderr)
        return 1

    with client:
        if not hasattr(args, "func"):
            return execute_script(parser, client, sys.stdin)
        args.client = client
        try:
            args.func(args)
        except JSONRPCException as ex:
            print(ex.message, file=sys.stderr)
            return 1
        except BrokenPipeError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
