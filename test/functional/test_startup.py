"""Startup with a core mask: reactors, poll groups, threads, and the basic info methods."""

import os
import unittest

from harness import Target

POLL_GROUP_0 = "nvmf_tgt_poll_group_000"
POLL_GROUP_1 = "nvmf_tgt_poll_group_001"


class TwoCoreTest(unittest.TestCase):
    """One target with -m 0x3 shared by the read-only checks."""

    @classmethod
    def setUpClass(cls):
        cls.target = Target("-m", "0x3")
        try:
            cls.target.start()
        except BaseException:
            cls.target.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.target.cleanup()

    def test_log_lines(self):
        err = self.target.stderr()
        self.assertIn("listening on %s" % self.target.sock, err)
        self.assertIn("nvmf_tgt ready", err)

    def test_reactors(self):
        r = self.target.rpc("framework_get_reactors")
        self.assertIsInstance(r["tick_rate"], int)
        self.assertGreater(r["tick_rate"], 0)
        self.assertEqual(r["pid"], self.target.proc.pid)
        self.assertEqual(sorted(x["lcore"] for x in r["reactors"]), [0, 1])
        for reactor in r["reactors"]:
            for key in ("lcore", "tid", "busy", "idle", "in_interrupt", "irq", "sys", "usr",
                        "lw_threads"):
                self.assertIn(key, reactor)
            self.assertIsInstance(reactor["tid"], int)
            self.assertIsInstance(reactor["busy"], int)
            self.assertIsInstance(reactor["idle"], int)
            self.assertIs(reactor["in_interrupt"], False)
            for t in reactor["lw_threads"]:
                for key in ("name", "id", "cpumask", "elapsed"):
                    self.assertIn(key, t)
        # Each reactor runs in its own thread.
        tids = [x["tid"] for x in r["reactors"]]
        self.assertEqual(len(set(tids)), 2)
        lcore0 = next(x for x in r["reactors"] if x["lcore"] == 0)
        app = [t for t in lcore0["lw_threads"] if t["name"] == "app_thread"]
        self.assertEqual(len(app), 1, lcore0)
        self.assertEqual(app[0]["id"], 1)
        self.assertEqual(app[0]["cpumask"], "0x1")
        # Every poll group thread sits on some reactor, once.
        names = [t["name"] for x in r["reactors"] for t in x["lw_threads"]]
        self.assertEqual(names.count(POLL_GROUP_0), 1, names)
        self.assertEqual(names.count(POLL_GROUP_1), 1, names)

    def test_nvmf_get_stats(self):
        s = self.target.rpc("nvmf_get_stats")
        self.assertGreater(s["tick_rate"], 0)
        self.assertEqual([g["name"] for g in s["poll_groups"]], [POLL_GROUP_0, POLL_GROUP_1])
        for g in s["poll_groups"]:
            for key in ("admin_qpairs", "io_qpairs", "current_admin_qpairs", "current_io_qpairs",
                        "pending_bdev_io", "completed_nvme_io"):
                self.assertEqual(g[key], 0, (key, g))
            self.assertEqual(g["transports"], [])

    def test_thread_get_stats(self):
        s = self.target.rpc("thread_get_stats")
        self.assertGreater(s["tick_rate"], 0)
        names = [t["name"] for t in s["threads"]]
        for name in ("app_thread", POLL_GROUP_0, POLL_GROUP_1):
            self.assertEqual(names.count(name), 1, names)
        ids = [t["id"] for t in s["threads"]]
        self.assertEqual(len(set(ids)), len(ids), ids)
        for t in s["threads"]:
            for key in ("name", "id", "cpumask", "busy", "idle", "active_pollers_count",
                        "timed_pollers_count", "paused_pollers_count"):
                self.assertIn(key, t)
        app = next(t for t in s["threads"] if t["name"] == "app_thread")
        self.assertEqual(app["id"], 1)

    def test_thread_get_pollers(self):
        p = self.target.rpc("thread_get_pollers")
        self.assertGreater(p["tick_rate"], 0)
        names = [t["name"] for t in p["threads"]]
        self.assertIn("app_thread", names)
        self.assertIn(POLL_GROUP_0, names)
        self.assertIn(POLL_GROUP_1, names)
        stats = {t["name"]: t for t in self.target.rpc("thread_get_stats")["threads"]}
        for t in p["threads"]:
            for key in ("name", "id", "active_pollers", "timed_pollers", "paused_pollers"):
                self.assertIn(key, t)
            for poller in t["active_pollers"] + t["paused_pollers"]:
                for key in ("name", "id", "state", "run_count", "busy_count"):
                    self.assertIn(key, poller)
            for poller in t["timed_pollers"]:
                for key in ("name", "id", "state", "run_count", "busy_count", "period_ticks"):
                    self.assertIn(key, poller)
            # The counts in thread_get_stats describe the same pollers.
            if t["name"] in stats:
                self.assertEqual(stats[t["name"]]["active_pollers_count"], len(t["active_pollers"]))
                self.assertEqual(stats[t["name"]]["timed_pollers_count"], len(t["timed_pollers"]))
                self.assertEqual(stats[t["name"]]["paused_pollers_count"], len(t["paused_pollers"]))
        # The RPC server itself is polled on the app thread.
        app = next(t for t in p["threads"] if t["name"] == "app_thread")
        self.assertGreater(len(app["active_pollers"]) + len(app["timed_pollers"]), 0, app)

    def test_spdk_get_version(self):
        v = self.target.rpc("spdk_get_version")
        self.assertEqual(v, {"version": "Flint v0.1.0",
                             "fields": {"major": 0, "minor": 1, "patch": 0, "suffix": ""}})

    def test_framework_get_subsystems(self):
        subs = self.target.rpc("framework_get_subsystems")
        self.assertIsInstance(subs, list)
        names = [s["subsystem"] for s in subs]
        self.assertIn("nvmf", names)
        self.assertEqual(len(set(names)), len(names))
        for s in subs:
            self.assertIsInstance(s["depends_on"], list)
            # Initialization order: dependencies come first.
            for dep in s["depends_on"]:
                self.assertLess(names.index(dep), names.index(s["subsystem"]))

    def test_framework_get_config_nvmf(self):
        cfg = self.target.rpc("framework_get_config", "nvmf")
        self.assertIsInstance(cfg, list)
        methods = [e["method"] for e in cfg]
        self.assertIn("nvmf_set_max_subsystems", methods)
        for e in cfg:
            self.assertIsInstance(e["params"], dict)
        entry = next(e for e in cfg if e["method"] == "nvmf_set_max_subsystems")
        self.assertIsInstance(entry["params"]["max_subsystems"], int)
        self.assertGreater(entry["params"]["max_subsystems"], 0)

    def test_rpc_get_methods(self):
        methods = self.target.rpc("rpc_get_methods")
        self.assertEqual(methods, sorted(methods))
        self.assertEqual(len(set(methods)), len(methods))
        for m in ("rpc_get_methods", "spdk_get_version", "spdk_kill_instance",
                  "framework_start_init", "framework_wait_init", "framework_get_reactors",
                  "framework_get_subsystems", "framework_get_config", "thread_get_stats",
                  "thread_get_pollers", "log_set_flag", "log_clear_flag", "log_get_flags",
                  "log_set_level", "log_get_level", "nvmf_get_stats", "nvmf_set_max_subsystems",
                  "nvmf_set_config"):
            self.assertIn(m, methods)
        # save_config / load_config are client-side, as in SPDK.
        self.assertNotIn("save_config", methods)
        self.assertNotIn("load_config", methods)

        current = self.target.rpc("rpc_get_methods", "--current")
        self.assertEqual(current, sorted(current))
        self.assertTrue(set(current) <= set(methods))
        for m in ("nvmf_get_stats", "framework_get_reactors", "framework_wait_init",
                  "rpc_get_methods"):
            self.assertIn(m, current)
        for m in ("nvmf_set_max_subsystems", "nvmf_set_config", "framework_start_init"):
            self.assertNotIn(m, current)

        with_aliases = self.target.rpc("rpc_get_methods", "--include-aliases")
        self.assertTrue(set(methods) <= set(with_aliases))

    def test_framework_wait_init_at_runtime(self):
        self.assertIs(self.target.rpc("framework_wait_init"), True)

    def test_log_level(self):
        self.assertEqual(self.target.rpc("log_get_level"), "NOTICE")
        try:
            self.assertIs(self.target.rpc("log_set_level", "DEBUG"), True)
            self.assertEqual(self.target.rpc("log_get_level"), "DEBUG")
            self.assertIs(self.target.rpc("log_set_level", "error"), True)
            self.assertEqual(self.target.rpc("log_get_level"), "ERROR")
        finally:
            self.target.rpc("log_set_level", "NOTICE")
        self.assertEqual(self.target.rpc("log_get_level"), "NOTICE")

    def test_log_flags(self):
        flags = self.target.rpc("log_get_flags")
        self.assertIsInstance(flags, dict)
        self.assertGreater(len(flags), 0)
        for name, on in flags.items():
            self.assertIsInstance(on, bool, name)
        flag = "nvmf" if "nvmf" in flags else sorted(flags)[0]
        try:
            self.assertIs(self.target.rpc("log_set_flag", flag), True)
            self.assertIs(self.target.rpc("log_get_flags")[flag], True)
            self.assertIs(self.target.rpc("log_clear_flag", flag), True)
            self.assertIs(self.target.rpc("log_get_flags")[flag], False)
        finally:
            self.target.rpc("log_clear_flag", flag)


