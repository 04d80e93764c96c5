"""Shared harness for the functional tests: start nvmf_tgt, talk to it like a user, stop it.

Environment:
  FLINT_NVMF_TGT        path of the nvmf_tgt binary (default: <repo>/build/app/nvmf_tgt/nvmf_tgt)
  FLINT_RPC_PY          path of scripts/rpc.py (default: <repo>/scripts/rpc.py)
  FLINT_TGT_EXTRA_ARGS  extra arguments for every nvmf_tgt started (shell words), e.g.
                        "--no-huge -s 256". Default: none (nvmf_tgt itself falls back to
                        anonymous memory when no hugepages are free).
  FLINT_START_TIMEOUT   seconds to wait for the RPC socket and init (default 30)
  FLINT_KEEP_LOGS       set to keep each target's temp dir (socket dir, stderr log)
"""

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NVMF_TGT = os.environ.get("FLINT_NVMF_TGT") or str(REPO_ROOT / "build/app/nvmf_tgt/nvmf_tgt")
RPC_PY = os.environ.get("FLINT_RPC_PY") or str(REPO_ROOT / "scripts/rpc.py")
START_TIMEOUT = float(os.environ.get("FLINT_START_TIMEOUT", "30"))
RPC_TIMEOUT = 30.0

# Every process started here, so that nothing is left running whatever happens.
_LIVE = set()


def _kill_all():
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _LIVE.discard(proc)


atexit.register(_kill_all)


def default_extra_args():
    return shlex.split(os.environ.get("FLINT_TGT_EXTRA_ARGS", ""))


def make_tmpdir():
    """A private temp dir whose socket paths fit in sun_path (108 bytes)."""
    base = tempfile.gettempdir()
    if len(base) > 60:
        base = "/tmp"
    return tempfile.mkdtemp(prefix="flint-ft-", dir=base)


def pids_with_arg(text):
    """Pids of live processes whose command line contains text (e.g. a unique socket path)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open("/proc/%s/stat" % entry) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            continue
        if text in cmdline.split("\0"):
            pids.append(int(entry))
    return pids


class RpcError(Exception):
    """rpc.py exited non-zero. code/message are the JSON-RPC error's, when there was one."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.error = None
        m = re.search(r"^response:\n(.*)\Z", stderr, re.S | re.M)
        if m:
            try:
                self.error = json.loads(m.group(1))
            except ValueError:
                self.error = None
        self.code = self.error.get("code") if isinstance(self.error, dict) else None
        self.message = self.error.get("message") if isinstance(self.error, dict) else None
        super().__init__("rpc.py %s exited %d (code %s)\nstdout:\n%s\nstderr:\n%s"
                         % (" ".join(argv), returncode, self.code, stdout, stderr))


def run_rpc(sock, method, *args, input=None, timeout=RPC_TIMEOUT):
    """Runs scripts/rpc.py like a user; returns (returncode, stdout, stderr)."""
    argv = [sys.executable, RPC_PY, "-s", sock, "-t", str(timeout), method, *map(str, args)]
    proc = subprocess.run(argv, input=input, capture_output=True, text=True,
                          timeout=timeout + 30)
    return proc.returncode, proc.stdout, proc.stderr


