#!/usr/bin/env python3
"""Memory cost of idle connections: RSS of a running appliance before and
after N clients connect and send nothing (or send one request and idle).

    bench/idle_connections.py PID HOST:PORT [N]
"""
import socket, sys, time

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

pid, addr = int(sys.argv[1]), sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
host, port = addr.rsplit(":", 1)
before = rss_kib(pid)
socks = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    # Half of them make one keep-alive request first, then idle.
    if i % 2:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        s.recv(4096)
    socks.append(s)
time.sleep(1.0)
after = rss_kib(pid)
print(f"{n} idle connections: RSS {before} KiB -> {after} KiB, "
      f"{(after - before) / n:.1f} KiB per connection")
