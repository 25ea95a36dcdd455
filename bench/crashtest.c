/*
 * crashtest.c - fault injection: kill -9 a fleetmq broker N times under a
 * mixed durable load and prove that nothing acknowledged is lost and no job
 * execution is delivered or started twice.
 *
 * One broker (stock mosquitto + fleetmq_plugin.so, harness.c) on a free
 * loopback port. Load, all QoS 1 and all from one epoll thread driving many
 * libmosquitto clients:
 *   - shadow devices: each keeps --window reported updates in flight, every
 *     update setting a new key k<n> = n. A device id takes --keys-per-device
 *     keys, then the client reconnects as the next id of its slot (ct-s<slot>
 *     -g<gen>), so documents stay small and the broker's cost per update
 *     stays flat however long the test runs;
 *   - an operator creating jobs (createJob, --ops-batch per $CONTROL request,
 *     --ops-window requests in flight) for --targets-per-job job devices,
 *     paced so each job device has about --queue-depth executions waiting;
 *   - job devices: JobNotify -> jobs/next/get -> IN_PROGRESS -> SUCCEEDED,
 *     each report with expected_version; a report unanswered when the broker
 *     died is sent again after the restart (the duplicate path).
 * Every round runs the load for a random time (seedable RNG), then the
 * broker gets SIGKILL and is restarted on the same port and database; the
 * clients reconnect and carry on. After the last restart the load stops,
 * job devices finish their queues and everything is verified.
 *
 * The LEDGER is this program's own record of every acknowledgement it
 * received: update accepted (device, key, version), createJob response (job
 * id), execution update accepted (job, device, status, version), plus what
 * each device was handed (JobNotify, next/get) and which executions it
 * started. A message is only ever sent by the plugin after its commit, so
 * anything received, even in the last milliseconds before the kill, is an
 * acknowledgement the broker must honour.
 *
 * Verified live: no device is handed, as queued or in progress, an execution
 * whose SUCCEEDED it has seen acknowledged; no device is offered as QUEUED an
 * execution whose start it has seen acknowledged; no IN_PROGRESS/SUCCEEDED
 * is acknowledged as a fresh (non-duplicate) write twice for one execution
 * and attempt. Verified after the last restart, through $CONTROL (getShadow,
 * describeJob, listJobExecutions, describeJobExecution, getAuditLog): every
 * acknowledged key with its value, shadow versions, every acknowledged job
 * and its targets, every acknowledged execution status (or a later legal
 * one, never an earlier one), and at most one IN_PROGRESS and one SUCCEEDED
 * audit entry per execution.
 *
 * Then the same kind of load against stock mosquitto (no plugin,
 * persistence true, autosave_interval 1800): QoS 1 messages queued for an
 * offline persistent-session subscriber are counted when PUBACKed, the
 * broker is killed, restarted, and the subscriber counts what survived.
 *
 * Exit status: 0 only if nothing acknowledged was lost, nothing was
 * duplicated, nothing unexpected was rejected and every kind of write was
 * acknowledged at least once. 127.0.0.1 only; every wait is bounded.
 */
#include "harness.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 8
#define MAX_OPS_BATCH 50
#define VERIFY_BATCH 100
#define REQ_SLOTS 1024
#define CT_PREFIX "fleet"

/* Execution statuses (fleetmq.v1.ExecutionStatus). */
#define XS_QUEUED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_QUEUED
#define XS_IN_PROGRESS FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS
#define XS_SUCCEEDED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED

/* =========================================================================
 * options, time, randomness, logging
 * ========================================================================= */

static struct {
	int kills;
	uint64_t seed;
	double secs;                /* mean load time per round */
	int shadow_devices;
	int job_devices;
	int window;                 /* shadow updates in flight per device */
	int keys_per_device;
	int ops_window;             /* $CONTROL requests in flight */
	int ops_batch;              /* createJob commands per request */
	int targets;                /* devices per job */
	int queue_depth;            /* waiting executions per job device */
	double settle_s;
	int stock_kills;
	double stock_secs;
	int verbose;
	int sabotage;               /* checker self-test: 1 = roll the database back after kill #2 */
} O = {
	.kills = 20, .seed = 0, .secs = 3.0, .shadow_devices = 160, .job_devices = 24, .window = 8,
	.keys_per_device = 32, .ops_window = 4, .ops_batch = 8, .targets = 3, .queue_depth = 3,
	.settle_s = 30.0, .stock_kills = 3, .stock_secs = 0, .verbose = 0,
};

static uint64_t now_ms(void)
{
	return fm_mono_ms();
}

static uint64_t g_rng;

