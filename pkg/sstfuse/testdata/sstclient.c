/* sstclient: a program written from the virtio-sst driver's semantics of /dev/sstN, run by
 * sstfuse's tests against DIR/sstN. Usage: sstclient MODE PATH [N]. Exit 0 when every
 * check holds; each failed check prints one line to stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ_SIZE 4104
#define RESP_SIZE 4112
#define TYPE_GEMM 8

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* gemm fills req with a GEMM request M×N×K of float32, request_id 0xdead, user_data ud. */
static void gemm(uint8_t *req, uint32_t m, uint32_t n, uint32_t k, uint64_t ud) {
	memset(req, 0, REQ_SIZE);
	put32(req, TYPE_GEMM);
	put64(req + 8, 0xdead);
	put64(req + 16, ud);
	put32(req + 24, m); put32(req + 28, n); put32(req + 32, k); put32(req + 36, 4);
}

/* roundtrip times one 4×16×8 GEMM on fd and checks the answer: 16 cycles. */
static void roundtrip(int fd, uint64_t ud) {
	uint8_t req[REQ_SIZE], resp[RESP_SIZE];
	gemm(req, 4, 16, 8, ud);
	ssize_t w = write(fd, req, sizeof req);
	CHECK(w == REQ_SIZE, "write: %zd (%s)", w, strerror(errno));
	ssize_t r = read(fd, resp, sizeof resp);
	CHECK(r == RESP_SIZE, "read: %zd (%s)", r, strerror(errno));
	if (r != RESP_SIZE) return;
	CHECK(get32(resp) == 0, "status %u", get32(resp));
	CHECK(get64(resp + 8) != 0xdead && get64(resp + 8) != 0, "request_id %#llx not the driver's", (unsigned long long)get64(resp + 8));
	CHECK(get64(resp + 16) == ud, "user_data %llu, want %llu", (unsigned long long)get64(resp + 16), (unsigned long long)ud);
	CHECK(get64(resp + 32) == 16, "cycles %llu, want 16", (unsigned long long)get64(resp + 32));
}

static int basic(const char *path) {
	uint8_t req[REQ_SIZE + 10], resp[RESP_SIZE + 10];
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	if (fd < 0) return 1;

	errno = 0;
	CHECK(read(fd, resp, RESP_SIZE) == -1 && errno == EAGAIN, "read before write: errno %d, want EAGAIN", errno);
	gemm(req, 4, 16, 8, 77);
	errno = 0;
	CHECK(write(fd, req, 100) == -1 && errno == EINVAL, "short write: errno %d, want EINVAL", errno);
	errno = 0;
	CHECK(write(fd, req, REQ_SIZE - 1) == -1 && errno == EINVAL, "write of 4103: errno %d, want EINVAL", errno);

	CHECK(write(fd, req, REQ_SIZE + 10) == REQ_SIZE, "a longer write submits 4104 bytes: %s", strerror(errno));
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	CHECK(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN), "poll after write: revents %#x", p.revents);
	errno = 0;
	CHECK(read(fd, resp, 100) == -1 && errno == EINVAL, "short read: errno %d, want EINVAL", errno);
	ssize_t r = read(fd, resp, sizeof resp);
	CHECK(r == RESP_SIZE, "read: %zd, want 4112 (%s)", r, strerror(errno));
	CHECK(get32(resp) == 0 && get64(resp + 16) == 77 && get64(resp + 32) == 16, "answer: status %u user_data %llu cycles %llu",
	      get32(resp), (unsigned long long)get64(resp + 16), (unsigned long long)get64(resp + 32));
	uint64_t id1 = get64(resp + 8);
	CHECK(id1 != 0xdead, "request_id not overwritten");
	errno = 0;
	CHECK(read(fd, resp, RESP_SIZE) == -1 && errno == EAGAIN, "second read: errno %d, want EAGAIN (the answer is read once)", errno);

	roundtrip(fd, 78);
	errno = 0;
	CHECK(ioctl(fd, 0x5301, 0) == -1 && errno == ENOTTY, "ioctl: errno %d, want ENOTTY", errno);
	CHECK(close(fd) == 0, "close: %s", strerror(errno));
	return failures != 0;
}

