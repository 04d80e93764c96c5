"""JSON-RPC error handling, through rpc.py and on a raw socket."""

import json
import time
import unittest

from harness import RpcError, Target, run_rpc

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class RpcErrorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.target = Target("-m", "0x1")
        try:
            cls.target.start()
        except BaseException:
            cls.target.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.target.cleanup()

    def tearDown(self):
        # Whatever a test sent, the target must still be up and serving.
        self.assertTrue(self.target.alive(), self.target.stderr())
        self.assertIsInstance(self.target.rpc("spdk_get_version"), dict)

    def assertError(self, resp, code, id=None, mentions=()):
        self.assertIsNotNone(resp, "connection closed without a response")
        self.assertEqual(resp.get("jsonrpc"), "2.0", resp)
        self.assertNotIn("result", resp)
        self.assertEqual(resp["error"]["code"], code, resp)
        self.assertIsInstance(resp["error"]["message"], str)
        self.assertEqual(resp.get("id"), id, resp)
        for text in mentions:
            self.assertIn(text, resp["error"]["message"])

    # -- through rpc.py --

    def test_rpcpy_error_output(self):
        rc, out, err = self.target.rpc_raw("framework_get_config", "no_such_subsystem")
        self.assertEqual(rc, 1)
        self.assertEqual(out, "")
        lines = err.splitlines()
        self.assertEqual(lines[0], "request:")
        self.assertIn("Got JSON-RPC error response", lines)
        self.assertIn("response:", lines)
        i = lines.index("response:")
        error = json.loads("\n".join(lines[i + 1:]))
        self.assertEqual(error["code"], INVALID_PARAMS)
        req = json.loads("\n".join(lines[1:lines.index("Got JSON-RPC error response")]))
        self.assertEqual(req["method"], "framework_get_config")
        self.assertEqual(req["name"], "no_such_subsystem")

    def test_log_set_flag_unknown(self):
        for method in ("log_set_flag", "log_clear_flag"):
            with self.assertRaises(RpcError) as cm:
                self.target.rpc(method, "no_such_flag_xyz")
            self.assertEqual(cm.exception.code, INVALID_PARAMS, cm.exception)
            self.assertIn("no_such_flag_xyz", cm.exception.message)

    def test_log_set_level_unknown(self):
        with self.assertRaises(RpcError) as cm:
            self.target.rpc("log_set_level", "LOUD")
        self.assertEqual(cm.exception.code, INVALID_PARAMS, cm.exception)
        self.assertEqual(self.target.rpc("log_get_level"), "NOTICE")

    def test_startup_only_method_at_runtime(self):
        with self.assertRaises(RpcError) as cm:
            self.target.rpc("nvmf_set_max_subsystems", "-n", "10")
        self.assertEqual(cm.exception.code, -32604, cm.exception)

    def test_connection_refused(self):
        path = self.target.sock + ".nobody"
        rc, out, err = run_rpc(path, "spdk_get_version")
        self.assertEqual(rc, 1)
        self.assertIn(path, err)

    # -- raw socket --

    def test_unknown_method(self):
        with self.target.client() as c:
            resp = c.request("no_such_method", id=7)
            self.assertError(resp, METHOD_NOT_FOUND, id=7)
            # The connection stays usable.
            self.assertIsInstance(c.call("spdk_get_version"), dict)

    def test_bad_param_type(self):
        with self.target.client() as c:
            resp = c.request("framework_get_config", {"name": 5}, id=1)
            self.assertError(resp, INVALID_PARAMS, id=1, mentions=["name"])

    def test_missing_param(self):
        with self.target.client() as c:
            resp = c.request("framework_get_config", {}, id=2)
            self.assertError(resp, INVALID_PARAMS, id=2, mentions=["name"])
            resp = c.request("log_set_flag", id=3)
            self.assertError(resp, INVALID_PARAMS, id=3, mentions=["flag"])

    def test_unknown_param(self):
        with self.target.client() as c:
            resp = c.request("framework_get_config", {"name": "nvmf", "bogus_field": 1}, id=3)
            self.assertError(resp, INVALID_PARAMS, id=3, mentions=["bogus_field"])

    def test_params_not_an_object(self):
        with self.target.client() as c:
            resp = c.request("framework_get_config", ["nvmf"], id=4)
            self.assertError(resp, INVALID_PARAMS, id=4)

    def test_unknown_subsystem_config(self):
        with self.target.client() as c:
            resp = c.request("framework_get_config", {"name": "no_such_subsystem"}, id=5)
            self.assertError(resp, INVALID_PARAMS, id=5)

    def test_unknown_signal(self):
        with self.target.client() as c:
            resp = c.request("spdk_kill_instance", {"sig_name": "SIGBOGUS"}, id=6)
            self.assertError(resp, INVALID_PARAMS, id=6)

    def test_string_id_echoed(self):
        with self.target.client() as c:
            resp = c.request("spdk_get_version", id="abc")
            self.assertEqual(resp["id"], "abc")
            self.assertEqual(resp["jsonrpc"], "2.0")
            self.assertEqual(resp["result"]["version"], "Flint v0.1.0")

    def test_missing_method_is_invalid_request(self):
        with self.target.client() as c:
            c.send({"jsonrpc": "2.0", "id": 9})
            self.assertError(c.recv(), INVALID_REQUEST, id=9)

    def test_wrong_version_is_invalid_request(self):
        with self.target.client() as c:
            c.send({"jsonrpc": "1.0", "method": "spdk_get_version", "id": 10})
            self.assertError(c.recv(), INVALID_REQUEST, id=10)

    def test_parse_error_drops_connection(self):
        with self.target.client() as c:
            c.send_raw('{"jsonrpc": "2.0", "method": "spdk_get_version", "id": 1}')
            self.assertEqual(c.recv()["id"], 1)
            c.send_raw('{"jsonrpc": "2.0", "method": }')
            self.assertError(c.recv(), PARSE_ERROR, id=None)
            self.assertTrue(c.is_closed(5.0), "connection not dropped after a parse error")

    def test_two_requests_in_one_write(self):
        with self.target.client() as c:
            c.send_raw('{"jsonrpc":"2.0","method":"spdk_get_version","id":1}'
                       '{"jsonrpc":"2.0","method":"log_get_level","id":2}')
            first, second = c.recv(), c.recv()
            self.assertEqual((first["id"], second["id"]), (1, 2))
            self.assertEqual(second["result"], "NOTICE")

    def test_request_split_across_writes(self):
        with self.target.client() as c:
            data = '{"jsonrpc":"2.0","method":"spdk_get_version","id":11}'
            for i in range(0, len(data), 7):
                c.send_raw(data[i:i + 7])
                time.sleep(0.01)
            self.assertEqual(c.recv()["id"], 11)

    def test_batch(self):
        with self.target.client() as c:
            c.send([{"jsonrpc": "2.0", "method": "log_get_level", "id": 21},
                    {"jsonrpc": "2.0", "method": "no_such_method", "id": 22},
                    {"jsonrpc": "2.0", "method": "spdk_get_version"}])
            resp = c.recv()
            self.assertIsInstance(resp, list, resp)
            by_id = {r["id"]: r for r in resp}
            self.assertEqual(sorted(by_id), [21, 22], resp)
            self.assertEqual(by_id[21]["result"], "NOTICE")
            self.assertEqual(by_id[22]["error"]["code"], METHOD_NOT_FOUND)

    def test_empty_batch(self):
        with self.target.client() as c:
            c.send_raw("[]")
            self.assertError(c.recv(), INVALID_REQUEST, id=None)

    def test_notification_gets_no_response(self):
        with self.target.client() as c:
            c.send({"jsonrpc": "2.0", "method": "spdk_get_version"})
            resp = c.request("log_get_level", id=12)
            self.assertEqual(resp["id"], 12)
            self.assertEqual(resp["result"], "NOTICE")

    def test_oversized_request(self):
        """A request over 4 MiB is refused (error or dropped connection), never served."""
        with self.target.client(timeout=30) as c:
            big = "x" * (5 << 20)
            try:
                c.send_raw('{"jsonrpc":"2.0","method":"framework_get_config","id":13,'
                           '"params":{"name":"' + big + '"}}')
            except (BrokenPipeError, ConnectionResetError):
                return  # dropped while we were still sending
            try:
                resp = c.recv()
            except ConnectionResetError:
                resp = None
            if resp is not None:
                self.assertIn("error", resp)
                self.assertIn(resp["error"]["code"], (INVALID_REQUEST, PARSE_ERROR), resp)

    def test_request_under_limit_is_served(self):
        with self.target.client(timeout=30) as c:
            name = "y" * (3 << 20)
            resp = c.request("framework_get_config", {"name": name}, id=14)
            self.assertError(resp, INVALID_PARAMS, id=14)


if __name__ == "__main__":
    unittest.main()
