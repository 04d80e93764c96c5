"""Log methods: flags and level."""

from .helpers import print_json


def log_set_flag(client, flag):
    return client.call("log_set_flag", {"flag": flag})


def log_clear_flag(client, flag):
    return client.call("log_clear_flag", {"flag": flag})


def log_get_flags(client):
    return client.call("log_get_flags")


def log_set_level(client, level):
    return client.call("log_set_level", {"level": level})


def log_get_level(client):
    return client.call("log_get_level")


def add_parsers(subparsers):
    def _log_set_flag(args):
        print_json(log_set_flag(args.client, flag=args.flag))

    p = subparsers.add_parser("log_set_flag", help="Enable a log flag")
    p.add_argument("flag", help="log flag to enable (e.g. nvmf), or 'all'")
    p.set_defaults(func=_log_set_flag)

    def _log_clear_flag(args):
        print_json(log_clear_flag(args.client, flag=args.flag))

    p = subparsers.add_parser("log_clear_flag", help="Disable a log flag")
    p.add_argument("flag", help="log flag to disable (e.g. nvmf), or 'all'")
    p.set_defaults(func=_log_clear_flag)

    def _log_get_flags(args):
        print_json(log_get_flags(args.client))

    p = subparsers.add_parser("log_get_flags", help="Get log flags")
    p.set_defaults(func=_log_get_flags)

    def _log_set_level(args):
        print_json(log_set_level(args.client, level=args.level))

    p = subparsers.add_parser("log_set_level", help="Set the log level")
    p.add_argument("level", help="ERROR, WARNING, NOTICE, INFO, DEBUG or DISABLED")
    p.set_defaults(func=_log_set_level)

    def _log_get_level(args):
        print_json(log_get_level(args.client))

    p = subparsers.add_parser("log_get_level", help="Get the log level")
    p.set_defaults(func=_log_get_level)