class RawClient:
    """A minimal in-process JSON-RPC client for raw-socket tests."""

    def __init__(self, path, timeout=RPC_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.next_id = 0

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send(self, obj):
        self.send_raw(json.dumps(obj))

    def recv(self):
        """The next complete JSON value, or None if the server closed the connection first."""
        decoder = json.JSONDecoder()
        while True:
            text = self.buf.decode(errors="replace").lstrip()
            if text:
                try:
                    obj, end = decoder.raw_decode(text)
                    self.buf = text[end:].encode()
                    return obj
                except ValueError:
                    pass
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def request(self, method, params=None, id=None):
        """Sends a request and returns the whole response object."""
        if id is None:
            self.next_id += 1
            id = self.next_id
        req = {"jsonrpc": "2.0", "method": method, "id": id}
        if params is not None:
            req["params"] = params
        self.send(req)
        return self.recv()

    def call(self, method, params=None):
        """Returns the result; raises RuntimeError on an error response."""
        resp = self.request(method, params)
        if resp is None:
            raise ConnectionError("connection closed before a response to %s" % method)
        if "error" in resp:
            raise RuntimeError("%s failed: %s" % (method, json.dumps(resp["error"])))
        return resp["result"]

    def is_closed(self, timeout=5.0):
        """True if the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True


class StartError(Exception):
    pass


class Target:
    """One nvmf_tgt process with a private RPC socket.

    with Target("-m", "0x3") as t:
        t.rpc("framework_get_reactors")

    wait_ready: wait for the socket to accept and (unless --wait-for-rpc is among the args)
    for framework_wait_init. extra: add the default extra args (see default_extra_args).
    """

    def __init__(self, *args, sock=None, wait_ready=True, extra=True):
        self.args = [str(a) for a in args]
        self.tmpdir = make_tmpdir()
        self.sock = sock or os.path.join(self.tmpdir, "rpc.sock")
        self.stderr_path = os.path.join(self.tmpdir, "stderr.log")
        self.wait_ready = wait_ready
        self.extra = default_extra_args() if extra else []
        self.proc = None
        self.returncode = None

    # -- lifecycle --

    def argv(self):
        return [NVMF_TGT, "-r", self.sock, *self.extra, *self.args]

    def start(self):
        if not os.access(NVMF_TGT, os.X_OK):
            raise StartError("nvmf_tgt binary not found or not executable: %s "
                             "(set FLINT_NVMF_TGT)" % NVMF_TGT)
        self._stderr_file = open(self.stderr_path, "wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=self._stderr_file, stderr=self._stderr_file)
        _LIVE.add(self.proc)
        if self.wait_ready:
            self.wait_for_socket()
            if "--wait-for-rpc" not in self.args:
                self.wait_init()
        return self

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()

    def wait_for_socket(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise StartError("nvmf_tgt exited with %d before its RPC socket accepted.\n"
                                 "argv: %s\nstderr:\n%s"
                                 % (self.proc.returncode, self.argv(), self.stderr()))
            if os.path.exists(self.sock):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.sock)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            if time.monotonic() > deadline:
                raise StartError("nvmf_tgt RPC socket %s did not accept within %.0f s.\n"
                                 "stderr:\n%s" % (self.sock, timeout, self.stderr()))
            time.sleep(0.05)

    def wait_init(self, timeout=START_TIMEOUT):
        with RawClient(self.sock, timeout=timeout) as c:
            resp = c.request("framework_wait_init")
        if resp is None or resp.get("result") is not True:
            raise StartError("framework_wait_init answered %r\nstderr:\n%s" % (resp, self.stderr()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=30):
        """Waits for exit; returns the exit code (negative: killed by that signal)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        _LIVE.discard(self.proc)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Sends sig and waits; returns (exit code or None on timeout, seconds to exit)."""
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        rc = self.wait(timeout)
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None:
            _LIVE.discard(self.proc)

    def cleanup(self):
        self.kill()
        if getattr(self, "_stderr_file", None):
            self._stderr_file.close()
            self._stderr_file = None
        if not os.environ.get("FLINT_KEEP_LOGS"):
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    # -- RPC --

    def rpc_raw(self, method, *args, input=None, timeout=RPC_TIMEOUT):
        """Runs rpc.py; returns (returncode, stdout, stderr)."""
        return run_rpc(self.sock, method, *args, input=input, timeout=timeout)

    def rpc(self, method, *args, input=None, timeout=RPC_TIMEOUT):
        """Runs rpc.py; returns its parsed JSON output (None if it printed nothing).

        Raises RpcError (with .code/.message of the JSON-RPC error) if rpc.py fails.
        """
        rc, out, err = run_rpc(self.sock, method, *args, input=input, timeout=timeout)
        if rc != 0:
            raise RpcError([method, *map(str, args)], rc, out, err)
        out = out.strip()
        return json.loads(out) if out else None

    def client(self, timeout=RPC_TIMEOUT):
        return RawClient(self.sock, timeout=timeout)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def mask_bits(mask):
    """Core numbers in a mask string as the daemon may print it: "0x3", "3", "[0,1]", "0-1"."""
    s = str(mask).strip()
    if s.startswith("[") or "-" in s or "," in s:
        cores = set()
        for part in s.strip("[]").split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-")
                cores.update(range(int(a), int(b) + 1))
            elif part:
                cores.add(int(part))
        return cores
    value = int(s, 16)
    return {i for i in range(value.bit_length()) if value >> i & 1}
