"""Block devices: malloc, null and aio bdevs through rpc.py, their errors, save_config round
trips with bdevs, and short bdevperf runs.

Besides harness.py's environment:
  FLINT_BDEVPERF   path of the bdevperf binary (default: <repo>/build/app/bdevperf/bdevperf)
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import uuid

from harness import (REPO_ROOT, RPC_PY, RpcError, Target, _LIVE, default_extra_args,
                     make_tmpdir, write_json)

BDEVPERF = os.environ.get("FLINT_BDEVPERF") or str(REPO_ROOT / "build/app/bdevperf/bdevperf")

INVALID_PARAMS = -32602
INVALID_STATE = -32604
EEXIST = -17
ENODEV = -19
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Fields every bdev_get_bdevs entry has, as in SPDK.
BDEV_FIELDS = ["name", "aliases", "product_name", "block_size", "num_blocks", "uuid",
               "assigned_rate_limits", "claimed", "zoned", "supported_io_types",
               "driver_specific"]
RATE_LIMITS = ["rw_ios_per_sec", "rw_mbytes_per_sec", "r_mbytes_per_sec", "w_mbytes_per_sec"]


def aio_tmpdir():
    """aio files live under /var/tmp (a real filesystem: /tmp may be tmpfs, without O_DIRECT)."""
    return tempfile.mkdtemp(prefix="flint-ft-aio-", dir="/var/tmp")


def make_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


class BdevTarget(Target):
    def create(self, method, *args):
        """Runs a bdev_*_create; returns the name it printed (bare, as SPDK's rpc.py does)."""
        rc, out, err = self.rpc_raw(method, *args)
        if rc != 0:
            raise RpcError([method, *map(str, args)], rc, out, err)
        lines = out.strip().splitlines()
        assert len(lines) == 1, out
        return lines[0]

    def bdev(self, name):
        bdevs = self.rpc("bdev_get_bdevs", "-b", name)
        assert len(bdevs) == 1, bdevs
        return bdevs[0]

    def names(self):
        return [b["name"] for b in self.rpc("bdev_get_bdevs")]


class BdevRpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.target = BdevTarget("-m", "0x1")
        cls.dir = aio_tmpdir()
        try:
            cls.target.start()
        except BaseException:
            cls.target.cleanup()
            shutil.rmtree(cls.dir, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.target.cleanup()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def tearDown(self):
        t = self.target
        self.assertTrue(t.alive(), t.stderr())
        # Each test cleans up after itself; the target is left with no bdevs.
        self.assertEqual(t.names(), [], t.stderr())

    def assertRpcError(self, method, *args, codes=None):
        with self.assertRaises(RpcError) as cm:
            self.target.rpc(method, *args)
        err = cm.exception
        self.assertIsInstance(err.code, int, err)
        self.assertLess(err.code, 0, err)
        self.assertTrue(err.message, err)
        if codes is not None:
            self.assertIn(err.code, codes, err)
        return err

    def check_common(self, b):
        for field in BDEV_FIELDS:
            self.assertIn(field, b)
        self.assertIsInstance(b["aliases"], list)
        self.assertRegex(b["uuid"], UUID_RE)
        self.assertEqual(sorted(b["assigned_rate_limits"]), sorted(RATE_LIMITS))
        for k in RATE_LIMITS:
            self.assertEqual(b["assigned_rate_limits"][k], 0)
        self.assertIs(b["claimed"], False)
        self.assertIs(b["zoned"], False)
        self.assertIsInstance(b["driver_specific"], dict)
        types = b["supported_io_types"]
        for k in ["read", "write", "unmap", "write_zeroes", "flush", "reset", "compare",
                  "compare_and_write", "abort", "nvme_admin", "nvme_io"]:
            self.assertIn(k, types)
            self.assertIsInstance(types[k], bool)
        self.assertIs(types["read"], True)
        self.assertIs(types["write"], True)
        self.assertIs(types["nvme_admin"], False)
        self.assertIs(types["nvme_io"], False)

    # -- malloc --

    def test_malloc(self):
        t = self.target
        u = str(uuid.uuid4())
        self.assertEqual(t.create("bdev_malloc_create", "-b", "Malloc7", "-u", u, "16", "512"),
                         "Malloc7")
        b = t.bdev("Malloc7")
        self.check_common(b)
        self.assertEqual(b["name"], "Malloc7")
        self.assertEqual(b["aliases"], [])
        self.assertEqual(b["product_name"], "Malloc disk")
        self.assertEqual(b["block_size"], 512)
        self.assertEqual(b["num_blocks"], 16 * 1024 * 1024 // 512)
        self.assertEqual(b["uuid"], u)
        self.assertIs(b["supported_io_types"]["unmap"], True)
        self.assertIs(b["supported_io_types"]["write_zeroes"], True)
        # Fractional sizes are MiB too, as in SPDK (float total_size).
        self.assertEqual(t.create("bdev_malloc_create", "-b", "MallocHalf", "0.5", "4096"),
                         "MallocHalf")
        self.assertEqual(t.bdev("MallocHalf")["num_blocks"], 128)
        self.assertEqual(t.names(), ["Malloc7", "MallocHalf"])
        rc, out, err = t.rpc_raw("bdev_malloc_delete", "Malloc7")
        self.assertEqual((rc, out), (0, ""), err)
        t.rpc("bdev_malloc_delete", "MallocHalf")
        self.assertRpcError("bdev_get_bdevs", "-b", "Malloc7")

    def test_malloc_default_name(self):
        t = self.target
        name = t.create("bdev_malloc_create", "8", "4096")
        self.assertRegex(name, r"^Malloc\d+$")
        b = t.bdev(name)
        self.assertEqual((b["block_size"], b["num_blocks"]), (4096, 2048))
        self.assertRegex(b["uuid"], UUID_RE)
        # The next default name is a different one.
        name2 = t.create("bdev_malloc_create", "8", "4096")
        self.assertNotEqual(name, name2)
        t.rpc("bdev_malloc_delete", name)
        t.rpc("bdev_malloc_delete", name2)

    def test_malloc_optimal_io_boundary(self):
        t = self.target
        t.create("bdev_malloc_create", "-b", "MallocOib", "-o", "16", "4", "512")
        self.assertEqual(t.bdev("MallocOib").get("optimal_io_boundary"), 16)
        t.rpc("bdev_malloc_delete", "MallocOib")

    def test_malloc_errors(self):
        t = self.target
        err = self.assertRpcError("bdev_malloc_create", "-b", "Bad0", "0", "512",
                                  codes=[INVALID_PARAMS])
        self.assertIn("num_blocks", err.message)
        err = self.assertRpcError("bdev_malloc_create", "-b", "Bad1", "1", "1000",
                                  codes=[INVALID_PARAMS])
        self.assertIn("block_size", err.message)
        self.assertRpcError("bdev_malloc_create", "-b", "Bad2", "1", "0", codes=[INVALID_PARAMS])
        err = self.assertRpcError("bdev_malloc_create", "-b", "Bad3", "-u", "not-a-uuid", "1",
                                  "512", codes=[INVALID_PARAMS])
        self.assertIn("uuid", err.message)
        t.create("bdev_malloc_create", "-b", "Taken", "1", "512")
        self.assertRpcError("bdev_malloc_create", "-b", "Taken", "2", "512", codes=[EEXIST])
        self.assertEqual(t.bdev("Taken")["num_blocks"], 2048)  # the first one, untouched
        self.assertRpcError("bdev_malloc_delete", "NoSuchBdev", codes=[ENODEV])
        t.rpc("bdev_malloc_delete", "Taken")
        self.assertRpcError("bdev_malloc_delete", "Taken", codes=[ENODEV])

    # -- null --

    def test_null(self):
        t = self.target
        self.assertEqual(t.create("bdev_null_create", "Null0", "8", "4096"), "Null0")
        b = t.bdev("Null0")
        self.check_common(b)
        self.assertEqual(b["product_name"], "Null disk")
        self.assertEqual((b["block_size"], b["num_blocks"]), (4096, 2048))
        rc, out, err = t.rpc_raw("bdev_null_resize", "Null0", "16")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), True)
        self.assertEqual(t.bdev("Null0")["num_blocks"], 4096)
        t.rpc("bdev_null_delete", "Null0")

    def test_null_uuid(self):
        t = self.target
        u = str(uuid.uuid4())
        t.create("bdev_null_create", "-u", u, "NullU", "1", "512")
        self.assertEqual(t.bdev("NullU")["uuid"], u)
        # A uuid is also taken: a second bdev may not use it.
        self.assertRpcError("bdev_null_create", "-u", u, "NullU2", "1", "512", codes=[EEXIST])
        t.rpc("bdev_null_delete", "NullU")

    def test_null_errors(self):
        t = self.target
        self.assertRpcError("bdev_null_create", "BadN0", "0", "512", codes=[INVALID_PARAMS])
        self.assertRpcError("bdev_null_create", "BadN1", "1", "1000", codes=[INVALID_PARAMS])
        t.create("bdev_null_create", "NullT", "1", "512")
        self.assertRpcError("bdev_null_create", "NullT", "1", "512", codes=[EEXIST])
        # Shrinking is refused, as in SPDK.
        self.assertRpcError("bdev_null_resize", "NullT", "0", codes=[INVALID_PARAMS])
        self.assertEqual(t.bdev("NullT")["num_blocks"], 2048)
        self.assertRpcError("bdev_null_resize", "NoSuchBdev", "4", codes=[ENODEV])
        self.assertRpcError("bdev_null_delete", "NoSuchBdev", codes=[ENODEV])
        t.rpc("bdev_null_delete", "NullT")

    # -- aio --

    def test_aio(self):
        t = self.target
        path = os.path.join(self.dir, "aio0")
        make_file(path, 8 * 1024 * 1024)
        self.assertEqual(t.create("bdev_aio_create", path, "AIO0", "4096"), "AIO0")
        b = t.bdev("AIO0")
        self.check_common(b)
        self.assertEqual(b["product_name"], "AIO disk")
        self.assertEqual((b["block_size"], b["num_blocks"]), (4096, 2048))
        self.assertEqual(b["driver_specific"]["aio"]["filename"], path)
        # The file grows: rescan picks it up.
        make_file(path, 16 * 1024 * 1024)
        rc, out, err = t.rpc_raw("bdev_aio_rescan", "AIO0")
        self.assertEqual(rc, 0, err)
        self.assertEqual(t.bdev("AIO0")["num_blocks"], 4096)
        t.rpc("bdev_aio_delete", "AIO0")
        self.assertTrue(os.path.exists(path), "deleting the bdev must not remove its file")

    def test_aio_default_block_size(self):
        t = self.target
        path = os.path.join(self.dir, "aio1")
        make_file(path, 4 * 1024 * 1024)
        t.create("bdev_aio_create", path, "AIO1")
        b = t.bdev("AIO1")
        self.assertIn(b["block_size"], (512, 4096))
        self.assertEqual(b["num_blocks"] * b["block_size"], 4 * 1024 * 1024)
        t.rpc("bdev_aio_delete", "AIO1")

    def test_aio_errors(self):
        t = self.target
        missing = os.path.join(self.dir, "does-not-exist")
        self.assertRpcError("bdev_aio_create", missing, "AIOBad")
        path = os.path.join(self.dir, "aio2")
        make_file(path, 1024 * 1024)
        self.assertRpcError("bdev_aio_create", path, "AIOBad", "1000")
        t.create("bdev_aio_create", path, "AIOT", "4096")
        self.assertRpcError("bdev_aio_create", path, "AIOT", "4096", codes=[EEXIST])
        self.assertRpcError("bdev_aio_delete", "NoSuchBdev", codes=[ENODEV])
        self.assertRpcError("bdev_aio_rescan", "NoSuchBdev", codes=[ENODEV])
        t.rpc("bdev_aio_delete", "AIOT")

    def test_delete_wrong_module(self):
        t = self.target
        t.create("bdev_malloc_create", "-b", "MallocW", "1", "512")
        self.assertRpcError("bdev_null_delete", "MallocW", codes=[ENODEV])
        self.assertRpcError("bdev_aio_delete", "MallocW", codes=[ENODEV])
        self.assertEqual(t.names(), ["MallocW"])
        t.rpc("bdev_malloc_delete", "MallocW")

    # -- generic --

    def test_get_bdevs_unknown(self):
        t = self.target
        self.assertEqual(t.rpc("bdev_get_bdevs"), [])
        self.assertRpcError("bdev_get_bdevs", "-b", "NoSuchBdev", codes=[ENODEV])
        t0 = time.monotonic()
        self.assertRpcError("bdev_get_bdevs", "-b", "NoSuchBdev", "-t", "300")
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)

    def test_get_bdevs_waits(self):
        """bdev_get_bdevs -b NAME -t MS answers when the bdev appears."""
        t = self.target
        argv = [sys.executable, RPC_PY, "-s", t.sock, "bdev_get_bdevs", "-b", "Late", "-t",
                "10000"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _LIVE.add(proc)
        try:
            time.sleep(0.3)
            self.assertIsNone(proc.poll(), "answered before the bdev existed")
            t.create("bdev_null_create", "Late", "1", "512")
            out, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual([b["name"] for b in json.loads(out)], ["Late"])
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            _LIVE.discard(proc)
            t.rpc("bdev_null_delete", "Late")

    def test_iostat(self):
        t = self.target
        t.create("bdev_malloc_create", "-b", "MallocS", "1", "512")
        t.create("bdev_null_create", "NullS", "1", "512")
        stat = t.rpc("bdev_get_iostat")
        self.assertGreater(stat["tick_rate"], 0)
        self.assertIn("ticks", stat)
        self.assertEqual([b["name"] for b in stat["bdevs"]], ["MallocS", "NullS"])
        for b in stat["bdevs"]:
            for k in ["bytes_read", "num_read_ops", "bytes_written", "num_write_ops",
                      "bytes_unmapped", "num_unmap_ops", "read_latency_ticks",
                      "write_latency_ticks", "unmap_latency_ticks"]:
                self.assertEqual(b[k], 0, (k, b))
        one = t.rpc("bdev_get_iostat", "-b", "NullS")
        self.assertEqual([b["name"] for b in one["bdevs"]], ["NullS"])
        self.assertRpcError("bdev_get_iostat", "-b", "NoSuchBdev", codes=[ENODEV])
        # per channel: one bdev; no thread holds a channel of it in an idle target.
        chans = t.rpc("bdev_get_iostat", "-b", "NullS", "-c")
        self.assertEqual(chans["name"], "NullS")
        self.assertEqual(chans["channels"], [])
        self.assertRpcError("bdev_get_iostat", "-c", codes=[-32602])
        t.rpc("bdev_malloc_delete", "MallocS")
        t.rpc("bdev_null_delete", "NullS")

    def test_wait_for_examine(self):
        rc, out, err = self.target.rpc_raw("bdev_wait_for_examine")
        self.assertEqual((rc, out), (0, ""), err)

    def test_set_options_at_runtime(self):
        self.assertRpcError("bdev_set_options", "-p", "4096", codes=[INVALID_STATE])

    def test_framework_get_subsystems(self):
        subsystems = self.target.rpc("framework_get_subsystems")
        names = [s["subsystem"] for s in subsystems]
        self.assertIn("bdev", names)


def bdev_entries(saved):
    sub = [s for s in saved["subsystems"] if s["subsystem"] == "bdev"]
    assert len(sub) == 1, saved
    return sub[0]["config"]


class BdevConfigTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir()
        self.aio_dir = aio_tmpdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.aio_dir, ignore_errors=True)

    def test_save_restart_save(self):
        aio_path = os.path.join(self.aio_dir, "aio0")
        make_file(aio_path, 4 * 1024 * 1024)
        malloc_uuid = str(uuid.uuid4())
        with BdevTarget("-m", "0x1", "--wait-for-rpc") as t:
            # Out of range, or a pool smaller than one channel's cache: refused, nothing set.
            for args in (["-c", "0"], ["-c", "70000"], ["-p", "20000000"], ["-p", "100"]):
                with self.assertRaises(RpcError) as cm:
                    t.rpc("bdev_set_options", *args)
                self.assertEqual(cm.exception.code, -32602, cm.exception)
            t.rpc("bdev_set_options", "-p", "8192", "-c", "256")
            t.rpc("framework_start_init")
            t.rpc("framework_wait_init")
            t.create("bdev_malloc_create", "-b", "Malloc0", "-u", malloc_uuid, "8", "512")
            t.create("bdev_null_create", "Null0", "16", "4096")
            t.create("bdev_aio_create", aio_path, "AIO0", "4096")
            bdevs1 = t.rpc("bdev_get_bdevs")
            saved1 = t.rpc("save_config")
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())

        entries = bdev_entries(saved1)
        methods = [e["method"] for e in entries]
        self.assertEqual(methods[0], "bdev_set_options")
        self.assertEqual(entries[0]["params"]["bdev_io_pool_size"], 8192)
        self.assertEqual(entries[0]["params"]["bdev_io_cache_size"], 256)
        self.assertEqual(entries[0]["params"]["iobuf_small_cache_size"], 128)
        self.assertEqual(entries[0]["params"]["iobuf_large_cache_size"], 16)
        self.assertEqual(methods[-1], "bdev_wait_for_examine")
        for m in ["bdev_malloc_create", "bdev_null_create", "bdev_aio_create"]:
            self.assertEqual(methods.count(m), 1, methods)
        by_method = {e["method"]: e.get("params", {}) for e in entries}
        self.assertEqual(by_method["bdev_malloc_create"]["name"], "Malloc0")
        self.assertEqual(by_method["bdev_malloc_create"]["uuid"], malloc_uuid)
        self.assertEqual(by_method["bdev_malloc_create"]["num_blocks"], 16384)
        self.assertEqual(by_method["bdev_null_create"]["num_blocks"], 4096)
        self.assertEqual(by_method["bdev_aio_create"]["filename"], aio_path)

        config = os.path.join(self.dir, "saved.json")
        write_json(config, saved1)
        with BdevTarget("-m", "0x1", "-c", config) as t:
            saved2 = t.rpc("save_config")
            bdevs2 = t.rpc("bdev_get_bdevs")
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())
        self.assertEqual(saved2, saved1)
        # Same bdevs, same uuids (the saved entries carry them).
        self.assertEqual(bdevs2, bdevs1)

    def test_config_error_names_entry(self):
        config = os.path.join(self.dir, "bad.json")
        write_json(config, {"subsystems": [{"subsystem": "bdev", "config": [
            {"method": "bdev_malloc_create",
             "params": {"name": "Malloc0", "num_blocks": 16, "block_size": 1000}}]}]})
        t = BdevTarget("-m", "0x1", "-c", config, wait_ready=False)
        with t:
            rc = t.wait(30)
            self.assertIsNotNone(rc, "did not exit")
            self.assertNotEqual(rc, 0)
            self.assertIn("bdev_malloc_create", t.stderr())


