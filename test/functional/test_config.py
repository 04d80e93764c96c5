"""JSON configuration: -c/--json, save_config round trips, load_config, and bad configs."""

import json
import os
import shutil
import time
import unittest

from harness import Target, make_tmpdir, mask_bits, pids_with_arg, write_json

MAX_SUBSYSTEMS = 77  # not the default


def base_config(max_subsystems=MAX_SUBSYSTEMS, mask="0x1"):
    return {"subsystems": [{"subsystem": "nvmf", "config": [
        {"method": "nvmf_set_max_subsystems", "params": {"max_subsystems": max_subsystems}},
        {"method": "nvmf_set_config", "params": {"poll_groups_mask": mask}},
    ]}]}


def nvmf_entries(saved):
    sub = [s for s in saved["subsystems"] if s["subsystem"] == "nvmf"]
    assert len(sub) == 1, saved
    return {e["method"]: e["params"] for e in sub[0]["config"]}


class TmpDirTest(unittest.TestCase):
    def setUp(self):
        self.dir = make_tmpdir()

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)


class SaveRestartTest(TmpDirTest):
    def check_saved(self, saved):
        self.assertEqual(list(saved), ["subsystems"])
        names = [s["subsystem"] for s in saved["subsystems"]]
        self.assertIn("nvmf", names)
        entries = nvmf_entries(saved)
        self.assertEqual(entries["nvmf_set_max_subsystems"], {"max_subsystems": MAX_SUBSYSTEMS})
        self.assertEqual(mask_bits(entries["nvmf_set_config"]["poll_groups_mask"]), {0})

    def test_save_restart_save(self):
        first = self.path("first.json")
        write_json(first, base_config())
        with Target("-m", "0x3", "-c", first) as t:
            saved1 = t.rpc("save_config")
            # The order of subsystems follows framework_get_subsystems.
            self.assertEqual([s["subsystem"] for s in saved1["subsystems"]],
                             [s["subsystem"] for s in t.rpc("framework_get_subsystems")])
            stats = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in stats["poll_groups"]],
                             ["nvmf_tgt_poll_group_000"])
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())
        self.check_saved(saved1)

        second = self.path("second.json")
        write_json(second, saved1)
        with Target("-m", "0x3", "--json", second) as t:
            saved2 = t.rpc("save_config")
            stats = t.rpc("nvmf_get_stats")
            rc, _ = t.stop()
            self.assertEqual(rc, 0, t.stderr())
        self.assertEqual(saved2, saved1)
        self.assertEqual([g["name"] for g in stats["poll_groups"]], ["nvmf_tgt_poll_group_000"])

    def test_save_config_indent(self):
        with Target("-m", "0x1") as t:
            rc, out, err = t.rpc_raw("save_config", "-i", "-1")
            self.assertEqual(rc, 0, err)
            self.assertEqual(len(out.strip().splitlines()), 1, out)
            rc, out4, err = t.rpc_raw("save_config", "--indent", "4")
            self.assertEqual(rc, 0, err)
            self.assertEqual(json.loads(out), json.loads(out4))
            self.assertIn('\n    "subsystems"', out4)

    def test_empty_config(self):
        path = self.path("empty.json")
        write_json(path, {"subsystems": []})
        with Target("-m", "0x1", "-c", path) as t:
            self.assertIs(t.rpc("framework_wait_init"), True)
            entries = nvmf_entries(t.rpc("save_config"))
            self.assertIn("nvmf_set_max_subsystems", entries)


class LoadConfigTest(TmpDirTest):
    def saved_config(self):
        """A config saved from a target set up by RPCs during startup."""
        with Target("-m", "0x3", "--wait-for-rpc") as t:
            self.assertIs(t.rpc("nvmf_set_max_subsystems", "-n", MAX_SUBSYSTEMS), True)
            self.assertIs(t.rpc("nvmf_set_config", "-m", "0x1"), True)
            self.assertIs(t.rpc("framework_start_init"), True)
            self.assertIs(t.rpc("framework_wait_init"), True)
            return t.rpc("save_config")

    def test_load_config(self):
        saved = self.saved_config()
        entries = nvmf_entries(saved)
        self.assertEqual(entries["nvmf_set_max_subsystems"], {"max_subsystems": MAX_SUBSYSTEMS})
        self.assertEqual(mask_bits(entries["nvmf_set_config"]["poll_groups_mask"]), {0})

        with Target("-m", "0x3", "--wait-for-rpc") as t:
            rc, out, err = t.rpc_raw("load_config", input=json.dumps(saved, indent=2))
            self.assertEqual(rc, 0, "stdout:\n%s\nstderr:\n%s" % (out, err))
            # load_config leaves the target initialized, as SPDK's does.
            self.assertIs(t.rpc("framework_wait_init"), True)
            self.assertEqual(t.rpc("save_config"), saved)
            stats = t.rpc("nvmf_get_stats")
            self.assertEqual([g["name"] for g in stats["poll_groups"]],
                             ["nvmf_tgt_poll_group_000"])

    def test_load_config_unknown_method(self):
        config = base_config()
        config["subsystems"][0]["config"].append({"method": "nvmf_bogus_method", "params": {}})
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            rc, out, err = t.rpc_raw("load_config", input=json.dumps(config))
            self.assertEqual(rc, 1, out + err)
            self.assertIn("nvmf_bogus_method", err)
            # Nothing ran: still in startup, and the default max_subsystems once initialized.
            self.assertIn("framework_start_init", t.rpc("rpc_get_methods", "--current"))
            self.assertIs(t.rpc("framework_start_init"), True)
            entries = {e["method"]: e["params"] for e in t.rpc("framework_get_config", "nvmf")}
            self.assertNotEqual(entries["nvmf_set_max_subsystems"]["max_subsystems"],
                                MAX_SUBSYSTEMS)

    def test_load_config_bad_params(self):
        config = base_config()
        config["subsystems"][0]["config"][0]["params"] = {"max_subsystems": "many"}
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            rc, out, err = t.rpc_raw("load_config", input=json.dumps(config))
            self.assertEqual(rc, 1, out + err)
            self.assertIn("Got JSON-RPC error response", err)
            self.assertIn("-32602", err)
            self.assertIn("max_subsystems", err)

    def test_load_config_empty_starts_init(self):
        with Target("-m", "0x1", "--wait-for-rpc") as t:
            rc, out, err = t.rpc_raw("load_config", input='{"subsystems": []}')
            self.assertEqual(rc, 0, out + err)
            self.assertIs(t.rpc("framework_wait_init"), True)
            self.assertNotIn("framework_start_init", t.rpc("rpc_get_methods", "--current"))


