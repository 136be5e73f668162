"""sstclient.py: a Python program written from the virtio-sst driver's semantics of
/dev/sstN, run by sstfuse's tests against DIR/sstN (or anything linked to it).

Usage: python3 sstclient.py PATH. Exits 0 when every check holds; each failed check prints
one line to stderr.
"""
import errno
import fcntl
import os
import select
import struct
import sys

REQ_SIZE, RESP_SIZE, TYPE_GEMM = 4104, 4112, 8
failures = 0


def check(cond, msg):
    global failures
    if not cond:
        print(msg, file=sys.stderr)
        failures += 1


def gemm(m, n, k, user_data):
    head = struct.pack("<IIQQIIII", TYPE_GEMM, 0, 0xDEAD, user_data, m, n, k, 4)
    return head + bytes(REQ_SIZE - len(head))


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return 0


def main(path):
    fd = os.open(path, os.O_RDWR)
    check(errno_of(lambda: os.read(fd, RESP_SIZE)) == errno.EAGAIN, "read before write: want EAGAIN")
    check(errno_of(lambda: os.write(fd, b"\0" * 16)) == errno.EINVAL, "short write: want EINVAL")

    ids = []
    for ud, (m, n, k) in enumerate([(4, 16, 8), (64, 64, 64), (1, 1, 1)], start=1):
        check(os.write(fd, gemm(m, n, k, ud)) == REQ_SIZE, "write returns 4104")
        p = select.poll()
        p.register(fd, select.POLLIN)
        check(any(ev & select.POLLIN for _, ev in p.poll(1000)), "poll after write: readable")
        check(errno_of(lambda: os.read(fd, 64)) == errno.EINVAL, "short read: want EINVAL")
        resp = os.read(fd, RESP_SIZE)
        check(len(resp) == RESP_SIZE, "read returns 4112, got %d" % len(resp))
        status, _, req_id, user_data, result = struct.unpack_from("<IIQQQ", resp)
        cycles, compute, memory, mem_bytes = struct.unpack_from("<QQQQ", resp, 32)
        check(status == 0, "status %d" % status)
        check(user_data == ud, "user_data %d, want %d" % (user_data, ud))
        check(req_id != 0xDEAD, "request_id not overwritten by the driver")
        ids.append(req_id)
        flops = 2 * m * n * k
        want_bytes = (m * k + k * n + m * n) * 4
        want = max(flops // 64, int(want_bytes / (900 / 1.41)))  # the tutorial's roofline
        check(cycles == want and result == want, "%dx%dx%d: cycles %d, want %d" % (m, n, k, cycles, want))
        check(mem_bytes == want_bytes, "memory bytes %d, want %d" % (mem_bytes, want_bytes))
        check(errno_of(lambda: os.read(fd, RESP_SIZE)) == errno.EAGAIN, "the answer is read once")
    check(ids == sorted(ids) and len(set(ids)) == len(ids), "request ids %s increase" % ids)
    check(errno_of(lambda: fcntl.ioctl(fd, 0x5301)) == errno.ENOTTY, "ioctl: want ENOTTY")
    os.close(fd)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
