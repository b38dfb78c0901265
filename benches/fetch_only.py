#!/usr/bin/env python3
"""Fetch-only client: how fast one connection can pull a topic's partitions from a broker.

    python3 benches/fetch_only.py PORT PARTITIONS ROUNDS [PARTITION_MAX_BYTES]

Sends raw Fetch v4 requests for partitions 0..PARTITIONS-1 of the topic `bench` on
127.0.0.1:PORT (one request in flight, `max_wait_ms` 500, PARTITION_MAX_BYTES per partition,
default 1 MiB), reading on from each response's last whole batch (back to 0 at the end of a
partition), and prints MB/s, fetches/s and the fetch round-trip p50/p99. The response is
received into one buffer and only batch headers are looked at, so the client costs little
beside the broker. Fill the topic first, e.g.
    shardlog topic create bench --partitions 4
    head -c 300000000 /dev/urandom | base64 -w 1000 | kcat -P -b 127.0.0.1:9092 -t bench
"""
import socket
import struct
import sys
import time

port = int(sys.argv[1]); parts = int(sys.argv[2]); rounds = int(sys.argv[3]); pmax = int(sys.argv[4]) if len(sys.argv) > 4 else 1<<20
s = socket.create_connection(("127.0.0.1", port)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
def fetch(offsets, corr):
    t = b"bench"
    body = struct.pack(">hhih", 1, 4, corr, 1) + b"x"
    body += struct.pack(">iiiib", -1, 500, 1, 50<<20, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(t)) + t + struct.pack(">i", len(offsets))
    for p, o in enumerate(offsets):
        body += struct.pack(">iqi", p, o, pmax)
    s.sendall(struct.pack(">i", len(body)) + body)
    n = struct.unpack(">i", recvn(4))[0]
    return recvn(n)
buf = bytearray(64<<20)
def recvn(n):
    mv = memoryview(buf)[:n]; got = 0
    while got < n:
        k = s.recv_into(mv[got:], n - got)
        if k == 0: raise EOFError
        got += k
    return bytes(mv)
offsets = [0]*parts; total = 0; t0 = time.time(); lat = []
for r in range(rounds):
    a = time.time()
    resp = fetch(offsets, r)
    lat.append(time.time() - a)
    pos = 4 + 4
    ntopics = struct.unpack_from(">i", resp, pos)[0]; pos += 4
    tl = struct.unpack_from(">h", resp, pos)[0]; pos += 2 + tl
    np_ = struct.unpack_from(">i", resp, pos)[0]; pos += 4
    for i in range(np_):
        p, err, hw, lso = struct.unpack_from(">ihqq", resp, pos); pos += 22
        na = struct.unpack_from(">i", resp, pos)[0]; pos += 4 + max(na,0)*16
        rl = struct.unpack_from(">i", resp, pos)[0]; pos += 4
        rec = resp[pos:pos+rl]; pos += rl; total += rl
        q = 0; last = offsets[p]
        while q + 61 <= len(rec):
            base, blen = struct.unpack_from(">qi", rec, q); lod = struct.unpack_from(">i", rec, q+23)[0]
            if q + 12 + blen > len(rec): break
            last = base + lod + 1; q += 12 + blen
        offsets[p] = last if last < hw else 0
el = time.time() - t0
lat.sort()
print(f"{total/el/1e6:.0f} MB/s, {rounds/el:.0f} fetches/s, p50 {lat[len(lat)//2]*1e3:.2f} ms p99 {lat[int(len(lat)*.99)]*1e3:.2f} ms")