class BadConfigTest(TmpDirTest):
    """A bad config or option: non-zero exit, a precise message, nothing left behind."""

    def run_bad(self, *args, expect=()):
        with Target(*args, wait_ready=False) as t:
            rc = t.wait(30)
            elapsed = time.monotonic() - t.started_at
            err = t.stderr()
            self.assertIsNotNone(rc, "nvmf_tgt %s did not exit within 30 s; stderr:\n%s"
                                 % (" ".join(args), err))
            self.assertNotEqual(rc, 0, err)
            self.assertGreater(rc, 0, "killed by signal %d; stderr:\n%s" % (-rc, err))
            self.assertLess(elapsed, 10.0, "took %.1f s to fail" % elapsed)
            for text in expect:
                self.assertIn(text, err)
            self.assertFalse(os.path.exists(t.sock), "RPC socket file left behind")
            self.assertEqual(pids_with_arg(t.sock), [], "processes left behind")
            return err

    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_unparsable_json(self):
        path = self.write("bad.json", '{"subsystems": [\n  {"subsystem": "nvmf",\n   "config": [}\n')
        err = self.run_bad("-m", "0x1", "-c", path)
        self.assertIn("bad.json", err)
        # The parser's own message: what is wrong, or where (line 3 holds the error).
        self.assertRegex(err, r"(?i)parse|syntax|line 3")

    def test_not_a_config_object(self):
        path = self.write("array.json", "[1, 2, 3]\n")
        err = self.run_bad("-m", "0x1", "-c", path)
        self.assertRegex(err, r"config.*(object|subsystems)")

    def test_unknown_subsystem(self):
        config = {"subsystems": [{"subsystem": "no_such_subsystem", "config": [
            {"method": "nvmf_set_max_subsystems", "params": {"max_subsystems": 10}}]}]}
        path = self.path("unknown_subsystem.json")
        write_json(path, config)
        self.run_bad("-m", "0x1", "-c", path, expect=["no_such_subsystem"])

    def test_unknown_method(self):
        config = base_config()
        config["subsystems"][0]["config"].insert(1, {"method": "nvmf_no_such_method",
                                                     "params": {}})
        path = self.path("unknown_method.json")
        write_json(path, config)
        self.run_bad("-m", "0x1", "-c", path,
                     expect=["subsystem 'nvmf' entry 1 (method 'nvmf_no_such_method')"])

    def test_bad_param_type(self):
        config = base_config()
        config["subsystems"][0]["config"][0]["params"]["max_subsystems"] = "lots"
        path = self.path("bad_type.json")
        write_json(path, config)
        err = self.run_bad("-m", "0x1", "-c", path,
                           expect=["subsystem 'nvmf' entry 0 (method 'nvmf_set_max_subsystems')"])
        self.assertIn("max_subsystems':", err)

    def test_unknown_param(self):
        config = base_config()
        config["subsystems"][0]["config"][1]["params"]["no_such_param"] = 1
        path = self.path("unknown_param.json")
        write_json(path, config)
        self.run_bad("-m", "0x1", "-c", path,
                     expect=["subsystem 'nvmf' entry 1 (method 'nvmf_set_config')",
                             "no_such_param"])

    def test_missing_file(self):
        path = self.path("does_not_exist.json")
        self.run_bad("-m", "0x1", "-c", path, expect=[path])

    def test_bad_masks(self):
        beyond = (os.cpu_count() or 1) + 8
        for mask in ("zzz", "0x0", "[%d]" % beyond, "0x%x" % (1 << beyond), "[1-0]", "[]"):
            with self.subTest(mask=mask):
                err = self.run_bad("-m", mask)
                self.assertTrue(mask in err or "mask" in err.lower(),
                                "stderr does not name the mask:\n" + err)

    def test_unknown_option(self):
        self.run_bad("--no-such-option")


if __name__ == "__main__":
    unittest.main()