static uint64_t rng_next(void)
{
	/* splitmix64 */
	uint64_t z = (g_rng += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static double rng_unit(void)
{
	return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(stderr, "[%02d:%02d:%02d.%03ld] ", (int)(ts.tv_sec / 3600 % 24), (int)(ts.tv_sec / 60 % 60),
			(int)(ts.tv_sec % 60), ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Problems found: each category is counted, the first few are printed. */
static void problem(unsigned long *counter, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(unsigned long *counter, const char *fmt, ...)
{
	static unsigned long printed;
	va_list ap;
	(*counter)++;
	if(printed++ >= 40) return;
	fprintf(stderr, "PROBLEM: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if(!p){
		fprintf(stderr, "crashtest: out of memory\n");
		exit(2);
	}
	return p;
}

static void *xrealloc(void *p, size_t sz)
{
	p = realloc(p, sz);
	if(!p){
		fprintf(stderr, "crashtest: out of memory\n");
		exit(2);
	}
	return p;
}

static double proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if(!f) return 0;
	if(!fgets(buf, sizeof(buf), f)){
		fclose(f);
		return 0;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if(!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* =========================================================================
 * totals
 * ========================================================================= */

static struct {
	/* acknowledgements (the ledger's entries) */
	unsigned long shadow_acked, shadow_rejected, creates_acked, creates_existing, exec_acked, exec_dup_answers;
	unsigned long load_acks;            /* acks received while a load window was open */
	double load_s;                      /* sum of load windows */
	double broker_cpu_s, self_cpu_s;    /* during load windows */
	/* problems */
	unsigned long lost, dup, unexpected;
	/* verification */
	unsigned long v_keys, v_jobs, v_execs, v_audit_execs, v_shadow_ids;
	unsigned long incomplete;
	unsigned long reconnects, rotations, kills;
	unsigned long notify_checked, next_checked, resent_reports;
	double round_rate_min, round_rate_max;
} T;

/* =========================================================================
 * engine: many libmosquitto clients on one epoll loop
 * ========================================================================= */

enum conn_kind { K_SHADOW, K_JOBDEV, K_OPS, K_STOCK_PUB, K_STOCK_SUB };

struct conn {
	struct mosquitto *mosq;
	enum conn_kind kind;
	void *owner;
	char id[64];
	int fd;
	bool epollout;
	bool connacked;
	bool gone;           /* connection lost or closed; reaped at the end of the step */
	bool close_asked;    /* owner wants a clean disconnect */
	uint64_t last_misc;
};

static struct {
	int ep;
	struct conn **v;
	size_t n, cap;
	int port;
} E;

static void on_conn_reaped(struct conn *c);
static void on_connack(struct conn *c, int rc);
static void on_suback(struct conn *c, int mid, int granted);
static void on_message(struct conn *c, const struct mosquitto_message *m, const mosquitto_property *props);
static void on_puback(struct conn *c, int mid, int rc);

static void cb_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *props)
{
	struct conn *c = ud;
	(void)m; (void)flags; (void)props;
	if(rc == 0) c->connacked = true;
	else c->gone = true;
	on_connack(c, rc);
}

static void cb_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
	struct conn *c = ud;
	(void)m; (void)rc; (void)props;
	c->gone = true;
}

static void cb_publish(struct mosquitto *m, void *ud, int mid, int rc, const mosquitto_property *props)
{
	(void)m; (void)props;
	on_puback(ud, mid, rc);
}

static void cb_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted, const mosquitto_property *props)
{
	(void)m; (void)props;
	on_suback(ud, mid, n > 0 ? granted[0] : 0x80);
}

static void cb_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg, const mosquitto_property *props)
{
	(void)m;
	on_message(ud, msg, props);
}

static void engine_init(void)
{
	E.ep = epoll_create1(EPOLL_CLOEXEC);
	if(E.ep < 0){
		perror("epoll_create1");
		exit(2);
	}
}

/* Open a connection (blocking TCP connect + CONNECT; the CONNACK arrives
 * through the loop). NULL if the broker cannot be reached. */
static struct conn *conn_open(enum conn_kind kind, void *owner, const char *id, const char *username,
		bool clean_start, uint32_t session_expiry)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	mosquitto_property *props = NULL;
	struct epoll_event ev;
	int rc;

	c->kind = kind;
	c->owner = owner;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->mosq = mosquitto_new(id, clean_start, c);
	if(!c->mosq){
		free(c);
		return NULL;
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_int_option(c->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	if(username) mosquitto_username_pw_set(c->mosq, username, NULL);
	mosquitto_connect_v5_callback_set(c->mosq, cb_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, cb_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, cb_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, cb_subscribe);
	mosquitto_message_v5_callback_set(c->mosq, cb_message);
	if(session_expiry) mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, session_expiry);
	rc = mosquitto_connect_bind_v5(c->mosq, "127.0.0.1", E.port, 60, NULL, props);
	mosquitto_property_free_all(&props);
	if(rc != MOSQ_ERR_SUCCESS){
		if(O.verbose) note("connect %s: %s", id, mosquitto_strerror(rc));
		mosquitto_destroy(c->mosq);
		free(c);
		return NULL;
	}
	c->fd = mosquitto_socket(c->mosq);
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = c;
	if(epoll_ctl(E.ep, EPOLL_CTL_ADD, c->fd, &ev) != 0){
		perror("epoll_ctl");
		mosquitto_destroy(c->mosq);
		free(c);
		return NULL;
	}
	c->last_misc = now_ms();
	if(E.n == E.cap){
		E.cap = E.cap ? E.cap * 2 : 64;
		E.v = xrealloc(E.v, E.cap * sizeof(*E.v));
	}
	E.v[E.n++] = c;
	T.reconnects++;
	return c;
}

static void conn_mark_lost(struct conn *c)
{
	if(c->gone) return;
	c->gone = true;
}

/* Reap gone / closing connections (never inside a libmosquitto callback). */
static void engine_reap(void)
{
	size_t i = 0;
	while(i < E.n){
		struct conn *c = E.v[i];
		if(c->close_asked && !c->gone){
			mosquitto_disconnect_v5(c->mosq, 0, NULL);
			mosquitto_loop_write(c->mosq, 1);
			c->gone = true;
		}
		if(!c->gone){
			i++;
			continue;
		}
		if(c->fd >= 0) epoll_ctl(E.ep, EPOLL_CTL_DEL, c->fd, NULL);
		on_conn_reaped(c);
		mosquitto_destroy(c->mosq);
		free(c);
		E.v[i] = E.v[--E.n];
	}
}

static void engine_step(int timeout_ms)
{
	struct epoll_event evs[256];
	uint64_t t;
	int n, i;
	size_t k;

	n = epoll_wait(E.ep, evs, 256, timeout_ms);
	for(i = 0; i < n; i++){
		struct conn *c = evs[i].data.ptr;
		int rc;
		if(c->gone) continue;
		if(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)){
			rc = mosquitto_loop_read(c->mosq, 64);
			if(rc != MOSQ_ERR_SUCCESS) conn_mark_lost(c);
		}
		if(!c->gone && (evs[i].events & EPOLLOUT)){
			rc = mosquitto_loop_write(c->mosq, 64);
			if(rc != MOSQ_ERR_SUCCESS) conn_mark_lost(c);
		}
	}
	t = now_ms();
	for(k = 0; k < E.n; k++){
		struct conn *c = E.v[k];
		bool want;
		if(c->gone) continue;
		if(mosquitto_want_write(c->mosq)){
			if(mosquitto_loop_write(c->mosq, 64) != MOSQ_ERR_SUCCESS){
				conn_mark_lost(c);
				continue;
			}
		}
		if(t - c->last_misc >= 1000){
			c->last_misc = t;
			if(mosquitto_loop_misc(c->mosq) != MOSQ_ERR_SUCCESS){
				conn_mark_lost(c);
				continue;
			}
		}
		want = mosquitto_want_write(c->mosq);
		if(want != c->epollout){
			struct epoll_event ev;
			memset(&ev, 0, sizeof(ev));
			ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
			ev.data.ptr = c;
			epoll_ctl(E.ep, EPOLL_CTL_MOD, c->fd, &ev);
			c->epollout = want;
		}
	}
	engine_reap();
}

static int publish(struct conn *c, const char *topic, const void *payload, size_t len, int *mid,
		const mosquitto_property *props)
{
	int rc = mosquitto_publish_v5(c->mosq, mid, topic, (int)len, payload, 1, false, props);
	if(rc != MOSQ_ERR_SUCCESS && O.verbose) note("%s: publish %s: %s", c->id, topic, mosquitto_strerror(rc));
	return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* =========================================================================
 * phases
 * ========================================================================= */

enum phase { PH_IDLE, PH_CONNECT, PH_LOAD, PH_SETTLE, PH_DRAIN };
static enum phase g_phase;
static bool g_broker_up;
static bool load_on(void) { return g_phase == PH_LOAD; }

static void count_ack(void)
{
	if(g_phase == PH_LOAD) T.load_acks++;
}

/* =========================================================================
 * ledger: shadows
 * ========================================================================= */

struct sid {                 /* one shadow device id */
	char id[48];
	uint32_t sent;           /* keys k0 .. k(sent-1) were sent */
	uint32_t nacked;
	uint8_t *acked;          /* [keys_per_device]: 1 = update/accepted received */
	uint64_t max_version;
};

struct sslot {
	int idx, gen;
	struct sid *cur;
	struct conn *c;
	bool ready;              /* hello/accepted on this connection */
	uint32_t inflight;
	bool sub_pending;
	uint64_t retry_at;
};

static struct sid **g_sids;
static size_t g_nsids, g_capsids;
static struct sslot *g_slots;

static struct sid *sid_new(int slot, int gen)
{
	struct sid *s = xcalloc(1, sizeof(*s));
	snprintf(s->id, sizeof(s->id), "ct-s%d-g%d", slot, gen);
	s->acked = xcalloc((size_t)O.keys_per_device, 1);
	if(g_nsids == g_capsids){
		g_capsids = g_capsids ? g_capsids * 2 : 256;
		g_sids = xrealloc(g_sids, g_capsids * sizeof(*g_sids));
	}
	g_sids[g_nsids++] = s;
	return s;
}

/* =========================================================================
 * ledger: jobs and executions
 * ========================================================================= */

struct xrec {                /* one execution: a job on one of its targets */
	uint8_t acked;           /* highest status acknowledged: 0, IN_PROGRESS, SUCCEEDED */
	uint64_t ver;            /* execution version in that acknowledgement */
	uint32_t attempt;
	uint16_t starts;         /* IN_PROGRESS applications seen (fresh, or a first duplicate answer) */
	uint16_t succ;
};

enum job_state { JS_PLANNED, JS_SENT, JS_ACKED, JS_FAILED };

struct job {
	int n;
	int nt;
	int t[MAX_TARGETS];      /* job device indexes */
	uint8_t state;
	bool outstanding_counted;
	uint8_t done_targets;
	struct xrec x[MAX_TARGETS];
};

static struct job *g_jobs;
static size_t g_njobs, g_capjobs;
static long g_outstanding;   /* executions of sent/acked jobs not yet seen SUCCEEDED */

static void job_id(char *buf, size_t n, int job)
{
	snprintf(buf, n, "cj-%d", job);
}

static struct job *job_by_id(const char *id)
{
	char *end;
	long n;
	if(strncmp(id, "cj-", 3) != 0) return NULL;
	n = strtol(id + 3, &end, 10);
	if(*end || n < 0 || (size_t)n >= g_njobs) return NULL;
	return &g_jobs[n];
}

static int job_target_pos(const struct job *j, int dev)
{
	for(int i = 0; i < j->nt; i++) if(j->t[i] == dev) return i;
	return -1;
}

/* The createJob command of job j; identical every time (idempotent retry). */
static int job_command(char *buf, size_t n, const struct job *j)
{
	char id[32];
	int len;
	job_id(id, sizeof(id), j->n);
	len = snprintf(buf, n, "{\"command\":\"createJob\",\"jobId\":\"%s\",\"type\":\"config\","
			"\"document\":{\"set\":{\"crashtest.n\":%d}},\"targets\":{\"devices\":[", id, j->n);
	for(int i = 0; i < j->nt; i++){
		len += snprintf(buf + len, n - (size_t)len, "%s\"ct-j%d\"", i ? "," : "", j->t[i]);
	}
	len += snprintf(buf + len, n - (size_t)len, "]}}");
	return len;
}

static void exec_succeeded_first(struct job *j)
{
	j->done_targets++;
	g_outstanding--;
}

/* =========================================================================
 * job devices
 * ========================================================================= */

enum jd_state { J_IDLE, J_NEXT, J_REPORT };

struct jdev {
	int idx;
	char id[24];
	struct conn *c;
	bool ready;
	enum jd_state st;
	int job;                 /* current execution's job, -1 */
	uint64_t version;
	int pend_status;         /* report awaiting its answer (kept across a restart) */
	uint64_t pend_ev;
	bool pend;
	char token[24];
	unsigned ntok;
	uint64_t st_ms;
	uint64_t retry_at;
};

static struct jdev *g_jdevs;

static void jd_send_next(struct jdev *d)
{
	char topic[96], tok[24];
	size_t len;
	uint8_t *buf;

	snprintf(tok, sizeof(tok), "n%u", ++d->ntok);
	snprintf(d->token, sizeof(d->token), "%s", tok);
	buf = fm_pb_job_next_get(tok, &len);
	snprintf(topic, sizeof(topic), CT_PREFIX "/%s/jobs/next/get", d->id);
	if(publish(d->c, topic, buf, len, NULL, NULL) == MOSQ_ERR_SUCCESS){
		d->st = J_NEXT;
		d->st_ms = now_ms();
	}
	free(buf);
}

static void jd_send_report(struct jdev *d, int status, uint64_t ev)
{
	char topic[128], id[32];
	size_t len;
	uint8_t *buf;

	snprintf(d->token, sizeof(d->token), "r%u", ++d->ntok);
	buf = fm_pb_job_update(status, ev, -1, d->token, &len);
	job_id(id, sizeof(id), d->job);
	snprintf(topic, sizeof(topic), CT_PREFIX "/%s/jobs/%s/update", d->id, id);
	d->pend = true;
	d->pend_status = status;
	d->pend_ev = ev;
	if(publish(d->c, topic, buf, len, NULL, NULL) == MOSQ_ERR_SUCCESS){
		d->st = J_REPORT;
		d->st_ms = now_ms();
	}
	free(buf);
}

/* An execution summary (JobNotify) or execution (next/get) handed to d:
 * check it against what the ledger knows. */
static void jd_check_offer(struct jdev *d, const char *job, int status, uint64_t version, uint32_t attempt,
		const char *how)
{
	struct job *j = job_by_id(job);
	int pos = j ? job_target_pos(j, d->idx) : -1;
	struct xrec *x;

	if(pos < 0){
		problem(&T.unexpected, "%s: %s offers job %s, which does not target it", d->id, how, job);
		return;
	}
	x = &j->x[pos];
	if(x->acked == XS_SUCCEEDED){
		problem(&T.dup, "%s: %s offers %s (%s, version %" PRIu64 ") after its SUCCEEDED (version %" PRIu64
				") was acknowledged", d->id, how, job, fm_exec_status_name(status), version, x->ver);
	}else if(x->acked == XS_IN_PROGRESS && status == XS_QUEUED && attempt == x->attempt){
		problem(&T.dup, "%s: %s offers %s as QUEUED (version %" PRIu64 ", attempt %u) after its start was "
				"acknowledged (version %" PRIu64 "): the device would start it twice", d->id, how, job, version,
				attempt, x->ver);
		T.lost++;
	}else if(x->acked && version < x->ver){
		problem(&T.lost, "%s: %s offers %s at version %" PRIu64 ", below the acknowledged %" PRIu64, d->id, how,
				job, version, x->ver);
	}
}

static void jd_on_notify(struct jdev *d, const struct mosquitto_message *m)
{
	Fleetmq__V1__JobNotify *n = fleetmq__v1__job_notify__unpack(NULL, (size_t)m->payloadlen, m->payload);
	size_t i;
	if(!n){
		problem(&T.unexpected, "%s: undecodable JobNotify", d->id);
		return;
	}
	T.notify_checked++;
	for(i = 0; i < n->n_in_progress; i++){
		jd_check_offer(d, n->in_progress[i]->job_id, n->in_progress[i]->status, n->in_progress[i]->version,
				n->in_progress[i]->attempt, "JobNotify.in_progress");
	}
	for(i = 0; i < n->n_queued; i++){
		jd_check_offer(d, n->queued[i]->job_id, n->queued[i]->status, n->queued[i]->version,
				n->queued[i]->attempt, "JobNotify.queued");
	}
	fleetmq__v1__job_notify__free_unpacked(n, NULL);
	if(d->ready && d->st == J_IDLE) jd_send_next(d);
}

static void jd_on_next(struct jdev *d, const struct mosquitto_message *m)
{
	Fleetmq__V1__JobNextGetAccepted *a = fleetmq__v1__job_next_get_accepted__unpack(NULL, (size_t)m->payloadlen,
			m->payload);
	Fleetmq__V1__JobExecution *x;
	struct job *j;

	if(!a){
		problem(&T.unexpected, "%s: undecodable next/get/accepted", d->id);
		return;
	}
	if(d->st != J_NEXT || strcmp(a->client_token, d->token) != 0){
		fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
		return;
	}
	T.next_checked++;
	if(!a->has_execution || !a->execution){
		d->st = J_IDLE;
		d->st_ms = now_ms();
		fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
		return;
	}
	x = a->execution;
	jd_check_offer(d, x->job_id, x->status, x->version, x->attempt, "next/get");
	j = job_by_id(x->job_id);
	if(!j || job_target_pos(j, d->idx) < 0){
		d->st = J_IDLE;
		d->st_ms = now_ms();
	}else{
		d->job = j->n;
		d->version = x->version;
		if(x->status == XS_QUEUED){
			jd_send_report(d, XS_IN_PROGRESS, x->version);
		}else if(x->status == XS_IN_PROGRESS){
			jd_send_report(d, XS_SUCCEEDED, x->version);
		}else{
			problem(&T.unexpected, "%s: next/get hands %s in status %s", d->id, x->job_id,
					fm_exec_status_name(x->status));
			d->st = J_IDLE;
		}
	}
	fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
}

static void jd_on_update_reply(struct jdev *d, const struct mosquitto_message *m, bool accepted)
{
	struct job *j;
	struct xrec *x;
	int pos;

	if(d->st != J_REPORT) return;
	if(accepted){
		Fleetmq__V1__JobExecutionUpdateAccepted *a = fleetmq__v1__job_execution_update_accepted__unpack(NULL,
				(size_t)m->payloadlen, m->payload);
		if(!a){
			problem(&T.unexpected, "%s: undecodable update/accepted", d->id);
			return;
		}
		if(strcmp(a->client_token, d->token) != 0){
			fleetmq__v1__job_execution_update_accepted__free_unpacked(a, NULL);
			return;
		}
		j = job_by_id(a->job_id);
		pos = j ? job_target_pos(j, d->idx) : -1;
		if(pos < 0 || j->n != d->job){
			problem(&T.unexpected, "%s: update/accepted for unexpected job %s", d->id, a->job_id);
			fleetmq__v1__job_execution_update_accepted__free_unpacked(a, NULL);
			d->pend = false;
			d->st = J_IDLE;
			return;
		}
		x = &j->x[pos];
		if((int)a->status != d->pend_status){
			problem(&T.unexpected, "%s: %s reported %s, accepted as %s", d->id, a->job_id,
					fm_exec_status_name(d->pend_status), fm_exec_status_name(a->status));
		}
		if(a->duplicate) T.exec_dup_answers++;
		else{
			T.exec_acked++;
			count_ack();
		}
		if(a->status == XS_IN_PROGRESS){
			if(!a->duplicate && x->starts > 0){
				problem(&T.dup, "%s: %s started twice: a second fresh IN_PROGRESS accepted (version %" PRIu64
						", first start acknowledged at %" PRIu64 ")", d->id, a->job_id, a->version, x->ver);
			}
			if(!a->duplicate || x->starts == 0) x->starts++;
			if(x->acked < XS_IN_PROGRESS){
				x->acked = XS_IN_PROGRESS;
				x->ver = a->version;
				x->attempt = 1;
			}
		}else if(a->status == XS_SUCCEEDED){
			if(!a->duplicate && x->succ > 0){
				problem(&T.dup, "%s: %s: a second fresh SUCCEEDED accepted (version %" PRIu64 ")", d->id,
						a->job_id, a->version);
			}
			if(!a->duplicate || x->succ == 0) x->succ++;
			if(x->acked < XS_SUCCEEDED){
				x->acked = XS_SUCCEEDED;
				x->ver = a->version;
				x->attempt = 1;
				exec_succeeded_first(j);
			}
		}
		d->pend = false;
		d->version = a->version;
		if(a->status == XS_IN_PROGRESS){
			jd_send_report(d, XS_SUCCEEDED, a->version);
		}else{
			d->st = J_IDLE;
			d->job = -1;
			jd_send_next(d);
		}
		fleetmq__v1__job_execution_update_accepted__free_unpacked(a, NULL);
	}else{
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, (size_t)m->payloadlen, m->payload);
		if(!r) return;
		if(strcmp(r->client_token, d->token) != 0){
			fleetmq__v1__rejection__free_unpacked(r, NULL);
			return;
		}
		problem(&T.unexpected, "%s: %s (expected version %" PRIu64 ") rejected: %s %s", d->id,
				fm_exec_status_name(d->pend_status), d->pend_ev, fm_error_code_name(r->code), r->reason);
		fleetmq__v1__rejection__free_unpacked(r, NULL);
		d->pend = false;
		d->st = J_IDLE;               /* jd_tick() asks again a little later */
		d->st_ms = now_ms();
		d->job = -1;
	}
}

/* Connected and said hello: resend a report left unanswered by the crash
 * (it must be answered as applied, or as a duplicate), else ask for work. */
static void jd_on_ready(struct jdev *d)
{
	d->ready = true;
	if(d->pend && d->job >= 0){
		T.resent_reports++;
		jd_send_report(d, d->pend_status, d->pend_ev);
	}else{
		d->st = J_IDLE;
		jd_send_next(d);
	}
}

static void jd_tick(struct jdev *d, uint64_t t)
{
	/* a notify may be missed (released while a next/get was in flight):
	 * an idle device asks again now and then */
	if(d->ready && d->st == J_IDLE && t - d->st_ms > 250) jd_send_next(d);
}

/* =========================================================================
 * shadow devices
 * ========================================================================= */

static void slot_fill(struct sslot *s)
{
	char topic[96], tok[24], rep[48];
	size_t len;
	uint8_t *buf;

	while(load_on() && s->ready && s->inflight < (uint32_t)O.window && s->cur->sent < (uint32_t)O.keys_per_device){
		uint32_t k = s->cur->sent;
		snprintf(tok, sizeof(tok), "s%u", k);
		snprintf(rep, sizeof(rep), "{\"k%u\":%u}", k, k);
		buf = fm_pb_update_request(tok, 0, rep, NULL, &len);
		snprintf(topic, sizeof(topic), CT_PREFIX "/%s/shadow/update", s->cur->id);
		if(publish(s->c, topic, buf, len, NULL, NULL) != MOSQ_ERR_SUCCESS){
			free(buf);
			break;
		}
		free(buf);
		s->cur->sent++;
		s->inflight++;
	}
	if(s->cur->sent >= (uint32_t)O.keys_per_device && s->inflight == 0 && !s->c->close_asked){
		s->c->close_asked = true;    /* rotate to the slot's next device id */
		T.rotations++;
	}
}

static void slot_on_reply(struct sslot *s, const struct mosquitto_message *m, bool accepted)
{
	struct sid *sd = s->cur;
	uint32_t k;

	if(accepted){
		Fleetmq__V1__ShadowUpdateAccepted *a = fleetmq__v1__shadow_update_accepted__unpack(NULL,
				(size_t)m->payloadlen, m->payload);
		if(!a){
			problem(&T.unexpected, "%s: undecodable update/accepted", sd->id);
			return;
		}
		if(sscanf(a->client_token, "s%u", &k) == 1 && k < sd->sent){
			if(sd->acked[k]){
				problem(&T.dup, "%s: update k%u accepted twice", sd->id, k);
			}else{
				sd->acked[k] = 1;
				sd->nacked++;
				T.shadow_acked++;
				count_ack();
			}
			if(a->version <= sd->max_version){
				problem(&T.unexpected, "%s: k%u accepted at version %" PRIu64 ", not above %" PRIu64, sd->id, k,
						a->version, sd->max_version);
			}else{
				sd->max_version = a->version;
			}
		}else{
			problem(&T.unexpected, "%s: update/accepted with unknown token '%s'", sd->id, a->client_token);
		}
		fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
	}else{
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, (size_t)m->payloadlen, m->payload);
		T.shadow_rejected++;
		problem(&T.unexpected, "%s: update rejected: %s %s (token %s)", sd->id,
				r ? fm_error_code_name(r->code) : "?", r ? r->reason : "", r ? r->client_token : "");
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	if(s->inflight) s->inflight--;
	slot_fill(s);
}

/* =========================================================================
 * operator
 * ========================================================================= */

struct req {
	uint32_t corr;
	int njobs;
	int jobs[MAX_OPS_BATCH];
	bool inflight;
};

static struct {
	struct conn *c;
	bool ready;
	struct req reqs[REQ_SLOTS];
	uint32_t next_corr;
	int inflight;
	uint64_t retry_at;
	char resp_topic[64];
} OPS;

static int ops_new_job(void)
{
	struct job *j;
	int want;

	if(g_njobs == g_capjobs){
		g_capjobs = g_capjobs ? g_capjobs * 2 : 1024;
		g_jobs = xrealloc(g_jobs, g_capjobs * sizeof(*g_jobs));
	}
	j = &g_jobs[g_njobs];
	memset(j, 0, sizeof(*j));
	j->n = (int)g_njobs;
	want = O.targets < O.job_devices ? O.targets : O.job_devices;
	j->nt = 0;                 /* job_target_pos() looks at the chosen ones only */
	while(j->nt < want){
		int dev = (int)(rng_next() % (uint64_t)O.job_devices);
		if(job_target_pos(j, dev) >= 0) continue;
		j->t[j->nt++] = dev;
	}
	g_njobs++;
	return j->n;
}

static void ops_send(int *jobs, int n)
{
	struct req *r;
	mosquitto_property *props = NULL;
	char corr[16];
	size_t cap = (size_t)n * 400 + 64, len;
	char *payload = xcalloc(1, cap);
	int i;

	r = &OPS.reqs[OPS.next_corr % REQ_SLOTS];
	if(r->inflight){
		free(payload);
		return;    /* table full: caller keeps the jobs unsent */
	}
	r->corr = OPS.next_corr++;
	r->njobs = n;
	len = (size_t)snprintf(payload, cap, "{\"commands\":[");
	for(i = 0; i < n; i++){
		struct job *j = &g_jobs[jobs[i]];
		r->jobs[i] = jobs[i];
		if(i) payload[len++] = ',';
		len += (size_t)job_command(payload + len, cap - len, j);
		if(j->state == JS_PLANNED){
			j->state = JS_SENT;
		}
		if(!j->outstanding_counted){
			j->outstanding_counted = true;
			g_outstanding += j->nt;
		}
	}
	len += (size_t)snprintf(payload + len, cap - len, "]}");
	snprintf(corr, sizeof(corr), "%u", r->corr);
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, OPS.resp_topic);
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, corr, (uint16_t)strlen(corr));
	if(publish(OPS.c, FM_CONTROL_TOPIC, payload, len, NULL, props) == MOSQ_ERR_SUCCESS){
		r->inflight = true;
		OPS.inflight++;
	}
	mosquitto_property_free_all(&props);
	free(payload);
}

