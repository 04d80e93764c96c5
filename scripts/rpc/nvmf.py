"""NVMe-oF target methods."""

from .helpers import print_json


def nvmf_set_max_subsystems(client, max_subsystems):
    """Sets the maximum number of NVMf target subsystems (startup only)."""
    return client.call("nvmf_set_max_subsystems", {"max_subsystems": max_subsystems})


def nvmf_set_config(client, poll_groups_mask=None):
    """Sets NVMf target configuration (startup only)."""
    params = {}
    if poll_groups_mask is not None:
        params["poll_groups_mask"] = poll_groups_mask
    return client.call("nvmf_set_config", params)


def nvmf_get_stats(client, tgt_name=None):
    params = {}
    if tgt_name is not None:
        params["tgt_name"] = tgt_name
    return client.call("nvmf_get_stats", params)


def add_parsers(subparsers):
    def _nvmf_set_max_subsystems(args):
        print_json(nvmf_set_max_subsystems(args.client, max_subsystems=args.max_subsystems))

    p = subparsers.add_parser("nvmf_set_max_subsystems",
                              help="Set the maximum number of NVMf target subsystems")
    p.add_argument("-n", "--max-subsystems", type=int, required=True,
                   help="Max number of NVMf subsystems")
    p.set_defaults(func=_nvmf_set_max_subsystems)

    def _nvmf_set_config(args):
        print_json(nvmf_set_config(args.client, poll_groups_mask=args.poll_groups_mask))

    p = subparsers.add_parser("nvmf_set_config", help="Set NVMf target config")
    p.add_argument("-m", "--poll-groups-mask",
                   help="Set cpumask for NVMf poll groups (e.g. 0x3 or [0,1])")
    p.set_defaults(func=_nvmf_set_config)

    def _nvmf_get_stats(args):
        print_json(nvmf_get_stats(args.client, tgt_name=args.tgt_name))

    p = subparsers.add_parser("nvmf_get_stats", help="Display current statistics for NVMf subsystem")
    p.add_argument("-t", "--tgt-name", help="The name of the parent NVMe-oF target (optional)")
    p.set_defaults(func=_nvmf_get_stats)
