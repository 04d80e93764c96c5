"""save_config / load_config: client-side, as in SPDK's rpc.py.

save_config asks framework_get_subsystems for the subsystems (in initialization order) and
framework_get_config for each; load_config replays such a file through ordinary RPC calls.
"""

import json
import sys

from . import app
from .client import JSONRPCException
from .helpers import json_dump


def save_config(client, fd=sys.stdout, indent=2):
    """Writes the live configuration as {"subsystems": [{"subsystem", "config"}...]}."""
    config = {"subsystems": []}
    for elem in app.framework_get_subsystems(client):
        name = elem["subsystem"]
        config["subsystems"].append({
            "subsystem": name,
            "config": app.framework_get_config(client, name=name),
        })
    json_dump(config, fd, indent)
    return config


def _read_config(fd):
    try:
        config = json.load(fd)
    except ValueError as ex:
        raise JSONRPCException("load_config: input is not valid JSON: %s" % ex)
    if not isinstance(config, dict) or not isinstance(config.get("subsystems"), list):
        raise JSONRPCException("load_config: input must be an object with a 'subsystems' array")
    subsystems = []
    for i, subsystem in enumerate(config["subsystems"]):
        if not isinstance(subsystem, dict) or not isinstance(subsystem.get("subsystem"), str):
            raise JSONRPCException("load_config: subsystems[%d] has no 'subsystem' name" % i)
        entries = subsystem.get("config")
        if entries is None:
            entries = []
        if not isinstance(entries, list):
            raise JSONRPCException("load_config: subsystem '%s': 'config' must be an array"
                                   % subsystem["subsystem"])
        pending = []
        for j, elem in enumerate(entries):
            if not isinstance(elem, dict) or not isinstance(elem.get("method"), str):
                raise JSONRPCException("load_config: subsystem '%s' entry %d has no 'method'"
                                       % (subsystem["subsystem"], j))
            pending.append((j, elem))
        if pending:
            subsystems.append((subsystem["subsystem"], pending))
    return subsystems


def load_config(client, fd=sys.stdin, include_aliases=False):
    """Replays a saved configuration.

    Entries whose method is allowed in the current state run first (subsystems and entries in
    file order). While the target is still in its startup state (framework_start_init is
    allowed), framework_start_init and framework_wait_init are then called and the remaining
    entries run in the runtime state. An unknown method is an error before anything runs.
    Returns the list of (subsystem, index, method) entries that could not run in any state.
    """
    subsystems = _read_config(fd)

    known = app.rpc_get_methods(client, include_aliases=include_aliases)
    for name, entries in subsystems:
        for index, elem in entries:
            if elem["method"] not in known:
                raise JSONRPCException(
                    "load_config: unknown method '%s' in subsystem '%s' entry %d of the config"
                    % (elem["method"], name, index))

    while True:
        allowed = app.rpc_get_methods(client, current=True, include_aliases=include_aliases)
        progressed = False
        started = False
        for name, entries in subsystems:
            for item in list(entries):
                index, elem = item
                if elem["method"] not in allowed:
                    continue
                try:
                    client.call(elem["method"], elem.get("params"))
                except JSONRPCException as ex:
                    ex.message = ("load_config: subsystem '%s' entry %d (method '%s') failed:\n%s"
                                  % (name, index, elem["method"], ex.message))
                    raise
                entries.remove(item)
                progressed = True
                if elem["method"] == "framework_start_init":
                    started = True
        subsystems = [(name, entries) for name, entries in subsystems if entries]

        if "framework_start_init" in allowed:
            if not started:
                app.framework_start_init(client)
            app.framework_wait_init(client)
            progressed = True

        if not subsystems or not progressed:
            break

    skipped = [(name, index, elem["method"]) for name, entries in subsystems
               for index, elem in entries]
    if skipped:
        print("Some configs were skipped because the RPC state that can call them passed over:",
              file=sys.stderr)
        for name, index, method in skipped:
            print("  subsystem '%s' entry %d (method '%s')" % (name, index, method),
                  file=sys.stderr)
    return skipped


def add_parsers(subparsers):
    def _save_config(args):
        save_config(args.client, sys.stdout, indent=args.indent)

    p = subparsers.add_parser("save_config",
                              help="Write the current (live) configuration of all subsystems to"
                                   " stdout")
    p.add_argument("-i", "--indent", type=int, default=2,
                   help="Indent level; a value below 0 means compact mode. Default: 2")
    p.set_defaults(func=_save_config)

    def _load_config(args):
        load_config(args.client, sys.stdin, include_aliases=args.include_aliases)

    p = subparsers.add_parser("load_config",
                              help="Configure the target from a JSON configuration read from"
                                   " stdin")
    p.add_argument("-i", "--include-aliases", action="store_true",
                   help="Include deprecated method aliases when checking the config")
    p.set_defaults(func=_load_config)
