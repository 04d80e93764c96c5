"""iobuf methods: the shared data buffer pools' options and statistics."""

from .helpers import print_json, remove_null


def iobuf_set_options(client, small_pool_count=None, large_pool_count=None, small_bufsize=None,
                      large_bufsize=None):
    """Sets the sizes of the iobuf pools (startup only)."""
    params = remove_null({"small_pool_count": small_pool_count,
                          "large_pool_count": large_pool_count,
                          "small_bufsize": small_bufsize,
                          "large_bufsize": large_bufsize})
    return client.call("iobuf_set_options", params)


def iobuf_get_stats(client):
    """Per module: buffers taken from the caches and the pools, and requests that waited."""
    return client.call("iobuf_get_stats")


def add_parsers(subparsers):
    def _iobuf_set_options(args):
        iobuf_set_options(args.client,
                          small_pool_count=args.small_pool_count,
                          large_pool_count=args.large_pool_count,
                          small_bufsize=args.small_bufsize,
                          large_bufsize=args.large_bufsize)

    p = subparsers.add_parser("iobuf_set_options", help="Set iobuf pool options")
    p.add_argument("--small-pool-count", type=int,
                   help="number of small buffers in the global pool")
    p.add_argument("--large-pool-count", type=int,
                   help="number of large buffers in the global pool")
    p.add_argument("--small-bufsize", type=int, help="size of a small buffer")
    p.add_argument("--large-bufsize", type=int, help="size of a large buffer")
    p.set_defaults(func=_iobuf_set_options)

    def _iobuf_get_stats(args):
        print_json(iobuf_get_stats(args.client))

    p = subparsers.add_parser("iobuf_get_stats", help="Display iobuf statistics")
    p.set_defaults(func=_iobuf_get_stats)