/* Resend every createJob left unanswered (same id, same definition). */
static void ops_resend_unanswered(void)
{
	int batch[MAX_OPS_BATCH], n = 0;
	for(size_t i = 0; i < g_njobs; i++){
		if(g_jobs[i].state != JS_SENT) continue;
		batch[n++] = (int)i;
		if(n == O.ops_batch){
			ops_send(batch, n);
			n = 0;
		}
	}
	if(n) ops_send(batch, n);
}

static void ops_fill(void)
{
	long limit = (long)O.job_devices * O.queue_depth;
	int tpj = O.targets < O.job_devices ? O.targets : O.job_devices;

	while(load_on() && OPS.ready && OPS.inflight < O.ops_window
			&& g_outstanding + (long)tpj * O.ops_batch <= limit){
		int batch[MAX_OPS_BATCH];
		for(int i = 0; i < O.ops_batch; i++) batch[i] = ops_new_job();
		ops_send(batch, O.ops_batch);
	}
}

static void ops_on_response(const struct mosquitto_message *m, const mosquitto_property *props)
{
	void *corr = NULL;
	uint16_t clen = 0;
	char cbuf[16];
	unsigned long cn;
	struct req *r;
	cJSON *root, *resps;
	int i;

	if(!mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &clen, false) || clen >= sizeof(cbuf)){
		free(corr);
		problem(&T.unexpected, "operator: response without usable correlation data");
		return;
	}
	memcpy(cbuf, corr, clen);
	cbuf[clen] = '\0';
	free(corr);
	cn = strtoul(cbuf, NULL, 10);
	r = &OPS.reqs[cn % REQ_SLOTS];
	if(!r->inflight || r->corr != cn) return;
	r->inflight = false;
	OPS.inflight--;
	root = cJSON_ParseWithLength((const char *)m->payload, (size_t)m->payloadlen);
	resps = root ? cJSON_GetObjectItemCaseSensitive(root, "responses") : NULL;
	if(!cJSON_IsArray(resps) || cJSON_GetArraySize(resps) != r->njobs){
		problem(&T.unexpected, "operator: bad createJob response: %.200s", (const char *)m->payload);
		cJSON_Delete(root);
		return;
	}
	for(i = 0; i < r->njobs; i++){
		const cJSON *e = cJSON_GetArrayItem(resps, i);
		const cJSON *data = cJSON_GetObjectItemCaseSensitive(e, "data");
		const cJSON *jid = cJSON_GetObjectItemCaseSensitive(data, "jobId");
		struct job *j = &g_jobs[r->jobs[i]];
		char want[32];
		job_id(want, sizeof(want), j->n);
		if(cJSON_GetObjectItemCaseSensitive(e, "code") || !cJSON_IsString(jid) || strcmp(jid->valuestring, want)){
			char *t = cJSON_PrintUnformatted(e);
			problem(&T.unexpected, "operator: createJob %s failed: %.300s", want, t ? t : "?");
			free(t);
			if(j->state == JS_SENT){
				j->state = JS_FAILED;
				g_outstanding -= j->nt;
			}
			continue;
		}
		if(j->state == JS_SENT){
			j->state = JS_ACKED;
			T.creates_acked++;
			count_ack();
			if(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(data, "created"))) T.creates_existing++;
		}
	}
	cJSON_Delete(root);
	ops_fill();
}

