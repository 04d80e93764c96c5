"""--wait-for-rpc: startup-only methods, framework_start_init, and the switch to runtime."""

import threading
import time
import unittest

from harness import RpcError, Target

INVALID_STATE = -32604


class WaitForRpcTest(unittest.TestCase):
    def test_startup_then_runtime(self):
        with Target("-m", "0x3", "--wait-for-rpc") as t:
            self.assertNotIn("nvmf_tgt ready", t.stderr())

            r = t.rpc("framework_get_reactors")
            self.assertEqual(sorted(x["lcore"] for x in r["reactors"]), [0, 1])

            current = t.rpc("rpc_get_methods", "--current")
            for m in ("framework_start_init", "nvmf_set_max_subsystems", "nvmf_set_config",
                      "rpc_get_methods", "framework_get_reactors"):
                self.assertIn(m, current)
            self.assertNotIn("nvmf_get_stats", current)

            self.assertIs(t.rpc("nvmf_set_max_subsystems", "-n", "100"), True)
            self.assertIs(t.rpc("nvmf_set_config", "-m", "0x1"), True)

            with self.assertRaises(RpcError) as cm:
                t.rpc("nvmf_get_stats")
            self.assertEqual(cm.exception.code, INVALID_STATE, cm.exception)
            self.assertIn("Got JSON-RPC error response", cm.exception.stderr)

            self.assertIs(t.rpc("framework_start_init"), True)
            self.assertIs(t.rpc("framework_wait_init"), True)
            self.assertIn("nvmf_tgt ready", t.stderr())

            stats = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in stats["poll_groups"]],
                             ["nvmf_tgt_poll_group_000"])

            current = t.rpc("rpc_get_methods", "--current")
            self.assertIn("nvmf_get_stats", current)
            self.assertNotIn("framework_start_init", current)
            self.assertNotIn("nvmf_set_max_subsystems", current)

            with self.assertRaises(RpcError) as cm:
                t.rpc("nvmf_set_max_subsystems", "-n", "200")
            self.assertEqual(cm.exception.code, INVALID_STATE, cm.exception)
            with self.assertRaises(RpcError) as cm:
                t.rpc("nvmf_set_config", "-m", "0x3")
            self.assertEqual(cm.exception.code, INVALID_STATE, cm.exception)
            with self.assertRaises(RpcError) as cm:
                t.rpc("framework_start_init")
            self.assertEqual(cm.exception.code, INVALID_STATE, cm.exception)

            # What was set during startup is what the target runs with.
            entries = {e["method"]: e["params"] for e in t.rpc("framework_get_config", "nvmf")}
            self.assertEqual(entries["nvmf_set_max_subsystems"], {"max_subsystems": 100})

            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())

    def test_wait_init_blocks_until_start(self):
        """framework_wait_init sent during startup answers once framework_start_init ran."""
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            result = {}

            def waiter():
                t0 = time.monotonic()
                try:
                    result["value"] = t.rpc("framework_wait_init")
                except Exception as ex:  # reported below
                    result["error"] = ex
                result["at"] = time.monotonic() - t0

            th = threading.Thread(target=waiter)
            th.start()
            time.sleep(1.5)
            self.assertTrue(th.is_alive(), "framework_wait_init answered before init: %r" % result)
            # Other requests are still served while one waits.
            self.assertIsInstance(t.rpc("spdk_get_version"), dict)
            self.assertIs(t.rpc("framework_start_init"), True)
            th.join(30)
            self.assertFalse(th.is_alive())
            self.assertNotIn("error", result, result.get("error"))
            self.assertIs(result["value"], True)
            self.assertGreaterEqual(result["at"], 1.5)

    def test_start_init_twice_pipelined(self):
        """A second framework_start_init while the first is still running is refused; the
        target initializes once and keeps running."""
        with Target("-m", "0x3", "--wait-for-rpc") as t:
            with t.client() as c:
                c.send_raw('{"jsonrpc":"2.0","method":"framework_start_init","id":1}'
                           '{"jsonrpc":"2.0","method":"framework_start_init","id":2}')
                responses = {}
                for _ in range(2):
                    resp = c.recv()
                    self.assertIsNotNone(resp, "connection closed; stderr:\n" + t.stderr())
                    responses[resp["id"]] = resp
            self.assertIs(responses[1].get("result"), True, responses)
            self.assertIn("error", responses[2], responses)
            self.assertEqual(responses[2]["error"]["code"], INVALID_STATE, responses)
            time.sleep(0.5)
            self.assertTrue(t.alive(), "target exited after a repeated framework_start_init; "
                            "stderr:\n" + t.stderr())
            self.assertIs(t.rpc("framework_wait_init"), True)
            self.assertEqual(len(t.rpc("nvmf_get_stats")["poll_groups"]), 2)

    def test_stop_during_startup(self):
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            rc, elapsed = t.stop()
            self.assertEqual(rc, 0, t.stderr())
            self.assertLess(elapsed, 1.0)


if __name__ == "__main__":
    unittest.main()
