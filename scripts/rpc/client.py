"""JSON-RPC 2.0 client for the Flint (SPDK-compatible) RPC server over a Unix socket."""

import codecs
import copy
import json
import logging
import socket
import time


class JSONRPCException(Exception):
    """An RPC failed: error response, connection problem, timeout or bad reply.

    message is the text rpc.py prints; error is the server's error object (a dict with
    "code" and "message") when the server answered with one, else None.
    """

    def __init__(self, message, error=None):
        super().__init__(message)
        self.message = message
        self.error = error


class JSONRPCConnectError(JSONRPCException):
    """The socket could not be connected."""


class JSONRPCClient:
    """One connection to the server; requests are sent and answered one at a time."""

    def __init__(self, addr, timeout=None, conn_retries=0, log_level=logging.ERROR):
        self.addr = addr
        self.timeout = 60.0 if timeout is None else float(timeout)
        self.sock = None
        self._request_id = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._recv_buf = ""
        self._logger = logging.getLogger("JSONRPCClient(%s)" % addr)
        if not self._logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
            self._logger.addHandler(handler)
        self._logger.setLevel(log_level)

        for _ in range(max(0, int(conn_retries))):
            try:
                self._connect()
                return
            except JSONRPCConnectError:
                time.sleep(0.2)
        self._connect()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def _connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout if self.timeout > 0 else None)
            sock.connect(self.addr)
        except (OSError, ValueError) as ex:
            sock.close()
            raise JSONRPCConnectError(
                "Error while connecting to %s\n"
                "Is the nvmf_tgt application running with its RPC socket at that path?\n"
                "Error details: %s" % (self.addr, ex))
        self.sock = sock

    def close(self):
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.sock = None

    def send(self, method, params=None):
        """Sends one request; returns its id."""
        if self.sock is None:
            raise JSONRPCException("Not connected to %s" % self.addr)
        self._request_id += 1
        req = {"jsonrpc": "2.0", "method": method, "id": self._request_id}
        if params:
            req["params"] = copy.deepcopy(params)
        data = json.dumps(req, indent=2)
        self._logger.info("request:\n%s\n", data)
        try:
            self.sock.sendall(data.encode("utf-8"))
        except OSError as ex:
            raise JSONRPCException("Error while sending a request to %s: %s" % (self.addr, ex))
        return self._request_id

    def _decode_one(self):
        buf = self._recv_buf.lstrip()
        if not buf:
            self._recv_buf = ""
            return None
        try:
            obj, idx = json.JSONDecoder().raw_decode(buf)
        except ValueError:
            self._recv_buf = buf
            return None  # partial value; keep reading
        self._recv_buf = buf[idx:]
        return obj

    def recv(self):
        """Reads until one complete JSON value has arrived; returns it."""
        deadline = time.monotonic() + self.timeout
        response = self._decode_one()
        while response is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JSONRPCException("Timeout while waiting for response:\n%s\n" % self._recv_buf)
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise JSONRPCException("Timeout while waiting for response:\n%s\n" % self._recv_buf)
            except OSError as ex:
                self.close()
                raise JSONRPCException("Connection to %s failed: %s" % (self.addr, ex))
            if not data:
                self.close()
                raise JSONRPCException("Connection closed with partial response:\n%s\n" % self._recv_buf)
            try:
                self._recv_buf += self._decoder.decode(data)
            except UnicodeDecodeError as ex:
                raise JSONRPCException("Response is not valid UTF-8: %s" % ex)
            response = self._decode_one()
        self._logger.info("response:\n%s\n", json.dumps(response, indent=2))
        return response

    def call(self, method, params=None):
        """Calls method and returns its result; raises JSONRPCException on an error response."""
        params = {} if params is None else params
        if self.timeout <= 0:
            raise JSONRPCException("Timeout value is invalid: %s\n" % self.timeout)
        req_id = self.send(method, params)
        while True:
            try:
                response = self.recv()
            except JSONRPCException:
                # The target may exit before it answers spdk_kill_instance.
                if self.sock is None and method == "spdk_kill_instance":
                    return None
                raise
            if not isinstance(response, dict):
                raise JSONRPCException("Invalid response (not an object):\n%s" % json.dumps(response))
            rid = response.get("id")
            if rid == req_id or rid is None:
                break
            self._logger.info("ignoring response with unexpected id %r", rid)

        if "error" in response:
            shown = dict(params)
            shown["method"] = method
            shown["req_id"] = req_id
            msg = "\n".join(["request:", json.dumps(shown, indent=2),
                             "Got JSON-RPC error response",
                             "response:",
                             json.dumps(response["error"], indent=2)])
            error = response["error"] if isinstance(response["error"], dict) else None
            raise JSONRPCException(msg, error)
        if "result" not in response:
            raise JSONRPCException("Invalid response (neither result nor error):\n%s"
                                   % json.dumps(response, indent=2))
        return response["result"]
