"""QoS rate limits: bdev_set_qos_limit through rpc.py, assigned_rate_limits in
bdev_get_bdevs, the save_config entry and a restart from it, precise errors, and bdevperf
paced by an IOPS limit.

Besides harness.py's environment:
  FLINT_BDEVPERF   path of the bdevperf binary (default: <repo>/build/app/bdevperf/bdevperf)
"""

import os
import re
import shutil
import subprocess
import unittest

from harness import (REPO_ROOT, RpcError, Target, _LIVE, default_extra_args, make_tmpdir,
                     write_json)

BDEVPERF = os.environ.get("FLINT_BDEVPERF") or str(REPO_ROOT / "build/app/bdevperf/bdevperf")

INVALID_PARAMS = -32602
ENODEV = -19
RATE_LIMITS = ["rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec"]


def limits_of(target, name):
    bdevs = target.rpc("bdev_get_bdevs", "-b", name)
    assert len(bdevs) == 1, bdevs
    return bdevs[0]["assigned_rate_limits"]


def expect_limits(**set_ones):
    return {k: set_ones.get(k, 0) for k in RATE_LIMITS}


def bdev_entries(saved):
    sub = [s for s in saved["subsystems"] if s["subsystem"] == "bdev"]
    assert len(sub) == 1, saved
    return sub[0]["config"]


class QosRpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.target = Target("-m", "0x1")
        cls.target.start()

    @classmethod
    def tearDownClass(cls):
        cls.target.cleanup()

    def setUp(self):
        t = self.target
        self.assertEqual(t.rpc_raw("bdev_malloc_create", "-b", "MallocQ", "8", "512")[0], 0)

    def tearDown(self):
        t = self.target
        self.assertTrue(t.alive(), t.stderr())
        t.rpc("bdev_malloc_delete", "MallocQ")

    def rpc_error(self, *args):
        with self.assertRaises(RpcError) as cm:
            self.target.rpc("bdev_set_qos_limit", *args)
        return cm.exception

    def test_set_change_and_clear(self):
        t = self.target
        self.assertEqual(limits_of(t, "MallocQ"), expect_limits())
        rc, out, err = t.rpc_raw("bdev_set_qos_limit", "MallocQ", "--rw-ios-per-sec", "20000",
                                 "--r-mbytes-per-sec", "5")
        self.assertEqual((rc, out), (0, ""), err)
        self.assertEqual(limits_of(t, "MallocQ"),
                         expect_limits(rw_ios_per_sec=20000, r_mbytes_per_sec=5))
        # A limit not given keeps its value, as in SPDK.
        t.rpc("bdev_set_qos_limit", "MallocQ", "--w-mbytes-per-sec", "7",
              "--rw-mbytes-per-sec", "100")
        self.assertEqual(limits_of(t, "MallocQ"),
                         expect_limits(rw_ios_per_sec=20000, rw_mbytes_per_sec=100,
                                       r_mbytes_per_sec=5, w_mbytes_per_sec=7))
        t.rpc("bdev_set_qos_limit", "MallocQ", "--rw-ios-per-sec", "0")
        self.assertEqual(limits_of(t, "MallocQ"),
                         expect_limits(rw_mbytes_per_sec=100, r_mbytes_per_sec=5,
                                       w_mbytes_per_sec=7))
        t.rpc("bdev_set_qos_limit", "MallocQ", "--rw-mbytes-per-sec", "0", "--r-mbytes-per-sec",
              "0", "--w-mbytes-per-sec", "0")
        self.assertEqual(limits_of(t, "MallocQ"), expect_limits())
        # Every bdev lists the four limits.
        for b in t.rpc("bdev_get_bdevs"):
            self.assertEqual(sorted(b["assigned_rate_limits"]), sorted(RATE_LIMITS))

    def test_errors(self):
        err = self.rpc_error("NoSuchBdev", "--rw-ios-per-sec", "1000")
        self.assertEqual((err.code, err.message), (ENODEV, "No such device"))
        err = self.rpc_error("MallocQ")
        self.assertEqual(err.code, INVALID_PARAMS)
        self.assertIn("at least one of rw_ios_per_sec", err.message)
        for args, field in ((["--rw-ios-per-sec", "1500"], "rw_ios_per_sec"),
                            (["--rw-ios-per-sec", "999"], "rw_ios_per_sec"),
                            (["--rw-ios-per-sec", "-1000"], "rw_ios_per_sec"),
                            (["--r-mbytes-per-sec", "-5"], "r_mbytes_per_sec"),
                            (["--w-mbytes-per-sec", "99999999999999"], "w_mbytes_per_sec")):
            with self.subTest(args=args):
                err = self.rpc_error("MallocQ", *args)
                self.assertEqual(err.code, INVALID_PARAMS, err)
                self.assertIn("Invalid parameter '%s'" % field, err.message)
        self.assertIn("multiple of 1000",
                      self.rpc_error("MallocQ", "--rw-ios-per-sec", "1500").message)
        # A bad value among good ones sets nothing.
        self.rpc_error("MallocQ", "--w-mbytes-per-sec", "10", "--rw-ios-per-sec", "1")
        self.assertEqual(limits_of(self.target, "MallocQ"), expect_limits())
        # Raw params: a wrong type, an unknown field.
        with self.target.client() as c:
            for params, field in (({"name": "MallocQ", "rw_ios_per_sec": "1000"},
                                   "rw_ios_per_sec"),
                                  ({"name": "MallocQ", "rw_ios_per_sec": 1000, "iops": 1},
                                   "iops"),
                                  ({"rw_ios_per_sec": 1000}, "name")):
                resp = c.request("bdev_set_qos_limit", params)
                self.assertEqual(resp["error"]["code"], INVALID_PARAMS, resp)
                self.assertIn("'%s'" % field, resp["error"]["message"])

    def test_delete_with_limits(self):
        t = self.target
        t.rpc("bdev_set_qos_limit", "MallocQ", "--rw-ios-per-sec", "5000")
        t.rpc("bdev_malloc_delete", "MallocQ")
        self.assertEqual(t.rpc("bdev_get_bdevs"), [])
        self.assertEqual(t.rpc_raw("bdev_malloc_create", "-b", "MallocQ", "8", "512")[0], 0)
        self.assertEqual(limits_of(t, "MallocQ"), expect_limits())  # a new bdev: no limits


class QosConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_save_restart_save(self):
        with Target("-m", "0x1") as t:
            for create in (["bdev_malloc_create", "-b", "Malloc0", "8", "512"],
                           ["bdev_null_create", "Null0", "16", "4096"],
                           ["bdev_malloc_create", "-b", "Malloc1", "8", "512"]):  # no limits
                rc, _, err = t.rpc_raw(*create)
                self.assertEqual(rc, 0, err)
            t.rpc("bdev_set_qos_limit", "Malloc0", "--rw-ios-per-sec", "10000",
                  "--rw-mbytes-per-sec", "100")
            t.rpc("bdev_set_qos_limit", "Null0", "--w-mbytes-per-sec", "20")
            bdevs1 = t.rpc("bdev_get_bdevs")
            saved1 = t.rpc("save_config")
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())

        entries = bdev_entries(saved1)
        methods = [(e["method"], e.get("params", {}).get("name")) for e in entries]
        # Each bdev's limits follow the entry that creates it; only the limits that are set.
        i = methods.index(("bdev_malloc_create", "Malloc0"))
        self.assertEqual(methods[i + 1], ("bdev_set_qos_limit", "Malloc0"))
        self.assertEqual(entries[i + 1]["params"],
                         {"name": "Malloc0", "rw_ios_per_sec": 10000, "rw_mbytes_per_sec": 100})
        i = methods.index(("bdev_null_create", "Null0"))
        self.assertEqual(entries[i + 1]["params"], {"name": "Null0", "w_mbytes_per_sec": 20})
        self.assertEqual([m for m, _ in methods].count("bdev_set_qos_limit"), 2, methods)
        self.assertEqual(methods[-1][0], "bdev_wait_for_examine")

        config = os.path.join(self.dir, "saved.json")
        write_json(config, saved1)
        with Target("-m", "0x1", "-c", config) as t:
            saved2 = t.rpc("save_config")
            bdevs2 = t.rpc("bdev_get_bdevs")
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())
        self.assertEqual(saved2, saved1)
        self.assertEqual(bdevs2, bdevs1)
        by_name = {b["name"]: b["assigned_rate_limits"] for b in bdevs2}
        self.assertEqual(by_name["Malloc0"],
                         expect_limits(rw_ios_per_sec=10000, rw_mbytes_per_sec=100))
        self.assertEqual(by_name["Null0"], expect_limits(w_mbytes_per_sec=20))
        self.assertEqual(by_name["Malloc1"], expect_limits())

    def test_bad_entry_stops_startup(self):
        config = os.path.join(self.dir, "bad.json")
        write_json(config, {"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": 16384, "block_size": 512}},
            {"method": "bdev_set_qos_limit",
             "params": {"name": "Malloc0", "rw_ios_per_sec": 1234}}]}]})
        t = Target("-m", "0x1", "-c", config, wait_ready=False)
        with t:
            rc = t.wait(30)
            self.assertIsNotNone(rc, "did not exit")
            self.assertNotEqual(rc, 0)
            self.assertIn("bdev_set_qos_limit", t.stderr())
            self.assertIn("rw_ios_per_sec", t.stderr())


class QosBdevperfTest(unittest.TestCase):
    """bdevperf on a malloc bdev limited to 10000 IOPS. The bound is loose (+-15%): the CI
    machine has two cores and runs other work."""

    LIMIT = 10000

    def setUp(self):
        if not os.access(BDEVPERF, os.X_OK):
            self.fail("bdevperf binary not found or not executable: %s (set FLINT_BDEVPERF)"
                      % BDEVPERF)
        self.dir = make_tmpdir()

    def tearDown(self):
        if not os.environ.get("FLINT_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run_perf(self, *args, limit=LIMIT):
        config = {"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": 16384, "block_size": 512}},
            {"method": "bdev_set_qos_limit",
             "params": {"name": "Malloc0", "rw_ios_per_sec": limit}}]}]}
        path = os.path.join(self.dir, "config.json")
        write_json(path, config)
        argv = [BDEVPERF, "-r", os.path.join(self.dir, "rpc.sock"), *default_extra_args(),
                "-c", path, *map(str, args)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        _LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _LIVE.discard(proc)
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        m = re.search(r"^\s+Total\s+:\s+([\d.]+)", out, re.M)
        self.assertIsNotNone(m, out)
        return float(m.group(1)), out

    def check_iops(self, iops, out):
        print("bdevperf under rw_ios_per_sec=%d: %.1f IOPS" % (self.LIMIT, iops))
        self.assertGreater(iops, self.LIMIT * 0.85, out)
        self.assertLess(iops, self.LIMIT * 1.15, out)

    def test_iops_limit_one_core(self):
        iops, out = self.run_perf("-q", 128, "-o", 4096, "-w", "randread", "-t", 2)
        self.check_iops(iops, out)

    def test_iops_limit_two_cores_share_it(self):
        """One job per core, each submitting on its own thread: the limit is the bdev's."""
        iops, out = self.run_perf("-m", "0x3", "-q", 64, "-o", 4096, "-w", "randrw", "-M", 50,
                                  "-t", 2)
        self.check_iops(iops, out)


if __name__ == "__main__":
    unittest.main()
