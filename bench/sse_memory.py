#!/usr/bin/env python3
"""Memory cost of SSE subscribers, against a running appliance:

    bench/sse_memory.py PID HOST:PORT TOKEN [N]

1. opens N idle /api/stream connections and reports the RSS growth;
2. keeps one more connection that never reads while events are published
   (send events separately, e.g. with examples/loadgen), and reports RSS
   every second, so you can see it stay flat.
"""
import socket, sys, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

pid, addr, token = int(sys.argv[1]), sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
host, port = addr.rsplit(":", 1)
req = (f"GET /api/stream HTTP/1.1\r\nhost: {addr}\r\n"
       f"authorization: Bearer {token}\r\naccept: text/event-stream\r\n\r\n").encode()
before = rss_kib(pid)
socks = []
for _ in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(req)
    s.recv(4096)  # the response head
    socks.append(s)
time.sleep(1.0)
after = rss_kib(pid)
print(f"{n} idle SSE connections: RSS {before} KiB -> {after} KiB "
      f"(+{(after - before) / 1024:.1f} MiB, {(after - before) / n:.1f} KiB each)")
slow = socket.create_connection((host, int(port)))
slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
slow.sendall(req)
print("one connection now never reads; RSS every second (Ctrl-C to stop):")
try:
    while True:
        time.sleep(1)
        print(f"  RSS {rss_kib(pid)} KiB")
except KeyboardInterrupt:
    pass
