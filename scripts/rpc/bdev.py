"""Block device methods: bdev_* (malloc, null and aio modules, listing, statistics, options)."""

from .helpers import print_json, remove_null


def print_name(value):
    """Prints a created bdev's name bare (Malloc0, not "Malloc0"), as SPDK's rpc.py does, so
    that NAME=$(rpc.py bdev_malloc_create 64 512) works in a shell."""
    if isinstance(value, str):
        print(value)
    else:
        print_json(value)


def _num_blocks(total_size_mib, block_size):
    """Blocks in total_size_mib MiB; 0 when block_size cannot divide (the target refuses it)."""
    if block_size is None or block_size <= 0:
        return 0
    return int((total_size_mib * 1024 * 1024) // block_size)


def bdev_malloc_create(client, num_blocks, block_size, name=None, uuid=None,
                       optimal_io_boundary=None):
    """Creates a RAM-backed bdev; returns its name."""
    params = {"num_blocks": num_blocks, "block_size": block_size}
    if name is not None:
        params["name"] = name
    if uuid is not None:
        params["uuid"] = uuid
    if optimal_io_boundary is not None:
        params["optimal_io_boundary"] = optimal_io_boundary
    return client.call("bdev_malloc_create", params)


def bdev_malloc_delete(client, name):
    return client.call("bdev_malloc_delete", {"name": name})


def bdev_null_create(client, num_blocks, block_size, name, uuid=None):
    """Creates a bdev that discards writes and reads zeroes; returns its name."""
    params = {"name": name, "num_blocks": num_blocks, "block_size": block_size}
    if uuid is not None:
        params["uuid"] = uuid
    return client.call("bdev_null_create", params)


def bdev_null_delete(client, name):
    return client.call("bdev_null_delete", {"name": name})


def bdev_null_resize(client, name, new_size):
    """Resizes a null bdev to new_size MiB."""
    return client.call("bdev_null_resize", {"name": name, "new_size": new_size})


def bdev_aio_create(client, filename, name, block_size=None, uuid=None):
    """Creates a bdev on a file or block device through Linux AIO; returns its name."""
    params = {"filename": filename, "name": name}
    if block_size is not None:
        params["block_size"] = block_size
    if uuid is not None:
        params["uuid"] = uuid
    return client.call("bdev_aio_create", params)


def bdev_aio_delete(client, name):
    return client.call("bdev_aio_delete", {"name": name})


def bdev_aio_rescan(client, name):
    """Picks up a change in the size of the aio bdev's file."""
    return client.call("bdev_aio_rescan", {"name": name})


def bdev_get_bdevs(client, name=None, timeout=None):
    """Lists bdevs, or the one named (waiting up to timeout ms for it to appear)."""
    params = {}
    if name is not None:
        params["name"] = name
    if timeout is not None:
        params["timeout"] = timeout
    return client.call("bdev_get_bdevs", params)


def bdev_get_iostat(client, name=None, per_channel=None):
    params = {}
    if name is not None:
        params["name"] = name
    if per_channel:
        params["per_channel"] = True
    return client.call("bdev_get_iostat", params)


def bdev_wait_for_examine(client):
    return client.call("bdev_wait_for_examine")


def bdev_set_options(client, bdev_io_pool_size=None, bdev_io_cache_size=None,
                     iobuf_small_cache_size=None, iobuf_large_cache_size=None):
    """Sets bdev layer options (startup only)."""
    params = remove_null({"bdev_io_pool_size": bdev_io_pool_size,
                          "bdev_io_cache_size": bdev_io_cache_size,
                          "iobuf_small_cache_size": iobuf_small_cache_size,
                          "iobuf_large_cache_size": iobuf_large_cache_size})
    return client.call("bdev_set_options", params)


def bdev_set_qos_limit(client, name, rw_ios_per_sec=None, rw_mbytes_per_sec=None,
                       r_mbytes_per_sec=None, w_mbytes_per_sec=None):
    """Sets a bdev's QoS rate limits; a limit not given keeps its value, 0 turns it off."""
    params = remove_null({"name": name,
                          "rw_ios_per_sec": rw_ios_per_sec,
                          "rw_mbytes_per_sec": rw_mbytes_per_sec,
                          "r_mbytes_per_sec": r_mbytes_per_sec,
                          "w_mbytes_per_sec": w_mbytes_per_sec})
    return client.call("bdev_set_qos_limit", params)


def add_parsers(subparsers):
    # -- malloc --

    def _bdev_malloc_create(args):
        print_name(bdev_malloc_create(args.client,
                                      num_blocks=_num_blocks(args.total_size, args.block_size),
                                      block_size=args.block_size,
                                      name=args.name,
                                      uuid=args.uuid,
                                      optimal_io_boundary=args.optimal_io_boundary))

    p = subparsers.add_parser("bdev_malloc_create", help="Create a bdev with malloc backend")
    p.add_argument("-b", "--name", help="Name of the bdev")
    p.add_argument("-u", "--uuid", help="UUID of the bdev (optional)")
    p.add_argument("-o", "--optimal-io-boundary", type=int,
                   help="Split on optimal IO boundary, in number of blocks, default 0 (disabled)")
    p.add_argument("total_size", type=float, help="Size of malloc bdev in MB (float > 0)")
    p.add_argument("block_size", type=int, help="Data block size for this bdev")
    p.set_defaults(func=_bdev_malloc_create)

    def _bdev_malloc_delete(args):
        bdev_malloc_delete(args.client, name=args.name)

    p = subparsers.add_parser("bdev_malloc_delete", help="Delete a malloc disk")
    p.add_argument("name", help="malloc bdev name")
    p.set_defaults(func=_bdev_malloc_delete)

    # -- null --

    def _bdev_null_create(args):
        print_name(bdev_null_create(args.client,
                                    num_blocks=_num_blocks(args.total_size, args.block_size),
                                    block_size=args.block_size,
                                    name=args.name,
                                    uuid=args.uuid))

    p = subparsers.add_parser("bdev_null_create", help="Add a bdev with null backend")
    p.add_argument("name", help="Block device name")
    p.add_argument("-u", "--uuid", help="UUID of the bdev (optional)")
    p.add_argument("total_size", type=int,
                   help="Size of null bdev in MB (int > 0). Includes only data blocks.")
    p.add_argument("block_size", type=int, help="Data block size for this bdev")
    p.set_defaults(func=_bdev_null_create)

    def _bdev_null_delete(args):
        bdev_null_delete(args.client, name=args.name)

    p = subparsers.add_parser("bdev_null_delete", help="Delete a null bdev")
    p.add_argument("name", help="null bdev name")
    p.set_defaults(func=_bdev_null_delete)

    def _bdev_null_resize(args):
        print_json(bdev_null_resize(args.client, name=args.name, new_size=args.new_size))

    p = subparsers.add_parser("bdev_null_resize", help="Resize a null bdev")
    p.add_argument("name", help="null bdev name")
    p.add_argument("new_size", type=int, help="new bdev size for resize operation. The unit is MiB")
    p.set_defaults(func=_bdev_null_resize)

    # -- aio --

    def _bdev_aio_create(args):
        print_name(bdev_aio_create(args.client,
                                   filename=args.filename,
                                   name=args.name,
                                   block_size=args.block_size,
                                   uuid=args.uuid))

    p = subparsers.add_parser("bdev_aio_create", help="Add a bdev with aio backend")
    p.add_argument("filename", help="Path to device or file (ex: /dev/sda)")
    p.add_argument("name", help="Block device name")
    p.add_argument("block_size", type=int, nargs="?",
                   help="Block size for this bdev (default: the file's logical block size)")
    p.add_argument("-u", "--uuid", help="UUID of the bdev (optional)")
    p.set_defaults(func=_bdev_aio_create)

    def _bdev_aio_delete(args):
        bdev_aio_delete(args.client, name=args.name)

    p = subparsers.add_parser("bdev_aio_delete", help="Delete an aio disk")
    p.add_argument("name", help="aio bdev name")
    p.set_defaults(func=_bdev_aio_delete)

    def _bdev_aio_rescan(args):
        print_json(bdev_aio_rescan(args.client, name=args.name))

    p = subparsers.add_parser("bdev_aio_rescan", help="Rescan a bdev size with aio backend")
    p.add_argument("name", help="Block device to be rescanned")
    p.set_defaults(func=_bdev_aio_rescan)

    # -- generic --

    def _bdev_get_bdevs(args):
        print_json(bdev_get_bdevs(args.client, name=args.name, timeout=args.timeout_ms))

    p = subparsers.add_parser("bdev_get_bdevs",
                              help="Display current blockdev list or required blockdev")
    p.add_argument("-b", "--name", help="Name of the Blockdev. Example: Nvme0n1")
    p.add_argument("-t", "--timeout-ms", type=int,
                   help="Time in ms to wait for the bdev to appear (only used with -b). The "
                        "default timeout is 0, meaning the RPC returns immediately whether the "
                        "bdev exists or not.")
    p.set_defaults(func=_bdev_get_bdevs)

    def _bdev_get_iostat(args):
        print_json(bdev_get_iostat(args.client, name=args.name, per_channel=args.per_channel))

    p = subparsers.add_parser("bdev_get_iostat",
                              help="Display current I/O statistics of all the blockdevs or "
                                   "specified blockdev.")
    p.add_argument("-b", "--name", help="Name of the Blockdev. Example: Nvme0n1")
    p.add_argument("-c", "--per-channel", action="store_true",
                   help="Display per channel I/O statistics of the blockdev (needs -b)")
    p.set_defaults(func=_bdev_get_iostat)

    def _bdev_wait_for_examine(args):
        bdev_wait_for_examine(args.client)

    p = subparsers.add_parser("bdev_wait_for_examine",
                              help="Report when all bdevs have been examined")
    p.set_defaults(func=_bdev_wait_for_examine)

    def _bdev_set_options(args):
        bdev_set_options(args.client,
                         bdev_io_pool_size=args.bdev_io_pool_size,
                         bdev_io_cache_size=args.bdev_io_cache_size,
                         iobuf_small_cache_size=args.iobuf_small_cache_size,
                         iobuf_large_cache_size=args.iobuf_large_cache_size)

    p = subparsers.add_parser("bdev_set_options",
                              help="Set options of bdev subsystem (before framework_start_init)")
    p.add_argument("-p", "--bdev-io-pool-size", type=int, help="Number of bdev_io structures in "
                   "the shared pool")
    p.add_argument("-c", "--bdev-io-cache-size", type=int, help="Maximum number of bdev_io "
                   "structures cached per thread")
    p.add_argument("--iobuf-small-cache-size", type=int, help="Size of the small iobuf per "
                   "thread cache")
    p.add_argument("--iobuf-large-cache-size", type=int, help="Size of the large iobuf per "
                   "thread cache")
    p.set_defaults(func=_bdev_set_options)

    def _bdev_set_qos_limit(args):
        bdev_set_qos_limit(args.client,
                           name=args.name,
                           rw_ios_per_sec=args.rw_ios_per_sec,
                           rw_mbytes_per_sec=args.rw_mbytes_per_sec,
                           r_mbytes_per_sec=args.r_mbytes_per_sec,
                           w_mbytes_per_sec=args.w_mbytes_per_sec)

    p = subparsers.add_parser("bdev_set_qos_limit", help="Set QoS rate limit on a blockdev")
    p.add_argument("name", help="Blockdev name to set QoS. Example: Malloc0")
    p.add_argument("--rw-ios-per-sec", type=int, required=False,
                   help="R/W IOs per second limit (a multiple of 1000, example: 20000). "
                        "0 means unlimited.")
    p.add_argument("--rw-mbytes-per-sec", type=int, required=False,
                   help="R/W megabytes per second limit (example: 100). 0 means unlimited.")
    p.add_argument("--r-mbytes-per-sec", type=int, required=False,
                   help="Read megabytes per second limit (example: 100). 0 means unlimited.")
    p.add_argument("--w-mbytes-per-sec", type=int, required=False,
                   help="Write megabytes per second limit (example: 100). 0 means unlimited.")
    p.set_defaults(func=_bdev_set_qos_limit)