/* =========================================================================
 * stock broker: publishers and a persistent-session subscriber
 * ========================================================================= */

struct spub {
	int idx;
	struct conn *c;
	bool ready;
	uint32_t sent, inflight, acked;
	uint32_t *mid_seq;       /* [65536] message id -> sequence number */
	uint8_t *ack;            /* [cap] 1 = PUBACKed */
	uint8_t *got;            /* [cap] 1 = received by the subscriber after the restart */
	size_t cap;
	uint64_t retry_at;
};

static struct spub *g_spubs;
static int g_nspubs;
static int g_stock_round;

static struct {
	struct conn *c;
	bool subscribed;
	unsigned long received, dups, foreign;
	uint64_t last_msg_ms;
} SUB;

static void spub_fill(struct spub *p)
{
	char topic[64], payload[64];
	while(load_on() && p->ready && p->inflight < (uint32_t)O.window){
		int mid = 0, len;
		if(p->sent >= p->cap){
			size_t nc = p->cap ? p->cap * 2 : 65536;
			p->ack = xrealloc(p->ack, nc);
			p->got = xrealloc(p->got, nc);
			memset(p->ack + p->cap, 0, nc - p->cap);
			memset(p->got + p->cap, 0, nc - p->cap);
			p->cap = nc;
		}
		snprintf(topic, sizeof(topic), "ct-stock/%d/data", p->idx);
		len = snprintf(payload, sizeof(payload), "%d:%d:%u", g_stock_round, p->idx, p->sent);
		if(publish(p->c, topic, payload, (size_t)len, &mid, NULL) != MOSQ_ERR_SUCCESS) break;
		p->mid_seq[mid & 0xFFFF] = p->sent;
		p->sent++;
		p->inflight++;
	}
}

/* =========================================================================
 * dispatch
 * ========================================================================= */

static void on_connack(struct conn *c, int rc)
{
	char filter[96];
	if(rc != 0){
		note("%s: CONNACK %d", c->id, rc);
		return;
	}
	switch(c->kind){
		case K_SHADOW:
		case K_JOBDEV:
			snprintf(filter, sizeof(filter), CT_PREFIX "/%s/#", c->id);
			mosquitto_subscribe_v5(c->mosq, NULL, filter, 1, MQTT_SUB_OPT_NO_LOCAL, NULL);
			break;
		case K_OPS:
			mosquitto_subscribe_v5(c->mosq, NULL, OPS.resp_topic, 1, 0, NULL);
			break;
		case K_STOCK_PUB:
			((struct spub *)c->owner)->ready = true;
			spub_fill(c->owner);
			break;
		case K_STOCK_SUB:
			mosquitto_subscribe_v5(c->mosq, NULL, "ct-stock/#", 1, 0, NULL);
			break;
	}
}

static void send_hello(struct conn *c)
{
	char topic[96];
	size_t len;
	uint8_t *buf = fm_pb_hello(0, "crashtest", "crashtest-1", &len);
	snprintf(topic, sizeof(topic), CT_PREFIX "/%s/hello", c->id);
	publish(c, topic, buf, len, NULL, NULL);
	free(buf);
}

static void on_suback(struct conn *c, int mid, int granted)
{
	(void)mid;
	if(granted >= 0x80){
		problem(&T.unexpected, "%s: subscription refused (0x%02x)", c->id, granted);
		return;
	}
	switch(c->kind){
		case K_SHADOW:
		case K_JOBDEV:
			send_hello(c);
			break;
		case K_OPS:
			OPS.ready = true;
			ops_resend_unanswered();
			ops_fill();
			break;
		case K_STOCK_SUB:
			SUB.subscribed = true;
			break;
		default:
			break;
	}
}

static void on_puback(struct conn *c, int mid, int rc)
{
	struct spub *p;
	uint32_t seq;
	if(c->kind != K_STOCK_PUB) return;
	p = c->owner;
	if(p->inflight) p->inflight--;
	seq = p->mid_seq[mid & 0xFFFF];
	if(rc < 0x80 && seq < p->sent && !p->ack[seq]){
		p->ack[seq] = 1;
		p->acked++;
	}
	spub_fill(p);
}

static void on_message(struct conn *c, const struct mosquitto_message *m, const mosquitto_property *props)
{
	const char *t = m->topic;

	switch(c->kind){
		case K_SHADOW: {
			struct sslot *s = c->owner;
			if(ends_with(t, "/hello/accepted")){
				s->ready = true;
				slot_fill(s);
			}else if(ends_with(t, "/shadow/update/accepted")){
				slot_on_reply(s, m, true);
			}else if(ends_with(t, "/shadow/update/rejected")){
				slot_on_reply(s, m, false);
			}else if(ends_with(t, "/rejected")){
				problem(&T.unexpected, "%s: rejection on %s", c->id, t);
			}
			break;
		}
		case K_JOBDEV: {
			struct jdev *d = c->owner;
			if(ends_with(t, "/hello/accepted")){
				jd_on_ready(d);
			}else if(ends_with(t, "/jobs/notify")){
				jd_on_notify(d, m);
			}else if(ends_with(t, "/jobs/next/get/accepted")){
				jd_on_next(d, m);
			}else if(ends_with(t, "/update/accepted")){
				jd_on_update_reply(d, m, true);
			}else if(ends_with(t, "/update/rejected")){
				jd_on_update_reply(d, m, false);
			}else if(ends_with(t, "/rejected")){
				problem(&T.unexpected, "%s: rejection on %s", c->id, t);
				if(d->st == J_NEXT){
					d->st = J_IDLE;
					d->st_ms = now_ms();
				}
			}
			break;
		}
		case K_OPS:
			if(!strcmp(t, OPS.resp_topic)) ops_on_response(m, props);
			break;
		case K_STOCK_SUB: {
			int round, pub;
			unsigned seq;
			char pl[64];
			size_t pn = m->payloadlen > 0 && (size_t)m->payloadlen < sizeof(pl) ? (size_t)m->payloadlen : 0;
			memcpy(pl, m->payload, pn);
			pl[pn] = '\0';
			SUB.last_msg_ms = now_ms();
			if(sscanf(pl, "%d:%d:%u", &round, &pub, &seq) == 3 && round == g_stock_round
					&& pub >= 0 && pub < g_nspubs && seq < g_spubs[pub].sent){
				if(g_spubs[pub].got[seq]) SUB.dups++;
				else{
					g_spubs[pub].got[seq] = 1;
					SUB.received++;
				}
			}else{
				SUB.foreign++;
			}
			break;
		}
		default:
			break;
	}
}

