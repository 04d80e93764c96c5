"""Shutdown by signal and by spdk_kill_instance; one target per RPC socket path."""

import os
import shutil
import signal
import socket
import time
import unittest

from harness import RpcError, Target, make_tmpdir, pids_with_arg


class SignalTest(unittest.TestCase):
    def check_signal(self, sig, mask):
        with Target("-m", mask) as t:
            rc, elapsed = t.stop(sig, timeout=30)
            self.assertIsNotNone(rc, "did not exit within 30 s after %s" % sig.name)
            self.assertEqual(rc, 0, t.stderr())
            self.assertLess(elapsed, 1.0, "took %.3f s to exit after %s" % (elapsed, sig.name))
            self.assertFalse(os.path.exists(t.sock), "RPC socket file left behind")
            self.assertEqual(pids_with_arg(t.sock), [])

    def test_sigterm(self):
        self.check_signal(signal.SIGTERM, "0x3")

    def test_sigint(self):
        self.check_signal(signal.SIGINT, "0x3")

    def test_sigterm_one_core(self):
        self.check_signal(signal.SIGTERM, "0x1")

    def test_spdk_kill_instance(self):
        with Target("-m", "0x3") as t:
            rc, out, err = t.rpc_raw("spdk_kill_instance", "SIGTERM")
            self.assertEqual(rc, 0, out + err)
            t0 = time.monotonic()
            code = t.wait(30)
            self.assertEqual(code, 0, t.stderr())
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertFalse(os.path.exists(t.sock))

    def test_spdk_kill_instance_unknown_signal(self):
        with Target("-m", "0x1") as t:
            with self.assertRaises(RpcError) as cm:
                t.rpc("spdk_kill_instance", "SIGBOGUS")
            self.assertEqual(cm.exception.code, -32602, cm.exception)
            self.assertTrue(t.alive())
            self.assertIsInstance(t.rpc("spdk_get_version"), dict)

    def test_signal_with_open_connection(self):
        """An idle client connection does not hold up shutdown."""
        with Target("-m", "0x1") as t:
            with t.client() as c:
                c.call("spdk_get_version")
                rc, elapsed = t.stop(signal.SIGTERM)
                self.assertEqual(rc, 0, t.stderr())
                self.assertLess(elapsed, 1.0)
                self.assertTrue(c.is_closed(5.0))


class SocketOwnershipTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir()
        self.sock = os.path.join(self.dir, "shared.sock")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_second_instance_refused_then_stale_socket_replaced(self):
        # Different cores, so that only the socket path is shared.
        with Target("-m", "0x1", sock=self.sock) as first:
            with Target("-m", "0x2", sock=self.sock, wait_ready=False) as second:
                rc = second.wait(30)
                err = second.stderr()
                self.assertIsNotNone(rc, "second nvmf_tgt on the same socket kept running")
                self.assertNotEqual(rc, 0, err)
                self.assertIn(self.sock, err)
                self.assertRegex(err.lower(), r"in use|already|another|listening|exists")
            # The first one is untouched and still owns the socket.
            self.assertTrue(first.alive())
            self.assertTrue(os.path.exists(self.sock))
            self.assertIsInstance(first.rpc("spdk_get_version"), dict)
            self.assertEqual(first.rpc("framework_get_reactors")["pid"], first.proc.pid)

            first.proc.send_signal(signal.SIGKILL)
            self.assertEqual(first.wait(10), -signal.SIGKILL)
        # SIGKILL leaves the socket file behind, with nobody accepting.
        self.assertTrue(os.path.exists(self.sock))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with self.assertRaises(ConnectionRefusedError):
            s.connect(self.sock)
        s.close()

        with Target("-m", "0x1", sock=self.sock) as third:
            r = third.rpc("framework_get_reactors")
            self.assertEqual(r["pid"], third.proc.pid)
            rc, _ = third.stop()
            self.assertEqual(rc, 0, third.stderr())
        self.assertFalse(os.path.exists(self.sock))

    def test_socket_path_is_a_regular_file(self):
        with open(self.sock, "w") as f:
            f.write("not a socket\n")
        with Target("-m", "0x1", sock=self.sock, wait_ready=False) as t:
            rc = t.wait(30)
            self.assertIsNotNone(rc)
            self.assertNotEqual(rc, 0, t.stderr())
            self.assertIn(self.sock, t.stderr())
        # Only a socket is ever replaced; a regular file is left alone.
        with open(self.sock) as f:
            self.assertEqual(f.read(), "not a socket\n")

    def test_socket_mode(self):
        with Target("-m", "0x1", sock=self.sock) as t:
            mode = os.stat(self.sock).st_mode & 0o777
            self.assertEqual(mode, 0o600, oct(mode))
            t.stop()
        self.assertEqual(pids_with_arg(self.sock), [])


if __name__ == "__main__":
    unittest.main()
