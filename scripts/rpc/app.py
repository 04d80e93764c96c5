"""Framework, thread and application methods: rpc_get_methods, spdk_*, framework_*, thread_*."""

from .helpers import print_json


def rpc_get_methods(client, current=None, include_aliases=None):
    """Lists RPC methods; current: only those callable now; include_aliases: add aliases."""
    params = {}
    if current:
        params["current"] = True
    if include_aliases:
        params["include_aliases"] = True
    return client.call("rpc_get_methods", params)


def spdk_get_version(client):
    return client.call("spdk_get_version")


def spdk_kill_instance(client, sig_name):
    return client.call("spdk_kill_instance", {"sig_name": sig_name})


def framework_start_init(client):
    return client.call("framework_start_init")


def framework_wait_init(client):
    return client.call("framework_wait_init")


def framework_get_reactors(client):
    return client.call("framework_get_reactors")


def framework_get_subsystems(client):
    return client.call("framework_get_subsystems")


def framework_get_config(client, name):
    return client.call("framework_get_config", {"name": name})


def thread_get_stats(client):
    return client.call("thread_get_stats")


def thread_get_pollers(client):
    return client.call("thread_get_pollers")


def add_parsers(subparsers):
    def _rpc_get_methods(args):
        print_json(rpc_get_methods(args.client, current=args.current,
                                   include_aliases=args.include_aliases))

    p = subparsers.add_parser("rpc_get_methods", help="Get list of supported RPC methods")
    p.add_argument("-c", "--current", action="store_true",
                   help="Get list of RPC methods only callable in the current state.")
    p.add_argument("-i", "--include-aliases", action="store_true",
                   help="Include aliases in the list with RPC methods.")
    p.set_defaults(func=_rpc_get_methods)

    def _spdk_get_version(args):
        print_json(spdk_get_version(args.client))

    p = subparsers.add_parser("spdk_get_version", help="Get the application version")
    p.set_defaults(func=_spdk_get_version)

    def _spdk_kill_instance(args):
        print_json(spdk_kill_instance(args.client, sig_name=args.sig_name))

    p = subparsers.add_parser("spdk_kill_instance", help="Send a signal to the application")
    p.add_argument("sig_name", help="signal name: SIGINT, SIGTERM or SIGKILL")
    p.set_defaults(func=_spdk_kill_instance)

    def _framework_start_init(args):
        print_json(framework_start_init(args.client))

    p = subparsers.add_parser("framework_start_init",
                              help="Start initialization of subsystems (after --wait-for-rpc)")
    p.set_defaults(func=_framework_start_init)

    def _framework_wait_init(args):
        print_json(framework_wait_init(args.client))

    p = subparsers.add_parser("framework_wait_init",
                              help="Block until subsystems have been initialized")
    p.set_defaults(func=_framework_wait_init)

    def _framework_get_reactors(args):
        print_json(framework_get_reactors(args.client))

    p = subparsers.add_parser("framework_get_reactors", help="Display list of all reactors")
    p.set_defaults(func=_framework_get_reactors)

    def _framework_get_subsystems(args):
        print_json(framework_get_subsystems(args.client))

    p = subparsers.add_parser("framework_get_subsystems",
                              help="Print subsystems array in initialization order with their"
                                   " dependencies")
    p.set_defaults(func=_framework_get_subsystems)

    def _framework_get_config(args):
        print_json(framework_get_config(args.client, name=args.name))

    p = subparsers.add_parser("framework_get_config", help="Print the configuration of a subsystem")
    p.add_argument("name", help="Name of subsystem to query")
    p.set_defaults(func=_framework_get_config)

    def _thread_get_stats(args):
        print_json(thread_get_stats(args.client))

    p = subparsers.add_parser("thread_get_stats", help="Display current statistics of all threads")
    p.set_defaults(func=_thread_get_stats)

    def _thread_get_pollers(args):
        print_json(thread_get_pollers(args.client))

    p = subparsers.add_parser("thread_get_pollers", help="Display current pollers of all threads")
    p.set_defaults(func=_thread_get_pollers)