# ---------------------------------------------------------------------------------------
# bdevperf


def malloc_config(name="Malloc0", num_blocks=16384, block_size=512):
    return {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_malloc_create",
         "params": {"name": name, "num_blocks": num_blocks, "block_size": block_size}}]}]}


def null_config(name="Null0", num_blocks=262144, block_size=4096):
    return {"subsystems": [{"subsystem": "bdev", "config": [
        {"method": "bdev_null_create",
         "params": {"name": name, "num_blocks": num_blocks, "block_size": block_size}}]}]}


class BdevperfTest(unittest.TestCase):
    def setUp(self):
        if not os.access(BDEVPERF, os.X_OK):
            self.fail("bdevperf binary not found or not executable: %s (set FLINT_BDEVPERF)"
                      % BDEVPERF)
        self.dir = make_tmpdir()
        self.sock = os.path.join(self.dir, "rpc.sock")

    def tearDown(self):
        if not os.environ.get("FLINT_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def argv(self, config, *args):
        path = os.path.join(self.dir, "config.json")
        write_json(path, config)
        return [BDEVPERF, "-r", self.sock, *default_extra_args(), "-c", path,
                *map(str, args)]

    def run_perf(self, config, *args, timeout=120):
        argv = self.argv(config, *args)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        _LIVE.add(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _LIVE.discard(proc)
        return proc.returncode, out, err

    def check_table(self, out, jobs):
        """The result table: one row per job and a Total row; returns Total's numbers."""
        self.assertIn("Latency(us)", out)
        self.assertIn("Device Information", out)
        rows = {}
        for name, _ in jobs:
            self.assertRegex(out, r"Job: %s \(Core Mask 0x[0-9a-f]+" % re.escape(name))
        job_rows = re.findall(r"^\s+(\S+)\s+:\s+([\d.]+(?:\s+[\d.]+){7})\s*$", out, re.M)
        self.assertEqual(sorted(r[0] for r in job_rows), sorted(n for n, _ in jobs), out)
        for name, fields in job_rows:
            rows.setdefault(name, []).append([float(x) for x in fields.split()])
        m = re.search(r"^\s+Total\s+:\s+([\d.]+(?:\s+[\d.]+){6})\s*$", out, re.M)
        self.assertIsNotNone(m, out)
        total = [float(x) for x in m.group(1).split()]
        return rows, total

    def test_verify_malloc(self):
        json_out = os.path.join(self.dir, "results.json")
        rc, out, err = self.run_perf(malloc_config(), "-q", 16, "-o", 4096, "-w", "verify",
                                     "-t", 1, "-j", json_out)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("Running I/O for 1 seconds", out)
        rows, total = self.check_table(out, [("Malloc0", 1)])
        runtime, iops, mibps, fail_s, to_s = rows["Malloc0"][0][:5]
        self.assertGreater(iops, 0)
        self.assertEqual(fail_s, 0)
        self.assertAlmostEqual(runtime, 1.0, delta=0.5)
        self.assertAlmostEqual(mibps, iops * 4096 / (1 << 20), delta=max(0.02, mibps * 0.01))
        self.assertAlmostEqual(total[0], iops, delta=max(0.02, iops * 0.001))
        self.assertIn("Verification LBA range: start 0x0 length 0x4000", out)
        with open(json_out) as f:
            res = json.load(f)
        self.assertEqual(len(res["results"]), 1)
        r = res["results"][0]
        self.assertEqual(r["job"], "Malloc0")
        self.assertEqual(r["workload"], "verify")
        self.assertEqual(r["status"], "finished")
        self.assertEqual(r["queue_depth"], 16)
        self.assertEqual(r["io_size"], 4096)
        self.assertEqual(r["io_failed"], 0)
        self.assertGreater(r["iops"], 0)
        self.assertLessEqual(r["min_latency_us"], r["avg_latency_us"])
        self.assertLessEqual(r["avg_latency_us"], r["max_latency_us"])
        self.assertEqual(r["verify_range"], {"start": 0, "length": 16384})

    def test_randread_null_two_cores(self):
        rc, out, err = self.run_perf(null_config(), "-m", "0x3", "-q", 32, "-o", 4096,
                                     "-w", "randread", "-t", 1)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        rows, total = self.check_table(out, [("Null0", 0), ("Null0", 1)])
        self.assertEqual(len(rows["Null0"]), 2)
        self.assertRegex(out, r"Job: Null0 \(Core Mask 0x1,")
        self.assertRegex(out, r"Job: Null0 \(Core Mask 0x2,")
        self.assertAlmostEqual(total[0], sum(r[1] for r in rows["Null0"]), delta=1.0)
        self.assertGreater(total[0], 0)
        # Progress lines, one a second.
        self.assertTrue(re.search(r"^\s*[\d.]+ IOPS,\s+[\d.]+ MiB/s$", out, re.M), out)

    def test_other_workloads(self):
        for args in (["-w", "randrw", "-M", "70"], ["-w", "write"], ["-w", "unmap"],
                     ["-w", "write_zeroes"], ["-w", "flush"]):
            with self.subTest(args=args):
                rc, out, err = self.run_perf(malloc_config(), "-q", 8, "-o", "4k", *args,
                                             "-t", 1)
                self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
                self.check_table(out, [("Malloc0", 0)])

    def test_verify_aio(self):
        aio_dir = aio_tmpdir()
        try:
            path = os.path.join(aio_dir, "aio0")
            make_file(path, 8 * 1024 * 1024)
            config = {"subsystems": [{"subsystem": "bdev", "config": [
                {"method": "bdev_aio_create",
                 "params": {"filename": path, "name": "AIO0", "block_size": 4096}}]}]}
            rc, out, err = self.run_perf(config, "-q", 8, "-o", 4096, "-w", "verify", "-t", 1)
            self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
            self.check_table(out, [("AIO0", 0)])
        finally:
            shutil.rmtree(aio_dir, ignore_errors=True)

    def test_verify_two_cores_split_range(self):
        rc, out, err = self.run_perf(malloc_config(), "-m", "0x3", "-q", 8, "-o", 4096,
                                     "-w", "verify", "-t", 1)
        self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("Verification LBA range: start 0x0 length 0x2000", out)
        self.assertIn("Verification LBA range: start 0x2000 length 0x2000", out)

    def test_verify_mismatch_fails(self):
        """A null bdev throws writes away, so verify must report a mismatch and fail."""
        rc, out, err = self.run_perf(null_config(num_blocks=1024), "-q", 4, "-o", 4096,
                                     "-w", "verify", "-t", 1)
        self.assertNotEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertIn("mismatch", out + err)
        self.assertIn("with error", out)

    def test_sigint_stops_and_reports(self):
        argv = self.argv(null_config(), "-q", 16, "-o", 4096, "-w", "randread", "-t", 60)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
        _LIVE.add(proc)
        try:
            line = ""
            deadline = time.monotonic() + 30
            while "Running I/O" not in line and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
            self.assertIn("Running I/O", line)
            time.sleep(0.5)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
            self.assertLess(time.monotonic() - t0, 5.0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            _LIVE.discard(proc)
        self.assertEqual(proc.returncode, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
        self.assertTrue(re.search(r"^\s+Total\s+:", out, re.M), out)

    def test_bad_options(self):
        cases = [
            ("-o", 4096, "-w", "read", "-t", 1),                   # no -q
            ("-q", 1, "-w", "read", "-t", 1),                      # no -o
            ("-q", 1, "-o", 4096, "-t", 1),                        # no -w
            ("-q", 1, "-o", 4096, "-w", "read"),                   # no -t
            ("-q", 1, "-o", 4096, "-w", "bogus", "-t", 1),
            ("-q", 1, "-o", 4096, "-w", "rw", "-t", 1),            # rw needs -M
            ("-q", 1, "-o", 4096, "-w", "rw", "-M", 101, "-t", 1),
            ("-q", 0, "-o", 4096, "-w", "read", "-t", 1),
            ("-q", 1, "-o", 1000, "-w", "read", "-t", 1),
            ("-q", 1, "-o", 4096, "-w", "read", "-t", 0),
            ("-q", 1, "-o", 4096, "-w", "read", "-t", 1, "--bogus"),
            ("-q", 1, "-o", 4096, "-w", "read", "-t", 1, "-m", "0xzz"),
        ]
        for args in cases:
            with self.subTest(args=args):
                rc, out, err = self.run_perf(malloc_config(), *args, timeout=30)
                self.assertNotEqual(rc, 0, out + err)
                self.assertTrue(err.strip(), "no error message")

    def test_help(self):
        proc = subprocess.run([BDEVPERF, "-h"], capture_output=True, text=True, timeout=30)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for opt in ["-q", "-o", "-w", "-M", "-t", "-j", "-c", "-m", "-r", "--no-huge"]:
            self.assertIn(opt, proc.stdout)

    def test_io_size_not_multiple_of_block_size(self):
        rc, out, err = self.run_perf(null_config(block_size=4096), "-q", 1, "-o", 512,
                                     "-w", "read", "-t", 1)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("block size", err)

    def test_job_setup_failure(self):
        """A job that cannot start (here: no DMA memory for its buffers) fails the run."""
        rc, out, err = self.run_perf(null_config(), "-m", "0x3", "-q", 1024, "-o", "1g",
                                     "-w", "randread", "-t", 1)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("cannot allocate", err)

    def test_pool_smaller_than_the_caches_is_refused(self):
        """bdev_set_options wants a pool of at least bdev_io_cache_size * (threads + 1)."""
        config = null_config(num_blocks=1024)
        config["subsystems"][0]["config"].insert(0, {
            "method": "bdev_set_options",
            "params": {"bdev_io_pool_size": 1024, "bdev_io_cache_size": 1024}})
        rc, out, err = self.run_perf(config, "-q", 4, "-o", 4096, "-w", "randread", "-t", 1)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("bdev_io_cache_size * (threads + 1)", err)

    def test_no_bdevs(self):
        rc, out, err = self.run_perf({"subsystems": []}, "-q", 1, "-o", 4096, "-w", "read",
                                     "-t", 1)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("no bdevs", err)


if __name__ == "__main__":
    unittest.main()
