#!/usr/bin/env python3
"""Minimal QMP client (stdlib only) used by make-dumps.sh.

Usage:
  qmp.py SOCKET caps                      # print query-dump-guest-memory-capability formats
  qmp.py SOCKET dump FORMAT OUTPUT [paging]  # dump-guest-memory (paging false unless 'paging')
  qmp.py SOCKET raw JSON                  # send one raw command, print the reply
  qmp.py SOCKET quit
"""
import json
import socket
import sys
import time


class QMP:
    def __init__(self, path, timeout=5.0):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        self.f = self.sock.makefile("rwb", buffering=0)
        greeting = self._recv()
        if "QMP" not in greeting:
            raise RuntimeError("no QMP greeting: %r" % greeting)
        self.version = greeting["QMP"]["version"]["qemu"]
        self.cmd("qmp_capabilities")

    def _recv(self):
        line = self.f.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._recv()
            if "event" in r:
                sys.stderr.write("qmp event: %s\n" % json.dumps(r))
                continue
            if "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"]))
            return r.get("return")


def main():
    path, op = sys.argv[1], sys.argv[2]
    q = QMP(path)
    if op == "caps":
        r = q.cmd("query-dump-guest-memory-capability")
        print(" ".join(r["formats"]))
    elif op == "dump":
        fmt, out = sys.argv[3], sys.argv[4]
        paging = len(sys.argv) > 5 and sys.argv[5] == "paging"
        args = {"paging": paging, "protocol": "file:" + out, "format": fmt}
        t0 = time.time()
        q.cmd("dump-guest-memory", **args)
        # synchronous (detach false): returns when finished; double-check status
        try:
            st = q.cmd("query-dump")
            while st.get("status") == "active":
                time.sleep(0.2)
                st = q.cmd("query-dump")
        except RuntimeError:
            st = {}
        print("dumped %s %s paging=%s in %.2fs status=%s" % (fmt, out, paging, time.time() - t0, st.get("status")))
    elif op == "raw":
        msg = json.loads(sys.argv[3])
        print(json.dumps(q.cmd(msg["execute"], **msg.get("arguments", {})), indent=1))
    elif op == "quit":
        try:
            q.cmd("quit")
        except (EOFError, OSError):
            pass
    elif op == "version":
        print(q.version)
    else:
        raise SystemExit("unknown op " + op)


if __name__ == "__main__":
    main()