class MaskSyntaxTest(unittest.TestCase):
    """The three core-mask spellings give the same reactors and poll groups."""

    def check(self, mask):
        with Target("-m", mask) as t:
            r = t.rpc("framework_get_reactors")
            self.assertEqual(sorted(x["lcore"] for x in r["reactors"]), [0, 1], mask)
            s = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in s["poll_groups"]], [POLL_GROUP_0, POLL_GROUP_1],
                             mask)

    def test_list(self):
        self.check("[0,1]")

    def test_range(self):
        self.check("0-1")

    def test_single_core(self):
        with Target("-m", "0x1") as t:
            r = t.rpc("framework_get_reactors")
            self.assertEqual([x["lcore"] for x in r["reactors"]], [0])
            s = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in s["poll_groups"]], [POLL_GROUP_0])

    @unittest.skipUnless(os.cpu_count() and os.cpu_count() >= 2, "needs 2 cores")
    def test_second_core_only(self):
        with Target("-m", "0x2") as t:
            r = t.rpc("framework_get_reactors")
            self.assertEqual([x["lcore"] for x in r["reactors"]], [1])
            # The app thread runs on the first core of the mask.
            app = [th for th in r["reactors"][0]["lw_threads"] if th["name"] == "app_thread"]
            self.assertEqual(len(app), 1)
            self.assertEqual(app[0]["cpumask"], "0x2")
            s = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in s["poll_groups"]], [POLL_GROUP_0])


class LogFlagOptionTest(unittest.TestCase):
    """-L FLAG turns a log flag on from the start."""

    def test_dash_L(self):
        with Target("-m", "0x1") as t:
            flags = t.rpc("log_get_flags")
        self.assertTrue(flags, "log_get_flags returned no flags")
        flag = "nvmf" if "nvmf" in flags else sorted(flags)[0]
        self.assertIs(flags[flag], False, flags)
        with Target("-m", "0x1", "-L", flag) as t:
            flags2 = t.rpc("log_get_flags")
        self.assertIs(flags2[flag], True, flags2)
        self.assertEqual({k for k, v in flags2.items() if v}, {flag})

    def test_dash_L_unknown_flag(self):
        with Target("-m", "0x1", "-L", "no_such_flag_xyz", wait_ready=False) as t:
            rc = t.wait(30)
            self.assertIsNotNone(rc, "nvmf_tgt -L no_such_flag_xyz did not exit")
            self.assertNotEqual(rc, 0)
            self.assertIn("no_such_flag_xyz", t.stderr())


if __name__ == "__main__":
    unittest.main()