static void on_conn_reaped(struct conn *c)
{
	switch(c->kind){
		case K_SHADOW: {
			struct sslot *s = c->owner;
			s->c = NULL;
			s->ready = false;
			s->inflight = 0;                  /* unanswered updates: outcome unknown, never acknowledged */
			s->retry_at = now_ms() + (c->close_asked ? 0 : 100);
			if(c->close_asked && s->cur->sent >= (uint32_t)O.keys_per_device) s->cur = NULL;   /* rotate */
			break;
		}
		case K_JOBDEV: {
			struct jdev *d = c->owner;
			d->c = NULL;
			d->ready = false;
			if(d->st != J_REPORT) d->pend = false;   /* keep only an unanswered report */
			d->st = J_IDLE;
			d->retry_at = now_ms() + 100;
			break;
		}
		case K_OPS:
			OPS.c = NULL;
			OPS.ready = false;
			for(int i = 0; i < REQ_SLOTS; i++) OPS.reqs[i].inflight = false;
			OPS.inflight = 0;
			OPS.retry_at = now_ms() + 100;
			break;
		case K_STOCK_PUB: {
			struct spub *p = c->owner;
			p->c = NULL;
			p->ready = false;
			p->inflight = 0;
			p->retry_at = now_ms() + 100;
			break;
		}
		case K_STOCK_SUB:
			SUB.c = NULL;
			SUB.subscribed = false;
			break;
	}
}

/* (Re)open missing plugin-side connections. */
static void connect_missing(uint64_t t)
{
	int i;
	for(i = 0; i < O.shadow_devices; i++){
		struct sslot *s = &g_slots[i];
		if(s->c || t < s->retry_at) continue;
		if(!s->cur){
			s->gen++;
			s->cur = sid_new(s->idx, s->gen);
		}
		s->c = conn_open(K_SHADOW, s, s->cur->id, s->cur->id, true, 0);
		if(!s->c) s->retry_at = t + 200;
	}
	for(i = 0; i < O.job_devices; i++){
		struct jdev *d = &g_jdevs[i];
		if(d->c || t < d->retry_at) continue;
		d->c = conn_open(K_JOBDEV, d, d->id, d->id, true, 0);
		if(!d->c) d->retry_at = t + 200;
	}
	if(!OPS.c && t >= OPS.retry_at){
		OPS.c = conn_open(K_OPS, &OPS, "ct-ops", "ops", true, 0);
		if(!OPS.c) OPS.retry_at = t + 200;
	}
}

static int ready_count(void)
{
	int n = 0, i;
	for(i = 0; i < O.shadow_devices; i++) n += g_slots[i].ready;
	for(i = 0; i < O.job_devices; i++) n += g_jdevs[i].ready;
	n += OPS.ready;
	return n;
}

/* =========================================================================
 * broker control
 * ========================================================================= */

/* Rewrite the harness's mosquitto.conf: quieter log (log_type all logs every
 * packet, a write per line at thousands of messages per second) plus
 * `extra` lines, then start the broker again. */
static int broker_reconfigure(struct fm_broker *b, const char *replace_from, const char *replace_to, const char *extra)
{
	FILE *f = fopen(b->conf_path, "r");
	char *text = NULL, *out;
	size_t cap = 0, len = 0, n;
	char buf[4096];
	const char *quiet = "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";

	if(!f) return -1;
	while((n = fread(buf, 1, sizeof(buf), f)) > 0){
		text = xrealloc(text, cap = len + n + 1);
		memcpy(text + len, buf, n);
		len += n;
		text[len] = '\0';
	}
	fclose(f);
	if(!text) return -1;
	out = xcalloc(1, len + strlen(quiet) + (replace_to ? strlen(replace_to) : 0) + (extra ? strlen(extra) : 0) + 8);
	{
		const char *p = text;
		char *w = out;
		while(*p){
			const char *eol = strchr(p, '\n');
			size_t ll = eol ? (size_t)(eol - p + 1) : strlen(p);
			if(!strncmp(p, "log_type all", 12)){
				strcpy(w, quiet);
				w += strlen(quiet);
			}else if(replace_from && !strncmp(p, replace_from, strlen(replace_from))){
				strcpy(w, replace_to);
				w += strlen(replace_to);
			}else{
				memcpy(w, p, ll);
				w += ll;
			}
			p += ll;
		}
		if(extra){
			strcpy(w, extra);
			w += strlen(extra);
		}
		*w = '\0';
	}
	free(text);
	f = fopen(b->conf_path, "w");
	if(!f){
		free(out);
		return -1;
	}
	fputs(out, f);
	fclose(f);
	free(out);
	return 0;
}

/* Run the engine until pred() or timeout. */
static bool run_until(bool (*pred)(void), int timeout_ms, void (*tick)(uint64_t))
{
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	while(now_ms() < deadline){
		if(pred && pred()) return true;
		engine_step(5);
		if(tick) tick(now_ms());
	}
	return pred ? pred() : true;
}

static bool all_gone(void) { return E.n == 0; }

static int g_expect_ready;
static bool plugin_all_ready(void) { return ready_count() >= g_expect_ready; }

static void plugin_tick(uint64_t t)
{
	if(g_broker_up) connect_missing(t);
	for(int i = 0; i < O.job_devices; i++) jd_tick(&g_jdevs[i], t);
	if(OPS.ready){
		ops_fill();
	}
}

/* After a kill: read what the dead broker had already written, until every
 * connection saw its end. */
static void drain_after_kill(void)
{
	g_phase = PH_DRAIN;
	run_until(all_gone, 5000, NULL);
	if(E.n){
		note("%zu connections did not notice the dead broker; closing them", E.n);
		for(size_t i = 0; i < E.n; i++) E.v[i]->gone = true;
		engine_reap();
	}
}

/* =========================================================================
 * verification through $CONTROL
 * ========================================================================= */

struct vbatch {
	struct fm_client *c;
	char *buf;
	size_t len, cap;
	int n;
	void *items[VERIFY_BATCH];
	void (*handle)(void *item, const cJSON *resp);
};

static void vb_flush(struct vbatch *b)
{
	cJSON *root, *resps;
	int i, tries;
	if(b->n == 0) return;
	b->len += (size_t)snprintf(b->buf + b->len, b->cap - b->len, "]}");
	root = NULL;
	for(tries = 0; tries < 3 && !root; tries++) root = fm_control_request(b->c, b->buf, 60000);
	resps = root ? cJSON_GetObjectItemCaseSensitive(root, "responses") : NULL;
	if(!cJSON_IsArray(resps) || cJSON_GetArraySize(resps) != b->n){
		problem(&T.unexpected, "verification request failed (%d commands)", b->n);
		for(i = 0; i < b->n; i++) b->handle(b->items[i], NULL);
	}else{
		for(i = 0; i < b->n; i++) b->handle(b->items[i], cJSON_GetArrayItem(resps, i));
	}
	cJSON_Delete(root);
	b->n = 0;
	b->len = 0;
}

