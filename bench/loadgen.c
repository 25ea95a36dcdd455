/*
 * loadgen.c - fleetmq load generator and benchmark scenarios.
 *
 * One process, one thread, many MQTT v5 clients (libmosquitto 2.0) driven
 * from a single epoll loop with mosquitto_loop_read / _write / _misc, so
 * tens of thousands of connections cost one file descriptor each and no
 * threads. Every scenario prints its measurements as one line
 *
 *     RESULT <scenario> <broker-label> key=value key=value ...
 *
 * on stdout (progress goes to stderr); `fleetmq-loadgen report FILE`
 * turns a file of such lines (several runs) into the Markdown tables of
 * docs/BENCHMARKS.md, with medians and ratios against vanilla Mosquitto.
 * bench/run.sh starts the brokers and runs everything.
 *
 * Rules this program keeps:
 *   - it only talks to the broker given with --host (127.0.0.1 by default)
 *     and binds its client sockets to addresses of 127.0.0.0/8 (one source
 *     address per 500 clients: no ephemeral port exhaustion at any scale);
 *   - every wait is bounded in time and every load loop in count, and an
 *     alarm() ends the process if a scenario overruns --timeout;
 *   - it measures and reports; it never decides pass/fail by itself except
 *     in `report`, which compares medians with the documented goals.
 *
 * Connections are opened with the blocking mosquitto_connect_bind_v5()
 * (libmosquitto 2.0.11 never completes a non-blocking connect without its
 * own thread), paced so that at most --connect-window connections wait for
 * their CONNACK: Mosquitto listens with a backlog of 100 and a SYN dropped
 * on a full accept queue costs a 1 s retransmission, which would measure
 * the kernel, not the broker.
 *
 * libmosquitto opens an AF_UNIX socketpair per client (to wake its own
 * thread, which we do not use). Creating a client with RLIMIT_NOFILE
 * briefly lowered makes that socketpair fail, which libmosquitto accepts
 * with a warning, so a client costs one descriptor instead of three.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "fleetmq.pb-c.h"

#define CTL_TOPIC "$CONTROL/fleetmq/v1"
#define MAX_EVENTS 1024
#define MAX_CTL 64
#define CLIENTS_PER_SOURCE_ADDR 500

/* =========================================================================
 * options
 * ========================================================================= */

struct opts {
	const char *host;
	int port;
	long broker_pid;
	const char *label;          /* "plugin" / "vanilla": printed in RESULT lines */
	bool plugin;                /* the broker runs fleetmq (set by --label plugin) */
	const char *prefix;
	double warmup_s;
	double duration_s;
	int clients;                /* pub/sub pairs, telemetry or shadow devices */
	int window;                 /* outstanding messages/requests per client */
	int qos;
	int size;                   /* payload bytes (pubsub) */
	int metrics;                /* metrics per telemetry batch */
	int devices;                /* reconnect / register / fanout / connected */
	int connect_window;
	int keepalive;
	int timeout_s;
	bool spread;
	const char *checkpoints;    /* register: RSS checkpoints, "10000,100000" */
	int batch;                  /* register: commands per $CONTROL request */
	int ctl_window;             /* register: requests in flight */
	int id_start;               /* register: first device number */
	const char *artifact_file;
	const char *artifact_name;
	int chunk;
	double hold_s;              /* connected: seconds to hold the connections */
	int shadow_every;           /* connected: every K-th device sends a shadow update (0 = none) */
	double probe_hz;
	double baseline_s;
	const char *tag;            /* suffix of the scenario name in RESULT lines */
	bool wait_release;
	double rate;                /* shadow: open-loop updates/s (0 = closed loop) */
	int probe_clients;          /* fanout: clients sharing --probe-hz */
	bool retained;              /* connected: devices also publish a retained presence-sized message */
	bool no_subscribe;          /* connected: devices do not subscribe (broker with delivery.direct) */
	double after_s;             /* fanout: probe the release phase this long after fan-out */
};

static struct opts O = {
	.host = "127.0.0.1", .port = 1883, .broker_pid = 0, .label = "broker", .plugin = false,
	.prefix = "fleet", .warmup_s = 1.0, .duration_s = 5.0, .clients = 0, .window = 0, .qos = 0,
	.size = 64, .metrics = 10, .devices = 0, .connect_window = 64, .keepalive = 60, .timeout_s = 600,
	.spread = true, .checkpoints = NULL, .batch = 100, .ctl_window = 4, .id_start = 0,
	.artifact_file = NULL, .artifact_name = "bench-fw.bin", .chunk = 65536, .hold_s = 5.0, .shadow_every = 10,
	.probe_hz = 100.0, .baseline_s = 2.0, .tag = NULL, .wait_release = false, .rate = 0, .probe_clients = 50, .after_s = 5.0,
};

/* =========================================================================
 * small helpers: time, logging, statistics, /proc
 * ========================================================================= */

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[loadgen %s] ", O.label);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "[loadgen %s] FATAL: ", O.label);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if(!p) die("out of memory");
	return p;
}

/* Latency samples in microseconds. */
struct lat {
	uint32_t *v;
	size_t n, cap;
	bool sorted;
};