/* many: n processes at once, each opening its own context and timing 20 GEMMs. */
static int many(const char *path, int n) {
	for (int i = 0; i < n; i++) {
		if (fork() == 0) {
			int fd = open(path, O_RDWR);
			CHECK(fd >= 0, "open: %s", strerror(errno));
			for (int j = 0; fd >= 0 && j < 20; j++) roundtrip(fd, 1000 * i + j);
			_exit(failures != 0);
		}
	}
	int bad = 0, st;
	while (wait(&st) > 0) bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK(bad == 0, "%d of %d processes failed", bad, n);
	return failures != 0;
}

/* block: announces itself on stdout, then writes a request that the stalled device
 * never answers; the test kills it there. */
static int block(const char *path) {
	uint8_t req[REQ_SIZE];
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	gemm(req, 4, 16, 8, 1);
	printf("writing\n");
	fflush(stdout);
	ssize_t w = write(fd, req, sizeof req);
	printf("write returned %zd errno %d\n", w, errno);
	return 0;
}

/* timeout: a write the stalled device never answers fails with ETIMEDOUT. */
static int timedout(const char *path) {
	uint8_t req[RESP_SIZE];
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	gemm(req, 4, 16, 8, 1);
	errno = 0;
	CHECK(write(fd, req, sizeof req) == -1 && errno == ETIMEDOUT, "write: errno %d, want ETIMEDOUT", errno);
	errno = 0;
	CHECK(read(fd, req, RESP_SIZE) == -1 && errno == EAGAIN, "read after a timeout: errno %d, want EAGAIN", errno);
	return failures != 0;
}

static int cm_fd;
static void *cm_write(void *arg) {
	uint8_t req[REQ_SIZE];
	gemm(req, 4, 16, 8, 1);
	ssize_t w = write(cm_fd, req, sizeof req);
	*(ssize_t *)arg = w;
	return NULL;
}

/* closemid: closes the descriptor while another thread's write waits on it; the close
 * returns, the write ends (answered or timed out), and the process exits normally. */
static int closemid(const char *path) {
	cm_fd = open(path, O_RDWR);
	CHECK(cm_fd >= 0, "open: %s", strerror(errno));
	pthread_t t;
	ssize_t w = 0;
	pthread_create(&t, NULL, cm_write, &w);
	usleep(100 * 1000);
	CHECK(close(cm_fd) == 0, "close during a write: %s", strerror(errno));
	pthread_join(t, NULL);
	return failures != 0;
}

static int cmp_ll(const void *a, const void *b) {
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

/* bench: n GEMM timing round trips (write + read) on one descriptor; prints the p50 and
 * p99 of their wall-clock durations in nanoseconds. */
static int bench(const char *path, int n) {
	uint8_t req[REQ_SIZE], resp[RESP_SIZE];
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	if (fd < 0 || n < 1) return 1;
	long long *ns = malloc(sizeof *ns * n);
	gemm(req, 4, 16, 8, 1);
	for (int i = 0; i < n; i++) {
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (write(fd, req, sizeof req) != REQ_SIZE || read(fd, resp, sizeof resp) != RESP_SIZE) {
			CHECK(0, "round trip %d: %s", i, strerror(errno));
			return 1;
		}
		clock_gettime(CLOCK_MONOTONIC, &b);
		ns[i] = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	}
	qsort(ns, n, sizeof *ns, cmp_ll);
	printf("p50_ns %lld p99_ns %lld\n", ns[(n - 1) / 2], ns[(long long)(n - 1) * 99 / 100]);
	free(ns);
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 3) { fprintf(stderr, "usage: sstclient basic|many|block|timeout|closemid|bench PATH [N]\n"); return 2; }
	const char *mode = argv[1], *path = argv[2];
	if (!strcmp(mode, "basic")) return basic(path);
	if (!strcmp(mode, "many")) return many(path, argc > 3 ? atoi(argv[3]) : 16);
	if (!strcmp(mode, "block")) return block(path);
	if (!strcmp(mode, "timeout")) return timedout(path);
	if (!strcmp(mode, "closemid")) return closemid(path);
	if (!strcmp(mode, "bench")) return bench(path, argc > 3 ? atoi(argv[3]) : 1000);
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
