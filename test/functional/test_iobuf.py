"""iobuf: iobuf_set_options during --wait-for-rpc, iobuf_get_stats at runtime, and the
"iobuf" subsystem in save_config and back through -c."""

import os
import shutil
import unittest

from harness import RpcError, Target, make_tmpdir, write_json

INVALID_PARAMS = -32602
INVALID_STATE = -32604

OPTIONS = {"small_pool_count": 128, "large_pool_count": 64, "small_bufsize": 16384,
           "large_bufsize": 65536}


def iobuf_entries(saved):
    sub = [s for s in saved["subsystems"] if s["subsystem"] == "iobuf"]
    assert len(sub) == 1, saved
    return sub[0]["config"]


class IobufTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def assertRpcError(self, t, code, *args):
        with self.assertRaises(RpcError) as cm:
            t.rpc(*args)
        self.assertEqual(cm.exception.code, code, cm.exception)
        return cm.exception

    def test_options_at_startup_stats_at_runtime_and_save_config(self):
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            err = self.assertRpcError(t, INVALID_PARAMS, "iobuf_set_options",
                                      "--small-pool-count", 63)
            self.assertIn("'small_pool_count'", err.message)
            err = self.assertRpcError(t, INVALID_PARAMS, "iobuf_set_options",
                                      "--small-bufsize", 8192, "--large-bufsize", 4096)
            self.assertIn("'large_bufsize'", err.message)
            self.assertRpcError(t, INVALID_STATE, "iobuf_get_stats")

            rc, out, err = t.rpc_raw("iobuf_set_options",
                                     "--small-pool-count", OPTIONS["small_pool_count"],
                                     "--large-pool-count", OPTIONS["large_pool_count"],
                                     "--small-bufsize", OPTIONS["small_bufsize"],
                                     "--large-bufsize", OPTIONS["large_bufsize"])
            self.assertEqual((rc, out), (0, ""), err)
            self.assertIs(t.rpc("framework_start_init"), True)

            self.assertRpcError(t, INVALID_STATE, "iobuf_set_options", "--small-pool-count", 256)
            stats = t.rpc("iobuf_get_stats")
            self.assertIsInstance(stats, list)
            for m in stats:
                self.assertEqual(sorted(m), ["large_pool", "module", "small_pool"])
                for pool in ("small_pool", "large_pool"):
                    self.assertEqual(sorted(m[pool]), ["cache", "main", "retry"])

            names = [s["subsystem"] for s in t.rpc("framework_get_subsystems")]
            self.assertIn("iobuf", names)
            self.assertLess(names.index("iobuf"), names.index("bdev"))

            saved = t.rpc("save_config")
            self.assertEqual(iobuf_entries(saved),
                             [{"method": "iobuf_set_options", "params": OPTIONS}])
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())
            self.assertNotIn("still out", t.stderr())

        # The saved options come back through -c, before the pools are made.
        path = os.path.join(self.dir, "saved.json")
        write_json(path, saved)
        with Target("-m", "0x1", "-c", path) as t:
            self.assertEqual(t.rpc("save_config"), saved)
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())

    def test_defaults_are_spdks(self):
        with Target("-m", "0x1") as t:
            self.assertEqual(t.rpc("framework_get_config", "iobuf"),
                             [{"method": "iobuf_set_options",
                               "params": {"small_pool_count": 8192, "large_pool_count": 1024,
                                          "small_bufsize": 8192, "large_bufsize": 135168}}])
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())


if __name__ == "__main__":
    unittest.main()