static void lat_add(struct lat *l, uint64_t us)
{
	if(l->n == l->cap){
		size_t cap = l->cap ? l->cap * 2 : 4096;
		uint32_t *nv;
		if(cap > (size_t)64 << 20) return;      /* bounded: 256 MiB of samples at most */
		nv = realloc(l->v, cap * sizeof(*nv));
		if(!nv) return;
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	l->sorted = false;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Percentile p (0..100) in milliseconds; 0 if empty. */
static double lat_ms(struct lat *l, double p)
{
	size_t i;
	if(!l->n) return 0;
	if(!l->sorted){
		qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
		l->sorted = true;
	}
	i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
	if(i >= l->n) i = l->n - 1;
	return l->v[i] / 1000.0;
}

static void lat_reset(struct lat *l)
{
	l->n = 0;
	l->sorted = false;
}

/* Broker CPU seconds (user + system) from /proc/<pid>/stat; -1 if unknown. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[2048], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;
	size_t n;
	int field;

	if(pid <= 0) return -1;
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	f = fopen(path, "r");
	if(!f) return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');           /* comm may contain spaces */
	if(!p) return -1;
	p += 2;                          /* field 3 (state) */
	for(field = 3; field < 14 && *p; field++){
		p = strchr(p, ' ');
		if(!p) return -1;
		p++;
	}
	if(sscanf(p, "%llu %llu", &ut, &st) != 2) return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* VmRSS of pid in KiB; -1 if unknown. */
static long proc_rss_kib(long pid)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	if(pid <= 0) return -1;
	snprintf(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if(!f) return -1;
	while(fgets(line, sizeof(line), f)){
		if(!strncmp(line, "VmRSS:", 6)){
			kib = strtol(line + 6, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kib;
}

/* 1-minute load average: how busy the shared machine was */
static double loadavg1(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");
	if(f){
		if(fscanf(f, "%lf", &l) != 1) l = -1;
		fclose(f);
	}
	return l;
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* Measurement window: wall time, broker CPU, own CPU. */
struct window {
	uint64_t t0, t1;
	double bcpu0, bcpu1, scpu0, scpu1;
};

static void window_start(struct window *w)
{
	w->t0 = now_us();
	w->bcpu0 = proc_cpu_s(O.broker_pid);
	w->scpu0 = self_cpu_s();
}

static void window_stop(struct window *w)
{
	w->t1 = now_us();
	w->bcpu1 = proc_cpu_s(O.broker_pid);
	w->scpu1 = self_cpu_s();
}

static double window_s(const struct window *w)
{
	return (double)(w->t1 - w->t0) / 1e6;
}

/* Print the CPU part of a RESULT line: broker/loadgen CPU use (cores) and
 * broker CPU microseconds per unit of work. */
static void print_cpu(const struct window *w, uint64_t units)
{
	double s = window_s(w);
	double b = w->bcpu0 >= 0 && w->bcpu1 >= 0 ? w->bcpu1 - w->bcpu0 : -1;
	printf(" broker_cpu=%.3f lg_cpu=%.3f", b >= 0 && s > 0 ? b / s : -1, s > 0 ? (w->scpu1 - w->scpu0) / s : -1);
	if(b >= 0 && units) printf(" broker_us_per_msg=%.2f", b * 1e6 / (double)units);
	printf(" load1=%.2f", loadavg1());
}

static void result_head(const char *scenario)
{
	printf("RESULT %s%s%s %s", scenario, O.tag ? "-" : "", O.tag ? O.tag : "", O.label);
}

/* =========================================================================
 * engine: clients and the epoll loop
 * ========================================================================= */

enum cstate { CS_IDLE, CS_QUEUED, CS_CONNECTING, CS_UP, CS_FAILED };

struct client {
	struct mosquitto *m;
	uint32_t idx;
	int fd;
	uint8_t state;
	uint8_t role;               /* scenario-defined */
	bool out_armed;
	uint8_t tries;
	char id[48];
	uint64_t t_start;           /* connect started (us) */
	uint64_t t_up;              /* CONNACK received (us) */
	uint64_t t_mark;            /* scenario-defined time */
	int32_t inflight;
	uint64_t sent, recv;
	uint64_t last_progress;
	int mark;                   /* scenario-defined progress */
	uint64_t *slots;            /* scenario-defined per-request times */
};

struct hooks {
	void (*up)(struct client *c);
	void (*sub)(struct client *c, int mid, int qos_count, const int *granted);
	void (*msg)(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props);
	void (*pub)(struct client *c, int mid, int reason);
	void (*down)(struct client *c, int rc);
	void (*tick)(uint64_t now);
};

static struct {
	int ep;
	struct client *c;
	size_t n;
	uint32_t *cq;               /* connect queue (ring of client indices) */
	size_t cq_head, cq_len;
	int connecting;
	size_t n_up;
	uint64_t n_connect_ok, n_connect_fail, n_refused, n_lost;
	struct client *cur;         /* client whose events are being handled */
	uint64_t next_misc;
	int wait_ms;
	struct hooks h;
	int last_connect_errno;
} E;

static void arm_out(struct client *c)
{
	struct epoll_event ev;
	bool want;

	if(c->fd < 0) return;
	want = mosquitto_want_write(c->m);
	if(want == c->out_armed) return;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if(epoll_ctl(E.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->out_armed = want;
}

static void cb_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *props)
{
	struct client *c = ud;
	(void)m; (void)flags; (void)props;

	if(c->state == CS_CONNECTING) E.connecting--;
	if(rc != 0){
		E.n_refused++;
		if(E.n_refused <= 5) note("client %s refused: %s", c->id, mosquitto_reason_string(rc));
		c->state = CS_FAILED;
		return;
	}
	c->state = CS_UP;
	c->t_up = now_us();
	E.n_up++;
	E.n_connect_ok++;
	if(E.h.up) E.h.up(c);
}

static void cb_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
	struct client *c = ud;
	(void)m; (void)props;

	if(c->state == CS_CONNECTING) E.connecting--;
	if(c->state == CS_UP) E.n_up--;
	if(rc != 0 && c->state == CS_UP) E.n_lost++;
	c->state = rc != 0 && c->state != CS_UP ? CS_FAILED : CS_IDLE;
	c->fd = -1;                  /* libmosquitto closed it: gone from the epoll set */
	c->out_armed = false;
	if(E.h.down) E.h.down(c, rc);
}

static void cb_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	struct client *c = ud;
	(void)m;
	if(E.h.msg) E.h.msg(c, msg, props);
}

static void cb_publish(struct mosquitto *m, void *ud, int mid, int reason, const mosquitto_property *props)
{
	struct client *c = ud;
	(void)m; (void)props;
	if(E.h.pub) E.h.pub(c, mid, reason);
}

static void cb_subscribe(struct mosquitto *m, void *ud, int mid, int qos_count, const int *granted, const mosquitto_property *props)
{
	struct client *c = ud;
	(void)m; (void)props;
	if(E.h.sub) E.h.sub(c, mid, qos_count, granted);
}

/* libmosquitto wants an AF_UNIX socketpair per client; see the header
 * comment for why creation runs with the descriptor limit lowered. */
static struct mosquitto *new_mosq(const char *id, void *ud)
{
	struct rlimit rl, low;
	struct mosquitto *m;
	int probe;

	probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if(probe < 0) die("open /dev/null: %s", strerror(errno));
	close(probe);
	getrlimit(RLIMIT_NOFILE, &rl);
	low = rl;
	low.rlim_cur = (rlim_t)probe;
	setrlimit(RLIMIT_NOFILE, &low);
	m = mosquitto_new(id, true, ud);
	setrlimit(RLIMIT_NOFILE, &rl);
	return m;
}

static void engine_init(size_t n)
{
	struct rlimit rl;

	memset(&E, 0, sizeof(E));
	E.ep = epoll_create1(EPOLL_CLOEXEC);
	if(E.ep < 0) die("epoll_create1: %s", strerror(errno));
	E.c = xcalloc(n, sizeof(*E.c));
	E.n = n;
	E.cq = xcalloc(n, sizeof(*E.cq));
	E.wait_ms = 5;
	if(getrlimit(RLIMIT_NOFILE, &rl) == 0){
		if(rl.rlim_cur < rl.rlim_max){
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
		if(rl.rlim_cur != RLIM_INFINITY && (rlim_t)n + 64 > rl.rlim_cur){
			die("%zu clients need %zu file descriptors; RLIMIT_NOFILE is %llu (raise ulimit -n)",
					n, n + 64, (unsigned long long)rl.rlim_cur);
		}
	}
}

/* Create client idx with the given client id and username. */
static struct client *client_init(size_t idx, const char *id, const char *username, uint8_t role)
{
	struct client *c = &E.c[idx];

	memset(c, 0, sizeof(*c));
	c->idx = (uint32_t)idx;
	c->fd = -1;
	c->role = role;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->m = new_mosq(id, c);
	if(!c->m) die("mosquitto_new(%s) failed", id);
	mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
	if(username) mosquitto_username_pw_set(c->m, username, NULL);
	mosquitto_connect_v5_callback_set(c->m, cb_connect);
	mosquitto_disconnect_v5_callback_set(c->m, cb_disconnect);
	mosquitto_message_v5_callback_set(c->m, cb_message);
	mosquitto_publish_v5_callback_set(c->m, cb_publish);
	mosquitto_subscribe_v5_callback_set(c->m, cb_subscribe);
	return c;
}

static void engine_free(void)
{
	size_t i;
	for(i = 0; i < E.n; i++){
		if(E.c[i].m) mosquitto_destroy(E.c[i].m);
		free(E.c[i].slots);
	}
	free(E.c);
	free(E.cq);
	if(E.ep >= 0) close(E.ep);
	memset(&E, 0, sizeof(E));
	E.ep = -1;
}

static void source_addr(uint32_t i, char *buf, size_t n)
{
	uint32_t block = i / CLIENTS_PER_SOURCE_ADDR;
	snprintf(buf, n, "127.%u.%u.%u", 1 + block / 62500, (block / 250) % 250 + 1, block % 250 + 1);
}

static void queue_connect(struct client *c)
{
	if(c->state == CS_QUEUED || c->state == CS_CONNECTING || c->state == CS_UP) return;
	c->state = CS_QUEUED;
	E.cq[(E.cq_head + E.cq_len) % E.n] = c->idx;
	E.cq_len++;
}

static void do_connect(struct client *c)
{
	struct epoll_event ev;
	char addr[32];
	int rc;

	source_addr(c->idx, addr, sizeof(addr));
	c->t_start = now_us();
	rc = mosquitto_connect_bind_v5(c->m, O.host, O.port, O.keepalive, O.spread ? addr : NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		E.n_connect_fail++;
		E.last_connect_errno = errno;
		if(E.n_connect_fail <= 5) note("connect %s from %s: %s (%s)", c->id, O.spread ? addr : "-",
				mosquitto_strerror(rc), strerror(errno));
		c->state = CS_IDLE;
		if(++c->tries < 5) queue_connect(c); else c->state = CS_FAILED;
		return;
	}
	c->fd = mosquitto_socket(c->m);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if(epoll_ctl(E.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl add: %s", strerror(errno));
	c->out_armed = false;
	c->state = CS_CONNECTING;
	E.connecting++;
	arm_out(c);
}

static void pump_connects(void)
{
	while(E.cq_len && E.connecting < O.connect_window){
		struct client *c = &E.c[E.cq[E.cq_head]];
		E.cq_head = (E.cq_head + 1) % E.n;
		E.cq_len--;
		if(c->state == CS_QUEUED) do_connect(c);
	}
}

static void handle_events(struct client *c, uint32_t ev)
{
	int rc;

	E.cur = c;
	if(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)){
		rc = mosquitto_loop_read(c->m, 1);
		if(rc || c->fd < 0) goto out;
	}
	if((ev & EPOLLOUT) || mosquitto_want_write(c->m)){
		rc = mosquitto_loop_write(c->m, 1);
		if(rc || c->fd < 0) goto out;
	}
	arm_out(c);
out:
	E.cur = NULL;
}

/* Housekeeping: keepalives (once a second for every connected client). */
static void misc_all(uint64_t now)
{
	size_t i;
	if(now < E.next_misc) return;
	E.next_misc = now + 1000000;
	for(i = 0; i < E.n; i++){
		struct client *c = &E.c[i];
		if(c->fd >= 0 && (c->state == CS_UP || c->state == CS_CONNECTING)){
			if(mosquitto_loop_misc(c->m) == MOSQ_ERR_SUCCESS) arm_out(c);
		}
	}
}

/* One pass of the loop: start queued connects, wait for events (at most
 * E.wait_ms), handle them, run timers. */
static void engine_step(void)
{
	struct epoll_event evs[MAX_EVENTS];
	uint64_t now;
	int n, i;

	pump_connects();
	n = epoll_wait(E.ep, evs, MAX_EVENTS, E.wait_ms);
	if(n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
	for(i = 0; i < n; i++) handle_events(evs[i].data.ptr, evs[i].events);
	now = now_us();
	misc_all(now);
	if(E.h.tick) E.h.tick(now);
}

/* Run until done() is true or timeout_s passes. Returns true if done. */
static bool run_until(bool (*done)(void), double timeout_s)
{
	uint64_t end = now_us() + (uint64_t)(timeout_s * 1e6);
	while(!done()){
		if(now_us() >= end) return false;
		engine_step();
	}
	return true;
}

static void run_for(double seconds)
{
	uint64_t end = now_us() + (uint64_t)(seconds * 1e6);
	while(now_us() < end) engine_step();
}

/* Publish from any context; writes at once unless c is inside its own
 * callback (then handle_events() writes after the read). */
static int lg_publish(struct client *c, int *mid, const char *topic, size_t len, const void *payload, int qos,
		const mosquitto_property *props)
{
	int rc;
	if(c->fd < 0) return MOSQ_ERR_NO_CONN;
	rc = mosquitto_publish_v5(c->m, mid, topic, (int)len, payload, qos, false, props);
	if(c != E.cur) arm_out(c);
	return rc;
}

static int lg_subscribe(struct client *c, int *mid, int count, char *const *topics, int qos, int options)
{
	int rc;
	if(c->fd < 0) return MOSQ_ERR_NO_CONN;
	if(count == 1) rc = mosquitto_subscribe_v5(c->m, mid, topics[0], qos, options, NULL);
	else rc = mosquitto_subscribe_multiple(c->m, mid, count, topics, qos, options, NULL);
	if(c != E.cur) arm_out(c);
	return rc;
}

static void lg_disconnect(struct client *c)
{
	if(c->fd < 0 || c->state != CS_UP) return;
	mosquitto_disconnect_v5(c->m, 0, NULL);
	if(c != E.cur) arm_out(c);
}

static size_t g_count_target;
static bool all_up(void) { return E.n_up + E.n_connect_fail + E.n_refused >= g_count_target && E.cq_len == 0 && E.connecting == 0; }
static bool none_up(void) { return E.n_up == 0 && E.connecting == 0 && E.cq_len == 0; }

static void disconnect_all(double timeout_s)
{
	size_t i;
	for(i = 0; i < E.n; i++) lg_disconnect(&E.c[i]);
	E.cq_len = 0;
	if(!run_until(none_up, timeout_s)) note("%zu clients still connected after %.0f s", E.n_up, timeout_s);
}

/* =========================================================================
 * operator API ($CONTROL/fleetmq/v1) over one client
 * ========================================================================= */

typedef void (*ctl_cb)(cJSON *resp, uint64_t rtt_us, void *ud);

static struct {
	struct client *op;
	char resp_topic[64];
	bool ready;
	struct { bool used; unsigned id; uint64_t t0; ctl_cb cb; void *ud; } req[MAX_CTL];
	unsigned next_id;
	int outstanding;
	uint64_t n_errors;
} CTL;

static void ctl_attach(struct client *op)
{
	memset(&CTL, 0, sizeof(CTL));
	CTL.op = op;
	snprintf(CTL.resp_topic, sizeof(CTL.resp_topic), "bench/ctl/%s", op->id);
}

static void ctl_on_up(struct client *c)
{
	char *t[1] = { CTL.resp_topic };
	lg_subscribe(c, NULL, 1, t, 1, 0);
}

static void ctl_on_sub(struct client *c)
{
	(void)c;
	CTL.ready = true;
}

/* Send a JSON command request; cb gets the parsed response (NULL on timeout
 * or bad JSON is never reported: callers bound their waits). */
static bool ctl_send(const char *json, ctl_cb cb, void *ud)
{
	mosquitto_property *props = NULL;
	char corr[16];
	int i, slot = -1, rc;

	for(i = 0; i < MAX_CTL; i++){
		if(!CTL.req[i].used){ slot = i; break; }
	}
	if(slot < 0) return false;
	CTL.req[slot].used = true;
	CTL.req[slot].id = ++CTL.next_id;
	CTL.req[slot].t0 = now_us();
	CTL.req[slot].cb = cb;
	CTL.req[slot].ud = ud;
	snprintf(corr, sizeof(corr), "%u", CTL.req[slot].id);
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, CTL.resp_topic);
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr, (uint16_t)strlen(corr));
	rc = lg_publish(CTL.op, NULL, CTL_TOPIC, strlen(json), json, 1, props);
	mosquitto_property_free_all(&props);
	if(rc){
		CTL.req[slot].used = false;
		return false;
	}
	CTL.outstanding++;
	return true;
}

/* Returns true if msg was a control response (and handled). */
static bool ctl_on_msg(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	void *corr = NULL;
	uint16_t corr_len = 0;
	char idbuf[16];
	unsigned id;
	cJSON *root;
	int i;

	if(c != CTL.op || strcmp(msg->topic, CTL.resp_topic)) return false;
	if(!mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false) || !corr) return true;
	snprintf(idbuf, sizeof(idbuf), "%.*s", (int)(corr_len < 15 ? corr_len : 15), (char *)corr);
	free(corr);
	id = (unsigned)strtoul(idbuf, NULL, 10);
	for(i = 0; i < MAX_CTL; i++){
		if(CTL.req[i].used && CTL.req[i].id == id) break;
	}
	if(i == MAX_CTL) return true;
	CTL.req[i].used = false;
	CTL.outstanding--;
	root = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	if(root){
		const cJSON *r;
		cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(root, "responses")){
			if(cJSON_GetObjectItemCaseSensitive(r, "error")){
				CTL.n_errors++;
				if(CTL.n_errors <= 5){
					char *s = cJSON_PrintUnformatted(r);
					note("control error: %s", s ? s : "?");
					free(s);
				}
			}
		}
	}
	if(CTL.req[i].cb) CTL.req[i].cb(root, now_us() - CTL.req[i].t0, CTL.req[i].ud);
	cJSON_Delete(root);
	return true;
}

static const cJSON *json_path(const cJSON *o, const char *const *keys)
{
	for(; *keys && o; keys++){
		if(**keys == '#') o = cJSON_GetArrayItem(o, atoi(*keys + 1));
		else o = cJSON_GetObjectItemCaseSensitive(o, *keys);
	}
	return o;
}

/* describeJob poll state */
struct job_state {
	bool have;
	bool targets_complete;
	double targets, released, queued;
	bool created;
	bool create_done;
	uint64_t create_rtt_us;
	bool poll_outstanding;
};

static void cb_create(cJSON *resp, uint64_t rtt, void *ud)
{
	static const char *const k[] = { "responses", "#0", "data", "created", NULL };
	struct job_state *js = ud;
	const cJSON *c = json_path(resp, k);
	js->create_done = true;
	js->create_rtt_us = rtt;
	js->created = cJSON_IsBool(c);   /* created:false (already existed) is fine too */
}

static void cb_describe(cJSON *resp, uint64_t rtt, void *ud)
{
	static const char *const kr[] = { "responses", "#0", "data", "job", "rollout", NULL };
	static const char *const kc[] = { "responses", "#0", "data", "job", "counts", NULL };
	struct job_state *js = ud;
	const cJSON *r = json_path(resp, kr), *c = json_path(resp, kc), *v;
	(void)rtt;
	js->poll_outstanding = false;
	if(!r) return;
	js->have = true;
	js->targets_complete = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "targetsComplete"));
	v = cJSON_GetObjectItemCaseSensitive(r, "targets");
	js->targets = cJSON_IsNumber(v) ? v->valuedouble : 0;
	v = cJSON_GetObjectItemCaseSensitive(r, "released");
	js->released = cJSON_IsNumber(v) ? v->valuedouble : 0;
	v = cJSON_GetObjectItemCaseSensitive(c, "queued");
	js->queued = cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void describe_job(const char *job_id, struct job_state *js)
{
	char buf[512];
	if(js->poll_outstanding) return;
	snprintf(buf, sizeof(buf), "{\"commands\":[{\"command\":\"describeJob\",\"jobId\":\"%s\"}]}", job_id);
	js->poll_outstanding = ctl_send(buf, cb_describe, js);
}

/* =========================================================================
 * fleetmq payloads
 * ========================================================================= */

static uint8_t *pack_hello(size_t *len)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	uint8_t *buf;
	h.agent_version = (char *)"fleetmq-loadgen/1";
	h.device_type = (char *)"bench";
	h.hw_revision = (char *)"r1";
	h.sent_at_ms = wall_ms();
	*len = fleetmq__v1__hello__get_packed_size(&h);
	buf = xcalloc(1, *len);
	fleetmq__v1__hello__pack(&h, buf);
	return buf;
}

static uint8_t *pack_telemetry(int nmetrics, uint64_t seq, size_t *len)
{
	Fleetmq__V1__TelemetryBatch b = FLEETMQ__V1__TELEMETRY_BATCH__INIT;
	Fleetmq__V1__Metric *m = xcalloc((size_t)nmetrics, sizeof(*m));
	Fleetmq__V1__Metric **mp = xcalloc((size_t)nmetrics, sizeof(*mp));
	char (*names)[32] = xcalloc((size_t)nmetrics, sizeof(*names));
	uint8_t *buf;
	int i;

	for(i = 0; i < nmetrics; i++){
		fleetmq__v1__metric__init(&m[i]);
		snprintf(names[i], sizeof(names[i]), "sys.metric%d.value", i);
		m[i].name = names[i];
		m[i].value = 12.5 * i + 0.25;
		mp[i] = &m[i];
	}
	b.sequence = seq;
	b.timestamp_ms = wall_ms();
	b.n_metrics = (size_t)nmetrics;
	b.metrics = mp;
	*len = fleetmq__v1__telemetry_batch__get_packed_size(&b);
	buf = xcalloc(1, *len);
	fleetmq__v1__telemetry_batch__pack(&b, buf);
	free(m);
	free(mp);
	free(names);
	return buf;
}

/* Does a JobNotify list job_id as queued or in progress? */
static bool notify_lists(const struct mosquitto_message *msg, const char *job_id)
{
	Fleetmq__V1__JobNotify *n = fleetmq__v1__job_notify__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	bool found = false;
	size_t i;

	if(!n) return false;
	for(i = 0; i < n->n_queued && !found; i++) found = !strcmp(n->queued[i]->job_id, job_id);
	for(i = 0; i < n->n_in_progress && !found; i++) found = !strcmp(n->in_progress[i]->job_id, job_id);
	fleetmq__v1__job_notify__free_unpacked(n, NULL);
	return found;
}

static bool topic_ends(const char *topic, const char *suffix)
{
	size_t a = strlen(topic), b = strlen(suffix);
	return a >= b && !strcmp(topic + a - b, suffix);
}

/* =========================================================================
 * common throughput machinery: phases
 * ========================================================================= */

enum phase { PH_SETUP, PH_WARMUP, PH_MEASURE, PH_DRAIN };

static struct {
	enum phase phase;
	uint64_t t_warm, t_meas_end;
	struct window w;
	uint64_t count;             /* completions inside the window */
	uint64_t bytes;
	uint64_t lost, rejected, errors;
	struct lat lat;
	size_t ready;               /* clients ready (subscribed / set up) */
} P;

static void phase_start(void)
{
	P.phase = PH_WARMUP;
	P.t_warm = now_us() + (uint64_t)(O.warmup_s * 1e6);
	P.t_meas_end = 0;
}

static void phase_tick(uint64_t now)
{
	if(P.phase == PH_WARMUP && now >= P.t_warm){
		P.phase = PH_MEASURE;
		P.count = 0;
		P.bytes = 0;
		lat_reset(&P.lat);
		window_start(&P.w);
		P.t_meas_end = P.w.t0 + (uint64_t)(O.duration_s * 1e6);
	}else if(P.phase == PH_MEASURE && now >= P.t_meas_end){
		window_stop(&P.w);
		P.phase = PH_DRAIN;
	}
}

static bool phase_done(void) { return P.phase == PH_DRAIN; }
static bool ready_all(void) { return P.ready >= g_count_target; }

static bool g_inflight_zero_flag;
static bool inflight_zero(void)
{
	size_t i;
	for(i = 0; i < E.n; i++) if(E.c[i].inflight > 0 && E.c[i].state == CS_UP) return false;
	g_inflight_zero_flag = true;
	return true;
}

/* =========================================================================
 * scenario: pubsub (plain topics, QoS 0 / 1)
 *   clients 0..P-1 publish on bench/t/<i>; clients P..2P-1 subscribe to it.
 *   Each publisher keeps --window messages in flight (published, not yet
 *   received by its subscriber).
 * ========================================================================= */

enum { R_PUB = 1, R_SUB, R_DEV, R_CONSUMER, R_OPS, R_RESPONDER, R_PROBE };

static uint8_t *g_payload;
static size_t g_payload_len;

static void ps_send(struct client *pub)
{
	char topic[64];
	uint64_t t = now_us();
	snprintf(topic, sizeof(topic), "bench/t/%u", pub->idx);
	memcpy(g_payload, &t, sizeof(t));
	if(lg_publish(pub, NULL, topic, g_payload_len, g_payload, O.qos, NULL) == MOSQ_ERR_SUCCESS){
		pub->inflight++;
		pub->sent++;
	}
}

static void ps_fill(struct client *pub)
{
	while(pub->inflight < O.window && P.phase != PH_DRAIN) ps_send(pub);
}

static void ps_up(struct client *c)
{
	char topic[64], *t[1] = { topic };
	if(c->role != R_SUB) return;
	snprintf(topic, sizeof(topic), "bench/t/%u", c->idx - (uint32_t)O.clients);
	lg_subscribe(c, NULL, 1, t, O.qos, 0);
}

static void ps_sub(struct client *c, int mid, int n, const int *granted)
{
	(void)c; (void)mid;
	if(n >= 1 && granted[0] <= 2) P.ready++;
}

static void ps_msg(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	struct client *pub;
	uint64_t t, now = now_us();
	(void)props;
	if(c->role != R_SUB) return;
	pub = &E.c[c->idx - (uint32_t)O.clients];
	pub->inflight--;
	pub->last_progress = now;
	if(P.phase == PH_MEASURE){
		P.count++;
		if(msg->payloadlen >= 8){
			memcpy(&t, msg->payload, sizeof(t));
			if(t <= now) lat_add(&P.lat, now - t);
		}
	}
	ps_fill(pub);
}

static void ps_tick(uint64_t now)
{
	size_t i;
	phase_tick(now);
	/* a QoS 0 message may be dropped by the broker: never let a window stall */
	for(i = 0; i < (size_t)O.clients; i++){
		struct client *pub = &E.c[i];
		if(pub->inflight > 0 && now - pub->last_progress > 2000000){
			P.lost += (uint64_t)pub->inflight;
			pub->inflight = 0;
			pub->last_progress = now;
			ps_fill(pub);
		}
	}
}

static int scenario_pubsub(void)
{
	size_t i, np = (size_t)(O.clients > 0 ? O.clients : 8);
	char id[48], name[32];

	O.clients = (int)np;
	if(O.window <= 0) O.window = 32;
	if(O.size < 16) O.size = 16;
	engine_init(2 * np);
	for(i = 0; i < np; i++){
		snprintf(id, sizeof(id), "lg-pub-%zu", i);
		client_init(i, id, id, R_PUB);
		snprintf(id, sizeof(id), "lg-sub-%zu", i);
		client_init(np + i, id, id, R_SUB);
	}
	g_payload_len = (size_t)O.size;
	g_payload = xcalloc(1, g_payload_len);
	memset(g_payload + 8, 'x', g_payload_len - 8);
	E.h = (struct hooks){ .up = ps_up, .sub = ps_sub, .msg = ps_msg, .tick = ps_tick };
	memset(&P, 0, sizeof(P));
	g_count_target = 2 * np;
	for(i = 0; i < 2 * np; i++) queue_connect(&E.c[i]);
	if(!run_until(all_up, 30) || E.n_up < 2 * np) die("pubsub: only %zu of %zu clients connected", E.n_up, 2 * np);
	g_count_target = np;
	if(!run_until(ready_all, 10)) die("pubsub: subscriptions not acknowledged");
	phase_start();
	for(i = 0; i < np; i++){
		E.c[i].last_progress = now_us();
		ps_fill(&E.c[i]);
	}
	if(!run_until(phase_done, O.warmup_s + O.duration_s + 30)) die("pubsub: did not finish");
	run_until(inflight_zero, 5);
	snprintf(name, sizeof(name), "pubsub-qos%d", O.qos);
	result_head(name);
	printf(" rate=%.1f msgs=%" PRIu64 " secs=%.3f pairs=%zu window=%d size=%d lost=%" PRIu64 " p50_ms=%.3f p99_ms=%.3f",
			(double)P.count / window_s(&P.w), P.count, window_s(&P.w), np, O.window, O.size, P.lost,
			lat_ms(&P.lat, 50), lat_ms(&P.lat, 99));
	print_cpu(&P.w, P.count);
	printf("\n");
	fflush(stdout);
	disconnect_all(5);
	engine_free();
	free(g_payload);
	free(P.lat.v);
	return 0;
}

/* =========================================================================
 * scenario: telemetry
 *   --clients devices publish TelemetryBatch (QoS 1) on fleet/<id>/telemetry;
 *   one consumer (username "ops", an operator for the plugin) subscribes to
 *   fleet/+/telemetry (QoS 0). Each device keeps --window batches in flight
 *   (published, not yet received by the consumer).
 * ========================================================================= */

static uint8_t **g_tpay;
static size_t *g_tlen;
static int g_tconsumer;

static void tm_send(struct client *dev)
{
	char topic[128];
	snprintf(topic, sizeof(topic), "%s/%s/telemetry", O.prefix, dev->id);
	if(lg_publish(dev, NULL, topic, g_tlen[dev->idx], g_tpay[dev->idx], 1, NULL) == MOSQ_ERR_SUCCESS){
		dev->inflight++;
		dev->sent++;
	}
}

static void tm_fill(struct client *dev)
{
	while(dev->inflight < O.window && P.phase != PH_DRAIN) tm_send(dev);
}

static void tm_up(struct client *c)
{
	char topic[64], *t[1] = { topic };
	if(c->role != R_CONSUMER) return;
	snprintf(topic, sizeof(topic), "%s/+/telemetry", O.prefix);
	lg_subscribe(c, NULL, 1, t, 0, 0);
}

static void tm_sub(struct client *c, int mid, int n, const int *granted)
{
	(void)c; (void)mid;
	if(n >= 1 && granted[0] <= 2) P.ready++;
}

static void tm_msg(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	const char *p;
	unsigned idx;
	struct client *dev;
	(void)props;
	if(c->role != R_CONSUMER) return;
	p = strstr(msg->topic, "/tdev-");
	if(!p || sscanf(p + 6, "%u", &idx) != 1 || idx >= (unsigned)g_tconsumer) return;
	dev = &E.c[idx];
	dev->inflight--;
	dev->last_progress = now_us();
	if(P.phase == PH_MEASURE){
		P.count++;
		P.bytes += (uint64_t)msg->payloadlen;
	}
	tm_fill(dev);
}

static void tm_tick(uint64_t now)
{
	int i;
	phase_tick(now);
	for(i = 0; i < g_tconsumer; i++){
		struct client *dev = &E.c[i];
		if(dev->inflight > 0 && now - dev->last_progress > 2000000){
			P.lost += (uint64_t)dev->inflight;
			dev->inflight = 0;
			dev->last_progress = now;
			tm_fill(dev);
		}
	}
}

static int scenario_telemetry(void)
{
	size_t i, nd = (size_t)(O.clients > 0 ? O.clients : 20);
	char id[48];

	if(O.window <= 0) O.window = 16;
	engine_init(nd + 1);
	g_tpay = xcalloc(nd, sizeof(*g_tpay));
	g_tlen = xcalloc(nd, sizeof(*g_tlen));
	for(i = 0; i < nd; i++){
		snprintf(id, sizeof(id), "tdev-%05zu", i);
		client_init(i, id, id, R_DEV);
		g_tpay[i] = pack_telemetry(O.metrics, i + 1, &g_tlen[i]);
	}
	g_tconsumer = (int)nd;
	client_init(nd, "lg-telemetry-consumer", "ops", R_CONSUMER);
	E.h = (struct hooks){ .up = tm_up, .sub = tm_sub, .msg = tm_msg, .tick = tm_tick };
	memset(&P, 0, sizeof(P));
	g_count_target = nd + 1;
	for(i = 0; i <= nd; i++) queue_connect(&E.c[i]);
	if(!run_until(all_up, 30) || E.n_up < nd + 1) die("telemetry: only %zu of %zu clients connected", E.n_up, nd + 1);
	g_count_target = 1;
	if(!run_until(ready_all, 10)) die("telemetry: consumer subscription not acknowledged");
	phase_start();
	for(i = 0; i < nd; i++){
		E.c[i].last_progress = now_us();
		tm_fill(&E.c[i]);
	}
	if(!run_until(phase_done, O.warmup_s + O.duration_s + 30)) die("telemetry: did not finish");
	run_until(inflight_zero, 5);
	result_head("telemetry");
	printf(" rate=%.1f msgs=%" PRIu64 " secs=%.3f devices=%zu window=%d batch_bytes=%zu metrics=%d lost=%" PRIu64,
			(double)P.count / window_s(&P.w), P.count, window_s(&P.w), nd, O.window, g_tlen[0], O.metrics, P.lost);
	print_cpu(&P.w, P.count);
	printf("\n");
	fflush(stdout);
	disconnect_all(5);
	for(i = 0; i < nd; i++) free(g_tpay[i]);
	free(g_tpay);
	free(g_tlen);
	engine_free();
	return 0;
}

/* =========================================================================
 * scenario: shadow
 *   --clients devices each keep --window ShadowUpdateRequests (reported
 *   state, QoS 1) outstanding and time update -> accepted. On vanilla a
 *   responder client subscribed to fleet/+/shadow/update echoes every
 *   request to <topic>/accepted (QoS 1): the raw request/response rate.
 * ========================================================================= */

static int g_sh_ndev;

/* A ShadowUpdateRequest of reported state {"temp":..,"seq":seq} into buf;
 * returns its length, 0 if it does not fit. */
static size_t pack_shadow_update(uint64_t seq, uint8_t *buf, size_t cap)
{
	Fleetmq__V1__ShadowUpdateRequest r = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;
	char token[24], json[96];
	size_t len;

	snprintf(token, sizeof(token), "%" PRIu64, seq);
	snprintf(json, sizeof(json), "{\"temp\":%" PRIu64 ",\"seq\":%" PRIu64 "}", seq % 50, seq);
	r.client_token = token;
	r.reported_json = json;
	len = fleetmq__v1__shadow_update_request__get_packed_size(&r);
	if(len > cap) return 0;
	return fleetmq__v1__shadow_update_request__pack(&r, buf);
}

static void sh_send(struct client *dev)
{
	char topic[128];
	uint8_t buf[256];
	size_t len;
	uint64_t seq = dev->sent;

	snprintf(topic, sizeof(topic), "%s/%s/shadow/update", O.prefix, dev->id);
	if(!(len = pack_shadow_update(seq, buf, sizeof(buf)))) return;
	dev->slots[seq % (uint64_t)O.window] = now_us();
	if(lg_publish(dev, NULL, topic, len, buf, 1, NULL) == MOSQ_ERR_SUCCESS){
		dev->inflight++;
		dev->sent++;
	}
}

static void sh_fill(struct client *dev)
{
	if(O.rate > 0) return;      /* open loop: sh_tick sends */
	while(dev->inflight < O.window && P.phase != PH_DRAIN) sh_send(dev);
}

/* open loop: --rate updates/s spread round-robin over the devices */
static struct {
	uint64_t t0, due_sent;
	size_t rr;
	uint64_t skipped;
} SHR;

static void sh_up(struct client *c)
{
	char a[128], r[128], *t[2] = { a, r };
	if(c->role == R_RESPONDER){
		snprintf(a, sizeof(a), "%s/+/shadow/update", O.prefix);
		lg_subscribe(c, NULL, 1, t, 1, 0);
		return;
	}
	snprintf(a, sizeof(a), "%s/%s/shadow/update/accepted", O.prefix, c->id);
	snprintf(r, sizeof(r), "%s/%s/shadow/update/rejected", O.prefix, c->id);
	lg_subscribe(c, NULL, 2, t, 1, 0);
}

static void sh_sub(struct client *c, int mid, int n, const int *granted)
{
	(void)c; (void)mid;
	if(n >= 1 && granted[0] <= 2) P.ready++;
	else P.errors++;
}

static void sh_msg(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	char token[80] = "";
	uint64_t seq, now = now_us();
	(void)props;

	if(c->role == R_RESPONDER){
		char topic[300];
		snprintf(topic, sizeof(topic), "%s/accepted", msg->topic);
		lg_publish(c, NULL, topic, (size_t)msg->payloadlen, msg->payload, 1, NULL);
		return;
	}
	if(topic_ends(msg->topic, "/rejected")){
		Fleetmq__V1__Rejection *rj = fleetmq__v1__rejection__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		P.rejected++;
		if(P.rejected <= 3) note("shadow update rejected: %s", rj ? rj->reason : "?");
		if(rj){
			snprintf(token, sizeof(token), "%s", rj->client_token);
			fleetmq__v1__rejection__free_unpacked(rj, NULL);
		}
	}else if(O.plugin){
		Fleetmq__V1__ShadowUpdateAccepted *a = fleetmq__v1__shadow_update_accepted__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		if(!a){ P.errors++; return; }
		snprintf(token, sizeof(token), "%s", a->client_token);
		fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
		if(P.phase == PH_MEASURE) P.count++;
	}else{
		Fleetmq__V1__ShadowUpdateRequest *r = fleetmq__v1__shadow_update_request__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		if(!r){ P.errors++; return; }
		snprintf(token, sizeof(token), "%s", r->client_token);
		fleetmq__v1__shadow_update_request__free_unpacked(r, NULL);
		if(P.phase == PH_MEASURE) P.count++;
	}
	if(!token[0]) return;
	seq = strtoull(token, NULL, 10);
	if(P.phase == PH_MEASURE && seq < c->sent) lat_add(&P.lat, now - c->slots[seq % (uint64_t)O.window]);
	c->inflight--;
	c->last_progress = now;
	sh_fill(c);
}

static void sh_tick(uint64_t now)
{
	phase_tick(now);
	if(O.rate > 0 && SHR.t0 && P.phase != PH_DRAIN){
		uint64_t due = (uint64_t)((double)(now - SHR.t0) * O.rate / 1e6);
		while(SHR.due_sent < due){
			struct client *dev = &E.c[SHR.rr];
			SHR.rr = (SHR.rr + 1) % (size_t)g_sh_ndev;
			SHR.due_sent++;
			if(dev->inflight >= O.window) SHR.skipped++;   /* saturated: the broker is behind */
			else sh_send(dev);
		}
	}
}

static int scenario_shadow(void)
{
	size_t i, nd = (size_t)(O.clients > 0 ? O.clients : 100);
	size_t n = nd + (O.plugin ? 0 : 1);
	char id[48];

	if(O.window <= 0) O.window = O.rate > 0 ? 16 : 4;
	g_sh_ndev = (int)nd;
	memset(&SHR, 0, sizeof(SHR));
	if(O.rate > 0) E.wait_ms = 1;
	engine_init(n);
	for(i = 0; i < nd; i++){
		snprintf(id, sizeof(id), "sdev-%04zu", i);
		client_init(i, id, id, R_DEV)->slots = xcalloc((size_t)O.window, sizeof(uint64_t));
	}
	if(!O.plugin) client_init(nd, "lg-shadow-responder", "ops", R_RESPONDER);
	E.h = (struct hooks){ .up = sh_up, .sub = sh_sub, .msg = sh_msg, .tick = sh_tick };
	memset(&P, 0, sizeof(P));
	g_count_target = n;
	for(i = 0; i < n; i++) queue_connect(&E.c[i]);
	if(!run_until(all_up, 30) || E.n_up < n) die("shadow: only %zu of %zu clients connected", E.n_up, n);
	if(!run_until(ready_all, 10)) die("shadow: subscriptions not acknowledged (%" PRIu64 " refused)", P.errors);
	phase_start();
	SHR.t0 = now_us();
	for(i = 0; i < nd; i++) sh_fill(&E.c[i]);
	if(!run_until(phase_done, O.warmup_s + O.duration_s + 30)) die("shadow: did not finish");
	run_until(inflight_zero, 5);
	result_head(O.rate > 0 ? "shadow-latency" : "shadow");
	printf(" rate=%.1f updates=%" PRIu64 " secs=%.3f devices=%zu window=%d p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f rejected=%" PRIu64,
			(double)P.count / window_s(&P.w), P.count, window_s(&P.w), nd, O.window,
			lat_ms(&P.lat, 50), lat_ms(&P.lat, 90), lat_ms(&P.lat, 99), lat_ms(&P.lat, 100), P.rejected);
	if(O.rate > 0) printf(" offered=%.0f skipped=%" PRIu64, O.rate, SHR.skipped);
	print_cpu(&P.w, P.count);
	printf("\n");
	fflush(stdout);
	disconnect_all(5);
	engine_free();
	free(P.lat.v);
	return 0;
}

/* =========================================================================
 * scenario: artifact
 *   plugin: device adev-1 has an update job naming --artifact-name and
 *   fetches chunks (ArtifactGetRequest, --chunk bytes, --window requests
 *   outstanding) in a loop over the file for --duration; every chunk is
 *   compared with --artifact-file.
 *   vanilla: a publisher sends the same file in --chunk pieces (QoS 1,
 *   --window in flight) to the same data topic, the device receives them.
 * ========================================================================= */

static struct {
	uint8_t *data;
	size_t size;
	uint64_t next_off;          /* next chunk to ask for / publish */
	uint64_t expect_off;        /* vanilla: next chunk expected */
	char job_id[64];
	bool hello_ok, notified;
	struct job_state js;
	struct client *dev, *pub;
	uint64_t mismatches;
} A;

static void art_request(void)
{
	Fleetmq__V1__ArtifactGetRequest r = FLEETMQ__V1__ARTIFACT_GET_REQUEST__INIT;
	char topic[256], token[24];
	uint8_t buf[128];
	size_t len;

	snprintf(topic, sizeof(topic), "%s/%s/artifacts/%s/get", O.prefix, A.dev->id, O.artifact_name);
	snprintf(token, sizeof(token), "%" PRIu64, A.dev->sent);
	r.offset = A.next_off;
	r.length = (uint32_t)O.chunk;
	r.client_token = token;
	len = fleetmq__v1__artifact_get_request__get_packed_size(&r);
	fleetmq__v1__artifact_get_request__pack(&r, buf);
	if(lg_publish(A.dev, NULL, topic, len, buf, 1, NULL) == MOSQ_ERR_SUCCESS){
		A.dev->inflight++;
		A.dev->sent++;
		A.next_off += (uint64_t)O.chunk;
		if(A.next_off >= A.size) A.next_off = 0;
	}
}

static void art_publish(void)
{
	char topic[256];
	size_t len = A.size - A.next_off < (size_t)O.chunk ? A.size - A.next_off : (size_t)O.chunk;

	snprintf(topic, sizeof(topic), "%s/%s/artifacts/%s/data", O.prefix, A.dev->id, O.artifact_name);
	if(lg_publish(A.pub, NULL, topic, len, A.data + A.next_off, 1, NULL) == MOSQ_ERR_SUCCESS){
		A.dev->inflight++;
		A.pub->sent++;
		A.next_off += len;
		if(A.next_off >= A.size) A.next_off = 0;
	}
}

static void art_fill(void)
{
	while(A.dev->inflight < O.window && P.phase != PH_DRAIN){
		uint64_t before = A.dev->sent + (A.pub ? A.pub->sent : 0);
		if(O.plugin) art_request(); else art_publish();
		if(A.dev->sent + (A.pub ? A.pub->sent : 0) == before) break;
	}
}

static void art_up(struct client *c)
{
	char t0[256], t1[256], t2[256], t3[256], *t[4] = { t0, t1, t2, t3 };
	if(c->role == R_OPS){ ctl_on_up(c); return; }
	if(c->role != R_DEV) return;
	snprintf(t0, sizeof(t0), "%s/%s/artifacts/%s/data", O.prefix, c->id, O.artifact_name);
	snprintf(t1, sizeof(t1), "%s/%s/artifacts/%s/get/rejected", O.prefix, c->id, O.artifact_name);
	snprintf(t2, sizeof(t2), "%s/%s/hello/accepted", O.prefix, c->id);
	snprintf(t3, sizeof(t3), "%s/%s/jobs/notify", O.prefix, c->id);
	lg_subscribe(c, NULL, 4, t, 1, 0);
}

static void art_sub(struct client *c, int mid, int n, const int *granted)
{
	(void)mid;
	if(c->role == R_OPS){ ctl_on_sub(c); P.ready++; return; }
	if(n >= 1 && granted[0] <= 2) P.ready++;
	if(c->role == R_DEV && O.plugin){
		size_t len;
		uint8_t *h = pack_hello(&len);
		char topic[128];
		snprintf(topic, sizeof(topic), "%s/%s/hello", O.prefix, c->id);
		lg_publish(c, NULL, topic, len, h, 1, NULL);
		free(h);
	}
}

static void art_msg(struct client *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	if(ctl_on_msg(c, msg, props)) return;
	if(c->role != R_DEV) return;
	if(topic_ends(msg->topic, "/hello/accepted")){ A.hello_ok = true; return; }
	if(topic_ends(msg->topic, "/jobs/notify")){
		if(notify_lists(msg, A.job_id)) A.notified = true;
		return;
	}
	if(topic_ends(msg->topic, "/get/rejected")){
		Fleetmq__V1__Rejection *rj = fleetmq__v1__rejection__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		P.rejected++;
		if(P.rejected <= 3) note("artifact request rejected: %s", rj ? rj->reason : "?");
		if(rj) fleetmq__v1__rejection__free_unpacked(rj, NULL);
		c->inflight--;
		return;
	}
	if(!topic_ends(msg->topic, "/data")) return;
	c->inflight--;
	c->last_progress = now_us();
	if(O.plugin){
		Fleetmq__V1__ArtifactChunk *ch = fleetmq__v1__artifact_chunk__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		if(!ch){ P.errors++; return; }
		if(ch->offset + ch->data.len > A.size || memcmp(A.data + ch->offset, ch->data.data, ch->data.len)) A.mismatches++;
		if(P.phase == PH_MEASURE){ P.count++; P.bytes += ch->data.len; }
		fleetmq__v1__artifact_chunk__free_unpacked(ch, NULL);
	}else{
		size_t len = (size_t)msg->payloadlen;
		if(A.expect_off + len > A.size || memcmp(A.data + A.expect_off, msg->payload, len)) A.mismatches++;
		A.expect_off += len;
		if(A.expect_off >= A.size) A.expect_off = 0;
		if(P.phase == PH_MEASURE){ P.count++; P.bytes += len; }
	}
	art_fill();
}

static void art_tick(uint64_t now)
{
	phase_tick(now);
}

static bool art_hello_done(void) { return A.hello_ok; }
static bool art_created(void) { return A.js.create_done; }
static bool art_notified(void) { return A.notified; }

static int scenario_artifact(void)
{
	struct stat st;
	FILE *f;
	size_t n = 2;
	char buf[1024];

	if(!O.artifact_file) die("artifact: --artifact-file is required");
	if(O.window <= 0) O.window = 4;
	memset(&A, 0, sizeof(A));
	f = fopen(O.artifact_file, "rb");
	if(!f || fstat(fileno(f), &st) != 0 || st.st_size <= 0) die("artifact: cannot read %s", O.artifact_file);
	A.size = (size_t)st.st_size;
	A.data = xcalloc(1, A.size);
	if(fread(A.data, 1, A.size, f) != A.size) die("artifact: short read of %s", O.artifact_file);
	fclose(f);
	engine_init(n);
	A.dev = client_init(0, "adev-1", "adev-1", R_DEV);
	if(O.plugin){
		ctl_attach(client_init(1, "lg-artifact-ops", "ops", R_OPS));
	}else{
		A.pub = client_init(1, "lg-artifact-pub", "ops", R_PUB);
	}
	E.h = (struct hooks){ .up = art_up, .sub = art_sub, .msg = art_msg, .tick = art_tick };
	memset(&P, 0, sizeof(P));
	g_count_target = n;
	queue_connect(&E.c[0]);
	queue_connect(&E.c[1]);
	if(!run_until(all_up, 30) || E.n_up < n) die("artifact: clients did not connect");
	g_count_target = O.plugin ? 2 : 1;
	if(!run_until(ready_all, 10)) die("artifact: subscriptions not acknowledged");
	if(O.plugin){
		if(!run_until(art_hello_done, 10)) die("artifact: no hello/accepted");
		snprintf(A.job_id, sizeof(A.job_id), "bench-artifact");
		snprintf(buf, sizeof(buf), "{\"commands\":[{\"command\":\"createJob\",\"jobId\":\"%s\",\"type\":\"update\","
				"\"document\":{\"artifact\":\"%s\",\"version\":\"1.0.0\"},\"targets\":{\"devices\":[\"adev-1\"]}}]}",
				A.job_id, O.artifact_name);
		if(!ctl_send(buf, cb_create, &A.js)) die("artifact: cannot send createJob");
		if(!run_until(art_created, 10)) die("artifact: no createJob response");
		/* the execution must be QUEUED (released) before the device may read */
		if(!run_until(art_notified, 10)) die("artifact: device never got a JobNotify listing %s", A.job_id);
	}
	phase_start();
	art_fill();
	if(!run_until(phase_done, O.warmup_s + O.duration_s + 30)) die("artifact: did not finish");
	run_until(inflight_zero, 5);
	result_head("artifact");
	printf(" rate_mib_s=%.2f chunks=%" PRIu64 " bytes=%" PRIu64 " secs=%.3f chunk=%d window=%d file_bytes=%zu mismatches=%" PRIu64
			" rejected=%" PRIu64,
			(double)P.bytes / window_s(&P.w) / 1048576.0, P.count, P.bytes, window_s(&P.w), O.chunk, O.window, A.size,
			A.mismatches, P.rejected);
	print_cpu(&P.w, P.count);
	printf("\n");
	fflush(stdout);
	if(A.mismatches) note("WARNING: %" PRIu64 " chunks differed from the file", A.mismatches);
	disconnect_all(5);
	engine_free();
	free(A.data);
	return 0;
}

/* =========================================================================
 * scenario: register (operator API) with RSS checkpoints = memory, offline
 *   Registers --devices devices dev-<n> with setDeviceAttributes, --batch
 *   commands per $CONTROL request and --ctl-window requests in flight, and
 *   samples the broker's VmRSS before and at each checkpoint.
 * ========================================================================= */

static struct {
	long next;                  /* next device number to register */
	long end;
	long acked;
	long stop_at;               /* send no further than this (checkpoint) */
	long errors;
} R;

static void reg_cb(cJSON *resp, uint64_t rtt, void *ud)
{
	const cJSON *r;
	(void)rtt;
	R.acked += (long)(intptr_t)ud;
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(resp, "responses")){
		if(cJSON_GetObjectItemCaseSensitive(r, "error")) R.errors++;
	}
}

static void reg_pump(void)
{
	static char *buf;
	static size_t cap;
	if(!CTL.ready) return;
	if(!buf){
		cap = (size_t)O.batch * 200 + 64;
		buf = xcalloc(1, cap);
	}
	while(CTL.outstanding < O.ctl_window && R.next < R.stop_at){
		size_t off = 0;
		long k, n = R.stop_at - R.next < O.batch ? R.stop_at - R.next : O.batch;
		off += (size_t)snprintf(buf + off, cap - off, "{\"commands\":[");
		for(k = 0; k < n; k++){
			long id = R.next + k;
			off += (size_t)snprintf(buf + off, cap - off,
					"%s{\"command\":\"setDeviceAttributes\",\"deviceId\":\"dev-%07ld\",\"attributes\":{\"site\":\"s%ld\"}}",
					k ? "," : "", id, id % 100);
		}
		snprintf(buf + off, cap - off, "]}");
		if(!ctl_send(buf, reg_cb, (void *)(intptr_t)n)) break;
		R.next += n;
	}
}

static void reg_up(struct client *c) { ctl_on_up(c); }
static void reg_sub(struct client *c, int mid, int n, const int *g) { (void)mid; (void)n; (void)g; ctl_on_sub(c); }
static void reg_msg(struct client *c, const struct mosquitto_message *m, const mosquitto_property *p) { ctl_on_msg(c, m, p); }
static void reg_tick(uint64_t now) { (void)now; reg_pump(); }
static bool reg_ready(void) { return CTL.ready; }
static bool reg_reached(void) { return R.acked >= R.stop_at - O.id_start && CTL.outstanding == 0; }

static int scenario_register(void)
{
	long cps[16];
	int ncp = 0, i;
	long base_kib;
	uint64_t t0;
	char *s, *tok, *save = NULL;

	if(O.devices <= 0) die("register: --devices is required");
	if(O.batch < 1 || O.batch > 100) die("register: --batch must be 1..100");
	if(O.checkpoints){
		s = strdup(O.checkpoints);
		for(tok = strtok_r(s, ",", &save); tok && ncp < 15; tok = strtok_r(NULL, ",", &save)){
			long v = atol(tok);
			if(v > 0 && v < O.devices) cps[ncp++] = v;
		}
		free(s);
	}
	cps[ncp++] = O.devices;
	engine_init(1);
	ctl_attach(client_init(0, "lg-register-ops", "ops", R_OPS));
	E.h = (struct hooks){ .up = reg_up, .sub = reg_sub, .msg = reg_msg, .tick = reg_tick };
	E.wait_ms = 1;
	g_count_target = 1;
	queue_connect(&E.c[0]);
	if(!run_until(all_up, 30) || !run_until(reg_ready, 10)) die("register: operator client not ready");
	run_for(0.5);
	base_kib = proc_rss_kib(O.broker_pid);
	memset(&R, 0, sizeof(R));
	R.next = O.id_start;
	R.end = O.id_start + O.devices;
	t0 = now_us();
	for(i = 0; i < ncp; i++){
		uint64_t tc = now_us();
		long rss;
		R.stop_at = O.id_start + cps[i];
		if(!run_until(reg_reached, (double)O.timeout_s)) die("register: stuck at %ld acknowledged", R.acked);
		rss = proc_rss_kib(O.broker_pid);
		result_head("memory-offline");
		printf(" devices=%ld rss_kib=%ld base_kib=%ld per_device_b=%.1f reg_per_s=%.0f errors=%ld\n",
				cps[i], rss, base_kib, rss >= 0 && base_kib >= 0 ? (double)(rss - base_kib) * 1024.0 / (double)cps[i] : -1,
				(double)(cps[i] - (i ? cps[i - 1] : 0)) / ((double)(now_us() - tc) / 1e6), R.errors);
		fflush(stdout);
	}
	note("registered %d devices in %.1f s (%ld errors)", O.devices, (double)(now_us() - t0) / 1e6, R.errors);
	disconnect_all(5);
	engine_free();
	return R.errors ? 1 : 0;
}

/* =========================================================================
 * scenario: fanout
 *   With --devices registered devices (see register), measures createJob
 *   (targets.all) -> ack, then fan-out (describeJob rollout.targetsComplete
 *   polled every 100 ms), while --probe-clients clients, each publishing
 *   QoS 1 on its own bench/probe/<n> topic and subscribed to it, send
 *   --probe-hz publishes per second in total (open loop, staggered) and
 *   record every publish -> delivery round trip: unrelated devices.
 *
 *   Many clients at a low rate each, not one fast client: Mosquitto 2.0
 *   reads one packet per socket per loop pass, so a single client sending
 *   faster than one message per pass queues behind itself whenever passes
 *   get long and would measure that queue rather than the stall.
 * ========================================================================= */

static struct {
	int n;                      /* probe clients: E.c[first .. first+n-1] */
	size_t first;
	struct lat base, during, after;
	struct lat *cur;
	uint64_t *next_send;        /* per probe client */
	uint64_t period;            /* per probe client */
	size_t ready;
	uint64_t sent, recv;
} PR;

static void probe_tick(uint64_t now)
{
	int i;
	if(PR.ready < (size_t)PR.n || !PR.cur) return;
	for(i = 0; i < PR.n; i++){
		struct client *c = &E.c[PR.first + (size_t)i];
		uint8_t pay[16];
		char topic[48];
		if(now < PR.next_send[i]) continue;
		PR.next_send[i] += PR.period;
		if(PR.next_send[i] < now) PR.next_send[i] = now + PR.period;   /* late: do not burst */
		if(c->inflight >= 100) continue;
		memcpy(pay, &now, sizeof(now));
		memset(pay + 8, 0, 8);
		snprintf(topic, sizeof(topic), "bench/probe/%d", i);
		if(lg_publish(c, NULL, topic, sizeof(pay), pay, 1, NULL) == MOSQ_ERR_SUCCESS){
			c->inflight++;
			PR.sent++;
		}
	}
}

static void probe_start(struct lat *into)
{
	int i;
	uint64_t now = now_us();
	PR.cur = into;
	for(i = 0; i < PR.n; i++) PR.next_send[i] = now + PR.period * (uint64_t)i / (uint64_t)PR.n;
}

static bool probe_msg(struct client *c, const struct mosquitto_message *msg)
{
	uint64_t t, now = now_us();
	if(c->role != R_PROBE) return false;
	if(msg->payloadlen >= 8){
		memcpy(&t, msg->payload, sizeof(t));
		if(PR.cur && t <= now) lat_add(PR.cur, now - t);
	}
	c->inflight--;
	PR.recv++;
	return true;
}

static void fo_up(struct client *c)
{
	if(c->role == R_OPS) ctl_on_up(c);
	else if(c->role == R_PROBE){
		char topic[48], *t[1] = { topic };
		snprintf(topic, sizeof(topic), "bench/probe/%u", (unsigned)(c->idx - PR.first));
		lg_subscribe(c, NULL, 1, t, 1, 0);
	}
}

static void fo_sub(struct client *c, int mid, int n, const int *g)
{
	(void)mid; (void)n; (void)g;
	if(c->role == R_OPS) ctl_on_sub(c);
	else if(c->role == R_PROBE) PR.ready++;
}

static void fo_msg(struct client *c, const struct mosquitto_message *m, const mosquitto_property *p)
{
	if(ctl_on_msg(c, m, p)) return;
	probe_msg(c, m);
}

static struct job_state FJ;
static char g_job_id[96];
static uint64_t g_next_poll;

static void fo_tick(uint64_t now)
{
	probe_tick(now);
	if(FJ.create_done && now >= g_next_poll){
		g_next_poll = now + 100000;
		describe_job(g_job_id, &FJ);
	}
}

static bool fo_ready(void) { return CTL.ready && PR.ready >= (size_t)PR.n; }
static bool fo_created(void) { return FJ.create_done; }
static bool fo_targets_complete(void) { return FJ.have && FJ.targets_complete; }
static bool fo_released(void) { return FJ.have && FJ.targets_complete && FJ.released >= FJ.targets; }

static int scenario_fanout(void)
{
	char buf[1024];
	uint64_t t_create, t_ack = 0, t_done = 0, t_rel = 0;
	double released_at_fanout = 0;
	long rss_start;
	bool ok;

	if(O.devices <= 0) die("fanout: --devices (the number of registered devices) is required");
	memset(&PR, 0, sizeof(PR));
	PR.n = O.probe_clients > 0 ? O.probe_clients : 10;
	PR.first = 1;
	PR.period = (uint64_t)(1e6 * PR.n / (O.probe_hz > 0 ? O.probe_hz : 100));
	PR.next_send = xcalloc((size_t)PR.n, sizeof(*PR.next_send));
	engine_init(1 + (size_t)PR.n);
	ctl_attach(client_init(0, "lg-fanout-ops", "ops", R_OPS));
	for(int i = 0; i < PR.n; i++){
		char id[48];
		snprintf(id, sizeof(id), "lg-fanout-probe-%d", i);
		client_init(PR.first + (size_t)i, id, id, R_PROBE);
	}
	memset(&FJ, 0, sizeof(FJ));
	E.h = (struct hooks){ .up = fo_up, .sub = fo_sub, .msg = fo_msg, .tick = fo_tick };
	E.wait_ms = 1;
	g_count_target = 1 + (size_t)PR.n;
	for(size_t i = 0; i < g_count_target; i++) queue_connect(&E.c[i]);
	if(!run_until(all_up, 30) || !run_until(fo_ready, 10)) die("fanout: clients not ready");
	rss_start = proc_rss_kib(O.broker_pid);
	result_head("memory-restart");
	printf(" devices=%d rss_kib=%ld\n", O.devices, rss_start);
	fflush(stdout);

	/* baseline responsiveness */
	probe_start(&PR.base);
	run_for(O.baseline_s);

	snprintf(g_job_id, sizeof(g_job_id), "bench-fanout-%" PRIu64, wall_ms());
	snprintf(buf, sizeof(buf), "{\"commands\":[{\"command\":\"createJob\",\"jobId\":\"%s\",\"type\":\"config\","
			"\"document\":{\"set\":{\"bench\":\"1\"}},\"targets\":{\"all\":true}}]}", g_job_id);
	PR.cur = &PR.during;
	t_create = now_us();
	if(!ctl_send(buf, cb_create, &FJ)) die("fanout: cannot send createJob");
	if(!run_until(fo_created, 60)) die("fanout: no createJob response in 60 s");
	t_ack = t_create + FJ.create_rtt_us;
	g_next_poll = now_us();
	ok = run_until(fo_targets_complete, (double)O.timeout_s);
	t_done = now_us();
	released_at_fanout = FJ.released;
	if(!ok) note("fanout: targetsComplete not seen before the timeout");
	/* the rollout keeps releasing (jobs.release_batch per check): probe that too */
	PR.cur = &PR.after;
	if(O.wait_release && ok){
		if(run_until(fo_released, (double)O.timeout_s)) t_rel = now_us();
	}else{
		run_for(O.after_s);
	}
	PR.cur = NULL;
	run_for(0.3);
	result_head("fanout");
	printf(" devices=%d targets=%.0f create_ack_ms=%.1f fanout_s=%.3f released_at_fanout=%.0f",
			O.devices, FJ.targets, (double)(t_ack - t_create) / 1000.0, ok ? (double)(t_done - t_create) / 1e6 : -1, released_at_fanout);
	if(t_rel) printf(" release_s=%.3f", (double)(t_rel - t_create) / 1e6);
	printf(" probe_clients=%d probe_hz=%.0f", PR.n, O.probe_hz);
	printf(" probe_p50_ms=%.3f probe_p99_ms=%.3f probe_max_ms=%.3f probes=%zu base_p50_ms=%.3f base_p99_ms=%.3f base_max_ms=%.3f"
			" release_p50_ms=%.3f release_p99_ms=%.3f release_max_ms=%.3f release_probes=%zu rss_kib=%ld load1=%.2f\n",
			lat_ms(&PR.during, 50), lat_ms(&PR.during, 99), lat_ms(&PR.during, 100), PR.during.n,
			lat_ms(&PR.base, 50), lat_ms(&PR.base, 99), lat_ms(&PR.base, 100),
			lat_ms(&PR.after, 50), lat_ms(&PR.after, 99), lat_ms(&PR.after, 100), PR.after.n, proc_rss_kib(O.broker_pid),
			loadavg1());
	fflush(stdout);
	disconnect_all(5);
	engine_free();
	free(PR.base.v);
	free(PR.during.v);
	free(PR.after.v);
	free(PR.next_send);
	return ok ? 0 : 1;
}

/* =========================================================================
 * scenario: reconnect
 *   1. --devices devices rdev-<n> connect, subscribe, say hello, get
 *      hello/accepted and disconnect (registration);
 *   2. createJob (config, targets.all) while they are all offline; wait
 *      until every execution is released (QUEUED);
 *   3. all reconnect at once (paced by --connect-window), subscribe and
 *      send hello; time until every device has a JobNotify listing the job.
 * ========================================================================= */

static struct {
	int phase;                  /* 1 register, 3 reconnect */
	size_t registered, notified, disconnected;
	uint64_t t0, t_last_notify, t_last_connack;
	struct lat lat;             /* connect start -> JobNotify, per device */
	struct lat since_t0;
	struct job_state js;
	char job_id[96];
	uint64_t hello_rejected;
	struct window w;
} RC;

static void rc_hello(struct client *c)
{
	size_t len;
	uint8_t *h = pack_hello(&len);
	char topic[128];
	snprintf(topic, sizeof(topic), "%s/%s/hello", O.prefix, c->id);
	lg_publish(c, NULL, topic, len, h, 1, NULL);
	free(h);
}

static void rc_up(struct client *c)
{
	char a[128], b[128], r[128], *t[3] = { a, b, r };
	if(c->role == R_OPS){ ctl_on_up(c); return; }
	if(RC.phase == 3) RC.t_last_connack = now_us();
	snprintf(a, sizeof(a), "%s/%s/hello/accepted", O.prefix, c->id);
	snprintf(b, sizeof(b), "%s/%s/jobs/notify", O.prefix, c->id);
	snprintf(r, sizeof(r), "%s/%s/hello/rejected", O.prefix, c->id);
	lg_subscribe(c, NULL, 3, t, 1, 0);
}

static void rc_sub(struct client *c, int mid, int n, const int *g)
{
	(void)mid; (void)n; (void)g;
	if(c->role == R_OPS){ ctl_on_sub(c); return; }
	rc_hello(c);
}

static void rc_msg(struct client *c, const struct mosquitto_message *m, const mosquitto_property *p)
{
	if(ctl_on_msg(c, m, p)) return;
	if(c->role != R_DEV) return;
	if(topic_ends(m->topic, "/hello/rejected")){
		RC.hello_rejected++;
		return;
	}
	if(RC.phase == 1 && topic_ends(m->topic, "/hello/accepted")){
		if(!c->mark){
			c->mark = 1;
			RC.registered++;
		}
		lg_disconnect(c);
		return;
	}
	if(RC.phase == 3 && topic_ends(m->topic, "/jobs/notify") && c->mark < 3 && notify_lists(m, RC.job_id)){
		uint64_t now = now_us();
		c->mark = 3;
		RC.notified++;
		RC.t_last_notify = now;
		lat_add(&RC.lat, now - c->t_start);
		lat_add(&RC.since_t0, now - RC.t0);
	}
}

/* vanilla reference: the same connect + subscribe + hello, done at the
 * hello's PUBACK (nobody answers a hello there) */
static void rc_pub(struct client *c, int mid, int reason)
{
	uint64_t now = now_us();
	(void)mid; (void)reason;
	if(O.plugin || RC.phase != 3 || c->role != R_DEV || c->mark >= 3) return;
	c->mark = 3;
	RC.notified++;
	RC.t_last_notify = now;
	lat_add(&RC.lat, now - c->t_start);
	lat_add(&RC.since_t0, now - RC.t0);
}

static bool rc_registered(void) { return RC.registered + E.n_connect_fail >= (size_t)O.devices && E.n_up <= 1 && E.connecting == 0 && E.cq_len == 0; }
static bool rc_ops_ready(void) { return CTL.ready; }
static bool rc_created(void) { return RC.js.create_done; }
static bool rc_released(void) { return RC.js.have && RC.js.targets_complete && RC.js.released >= (double)O.devices; }
static bool rc_all_notified(void) { return RC.notified >= (size_t)O.devices; }
static uint64_t g_rc_next_poll;

static void rc_tick(uint64_t now)
{
	if(RC.phase == 2 && RC.js.create_done && now >= g_rc_next_poll){
		g_rc_next_poll = now + 100000;
		describe_job(RC.job_id, &RC.js);
	}
}

static int scenario_reconnect(void)
{
	size_t i, nd = (size_t)O.devices;
	char id[48], buf[1024];
	uint64_t t_reg;
	bool ok;

	if(nd == 0) nd = 10000, O.devices = 10000;
	engine_init(nd + 1);
	for(i = 0; i < nd; i++){
		snprintf(id, sizeof(id), "rdev-%06zu", i);
		client_init(i, id, id, R_DEV);
	}
	ctl_attach(client_init(nd, "lg-reconnect-ops", "ops", R_OPS));
	memset(&RC, 0, sizeof(RC));
	E.h = (struct hooks){ .up = rc_up, .sub = rc_sub, .msg = rc_msg, .pub = rc_pub, .tick = rc_tick };

	/* operator first */
	g_count_target = 1;
	queue_connect(&E.c[nd]);
	if(!run_until(all_up, 30) || !run_until(rc_ops_ready, 10)) die("reconnect: operator not ready");
	if(!O.plugin) goto reconnect;   /* vanilla: no registry, no job; only step 3 */

	/* 1. registration */
	RC.phase = 1;
	t_reg = now_us();
	for(i = 0; i < nd; i++) queue_connect(&E.c[i]);
	if(!run_until(rc_registered, (double)O.timeout_s)) die("reconnect: only %zu of %zu devices registered", RC.registered, nd);
	note("registered %zu devices in %.1f s (hello, one connection each)", RC.registered, (double)(now_us() - t_reg) / 1e6);

	/* 2. job while everybody is offline */
	RC.phase = 2;
	snprintf(RC.job_id, sizeof(RC.job_id), "bench-reconnect-%" PRIu64, wall_ms());
	snprintf(buf, sizeof(buf), "{\"commands\":[{\"command\":\"createJob\",\"jobId\":\"%s\",\"type\":\"config\","
			"\"document\":{\"set\":{\"bench\":\"1\"}},\"targets\":{\"all\":true}}]}", RC.job_id);
	if(!ctl_send(buf, cb_create, &RC.js) || !run_until(rc_created, 30)) die("reconnect: createJob failed");
	g_rc_next_poll = now_us();
	if(!run_until(rc_released, (double)O.timeout_s)) die("reconnect: executions not released (%.0f of %zu)", RC.js.released, nd);
	note("job %s released to %.0f devices", RC.job_id, RC.js.released);
	run_for(0.5);

	/* 3. everybody back at once */
reconnect:
	RC.phase = 3;
	E.n_connect_fail = 0;
	for(i = 0; i < nd; i++){
		E.c[i].tries = 0;
		if(E.c[i].state == CS_FAILED) E.c[i].state = CS_IDLE;
	}
	window_start(&RC.w);
	RC.t0 = RC.w.t0;
	for(i = 0; i < nd; i++) queue_connect(&E.c[i]);
	ok = run_until(rc_all_notified, 120);
	window_stop(&RC.w);
	result_head("reconnect");
	printf(" devices=%zu notified=%zu total_s=%.3f connack_all_s=%.3f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f"
			" half_notified_s=%.3f connect_window=%d connect_fail=%" PRIu64 " hello_rejected=%" PRIu64
			" broker_cpu_s=%.2f lg_cpu_s=%.2f load1=%.2f\n",
			nd, RC.notified, ok ? (double)(RC.t_last_notify - RC.t0) / 1e6 : -1, (double)(RC.t_last_connack - RC.t0) / 1e6,
			lat_ms(&RC.lat, 50), lat_ms(&RC.lat, 99), lat_ms(&RC.lat, 100), lat_ms(&RC.since_t0, 50) / 1000.0,
			O.connect_window, E.n_connect_fail, RC.hello_rejected,
			RC.w.bcpu0 >= 0 ? RC.w.bcpu1 - RC.w.bcpu0 : -1, RC.w.scpu1 - RC.w.scpu0, loadavg1());
	fflush(stdout);
	disconnect_all(30);
	engine_free();
	free(RC.lat.v);
	free(RC.since_t0.v);
	return ok ? 0 : 1;
}

/* =========================================================================
 * scenario: connected = memory per connected device
 *   --devices devices cdev-<n> connect, subscribe to fleet/<id>/# (No
 *   Local, QoS 1, as docs/PROTOCOL.md recommends), say hello and stay
 *   connected for --hold seconds, each sending one telemetry heartbeat;
 *   keepalive 60 s. Broker VmRSS before and after.
 * ========================================================================= */

static struct {
	size_t hello_done;
	uint64_t hb_sent, sh_sent, sh_accepted, sh_rejected;
	uint8_t *hb;
	size_t hb_len;
	int hello_mid_base;
} CN;

static void cn_hello(struct client *c)
{
	size_t len;
	uint8_t *h;
	char topic[128];
	h = pack_hello(&len);
	snprintf(topic, sizeof(topic), "%s/%s/hello", O.prefix, c->id);
	lg_publish(c, &c->mark, topic, len, h, 1, NULL);
	free(h);
}

static void cn_up(struct client *c)
{
	char a[160], *t[1] = { a };
	if(O.no_subscribe){
		/* delivery.direct: the broker sends hello/accepted to the session */
		cn_hello(c);
		return;
	}
	snprintf(a, sizeof(a), "%s/%s/#", O.prefix, c->id);
	lg_subscribe(c, NULL, 1, t, 1, MQTT_SUB_OPT_NO_LOCAL);
}

static void cn_sub(struct client *c, int mid, int n, const int *g)
{
	(void)mid;
	if(n < 1 || g[0] > 2) { P.errors++; return; }
	cn_hello(c);
}

static void cn_pub(struct client *c, int mid, int reason)
{
	(void)reason;
	/* vanilla: the hello's PUBACK completes the setup (nobody answers) */
	if(!O.plugin && mid == c->mark && !c->t_mark){
		c->t_mark = now_us();
		CN.hello_done++;
	}
}

static void cn_msg(struct client *c, const struct mosquitto_message *m, const mosquitto_property *p)
{
	(void)p;
	if(O.plugin && !c->t_mark && topic_ends(m->topic, "/hello/accepted")){
		c->t_mark = now_us();
		CN.hello_done++;
	}
	if(topic_ends(m->topic, "/shadow/update/accepted")) CN.sh_accepted++;
	else if(topic_ends(m->topic, "/shadow/update/rejected")) CN.sh_rejected++;
}

/* One telemetry heartbeat; every --shadow-every'th device also reports its
 * shadow once; with --retained also one retained message of the size of a
 * Presence record on fleet/<id>/presence (what the plugin publishes), to
 * attribute that part of the plugin's memory to Mosquitto's retain store. */
static void cn_heartbeat(struct client *c)
{
	static const uint8_t pres[40] = { 8, 1, 16, 0xe8, 0x07, 24, 0xe8, 0x07, 32, 0xe8, 0x07, 42, 5, 'b', 'e', 'n', 'c', 'h',
			50, 17, 'f', 'l', 'e', 'e', 't', 'm', 'q', '-', 'l', 'o', 'a', 'd', 'g', 'e', 'n', '/', '1' };
	char topic[128];

	snprintf(topic, sizeof(topic), "%s/%s/telemetry", O.prefix, c->id);
	if(lg_publish(c, NULL, topic, CN.hb_len, CN.hb, 1, NULL) == MOSQ_ERR_SUCCESS) CN.hb_sent++;
	if(O.shadow_every > 0 && (size_t)(c - E.c) % (size_t)O.shadow_every == 0){
		uint8_t buf[256];
		size_t len = pack_shadow_update((uint64_t)(c - E.c), buf, sizeof(buf));

		snprintf(topic, sizeof(topic), "%s/%s/shadow/update", O.prefix, c->id);
		if(len && lg_publish(c, NULL, topic, len, buf, 1, NULL) == MOSQ_ERR_SUCCESS) CN.sh_sent++;
	}
	if(O.retained){
		snprintf(topic, sizeof(topic), "%s/%s/presence", O.prefix, c->id);
		if(c->fd >= 0) mosquitto_publish_v5(c->m, NULL, topic, 37, pres, 1, true, NULL);
		arm_out(c);
	}
}

static size_t g_cn_target;
static bool cn_shadow_answered(void) { return CN.sh_accepted + CN.sh_rejected >= CN.sh_sent || E.n_lost > 0; }
static bool cn_target_hello(void) { return CN.hello_done + E.n_connect_fail + E.n_refused >= g_cn_target && E.cq_len == 0 && E.connecting == 0; }

static int scenario_connected(void)
{
	size_t i, nd = (size_t)(O.devices > 0 ? O.devices : 10000), half = nd / 2;
	char id[48];
	long base, rss, rss_half = -1;
	uint64_t t0, hold_end, t_setup;
	size_t next_hb = 0;

	engine_init(nd);
	for(i = 0; i < nd; i++){
		snprintf(id, sizeof(id), "cdev-%06zu", i);
		client_init(i, id, id, R_DEV);
	}
	memset(&CN, 0, sizeof(CN));
	memset(&P, 0, sizeof(P));
	CN.hb = pack_telemetry(3, 1, &CN.hb_len);
	E.h = (struct hooks){ .up = cn_up, .sub = cn_sub, .msg = cn_msg, .pub = cn_pub };
	base = proc_rss_kib(O.broker_pid);
	t0 = now_us();
	/* first half, RSS, second half: the slope excludes fixed costs (caches) */
	g_cn_target = half;
	for(i = 0; i < half; i++) queue_connect(&E.c[i]);
	if(!run_until(cn_target_hello, (double)O.timeout_s)) note("connected: only %zu of %zu devices said hello", CN.hello_done, half);
	run_for(1.0);
	rss_half = proc_rss_kib(O.broker_pid);
	g_cn_target = nd;
	for(i = half; i < nd; i++) queue_connect(&E.c[i]);
	if(!run_until(cn_target_hello, (double)O.timeout_s)) note("connected: only %zu of %zu devices said hello", CN.hello_done, nd);
	t_setup = now_us();
	note("%zu devices connected and said hello in %.1f s", CN.hello_done, (double)(t_setup - t0) / 1e6);
	/* hold: spread one heartbeat per device over the hold time (the last
	 * ones right after it) */
	hold_end = now_us() + (uint64_t)(O.hold_s * 1e6);
	while(now_us() < hold_end){
		uint64_t now = now_us();
		size_t due = (size_t)((double)nd * (1.0 - (double)(hold_end - now) / (O.hold_s * 1e6)));
		for(; next_hb < due && next_hb < nd; next_hb++) cn_heartbeat(&E.c[next_hb]);
		engine_step();
	}
	for(; next_hb < nd; next_hb++) cn_heartbeat(&E.c[next_hb]);
	/* the plugin answers every shadow update (vanilla: nobody does); the wait
	 * is bounded well below the process's alarm so the RESULT line is printed */
	if(O.plugin && !run_until(cn_shadow_answered, 60.0))
		note("connected: %" PRIu64 " of %" PRIu64 " shadow updates answered after 60 s", CN.sh_accepted + CN.sh_rejected, CN.sh_sent);
	run_for(1.0);
	rss = proc_rss_kib(O.broker_pid);
	result_head(O.retained ? "memory-connected-retained" : "memory-connected");
	printf(" devices=%zu connected=%zu rss_kib=%ld base_kib=%ld per_device_b=%.1f half_rss_kib=%ld marginal_b=%.1f setup_s=%.2f"
			" heartbeats=%" PRIu64 " shadow_updates=%" PRIu64 " shadow_accepted=%" PRIu64 " shadow_rejected=%" PRIu64 " lost=%" PRIu64 " connect_fail=%" PRIu64 "\n",
			nd, E.n_up, rss, base, rss >= 0 && base >= 0 && E.n_up ? (double)(rss - base) * 1024.0 / (double)E.n_up : -1,
			rss_half, rss >= 0 && rss_half >= 0 ? (double)(rss - rss_half) * 1024.0 / (double)(nd - half) : -1,
			(double)(t_setup - t0) / 1e6, CN.hb_sent, CN.sh_sent, CN.sh_accepted, CN.sh_rejected, E.n_lost, E.n_connect_fail);
	fflush(stdout);
	disconnect_all(60);
	engine_free();
	free(CN.hb);
	return 0;
}

/* =========================================================================
 * report: RESULT lines -> Markdown (medians, ratios, goals)
 * ========================================================================= */

struct sample {
	char scenario[48];
	char broker[16];
	char key[40];
	double v;
	char extra[24];             /* distinguishing field (devices=) */
};

static struct sample *S;
static size_t NS, CAPS;

static void add_sample(const char *sc, const char *br, const char *key, double v, const char *extra)
{
	if(NS == CAPS){
		CAPS = CAPS ? CAPS * 2 : 1024;
		S = realloc(S, CAPS * sizeof(*S));
		if(!S) die("out of memory");
	}
	snprintf(S[NS].scenario, sizeof(S[NS].scenario), "%s", sc);
	snprintf(S[NS].broker, sizeof(S[NS].broker), "%s", br);
	snprintf(S[NS].key, sizeof(S[NS].key), "%s", key);
	snprintf(S[NS].extra, sizeof(S[NS].extra), "%s", extra ? extra : "");
	S[NS].v = v;
	NS++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median of the samples matching; NAN if none. *n = number of runs. */
static double median(const char *sc, const char *br, const char *key, const char *extra, int *n)
{
	double v[256];
	size_t i, k = 0;
	for(i = 0; i < NS && k < 256; i++){
		if(!strcmp(S[i].scenario, sc) && !strcmp(S[i].broker, br) && !strcmp(S[i].key, key)
				&& (!extra || !strcmp(S[i].extra, extra)) && S[i].v >= 0){
			v[k++] = S[i].v;
		}
	}
	if(n) *n = (int)k;
	if(!k) return -1;
	qsort(v, k, sizeof(v[0]), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static double median_all(const char *key)
{
	double v[1024];
	size_t i, k = 0;
	for(i = 0; i < NS && k < 1024; i++) if(!strcmp(S[i].key, key) && S[i].v >= 0) v[k++] = S[i].v;
	if(!k) return -1;
	qsort(v, k, sizeof(v[0]), cmp_double);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

static void fmt(char *buf, size_t n, double v, int prec)
{
	if(v < 0) snprintf(buf, n, "n/a");
	else snprintf(buf, n, "%.*f", prec, v);
}

static const char *met(bool have, bool ok)
{
	return !have ? "n/a" : ok ? "**met**" : "**missed**";
}

/* Throughput row: ratio of medians, and the CPU-cost ratio (vanilla broker
 * CPU per message / plugin broker CPU per message), which does not depend on
 * how much CPU the shared machine left to the broker. */
/* Row 6 for one plugin configuration: total RSS per connected device against
 * vanilla's (a, from nv runs). */
static void row_connected(const char *what, const char *scenario, double a, int nv)
{
	char c1[32], c2[32], c3[32];
	int n;
	double b = median(scenario, "plugin", "per_device_b", NULL, &n);

	fmt(c1, sizeof(c1), a, 0);
	fmt(c2, sizeof(c2), b, 0);
	fmt(c3, sizeof(c3), a > 0 && b >= 0 ? b / a : -1, 2);
	printf("| 6. RSS per connected device %s: total | B | %s | %s | %s | - | <= 2048 | %s | %d/%d |\n",
			what, c1, c2, c3, met(b >= 0, b <= 2048), nv, n);
}

static void row_ratio(const char *title, const char *sc, const char *key, const char *unit, int prec, double goal)
{
	int nv, np;
	double v = median(sc, "vanilla", key, NULL, &nv), p = median(sc, "plugin", key, NULL, &np);
	double vc = median(sc, "vanilla", "broker_us_per_msg", NULL, NULL), pc = median(sc, "plugin", "broker_us_per_msg", NULL, NULL);
	char a[32], b[32], r[32], g[32], cr[32];
	double ratio = v > 0 && p >= 0 ? p / v : -1, cratio = vc > 0 && pc > 0 ? vc / pc : -1;
	const char *verdict;

	fmt(a, sizeof(a), v, prec);
	fmt(b, sizeof(b), p, prec);
	fmt(r, sizeof(r), ratio, 2);
	fmt(cr, sizeof(cr), cratio, 2);
	snprintf(g, sizeof(g), ">= %.2f", goal);
	if(ratio < 0) verdict = "n/a";
	else if(ratio >= goal) verdict = "**met**";
	else if(cratio >= goal) verdict = "**missed** on throughput, met on CPU cost";
	else verdict = "**missed**";
	printf("| %s | %s | %s | %s | %s | %s | %s | %s | %d/%d |\n", title, unit, a, b, r, cr, g, verdict, nv, np);
}

/* op: "<", "<=" or ">="; goal < 0: no goal */
static void row_abs(const char *title, const char *sc, const char *key, const char *extra, const char *unit, int prec,
		double goal, const char *op, const char *vanilla_cell)
{
	int np;
	double p = median(sc, "plugin", key, extra, &np);
	char b[32], g[48];
	bool ok;

	fmt(b, sizeof(b), p, prec);
	if(goal >= 0) snprintf(g, sizeof(g), "%s %.*f", op, prec, goal);
	else snprintf(g, sizeof(g), "-");
	ok = !strcmp(op, "<") ? p < goal : !strcmp(op, "<=") ? p <= goal : p >= goal;
	printf("| %s | %s | %s | %s | - | - | %s | %s | -/%d |\n", title, unit, vanilla_cell ? vanilla_cell : "-", b, g,
			goal >= 0 ? met(p >= 0, ok) : "-", np);
}

static int report(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[4096];
	int nv, np;
	double a, b;
	char c1[32], c2[32], c3[32], devs[16][24];
	int ndevs = 0, i;

	if(!f) die("report: cannot open %s", path);
	while(fgets(line, sizeof(line), f)){
		char sc[48], br[16], *p, *save = NULL, *tok, extra[24] = "";
		int used = 0;
		if(strncmp(line, "RESULT ", 7)) continue;
		if(sscanf(line + 7, "%47s %15s%n", sc, br, &used) != 2) continue;
		p = line + 7 + used;
		/* devices= distinguishes memory checkpoints */
		{
			char *d = strstr(p, " devices=");
			if(d) snprintf(extra, sizeof(extra), "%ld", strtol(d + 9, NULL, 10));
		}
		for(tok = strtok_r(p, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)){
			char *eq = strchr(tok, '=');
			if(!eq) continue;
			*eq = '\0';
			add_sample(sc, br, tok, strtod(eq + 1, NULL), extra);
		}
	}
	fclose(f);

	printf("| Scenario | Unit | Vanilla | Plugin | Plugin / vanilla | CPU-cost ratio | Goal | Result | Runs (v/p) |\n");
	printf("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |\n");
	row_ratio("1. pub/sub QoS 0, plain topic", "pubsub-qos0", "rate", "msgs/s", 0, 0.95);
	row_ratio("1. pub/sub QoS 1, plain topic", "pubsub-qos1", "rate", "msgs/s", 0, 0.95);
	row_ratio("2. telemetry (decoded by the plugin)", "telemetry", "rate", "batches/s", 0, 0.8);
	row_ratio("3. shadow update -> accepted (fsync) vs raw QoS 1 request/response", "shadow", "rate", "req/s", 0, 0.5);
	{
		char title[160];
		double vp = median("shadow-latency", "vanilla", "p99_ms", NULL, NULL);
		double off = median("shadow-latency", "plugin", "offered", NULL, NULL);
		fmt(c1, sizeof(c1), vp, 2);
		snprintf(title, sizeof(title), "3. shadow update -> accepted latency p99 at %.0f updates/s (open loop)", off);
		row_abs(title, "shadow-latency", "p99_ms", NULL, "ms", 2, 20, "<", c1);
		vp = median("shadow-latency", "vanilla", "p50_ms", NULL, NULL);
		fmt(c1, sizeof(c1), vp, 2);
		snprintf(title, sizeof(title), "3. shadow update -> accepted latency p50 at %.0f updates/s (open loop)", off);
		row_abs(title, "shadow-latency", "p50_ms", NULL, "ms", 2, -1, "<", c1);
	}
	{
		char cell[64], title[160];
		fmt(c1, sizeof(c1), median("reconnect", "vanilla", "total_s", NULL, NULL), 2);
		snprintf(cell, sizeof(cell), "%s (hello PUBACK)", c1);
		snprintf(title, sizeof(title), "4. reconnect %.0f devices: all have their JobNotify", median("reconnect", "plugin", "devices", NULL, NULL));
		row_abs(title, "reconnect", "total_s", NULL, "s", 2, 5, "<", cell);
		fmt(c1, sizeof(c1), median("reconnect", "vanilla", "broker_cpu_s", NULL, NULL), 2);
		row_abs("4. reconnect: broker CPU used", "reconnect", "broker_cpu_s", NULL, "s", 2, -1, "<", c1);
	}
	row_abs("5. fan-out: createJob -> ack", "fanout", "create_ack_ms", NULL, "ms", 1, 2000, "<", NULL);
	row_abs("5. fan-out: createJob -> targetsComplete", "fanout", "fanout_s", NULL, "s", 2, -1, "<", NULL);
	{
		double bp = median("fanout", "plugin", "base_p99_ms", NULL, NULL);
		char cell[48];
		fmt(c1, sizeof(c1), bp, 2);
		snprintf(cell, sizeof(cell), "idle: %s", c1);
		row_abs("5. fan-out: p99 QoS 1 round trip during fan-out", "fanout", "probe_p99_ms", NULL, "ms", 2, 50, "<", cell);
		row_abs("5. rollout release after fan-out: p99 QoS 1 round trip", "fanout", "release_p99_ms", NULL, "ms", 2, 50, "<", cell);
	}
	/* memory, offline: one row per checkpoint */
	for(i = 0; i < (int)NS; i++){
		int k;
		bool seen = false;
		if(strcmp(S[i].scenario, "memory-offline") || strcmp(S[i].key, "per_device_b")) continue;
		for(k = 0; k < ndevs; k++) if(!strcmp(devs[k], S[i].extra)) seen = true;
		if(!seen && ndevs < 16) snprintf(devs[ndevs++], sizeof(devs[0]), "%s", S[i].extra);
	}
	for(i = 0; i < ndevs; i++){
		char title[160];
		snprintf(title, sizeof(title), "6. RSS per registered offline device, %.23s devices", devs[i]);
		row_abs(title, "memory-offline", "per_device_b", devs[i], "B", 0, 1024, "<=", NULL);
	}
	/* the same, after a restart (registry loaded from the store) */
	{
		double base = median("memory-offline", "plugin", "base_kib", NULL, NULL);
		double rss = median("memory-restart", "plugin", "rss_kib", NULL, &np);
		double d = median("memory-restart", "plugin", "devices", NULL, NULL);
		double per = base >= 0 && rss >= 0 && d > 0 ? (rss - base) * 1024.0 / d : -1;
		fmt(c1, sizeof(c1), per, 0);
		printf("| 6. RSS per registered offline device after a restart, %.0f devices | B | - | %s | - | - | <= 1024 | %s | -/%d |\n",
				d, c1, met(per >= 0, per <= 1024), np);
	}
	{
		double r = median("memory-connected-retained", "vanilla", "per_device_b", NULL, NULL);
		a = median("memory-connected", "vanilla", "per_device_b", NULL, &nv);
		b = median("memory-connected", "plugin", "per_device_b", NULL, &np);
		{
			char what[96];
			double nd = median("memory-connected", "vanilla", "devices", NULL, NULL);

			if(nd < 0) nd = median("memory-connected", "plugin", "devices", NULL, NULL);
			if(nd < 0) nd = median("memory-connected-direct", "plugin", "devices", NULL, NULL);
			snprintf(what, sizeof(what), "(hello + heartbeat), %.0f devices", nd);
			row_connected(what, "memory-connected", a, nv);
		}
		row_connected("with `presence.retain: false`", "memory-connected-noretain", a, nv);
		fmt(c1, sizeof(c1), median("memory-connected-noretain", "plugin", "marginal_b", NULL, NULL), 0);
		printf("| 6. ... marginal (second half of the devices), `presence.retain: false` | B | - | %s | - | - | - | - | - |\n", c1);
		row_connected("with `presence.retain: false` + `delivery.direct: true` (no device subscription)", "memory-connected-direct", a, nv);
		fmt(c1, sizeof(c1), median("memory-connected-direct", "plugin", "marginal_b", NULL, NULL), 0);
		printf("| 6. ... marginal (second half of the devices), `presence.retain: false` + `delivery.direct: true` | B | - | %s | - | - | - | - | - |\n", c1);
		fmt(c1, sizeof(c1), median("memory-connected", "vanilla", "marginal_b", NULL, NULL), 0);
		fmt(c2, sizeof(c2), median("memory-connected", "plugin", "marginal_b", NULL, NULL), 0);
		printf("| 6. RSS per connected device: marginal (second half of the devices) | B | %s | %s | - | - | - | - | %d/%d |\n",
				c1, c2, nv, np);
		fmt(c3, sizeof(c3), a >= 0 && b >= 0 ? b - a : -1, 0);
		printf("| 6. RSS per connected device: plugin's share (plugin - vanilla) | B | - | %s | - | - | <= 2048 | %s | %d/%d |\n",
				c3, met(a >= 0 && b >= 0, b - a <= 2048), nv, np);
		fmt(c1, sizeof(c1), r >= 0 && a >= 0 ? r - a : -1, 0);
		fmt(c3, sizeof(c3), r >= 0 && b >= 0 ? b - r : -1, 0);
		printf("| 6. ... of which Mosquitto's retained presence record (vanilla + 1 retained msg/device - vanilla) | B | %s | - | - | - | - | - | - |\n", c1);
		printf("| 6. ... of which the plugin itself (plugin - vanilla with retained msgs) | B | - | %s | - | - | - | - | - |\n", c3);
	}
	row_ratio("7. artifact transfer (plugin chunks vs raw publish)", "artifact", "rate_mib_s", "MiB/s", 1, 0.8);

	printf("\nCPU-cost ratio = vanilla broker CPU per message / plugin broker CPU per message (1.0 = same cost). Median 1-minute load"
			" average of the machine during the measurements: %.2f.\n", median_all("load1"));
	printf("\nBroker CPU per message (median, microseconds; broker_cpu = cores used by the broker, lg_cpu = by the load generator):\n\n");
	printf("| Scenario | Vanilla us/msg | Plugin us/msg | Plugin / vanilla | Vanilla broker_cpu | Plugin broker_cpu | Vanilla lg_cpu | Plugin lg_cpu |\n");
	printf("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
	{
		static const char *const scs[] = { "pubsub-qos0", "pubsub-qos1", "telemetry", "shadow", "artifact", NULL };
		int k;
		for(k = 0; scs[k]; k++){
			char d[6][32];
			double vu = median(scs[k], "vanilla", "broker_us_per_msg", NULL, NULL);
			double pu = median(scs[k], "plugin", "broker_us_per_msg", NULL, NULL);
			fmt(d[0], 32, vu, 2);
			fmt(d[1], 32, pu, 2);
			fmt(d[2], 32, vu > 0 && pu >= 0 ? pu / vu : -1, 2);
			fmt(d[3], 32, median(scs[k], "vanilla", "broker_cpu", NULL, NULL), 2);
			fmt(d[4], 32, median(scs[k], "plugin", "broker_cpu", NULL, NULL), 2);
			fmt(d[5], 32, median(scs[k], "vanilla", "lg_cpu", NULL, NULL), 2);
			printf("| %s | %s | %s | %s | %s | %s | %s | ", scs[k], d[0], d[1], d[2], d[3], d[4], d[5]);
			fmt(d[5], 32, median(scs[k], "plugin", "lg_cpu", NULL, NULL), 2);
			printf("%s |\n", d[5]);
		}
	}
	printf("\nDetails (medians):\n\n");
	printf("- reconnect: last CONNACK after %.2f s, half the devices notified after %.2f s, per-device connect->JobNotify p50 %.0f ms / p99 %.0f ms\n",
			median("reconnect", "plugin", "connack_all_s", NULL, NULL), median("reconnect", "plugin", "half_notified_s", NULL, NULL),
			median("reconnect", "plugin", "p50_ms", NULL, NULL), median("reconnect", "plugin", "p99_ms", NULL, NULL));
	printf("- fan-out: targets %.0f, QoS 1 round trip during fan-out p50 %.2f ms / max %.2f ms (idle p50 %.2f ms / max %.2f ms)\n",
			median("fanout", "plugin", "targets", NULL, NULL), median("fanout", "plugin", "probe_p50_ms", NULL, NULL),
			median("fanout", "plugin", "probe_max_ms", NULL, NULL), median("fanout", "plugin", "base_p50_ms", NULL, NULL),
			median("fanout", "plugin", "base_max_ms", NULL, NULL));
	printf("- shadow, open loop: plugin p90 %.2f ms, max %.2f ms (vanilla max %.2f ms); requests skipped because %d were outstanding: plugin %.0f, vanilla %.0f\n",
			median("shadow-latency", "plugin", "p90_ms", NULL, NULL), median("shadow-latency", "plugin", "max_ms", NULL, NULL),
			median("shadow-latency", "vanilla", "max_ms", NULL, NULL), 16,
			median("shadow-latency", "plugin", "skipped", NULL, NULL), median("shadow-latency", "vanilla", "skipped", NULL, NULL));
	printf("- shadow, closed loop (saturation, latency = outstanding / rate): p50/p99 vanilla %.1f/%.1f ms, plugin %.1f/%.1f ms\n",
			median("shadow", "vanilla", "p50_ms", NULL, NULL), median("shadow", "vanilla", "p99_ms", NULL, NULL),
			median("shadow", "plugin", "p50_ms", NULL, NULL), median("shadow", "plugin", "p99_ms", NULL, NULL));
	printf("- pub/sub latency p50/p99 (ms): QoS 0 vanilla %.2f/%.2f plugin %.2f/%.2f; QoS 1 vanilla %.2f/%.2f plugin %.2f/%.2f\n",
			median("pubsub-qos0", "vanilla", "p50_ms", NULL, NULL), median("pubsub-qos0", "vanilla", "p99_ms", NULL, NULL),
			median("pubsub-qos0", "plugin", "p50_ms", NULL, NULL), median("pubsub-qos0", "plugin", "p99_ms", NULL, NULL),
			median("pubsub-qos1", "vanilla", "p50_ms", NULL, NULL), median("pubsub-qos1", "vanilla", "p99_ms", NULL, NULL),
			median("pubsub-qos1", "plugin", "p50_ms", NULL, NULL), median("pubsub-qos1", "plugin", "p99_ms", NULL, NULL));
	printf("- memory, connected: setup (connect+subscribe+hello) of all devices took %.1f s vanilla / %.1f s plugin\n",
			median("memory-connected", "vanilla", "setup_s", NULL, NULL), median("memory-connected", "plugin", "setup_s", NULL, NULL));
	printf("- registration via $CONTROL setDeviceAttributes: %.0f devices/s\n",
			median("memory-offline", "plugin", "reg_per_s", NULL, NULL));
	free(S);
	return 0;
}

/* =========================================================================
 * main
 * ========================================================================= */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fleetmq-loadgen SCENARIO [options]\n"
		"       fleetmq-loadgen report RESULTS-FILE\n"
		"       fleetmq-loadgen freeport\n"
		"scenarios: pubsub telemetry shadow artifact reconnect register fanout connected\n"
		"common options:\n"
		"  --host H (127.0.0.1)  --port P (1883)  --broker-pid PID (for CPU and RSS)\n"
		"  --label plugin|vanilla   the broker under test; 'plugin' enables fleetmq behaviour\n"
		"  --warmup S (1)  --duration S (5)  --timeout S (600, hard limit of the process)\n"
		"  --connect-window N (64)  connections waiting for CONNACK at most\n"
		"  --keepalive S (60)  --no-spread (do not bind clients to 127.x.y.z)  --tag T (suffix of the scenario name)\n"
		"pubsub:    --clients N pairs (8) --window W (32) --qos 0|1 --size B (64)\n"
		"telemetry: --clients N devices (20) --window W (16) --metrics M (10)\n"
		"shadow:    --clients N devices (100) --window W (4; 16 with --rate) --rate R (0 = closed loop;\n"
		"           R > 0: open loop, R updates/s round-robin over the devices, reported as shadow-latency)\n"
		"artifact:  --artifact-file F --artifact-name NAME (bench-fw.bin) --chunk B (65536) --window W (4)\n"
		"reconnect: --devices N (10000)\n"
		"register:  --devices N --checkpoints a,b,.. --batch B (100) --ctl-window R (4) --id-start K (0)\n"
		"fanout:    --devices N --probe-hz F (100, in total) --probe-clients K (50) --baseline S (2)\n"
		"           --after S (5: keep probing the release phase after fan-out) | --wait-release (until all released)\n"
		"connected: --devices N (10000) --hold S (5) --retained (vanilla: also one retained presence-sized message each)\n"
		"           --no-subscribe (devices rely on the plugin's delivery.direct)\n"
		"           --shadow-every K (10: every K-th device reports its shadow once during the hold; 0 = none)\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", 1, 0, 'h' }, { "port", 1, 0, 'p' }, { "broker-pid", 1, 0, 'P' }, { "label", 1, 0, 'l' },
		{ "warmup", 1, 0, 'w' }, { "duration", 1, 0, 'd' }, { "clients", 1, 0, 'c' }, { "window", 1, 0, 'W' },
		{ "qos", 1, 0, 'q' }, { "size", 1, 0, 's' }, { "metrics", 1, 0, 'm' }, { "devices", 1, 0, 'n' },
		{ "connect-window", 1, 0, 'C' }, { "keepalive", 1, 0, 'k' }, { "timeout", 1, 0, 't' },
		{ "no-spread", 0, 0, 'S' }, { "checkpoints", 1, 0, 'K' }, { "batch", 1, 0, 'b' }, { "ctl-window", 1, 0, 'R' },
		{ "id-start", 1, 0, 'i' }, { "artifact-file", 1, 0, 'f' }, { "artifact-name", 1, 0, 'N' }, { "chunk", 1, 0, 'z' },
		{ "hold", 1, 0, 'H' }, { "probe-hz", 1, 0, 'Z' }, { "baseline", 1, 0, 'B' }, { "tag", 1, 0, 'T' },
		{ "prefix", 1, 0, 'x' }, { "wait-release", 0, 0, 'r' }, { "rate", 1, 0, 'a' }, { "probe-clients", 1, 0, 'y' }, { "after", 1, 0, 'A' }, { "retained", 0, 0, 'e' }, { "no-subscribe", 0, 0, 'u' }, { "shadow-every", 1, 0, 'v' }, { "help", 0, 0, '?' }, { 0, 0, 0, 0 }
	};
	const char *sc;
	int opt, rc;

	if(argc < 2){
		usage(stderr);
		return 2;
	}
	sc = argv[1];
	if(!strcmp(sc, "report")){
		if(argc != 3){
			usage(stderr);
			return 2;
		}
		return report(argv[2]);
	}
	if(!strcmp(sc, "freeport")){
		/* a free TCP port on 127.0.0.1, for bench/run.sh */
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if(fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || getsockname(fd, (struct sockaddr *)&sa, &sl) != 0){
			perror("freeport");
			return 1;
		}
		printf("%d\n", ntohs(sa.sin_port));
		close(fd);
		return 0;
	}
	if(!strcmp(sc, "-h") || !strcmp(sc, "--help")){
		usage(stdout);
		return 0;
	}
	optind = 2;
	while((opt = getopt_long(argc, argv, "", lo, NULL)) != -1){
		switch(opt){
			case 'h': O.host = optarg; break;
			case 'p': O.port = atoi(optarg); break;
			case 'P': O.broker_pid = atol(optarg); break;
			case 'l': O.label = optarg; O.plugin = !strcmp(optarg, "plugin"); break;
			case 'w': O.warmup_s = atof(optarg); break;
			case 'd': O.duration_s = atof(optarg); break;
			case 'c': O.clients = atoi(optarg); break;
			case 'W': O.window = atoi(optarg); break;
			case 'q': O.qos = atoi(optarg); break;
			case 's': O.size = atoi(optarg); break;
			case 'm': O.metrics = atoi(optarg); break;
			case 'n': O.devices = atoi(optarg); break;
			case 'C': O.connect_window = atoi(optarg); break;
			case 'k': O.keepalive = atoi(optarg); break;
			case 't': O.timeout_s = atoi(optarg); break;
			case 'S': O.spread = false; break;
			case 'K': O.checkpoints = optarg; break;
			case 'b': O.batch = atoi(optarg); break;
			case 'R': O.ctl_window = atoi(optarg); break;
			case 'i': O.id_start = atoi(optarg); break;
			case 'f': O.artifact_file = optarg; break;
			case 'N': O.artifact_name = optarg; break;
			case 'z': O.chunk = atoi(optarg); break;
			case 'H': O.hold_s = atof(optarg); break;
			case 'Z': O.probe_hz = atof(optarg); break;
			case 'B': O.baseline_s = atof(optarg); break;
			case 'T': O.tag = optarg; break;
			case 'x': O.prefix = optarg; break;
			case 'r': O.wait_release = true; break;
			case 'a': O.rate = atof(optarg); break;
			case 'y': O.probe_clients = atoi(optarg); break;
			case 'A': O.after_s = atof(optarg); break;
			case 'e': O.retained = true; break;
			case 'u': O.no_subscribe = true; break;
			case 'v':
				O.shadow_every = atoi(optarg);
				if(O.shadow_every < 0){
					fprintf(stderr, "--shadow-every wants K >= 0 (0 = no shadow updates), not '%s'\n", optarg);
					return 2;
				}
				break;
			default: usage(stderr); return 2;
		}
	}
	if(O.qos < 0 || O.qos > 1) die("--qos must be 0 or 1");
	if(O.connect_window < 1) O.connect_window = 1;
	if(O.chunk < 1) die("--chunk must be positive");
	if(O.timeout_s > 0) alarm((unsigned)O.timeout_s);   /* hard bound on the whole run */
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	E.ep = -1;

	if(!strcmp(sc, "pubsub")) rc = scenario_pubsub();
	else if(!strcmp(sc, "telemetry")) rc = scenario_telemetry();
	else if(!strcmp(sc, "shadow")) rc = scenario_shadow();
	else if(!strcmp(sc, "artifact")) rc = scenario_artifact();
	else if(!strcmp(sc, "reconnect")) rc = scenario_reconnect();
	else if(!strcmp(sc, "register")) rc = scenario_register();
	else if(!strcmp(sc, "fanout")) rc = scenario_fanout();
	else if(!strcmp(sc, "connected")) rc = scenario_connected();
	else{
		usage(stderr);
		rc = 2;
	}
	mosquitto_lib_cleanup();
	return rc;
}