static void vb_add(struct vbatch *b, void *item, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vb_add(struct vbatch *b, void *item, const char *fmt, ...)
{
	va_list ap;
	char cmd[1024];
	int n;
	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if(b->cap - b->len < (size_t)n + 64){
		b->cap = (b->cap + (size_t)n + 64) * 2;
		b->buf = xrealloc(b->buf, b->cap);
	}
	b->len += (size_t)snprintf(b->buf + b->len, b->cap - b->len, "%s%s", b->n ? "," : "{\"commands\":[", cmd);
	b->items[b->n++] = item;
	if(b->n == VERIFY_BATCH) vb_flush(b);
}

static const char *jstr(const cJSON *o, const char *path)
{
	const cJSON *it = o ? fm_json_path(o, path) : NULL;
	return cJSON_IsString(it) ? it->valuestring : "";
}

static double jnum(const cJSON *o, const char *path, double dflt)
{
	const cJSON *it = o ? fm_json_path(o, path) : NULL;
	return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

static void verify_shadow(void *item, const cJSON *resp)
{
	struct sid *s = item;
	const cJSON *rep;
	uint32_t k, present = 0;
	uint64_t version;

	if(!resp){
		T.lost += s->nacked;
		return;
	}
	if(!strcmp(jstr(resp, "code"), "NOT_FOUND")){
		if(s->nacked) problem(&T.lost, "%s: %u acknowledged updates but the device is unknown", s->id, s->nacked);
		return;
	}
	if(cJSON_GetObjectItemCaseSensitive(resp, "code")){
		problem(&T.unexpected, "%s: getShadow: %s %s", s->id, jstr(resp, "code"), jstr(resp, "error"));
		T.lost += s->nacked;
		return;
	}
	T.v_shadow_ids++;
	rep = fm_json_path(resp, "data.state.reported");
	version = (uint64_t)jnum(resp, "data.version", 0);
	for(k = 0; k < s->sent; k++){
		char key[16];
		const cJSON *v;
		snprintf(key, sizeof(key), "k%u", k);
		v = rep ? cJSON_GetObjectItemCaseSensitive(rep, key) : NULL;
		if(v) present++;
		if(!s->acked[k]) continue;
		if(!cJSON_IsNumber(v) || v->valuedouble != (double)k){
			problem(&T.lost, "%s: acknowledged key k%u lost", s->id, k);
		}else{
			T.v_keys++;
		}
	}
	if(version < s->max_version){
		problem(&T.lost, "%s: version %" PRIu64 " after the restarts, below the acknowledged %" PRIu64, s->id,
				version, s->max_version);
	}
	/* each update added one new key: version and content must agree */
	if(!rep || (uint64_t)cJSON_GetArraySize(rep) != version || present != version){
		problem(&T.unexpected, "%s: version %" PRIu64 " but %d keys (%u of ours)", s->id, version,
				rep ? cJSON_GetArraySize(rep) : -1, present);
	}
}

static int status_rank(const char *s)
{
	if(!strcmp(s, "PENDING")) return 0;
	if(!strcmp(s, "QUEUED")) return XS_QUEUED;
	if(!strcmp(s, "IN_PROGRESS")) return XS_IN_PROGRESS;
	if(!strcmp(s, "SUCCEEDED")) return XS_SUCCEEDED;
	return 100;   /* FAILED, CANCELED...: never legal here (no timeouts, no cancellations) */
}

/* One execution object from listJobExecutions / describeJobExecution. */
static void check_exec(struct job *j, int pos, const cJSON *e, const char *how)
{
	struct xrec *x = &j->x[pos];
	const char *st = jstr(e, "status");
	int rank = status_rank(st);
	uint64_t v = (uint64_t)jnum(e, "version", 0);
	uint32_t attempt = (uint32_t)jnum(e, "attempt", 0);

	if(rank == 100){
		problem(&T.unexpected, "cj-%d on ct-j%d: %s status %s", j->n, j->t[pos], how, st);
		return;
	}
	if(!x->acked) return;
	if(rank < x->acked || v < x->ver || attempt != x->attempt || (x->acked == XS_SUCCEEDED && v != x->ver)){
		problem(&T.lost, "cj-%d on ct-j%d: %s says %s version %" PRIu64 " attempt %u; acknowledged %s version %"
				PRIu64 " attempt %u", j->n, j->t[pos], how, st, v, attempt, fm_exec_status_name(x->acked), x->ver,
				x->attempt);
		return;
	}
}

static void verify_describe_job(void *item, const cJSON *resp)
{
	struct job *j = item;
	const cJSON *devs;
	int i, n;

	if(!resp || cJSON_GetObjectItemCaseSensitive(resp, "code")){
		problem(&T.lost, "cj-%d: acknowledged job missing: %s %s", j->n, jstr(resp, "code"), jstr(resp, "error"));
		return;
	}
	devs = fm_json_path(resp, "data.job.targets.devices");
	n = cJSON_GetArraySize(devs);
	if(n != j->nt){
		problem(&T.lost, "cj-%d: %d targets stored, %d acknowledged", j->n, n, j->nt);
		return;
	}
	for(i = 0; i < n; i++){
		char want[24];
		const cJSON *d = cJSON_GetArrayItem(devs, i);
		snprintf(want, sizeof(want), "ct-j%d", j->t[i]);
		if(!cJSON_IsString(d) || strcmp(d->valuestring, want)){
			problem(&T.lost, "cj-%d: target %d is %s, acknowledged %s", j->n, i, cJSON_IsString(d) ? d->valuestring : "?",
					want);
		}
	}
	if(jnum(resp, "data.job.counts.total", -1) != j->nt){
		problem(&T.unexpected, "cj-%d: counts.total %.0f for %d targets", j->n, jnum(resp, "data.job.counts.total", -1),
				j->nt);
	}
	T.v_jobs++;
}

static void verify_list_execs(void *item, const cJSON *resp)
{
	struct job *j = item;
	const cJSON *arr = fm_json_path(resp, "data.executions"), *e;
	int seen[MAX_TARGETS] = {0};

	if(!resp || cJSON_GetObjectItemCaseSensitive(resp, "code")){
		problem(&T.lost, "cj-%d: listJobExecutions: %s %s", j->n, jstr(resp, "code"), jstr(resp, "error"));
		return;
	}
	cJSON_ArrayForEach(e, arr){
		int dev = -1, pos;
		if(sscanf(jstr(e, "deviceId"), "ct-j%d", &dev) != 1 || (pos = job_target_pos(j, dev)) < 0){
			problem(&T.unexpected, "cj-%d: execution on unexpected device %s", j->n, jstr(e, "deviceId"));
			continue;
		}
		if(seen[pos]++) problem(&T.dup, "cj-%d: two executions on %s", j->n, jstr(e, "deviceId"));
		check_exec(j, pos, e, "listJobExecutions");
	}
	for(int i = 0; i < j->nt; i++){
		if(!seen[i]){
			if(j->x[i].acked) problem(&T.lost, "cj-%d: acknowledged execution on ct-j%d missing", j->n, j->t[i]);
			else problem(&T.unexpected, "cj-%d: no execution on ct-j%d", j->n, j->t[i]);
		}
	}
}

struct xref { struct job *j; int pos; };

static void verify_describe_exec(void *item, const cJSON *resp)
{
	struct xref *r = item;
	if(!resp || cJSON_GetObjectItemCaseSensitive(resp, "code")){
		problem(&T.lost, "cj-%d on ct-j%d: describeJobExecution: %s %s", r->j->n, r->j->t[r->pos], jstr(resp, "code"),
				jstr(resp, "error"));
		return;
	}
	check_exec(r->j, r->pos, fm_json_path(resp, "data.execution"), "describeJobExecution");
	T.v_execs++;
}

static void verify_audit(void *item, const cJSON *resp)
{
	struct job *j = item;
	const cJSON *arr = fm_json_path(resp, "data.entries"), *e;
	int starts[MAX_TARGETS] = {0}, succ[MAX_TARGETS] = {0};

	if(!resp || cJSON_GetObjectItemCaseSensitive(resp, "code")){
		problem(&T.unexpected, "cj-%d: getAuditLog: %s %s", j->n, jstr(resp, "code"), jstr(resp, "error"));
		return;
	}
	cJSON_ArrayForEach(e, arr){
		const char *action = jstr(e, "action");
		int dev = -1, pos;
		if(sscanf(jstr(e, "detail.deviceId"), "ct-j%d", &dev) != 1 || (pos = job_target_pos(j, dev)) < 0) continue;
		if(!strcmp(action, "execution.IN_PROGRESS") && !strcmp(jstr(e, "detail.from"), "QUEUED")) starts[pos]++;
		if(!strcmp(action, "execution.SUCCEEDED")) succ[pos]++;
	}
	for(int i = 0; i < j->nt; i++){
		if(starts[i] > 1) problem(&T.dup, "cj-%d on ct-j%d: started %d times (audit log)", j->n, j->t[i], starts[i]);
		if(succ[i] > 1) problem(&T.dup, "cj-%d on ct-j%d: SUCCEEDED %d times (audit log)", j->n, j->t[i], succ[i]);
		if(j->x[i].acked == XS_SUCCEEDED && succ[i] == 0){
			problem(&T.lost, "cj-%d on ct-j%d: acknowledged SUCCEEDED not in the audit log", j->n, j->t[i]);
		}
		T.v_audit_execs++;
	}
}

static void verify_all(int port)
{
	struct fm_client *c = fm_control_connect(port, "ops");
	struct vbatch b;
	struct xref *refs;
	size_t i, nrefs = 0;
	char id[32];
	uint64_t t0 = now_ms();

	if(!c){
		problem(&T.unexpected, "verification: cannot connect");
		T.lost += T.shadow_acked + T.creates_acked + T.exec_acked;
		return;
	}
	memset(&b, 0, sizeof(b));
	b.c = c;
	b.handle = verify_shadow;
	for(i = 0; i < g_nsids; i++){
		if(g_sids[i]->sent == 0) continue;
		vb_add(&b, g_sids[i], "{\"command\":\"getShadow\",\"deviceId\":\"%s\"}", g_sids[i]->id);
	}
	vb_flush(&b);
	note("verify: %lu shadow ids, %lu acknowledged keys checked (%.1f s)", T.v_shadow_ids, T.v_keys,
			(double)(now_ms() - t0) / 1000.0);

	for(i = 0; i < g_njobs; i++){
		if(g_jobs[i].state == JS_SENT) T.incomplete += (unsigned long)g_jobs[i].nt;
		if(g_jobs[i].state == JS_ACKED) T.incomplete += (unsigned long)(g_jobs[i].nt - g_jobs[i].done_targets);
	}
	b.handle = verify_describe_job;
	for(i = 0; i < g_njobs; i++){
		if(g_jobs[i].state != JS_ACKED) continue;
		job_id(id, sizeof(id), g_jobs[i].n);
		vb_add(&b, &g_jobs[i], "{\"command\":\"describeJob\",\"jobId\":\"%s\"}", id);
	}
	vb_flush(&b);
	b.handle = verify_list_execs;
	for(i = 0; i < g_njobs; i++){
		if(g_jobs[i].state != JS_ACKED) continue;
		job_id(id, sizeof(id), g_jobs[i].n);
		vb_add(&b, &g_jobs[i], "{\"command\":\"listJobExecutions\",\"jobId\":\"%s\"}", id);
	}
	vb_flush(&b);
	refs = xcalloc(g_njobs * MAX_TARGETS + 1, sizeof(*refs));
	b.handle = verify_describe_exec;
	for(i = 0; i < g_njobs; i++){
		struct job *j = &g_jobs[i];
		if(j->state != JS_ACKED) continue;
		job_id(id, sizeof(id), j->n);
		for(int p = 0; p < j->nt; p++){
			if(!j->x[p].acked) continue;
			refs[nrefs].j = j;
			refs[nrefs].pos = p;
			vb_add(&b, &refs[nrefs], "{\"command\":\"describeJobExecution\",\"jobId\":\"%s\",\"deviceId\":\"ct-j%d\"}",
					id, j->t[p]);
			nrefs++;
		}
	}
	vb_flush(&b);
	b.handle = verify_audit;
	for(i = 0; i < g_njobs; i++){
		if(g_jobs[i].state != JS_ACKED) continue;
		job_id(id, sizeof(id), g_jobs[i].n);
		vb_add(&b, &g_jobs[i], "{\"command\":\"getAuditLog\",\"target\":\"%s\",\"limit\":1000}", id);
	}
	vb_flush(&b);
	note("verify: %lu jobs, %lu executions (describeJobExecution), %lu executions in the audit log (%.1f s in all)",
			T.v_jobs, T.v_execs, T.v_audit_execs, (double)(now_ms() - t0) / 1000.0);
	free(refs);
	free(b.buf);
	fm_client_destroy(c);
}

/* =========================================================================
 * the plugin run
 * ========================================================================= */

#define PLUGIN_YAML FM_YAML_STORE FM_YAML_SECURITY \
	"shadow:\n  max_document_bytes: 65536\n" \
	"jobs:\n  check_interval_ms: 50\n"

/* Checker self-test: keep the database files as they are after kill #1 and
 * put them back after kill #2, as a broker that acknowledged writes it did
 * not make durable would. The broker is dead while this runs. */
static void sabotage_copy(struct fm_broker *b, bool restore)
{
	char cmd[1400];
	if(!restore){
		snprintf(cmd, sizeof(cmd), "cd '%s' && for f in fleetmq.db fleetmq.db-wal; do [ -e $f ] && cp -p $f $f.snap; done; true",
				b->dir);
	}else{
		snprintf(cmd, sizeof(cmd), "cd '%s' && rm -f fleetmq.db-wal fleetmq.db-shm && for f in fleetmq.db fleetmq.db-wal; do "
				"[ -e $f.snap ] && mv $f.snap $f; done; true", b->dir);
	}
	note("SABOTAGE (checker self-test): %s the database", restore ? "rolling back" : "copying");
	if(system(cmd) != 0) note("sabotage command failed");
}

static bool settle_done(void)
{
	for(size_t i = 0; i < g_njobs; i++){
		struct job *j = &g_jobs[i];
		if(j->state == JS_SENT) return false;
		if(j->state == JS_ACKED && j->done_targets < j->nt) return false;
	}
	return true;
}

static int run_plugin(struct fm_broker *b)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	int round, i;
	uint64_t t0 = now_ms();

	o.yaml = PLUGIN_YAML;
	if(fm_broker_start(b, &o) != 0) return -1;
	if(fm_broker_stop(b) != 0 || broker_reconfigure(b, NULL, NULL, NULL) != 0 || fm_broker_restart(b) != 0){
		fprintf(stderr, "crashtest: cannot restart the broker with the test configuration\n");
		return -1;
	}
	E.port = b->port;
	g_broker_up = true;
	note("plugin broker: pid %d, port %d, dir %s", (int)b->pid, b->port, b->dir);
	g_slots = xcalloc((size_t)O.shadow_devices, sizeof(*g_slots));
	for(i = 0; i < O.shadow_devices; i++) g_slots[i].idx = i;
	g_jdevs = xcalloc((size_t)O.job_devices, sizeof(*g_jdevs));
	for(i = 0; i < O.job_devices; i++){
		g_jdevs[i].idx = i;
		g_jdevs[i].job = -1;
		snprintf(g_jdevs[i].id, sizeof(g_jdevs[i].id), "ct-j%d", i);
	}
	snprintf(OPS.resp_topic, sizeof(OPS.resp_topic), "crashtest/ops/response");
	g_expect_ready = O.shadow_devices + O.job_devices + 1;
	T.round_rate_min = 1e18;

	for(round = 0; round <= O.kills; round++){
		unsigned long acks0;
		double load_s, bcpu0, scpu0, dt;
		uint64_t ls, le;

		g_phase = PH_CONNECT;
		connect_missing(now_ms());
		if(!run_until(plugin_all_ready, 20000, plugin_tick)){
			note("round %d: only %d of %d clients ready after 20 s", round, ready_count(), g_expect_ready);
		}
		if(round == O.kills) break;
		/* a random share of a round's time, so kills land anywhere in the
		 * group-commit cycle */
		if(rng_unit() < 0.15) load_s = 0.02 + 0.3 * rng_unit();   /* kill during reconnects and resent reports */
		else load_s = O.secs * (0.5 + rng_unit());
		acks0 = T.load_acks;
		bcpu0 = proc_cpu_s(b->pid);
		scpu0 = self_cpu_s();
		g_phase = PH_LOAD;
		ls = now_ms();
		for(i = 0; i < O.shadow_devices; i++) if(g_slots[i].c && g_slots[i].ready) slot_fill(&g_slots[i]);
		ops_fill();
		run_until(NULL, (int)(load_s * 1000), plugin_tick);
		le = now_ms();
		T.broker_cpu_s += proc_cpu_s(b->pid) - bcpu0;
		T.self_cpu_s += self_cpu_s() - scpu0;
		/* kill -9 with everything in flight */
		if(fm_broker_kill9(b) != 128 + 9){
			fprintf(stderr, "crashtest: the broker did not die of SIGKILL\n");
			return -1;
		}
		g_broker_up = false;
		T.kills++;
		dt = (double)(le - ls) / 1000.0;
		drain_after_kill();
		T.load_s += dt;
		if(O.sabotage && round == 0) sabotage_copy(b, false);
		if(O.sabotage && round == 1) sabotage_copy(b, true);
		{
			double rate = (double)(T.load_acks - acks0) / dt;
			if(rate < T.round_rate_min) T.round_rate_min = rate;
			if(rate > T.round_rate_max) T.round_rate_max = rate;
			note("round %d: load %.2f s, %lu acknowledged writes (%.0f/s); totals: %lu shadow keys, %lu jobs, "
					"%lu execution reports; kill -9 #%d", round + 1, dt, T.load_acks - acks0, rate, T.shadow_acked,
					T.creates_acked, T.exec_acked, round + 1);
		}
		if(fm_broker_restart(b) != 0){
			fprintf(stderr, "crashtest: the broker did not come back after kill #%d\n", round + 1);
			fm_broker_dump_log(b, 60);
			return -1;
		}
		g_broker_up = true;
		if(O.verbose) note("broker restarted: pid %d", (int)b->pid);
	}

	/* After the last restart: no new work; devices finish their queues. */
	g_phase = PH_SETTLE;
	if(!run_until(settle_done, (int)(O.settle_s * 1000), plugin_tick)){
		note("settle: not every job finished within %.0f s", O.settle_s);
	}
	note("settle done after %.1f s of test", (double)(now_ms() - t0) / 1000.0);
	g_phase = PH_IDLE;
	for(size_t k = 0; k < E.n; k++) E.v[k]->close_asked = true;
	run_until(all_gone, 3000, NULL);
	verify_all(b->port);
	if(!fm_broker_alive(b)){
		problem(&T.unexpected, "the broker died during verification");
		fm_broker_dump_log(b, 40);
	}
	return 0;
}

/* =========================================================================
 * the stock mosquitto run
 * ========================================================================= */

static struct {
	unsigned long acked[64], survived[64], dups[64];
	double secs[64];
	int rounds;
	bool control_ok;
	unsigned long control_acked, control_survived;
} S;

static bool stock_pubs_ready(void)
{
	for(int i = 0; i < g_nspubs; i++) if(!g_spubs[i].ready) return false;
	return true;
}

static bool stock_sub_ready(void) { return SUB.subscribed; }
static bool stock_sub_quiet(void) { return SUB.subscribed && now_ms() - SUB.last_msg_ms > 1500; }

static void stock_tick(uint64_t t)
{
	if(!g_broker_up) return;
	for(int i = 0; i < g_nspubs; i++){
		struct spub *p = &g_spubs[i];
		if(!p->c && t >= p->retry_at && (g_phase == PH_CONNECT || g_phase == PH_LOAD)){
			char id[32];
			snprintf(id, sizeof(id), "ct-stock-pub%d", i);
			p->c = conn_open(K_STOCK_PUB, p, id, NULL, true, 0);
			if(!p->c) p->retry_at = t + 200;
		}
	}
}

static int stock_sub_connect(void)
{
	SUB.c = conn_open(K_STOCK_SUB, &SUB, "ct-stock-sub", NULL, false, 86400);
	if(!SUB.c) return -1;
	return run_until(stock_sub_ready, 10000, NULL) ? 0 : -1;
}

static void stock_sub_disconnect(void)
{
	if(SUB.c) SUB.c->close_asked = true;
	run_until(all_gone, 3000, NULL);
}

static int run_stock(struct fm_broker *b)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	char extra[512];
	int round, i, rounds = O.stock_kills + 1;   /* the last round stops the broker cleanly */
	double secs = O.stock_secs > 0 ? O.stock_secs : O.secs;

	o.with_plugin = false;
	if(fm_broker_start(b, &o) != 0) return -1;
	snprintf(extra, sizeof(extra), "autosave_interval 1800\npersistence_location %s/\nmax_queued_messages 100000000\n",
			b->dir);
	if(fm_broker_stop(b) != 0 || broker_reconfigure(b, "persistence false", "persistence true\n", extra) != 0
			|| fm_broker_restart(b) != 0){
		fprintf(stderr, "crashtest: cannot start stock mosquitto with persistence\n");
		return -1;
	}
	E.port = b->port;
	g_broker_up = true;
	g_nspubs = O.shadow_devices + O.job_devices;
	if(g_nspubs > 200) g_nspubs = 200;
	g_spubs = xcalloc((size_t)g_nspubs, sizeof(*g_spubs));
	for(i = 0; i < g_nspubs; i++){
		g_spubs[i].idx = i;
		g_spubs[i].mid_seq = xcalloc(65536, sizeof(uint32_t));
	}

	/* The persistent session exists, and a clean stop saves it: from then on
	 * the subscriber's session survives restarts, its queue only as of the
	 * last save. */
	g_phase = PH_CONNECT;
	if(stock_sub_connect() != 0){
		fprintf(stderr, "crashtest: stock subscriber cannot subscribe\n");
		return -1;
	}
	stock_sub_disconnect();
	if(fm_broker_stop(b) != 0 || fm_broker_restart(b) != 0) return -1;

	for(round = 0; round < rounds && round < 64; round++){
		bool clean = round == rounds - 1;
		double load_s = secs * (0.5 + rng_unit());
		uint64_t ls;
		unsigned long acked = 0, survived = 0;

		g_stock_round = round;
		for(i = 0; i < g_nspubs; i++){
			struct spub *p = &g_spubs[i];
			p->sent = p->inflight = p->acked = 0;
			if(p->cap){
				memset(p->ack, 0, p->cap);
				memset(p->got, 0, p->cap);
			}
		}
		SUB.received = SUB.dups = SUB.foreign = 0;
		g_phase = PH_CONNECT;
		run_until(stock_pubs_ready, 20000, stock_tick);
		g_phase = PH_LOAD;
		ls = now_ms();
		for(i = 0; i < g_nspubs; i++) spub_fill(&g_spubs[i]);
		run_until(NULL, (int)(load_s * 1000), stock_tick);
		S.secs[round] = (double)(now_ms() - ls) / 1000.0;
		if(clean){
			fm_broker_stop(b);
		}else if(fm_broker_kill9(b) != 128 + 9){
			fprintf(stderr, "crashtest: stock broker did not die of SIGKILL\n");
			return -1;
		}
		g_broker_up = false;
		drain_after_kill();
		for(i = 0; i < g_nspubs; i++) acked += g_spubs[i].acked;
		if(fm_broker_restart(b) != 0) return -1;
		g_broker_up = true;
		g_phase = PH_IDLE;
		SUB.last_msg_ms = now_ms();
		if(stock_sub_connect() != 0){
			problem(&T.unexpected, "stock: subscriber cannot reconnect after round %d", round);
		}
		run_until(stock_sub_quiet, 60000, NULL);
		stock_sub_disconnect();
		for(i = 0; i < g_nspubs; i++){
			for(uint32_t k = 0; k < g_spubs[i].sent; k++) survived += g_spubs[i].ack[k] && g_spubs[i].got[k];
		}
		note("stock round %d (%s): %.2f s, %lu QoS 1 messages PUBACKed for the offline subscriber, %lu delivered "
				"after the restart (%lu duplicates)", round + 1, clean ? "clean stop" : "kill -9", S.secs[round], acked,
				survived, SUB.dups);
		if(clean){
			S.control_acked = acked;
			S.control_survived = survived;
			S.control_ok = survived == acked;
		}else{
			S.acked[S.rounds] = acked;
			S.survived[S.rounds] = survived;
			S.dups[S.rounds] = SUB.dups;
			S.rounds++;
		}
	}
	fm_broker_cleanup(b);
	return 0;
}

/* =========================================================================
 * main
 * ========================================================================= */

static void usage(void)
{
	fprintf(stderr,
		"usage: crashtest [options]\n"
		"  --kills N              kill -9 the broker N times (20)\n"
		"  --seed S               RNG seed (default: time); printed, reuse it to repeat a run\n"
		"  --seconds-per-round F  mean load time between kills, each round random in [0.5F, 1.5F] (3)\n"
		"  --shadow-devices N     clients doing shadow updates (160)\n"
		"  --job-devices N        devices running jobs (24)\n"
		"  --window N             shadow updates in flight per device (8)\n"
		"  --keys-per-device N    keys per shadow device id before the client moves to a new id (32)\n"
		"  --ops-window N         operator requests in flight (4)\n"
		"  --ops-batch N          createJob commands per request (8)\n"
		"  --targets-per-job N    devices per job (3)\n"
		"  --queue-depth N        executions waiting per job device (3)\n"
		"  --settle-seconds F     after the last restart: time for devices to finish their jobs (30)\n"
		"  --stock-kills N        kill -9 rounds against stock mosquitto with persistence (3; 0 = skip)\n"
		"  --stock-seconds F      mean load time of a stock round (= --seconds-per-round)\n"
		"  --sabotage-rollback    checker self-test: after kill #2, restore the database as it was at kill #1;\n"
		"                         the run must then FAIL with lost acknowledgements and duplicate deliveries\n"
		"  --verbose\n"
		"Environment: FLEETMQ_E2E_KEEP=1 keeps the brokers' directories.\n"
		"Mosquitto: " FLEETMQ_MOSQUITTO_BIN "; plugin: " FLEETMQ_PLUGIN_PATH "\n");
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);
	if(*end || v < lo || v > hi) return false;
	*out = (int)v;
	return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
	char *end;
	double v = strtod(s, &end);
	if(*end || !(v >= lo && v <= hi)) return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "kills", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, 's' },
		{ "seconds-per-round", required_argument, NULL, 'r' },
		{ "shadow-devices", required_argument, NULL, 'S' },
		{ "job-devices", required_argument, NULL, 'J' },
		{ "window", required_argument, NULL, 'w' },
		{ "keys-per-device", required_argument, NULL, 'K' },
		{ "ops-window", required_argument, NULL, 'o' },
		{ "ops-batch", required_argument, NULL, 'b' },
		{ "targets-per-job", required_argument, NULL, 't' },
		{ "queue-depth", required_argument, NULL, 'q' },
		{ "settle-seconds", required_argument, NULL, 'x' },
		{ "stock-kills", required_argument, NULL, 'M' },
		{ "stock-seconds", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "sabotage-rollback", no_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct fm_broker plugin_broker, stock_broker;
	struct utsname un;
	bool seeded = false, ok;
	int opt, rc;
	uint64_t t_start;
	time_t wall;
	char date[64];

	while((opt = getopt_long(argc, argv, "", lo, NULL)) != -1){
		bool good = true;
		switch(opt){
			case 'k': good = parse_int(optarg, 0, 10000, &O.kills); break;
			case 's': O.seed = strtoull(optarg, NULL, 0); seeded = true; break;
			case 'r': good = parse_double(optarg, 0.05, 3600, &O.secs); break;
			case 'S': good = parse_int(optarg, 1, 5000, &O.shadow_devices); break;
			case 'J': good = parse_int(optarg, 1, 5000, &O.job_devices); break;
			case 'w': good = parse_int(optarg, 1, 1000, &O.window); break;
			case 'K': good = parse_int(optarg, 1, 100000, &O.keys_per_device); break;
			case 'o': good = parse_int(optarg, 1, REQ_SLOTS / 2, &O.ops_window); break;
			case 'b': good = parse_int(optarg, 1, MAX_OPS_BATCH, &O.ops_batch); break;
			case 't': good = parse_int(optarg, 1, MAX_TARGETS, &O.targets); break;
			case 'q': good = parse_int(optarg, 1, 1000, &O.queue_depth); break;
			case 'x': good = parse_double(optarg, 1, 3600, &O.settle_s); break;
			case 'M': good = parse_int(optarg, 0, 60, &O.stock_kills); break;
			case 'T': good = parse_double(optarg, 0.05, 3600, &O.stock_secs); break;
			case 'v': O.verbose = 1; break;
			case 'R': O.sabotage = 1; break;
			case 'h': usage(); return 0;
			default: usage(); return 2;
		}
		if(!good){
			fprintf(stderr, "crashtest: bad option value: %s\n", optarg);
			usage();
			return 2;
		}
	}
	if(optind < argc){
		usage();
		return 2;
	}
	if(!seeded) O.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	g_rng = O.seed;
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	engine_init();
	uname(&un);
	wall = time(NULL);
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&wall));
	note("crashtest: seed %" PRIu64 ", %d kills, %.2f s per round (mean), %d shadow devices x %d in flight, "
			"%d job devices, %d targets per job, operator %d x %d createJob in flight", O.seed, O.kills, O.secs,
			O.shadow_devices, O.window, O.job_devices, O.targets, O.ops_window, O.ops_batch);
	t_start = now_ms();

	memset(&plugin_broker, 0, sizeof(plugin_broker));
	rc = run_plugin(&plugin_broker);
	if(rc != 0) fm_broker_dump_log(&plugin_broker, 60);
	fm_broker_cleanup(&plugin_broker);
	if(rc != 0){
		fprintf(stderr, "crashtest: FAILED to run\n");
		return 1;
	}

	if(O.stock_kills > 0){
		memset(&stock_broker, 0, sizeof(stock_broker));
		if(run_stock(&stock_broker) != 0){
			fm_broker_dump_log(&stock_broker, 40);
			problem(&T.unexpected, "the stock mosquitto run failed");
		}
		fm_broker_cleanup(&stock_broker);
	}

	{
		unsigned long acked = T.shadow_acked + T.creates_acked + T.exec_acked;
		unsigned long verified = T.v_keys + T.v_jobs + T.v_execs;
		double rate = T.load_s > 0 ? (double)T.load_acks / T.load_s : 0;
		unsigned long sa = 0, ss = 0;

		printf("\n=== crashtest: %s, %s %s, %ld CPUs, seed %" PRIu64 " ===\n", date, un.sysname, un.release,
				sysconf(_SC_NPROCESSORS_ONLN), O.seed);
		printf("kills (kill -9 + restart on the same port and database): %lu\n", T.kills);
		printf("load: %.1f s in %lu windows; durable writes acknowledged during load: %lu = %.0f/s "
				"(rounds: min %.0f/s, max %.0f/s); total test time %.1f s\n", T.load_s, T.kills, T.load_acks, rate,
				T.kills ? T.round_rate_min : 0, T.round_rate_max, (double)(now_ms() - t_start) / 1000.0);
		printf("cpu during load: broker %.2f cores, crashtest %.2f cores\n", T.load_s > 0 ? T.broker_cpu_s / T.load_s : 0,
				T.load_s > 0 ? T.self_cpu_s / T.load_s : 0);
		printf("acknowledged: %lu shadow updates (%zu device ids, %lu rotations), %lu createJob (%lu answered created=false "
				"after a retry), %lu execution reports (+%lu duplicate answers to %lu reports resent after a kill)\n",
				T.shadow_acked, g_nsids, T.rotations, T.creates_acked, T.creates_existing, T.exec_acked,
				T.exec_dup_answers, T.resent_reports);
		printf("checked live: %lu JobNotify, %lu next/get answers; %lu client connections opened\n", T.notify_checked,
				T.next_checked, T.reconnects);
		printf("verified after the last restart: %lu shadow keys, %lu jobs, %lu executions (+%lu in the audit log); "
				"unfinished executions: %lu\n", T.v_keys, T.v_jobs, T.v_execs, T.v_audit_execs, T.incomplete);
		printf("acked %lu, verified %lu, LOST %lu, DUPLICATES %lu, unexpected %lu\n", acked, verified, T.lost, T.dup,
				T.unexpected);
		for(int i = 0; i < S.rounds; i++){
			printf("stock mosquitto (persistence true, autosave_interval 1800) kill -9 #%d: %lu QoS 1 messages PUBACKed "
					"for an offline persistent session, %lu survived, %lu lost\n", i + 1, S.acked[i], S.survived[i],
					S.acked[i] - S.survived[i]);
			sa += S.acked[i];
			ss += S.survived[i];
		}
		if(S.rounds){
			printf("stock mosquitto total: %lu acknowledged, %lu survived (%.1f%%); control round with a clean stop: "
					"%lu of %lu survived\n", sa, ss, sa ? 100.0 * (double)ss / (double)sa : 0.0, S.control_survived,
					S.control_acked);
		}
		printf("RESULT crashtest kills=%lu seed=%" PRIu64 " load_s=%.1f rate=%.0f acked=%lu shadow=%lu jobs=%lu "
				"exec=%lu verified=%lu lost=%lu dup=%lu unexpected=%lu stock_acked=%lu stock_survived=%lu\n", T.kills,
				O.seed, T.load_s, rate, acked, T.shadow_acked, T.creates_acked, T.exec_acked, verified, T.lost, T.dup,
				T.unexpected, sa, ss);
		ok = T.lost == 0 && T.dup == 0 && T.unexpected == 0 && T.shadow_acked > 0 && T.creates_acked > 0
				&& T.exec_acked > 0 && T.kills == (unsigned long)O.kills;
		if(!ok && !T.lost && !T.dup && !T.unexpected) fprintf(stderr, "crashtest: some kind of write was never acknowledged\n");
		printf("%s\n", ok ? "PASS" : "FAIL");
	}
	mosquitto_lib_cleanup();
	return ok ? 0 : 1;
}
