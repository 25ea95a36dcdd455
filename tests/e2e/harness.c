/*
 * harness.c - end-to-end harness: real broker, real MQTT v5 clients.
 *
 * Owns: broker child processes and their temp dirs, client network threads,
 * the received-message queues. It must never talk to anything but
 * 127.0.0.1, never use a fixed port, and never leave a broker running after
 * the test process is gone (brokers are registered and SIGKILLed at exit or
 * on a fatal signal).
 *
 * Clients run libmosquitto in "external thread" mode (mosquitto_threaded_set)
 * with our own loop thread instead of mosquitto_loop_start(): the loop never
 * reconnects on its own, so a session taken over or a broker killed stays
 * disconnected, exactly as the test arranged.
 *
 * When run as root, mosquitto drops privileges to the "mosquitto" user
 * before it opens its log and loads the plugin, so the temp dir is handed to
 * that user: the plugin must be able to create its database there, as in
 * production.
 *
 * FLEETMQ_BROKER_WRAPPER (optional) prefixes the broker command, e.g.
 * "valgrind --error-exitcode=99 --leak-check=full" (words split on blanks,
 * no quoting; the first is looked up in PATH). Under a wrapper every harness
 * timeout is multiplied by fm_timeout_scale(), and a broker that exits with
 * the wrapper's --error-exitcode fails the run like a sanitizer report.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#ifndef FLEETMQ_MOSQUITTO_BIN
#define FLEETMQ_MOSQUITTO_BIN "/usr/sbin/mosquitto"
#endif
#ifndef FLEETMQ_PLUGIN_PATH
#define FLEETMQ_PLUGIN_PATH ""
#endif

#define FM_START_TIMEOUT_MS 10000
#define FM_STOP_TIMEOUT_MS 5000
#define FM_MID_SLOTS 65536

/* =========================================================================
 * time
 * ========================================================================= */

uint64_t fm_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t fm_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void fm_sleep_ms(int ms)
{
	struct timespec ts;
	if(ms <= 0) return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	while(nanosleep(&ts, &ts) == -1 && errno == EINTR){
	}
}

static void deadline_ts(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if(ts->tv_nsec >= 1000000000L){
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* =========================================================================
 * broker wrapper (FLEETMQ_BROKER_WRAPPER) and timeout scale
 * ========================================================================= */

#define FM_WRAPPER_MAX_ARGS 64
/* Default fm_timeout_scale() under a wrapper (valgrind: the broker's CPU
 * work is 20-50 times slower, its latency much less). */
#define FM_WRAPPER_TIMEOUT_SCALE 5

static struct {
	bool loaded;
	char *words;                       /* the variable, split in place */
	char *argv[FM_WRAPPER_MAX_ARGS];   /* argv[0] as given */
	int argc;                          /* 0 = no wrapper */
	char prog[PATH_MAX];               /* argv[0] looked up in PATH */
	int error_exitcode;                /* --error-exitcode=N, 0 = none */
	const char *log_file;              /* --log-file=... (valgrind), NULL = stderr */
} g_wrap;

/* Wrapped brokers that exited with the wrapper's error code; turned into a
 * failing exit status by fm_cunit_main(). */
static int g_wrapper_reports;

static void wrapper_load(void)
{
	const char *env = getenv("FLEETMQ_BROKER_WRAPPER");
	char *save = NULL, *w;

	if(g_wrap.loaded) return;
	g_wrap.loaded = true;
	if(!env || !*env) return;
	g_wrap.words = strdup(env);
	if(!g_wrap.words) return;
	for(w = strtok_r(g_wrap.words, " \t\n", &save); w && g_wrap.argc < FM_WRAPPER_MAX_ARGS - 1;
			w = strtok_r(NULL, " \t\n", &save)){
		g_wrap.argv[g_wrap.argc++] = w;
		if(!strncmp(w, "--error-exitcode=", 17)) g_wrap.error_exitcode = atoi(w + 17);
		if(!strncmp(w, "--log-file=", 11)) g_wrap.log_file = w + 11;
	}
	if(g_wrap.argc == 0) return;
	if(strchr(g_wrap.argv[0], '/')){
		snprintf(g_wrap.prog, sizeof(g_wrap.prog), "%s", g_wrap.argv[0]);
	}else{
		const char *path = getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin";
		g_wrap.prog[0] = '\0';
		while(*path && !g_wrap.prog[0]){
			size_t n = strcspn(path, ":");
			char cand[PATH_MAX];
			snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, path, g_wrap.argv[0]);
			if(access(cand, X_OK) == 0) snprintf(g_wrap.prog, sizeof(g_wrap.prog), "%s", cand);
			path += n;
			if(*path == ':') path++;
		}
		if(!g_wrap.prog[0]) snprintf(g_wrap.prog, sizeof(g_wrap.prog), "%s", g_wrap.argv[0]);
	}
	fprintf(stderr, "harness: broker wrapper %s (error exit code %d, timeouts x%d)\n", env,
			g_wrap.error_exitcode, fm_timeout_scale());
}

static bool wrapper_active(void)
{
	wrapper_load();
	return g_wrap.argc > 0;
}

int fm_timeout_scale(void)
{
	static int scale;
	const char *env;

	if(scale) return scale;
	env = getenv("FLEETMQ_TIMEOUT_SCALE");
	if(env && atoi(env) >= 1) scale = atoi(env);
	else scale = (getenv("FLEETMQ_BROKER_WRAPPER") && *getenv("FLEETMQ_BROKER_WRAPPER"))
			? FM_WRAPPER_TIMEOUT_SCALE : 1;
	return scale;
}

/* A wrapped broker exited with the wrapper's error code: show the wrapper's
 * report (its --log-file with %p expanded, else the broker's stderr). */
static void wrapper_report(const struct fm_broker *b, pid_t pid)
{
	char path[PATH_MAX], line[1024];
	FILE *f;
	size_t n = 0;

	g_wrapper_reports++;
	fprintf(stderr, "\n===== broker %d (%s) exited with the wrapper's error code %d =====\n",
			(int)pid, b->dir, g_wrap.error_exitcode);
	if(g_wrap.log_file){
		const char *p = g_wrap.log_file;
		while(*p && n + 16 < sizeof(path)){
			if(p[0] == '%' && p[1] == 'p'){
				n += (size_t)snprintf(path + n, sizeof(path) - n, "%d", (int)pid);
				p += 2;
			}else if(p[0] == '%' && p[1] == '%'){
				path[n++] = '%';
				p += 2;
			}else{
				path[n++] = *p++;
			}
		}
		path[n] = '\0';
	}else{
		snprintf(path, sizeof(path), "%s", b->stderr_path);
	}
	f = fopen(path, "r");
	if(!f){
		fprintf(stderr, "(no report: cannot read %s)\n", path);
		return;
	}
	n = 0;
	while(fgets(line, sizeof(line), f)){
		if(++n > 600){
			fprintf(stderr, "... (rest of %s not shown)\n", path);
			break;
		}
		fputs(line, stderr);
	}
	fclose(f);
}

/* =========================================================================
 * broker registry: kill every broker we started if the test dies
 * ========================================================================= */

#define FM_MAX_BROKERS 32
static volatile pid_t g_broker_pids[FM_MAX_BROKERS];

static void registry_add(pid_t pid)
{
	for(int i = 0; i < FM_MAX_BROKERS; i++){
		if(g_broker_pids[i] == 0){
			g_broker_pids[i] = pid;
			return;
		}
	}
}

static void registry_remove(pid_t pid)
{
	for(int i = 0; i < FM_MAX_BROKERS; i++){
		if(g_broker_pids[i] == pid) g_broker_pids[i] = 0;
	}
}

static void registry_kill_all(void)
{
	for(int i = 0; i < FM_MAX_BROKERS; i++){
		if(g_broker_pids[i] > 0) kill(g_broker_pids[i], SIGKILL);
	}
}

static void fatal_signal_handler(int sig)
{
	registry_kill_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_reaper(void)
{
	static bool installed = false;
	if(installed) return;
	installed = true;
	atexit(registry_kill_all);
	signal(SIGINT, fatal_signal_handler);
	signal(SIGTERM, fatal_signal_handler);
	signal(SIGSEGV, fatal_signal_handler);
	signal(SIGABRT, fatal_signal_handler);
	signal(SIGBUS, fatal_signal_handler);
	signal(SIGPIPE, SIG_IGN);
}

/* =========================================================================
 * broker: files
 * ========================================================================= */

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if(!f){
		fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
		return -1;
	}
	fputs(text, f);
	if(fclose(f) != 0) return -1;
	chmod(path, 0644);
	return 0;
}

/* Read a whole file; NULL if unreadable. Caller frees. */
static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0;
	if(!f) return NULL;
	for(;;){
		if(cap - len < 4096){
			cap = cap ? cap * 2 : 8192;
			char *nb = realloc(buf, cap);
			if(!nb){
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		if(n == 0) break;
		len += n;
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* Replace every occurrence of `from` in text by `to`. Caller frees. */
static char *str_replace_all(const char *text, const char *from, const char *to)
{
	size_t flen = strlen(from), tlen = strlen(to), count = 0;
	for(const char *p = strstr(text, from); p; p = strstr(p + flen, from)) count++;
	char *out = malloc(strlen(text) + count * (tlen + 1) + 1);
	if(!out) return NULL;
	char *w = out;
	const char *r = text;
	for(const char *p = strstr(r, from); p; p = strstr(r, from)){
		memcpy(w, r, (size_t)(p - r));
		w += p - r;
		memcpy(w, to, tlen);
		w += tlen;
		r = p + flen;
	}
	strcpy(w, r);
	return out;
}

static int free_port(void)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int port = -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if(fd < 0) return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = 0;
	if(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0
			&& getsockname(fd, (struct sockaddr *)&sa, &sl) == 0){
		port = ntohs(sa.sin_port);
	}
	close(fd);
	return port;
}

static bool port_accepts(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;
	if(fd < 0) return false;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static int broker_prepare(struct fm_broker *b, const struct fm_broker_opts *opts)
{
	static const struct fm_broker_opts dflt = FM_BROKER_OPTS_INITIALIZER;
	char conf[4096];
	int n;

	if(!opts) opts = &dflt;
	memset(b, 0, sizeof(*b));
	snprintf(b->dir, sizeof(b->dir), "%s/fleetmq-e2e-XXXXXX",
			getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if(!mkdtemp(b->dir)){
		fprintf(stderr, "harness: mkdtemp: %s\n", strerror(errno));
		b->dir[0] = '\0';
		return -1;
	}
	chmod(b->dir, 0755);
	if(geteuid() == 0){
		/* mosquitto drops to this user before opening its log / the plugin. */
		struct passwd *pw = getpwnam("mosquitto");
		if(pw && chown(b->dir, pw->pw_uid, pw->pw_gid) != 0){
			fprintf(stderr, "harness: chown %s: %s\n", b->dir, strerror(errno));
		}
	}
	snprintf(b->conf_path, sizeof(b->conf_path), "%s/mosquitto.conf", b->dir);
	snprintf(b->yaml_path, sizeof(b->yaml_path), "%s/fleetmq.yaml", b->dir);
	snprintf(b->db_path, sizeof(b->db_path), "%s/fleetmq.db", b->dir);
	snprintf(b->log_path, sizeof(b->log_path), "%s/mosquitto.log", b->dir);
	snprintf(b->stderr_path, sizeof(b->stderr_path), "%s/stderr.log", b->dir);
	b->start_timeout_ms = (opts->start_timeout_ms > 0 ? opts->start_timeout_ms : FM_START_TIMEOUT_MS)
			* fm_timeout_scale();

	b->port = free_port();
	if(b->port <= 0){
		fprintf(stderr, "harness: no free port\n");
		return -1;
	}

	n = snprintf(conf, sizeof(conf),
			"listener %d 127.0.0.1\n"
			"allow_anonymous true\n"
			"set_tcp_nodelay true\n"
			"persistence false\n"
			"log_dest file %s\n"
			"log_type all\n"
			"log_timestamp_format %%H:%%M:%%S\n"
			"connection_messages true\n",
			b->port, b->log_path);
	if(opts->with_plugin){
		n += snprintf(conf + n, sizeof(conf) - (size_t)n,
				"plugin %s\n"
				"plugin_opt_config_file %s\n",
				FLEETMQ_PLUGIN_PATH, b->yaml_path);
	}
	if(opts->extra_conf){
		n += snprintf(conf + n, sizeof(conf) - (size_t)n, "%s\n", opts->extra_conf);
	}
	if(n >= (int)sizeof(conf)){
		fprintf(stderr, "harness: mosquitto.conf too long\n");
		return -1;
	}
	if(write_file(b->conf_path, conf) != 0) return -1;

	if(opts->with_plugin){
		char *tmp = str_replace_all(opts->yaml ? opts->yaml : FM_DEFAULT_YAML, "@DB@", b->db_path);
		char *yaml = tmp ? str_replace_all(tmp, "@DIR@", b->dir) : NULL;
		int rc = yaml ? write_file(b->yaml_path, yaml) : -1;
		free(tmp);
		free(yaml);
		if(rc != 0) return -1;
	}
	return 0;
}

/* =========================================================================
 * broker: process
 * ========================================================================= */

static int status_to_code(int status)
{
	if(WIFEXITED(status)) return WEXITSTATUS(status);
	if(WIFSIGNALED(status)) return 128 + WTERMSIG(status);
	return -1;
}

/* Sanitizer reports written by brokers (an ASan/UBSan plugin build runs in
 * the stock mosquitto with the runtimes preloaded); counted at cleanup and
 * turned into a failing exit status by fm_cunit_main(). */
static int g_sanitizer_reports;

extern char **environ;

#ifdef FLEETMQ_BROKER_PRELOAD
static char **broker_env(const struct fm_broker *b)
{
	static char preload[512], asan[1024], ubsan[1024], lsan[1024];
	size_t n = 0, i;
	char **env;

	while(environ[n]) n++;
	env = calloc(n + 5, sizeof(*env));
	if(!env) return environ;
	for(i = 0; i < n; i++) env[i] = environ[i];
	snprintf(preload, sizeof(preload), "LD_PRELOAD=%s", FLEETMQ_BROKER_PRELOAD);
	snprintf(asan, sizeof(asan), "ASAN_OPTIONS=log_path=%s/sanitizer:detect_leaks=1", b->dir);
	snprintf(lsan, sizeof(lsan), "LSAN_OPTIONS=suppressions=%s:print_suppressions=0", FLEETMQ_LSAN_SUPPRESSIONS);
	snprintf(ubsan, sizeof(ubsan), "UBSAN_OPTIONS=log_path=%s/sanitizer:print_stacktrace=1", b->dir);
	env[n++] = preload;
	env[n++] = asan;
	env[n++] = ubsan;
	env[n++] = lsan;
	env[n] = NULL;
	return env;
}
#endif

static void check_sanitizer_reports(const struct fm_broker *b)
{
	char cmd[700];
	FILE *p;
	char line[512];
	bool any = false;

	if(!b->dir[0]) return;
	snprintf(cmd, sizeof(cmd), "cat %s/sanitizer.* 2>/dev/null", b->dir);
	p = popen(cmd, "r");
	if(!p) return;
	while(fgets(line, sizeof(line), p)){
		if(!any) fprintf(stderr, "\n===== sanitizer report from the broker (%s) =====\n", b->dir);
		any = true;
		fputs(line, stderr);
	}
	pclose(p);
	if(any) g_sanitizer_reports++;
}

static int broker_spawn(struct fm_broker *b)
{
	char *argv[FM_WRAPPER_MAX_ARGS + 4];
	const char *prog = FLEETMQ_MOSQUITTO_BIN;
	int argc = 0;
	pid_t pid;
#ifdef FLEETMQ_BROKER_PRELOAD
	char **envp = broker_env(b);
#else
	char **envp = environ;
#endif

	if(wrapper_active()){
		for(int i = 0; i < g_wrap.argc; i++) argv[argc++] = g_wrap.argv[i];
		prog = g_wrap.prog;
	}
	argv[argc++] = (char *)FLEETMQ_MOSQUITTO_BIN;
	argv[argc++] = (char *)"-c";
	argv[argc++] = b->conf_path;
	argv[argc] = NULL;

	install_reaper();
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if(pid < 0){
		fprintf(stderr, "harness: fork: %s\n", strerror(errno));
		return -1;
	}
	if(pid == 0){
		/* Child: async-signal-safe calls only. */
		int out = open(b->stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int in = open("/dev/null", O_RDONLY);
		if(in >= 0) dup2(in, 0);
		if(out >= 0){
			dup2(out, 1);
			dup2(out, 2);
		}
		/* Don't inherit the test's client sockets: a dropped connection
		 * must really be dropped. */
		if(close_range(3, ~0U, 0) != 0){
			for(int fd = 3; fd < 4096; fd++) close(fd);
		}
		execve(prog, argv, envp);
		_exit(127);
	}
	if(envp != environ) free(envp);
	b->pid = pid;
	registry_add(pid);
	return 0;
}

/* Non-blocking reap. True if the process has exited (b->pid is then 0). */
static bool broker_reap(struct fm_broker *b, int flags)
{
	int status;
	pid_t r;
	if(b->pid <= 0) return true;
	do{
		r = waitpid(b->pid, &status, flags);
	}while(r < 0 && errno == EINTR);
	if(r == b->pid || (r < 0 && errno == ECHILD)){
		if(r == b->pid){
			b->last_status = status;
			if(wrapper_active() && g_wrap.error_exitcode && WIFEXITED(status)
					&& WEXITSTATUS(status) == g_wrap.error_exitcode){
				wrapper_report(b, r);
			}
		}
		registry_remove(b->pid);
		b->pid = 0;
		return true;
	}
	return false;
}

static int broker_wait_ready(struct fm_broker *b)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)b->start_timeout_ms;
	while(fm_mono_ms() < deadline){
		if(broker_reap(b, WNOHANG)){
			fprintf(stderr, "harness: mosquitto exited during start-up (code %d); log:\n",
					status_to_code(b->last_status));
			fm_broker_dump_log(b, 200);
			return -1;
		}
		if(port_accepts(b->port)) return 0;
		fm_sleep_ms(20);
	}
	fprintf(stderr, "harness: mosquitto did not accept on port %d within %d ms; log:\n",
			b->port, b->start_timeout_ms);
	fm_broker_dump_log(b, 200);
	fm_broker_kill9(b);
	return -1;
}

int fm_broker_start(struct fm_broker *b, const struct fm_broker_opts *opts)
{
	if(broker_prepare(b, opts) != 0) return -1;
	if(broker_spawn(b) != 0) return -1;
	return broker_wait_ready(b);
}

int fm_broker_restart(struct fm_broker *b)
{
	if(b->pid > 0){
		fprintf(stderr, "harness: restart of a running broker\n");
		return -1;
	}
	if(broker_spawn(b) != 0) return -1;
	return broker_wait_ready(b);
}

int fm_broker_start_expect_failure(struct fm_broker *b, const struct fm_broker_opts *opts,
		int *exit_status, char **log_text)
{
	uint64_t deadline, accepted_at = 0;

	*exit_status = -1;
	*log_text = NULL;
	if(broker_prepare(b, opts) != 0) return -1;
	if(broker_spawn(b) != 0) return -1;
	deadline = fm_mono_ms() + (uint64_t)b->start_timeout_ms;
	while(fm_mono_ms() < deadline){
		if(broker_reap(b, WNOHANG)){
			*exit_status = status_to_code(b->last_status);
			*log_text = fm_broker_log_text(b);
			return 0;
		}
		if(port_accepts(b->port)){
			/* It came up; give it a moment to change its mind. */
			if(accepted_at == 0) accepted_at = fm_mono_ms();
			else if(fm_mono_ms() - accepted_at > 500) break;
		}
		fm_sleep_ms(20);
	}
	*log_text = fm_broker_log_text(b);
	fm_broker_kill9(b);
	return -1;
}

static int broker_signal_wait(struct fm_broker *b, int sig, int timeout_ms)
{
	uint64_t deadline;
	if(b->pid <= 0) return -1;
	kill(b->pid, sig);
	deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	while(!broker_reap(b, WNOHANG)){
		if(fm_mono_ms() > deadline){
			fprintf(stderr, "harness: broker %d ignored signal %d; SIGKILL\n", (int)b->pid, sig);
			kill(b->pid, SIGKILL);
			broker_reap(b, 0);
			return -1;
		}
		fm_sleep_ms(5);
	}
	return status_to_code(b->last_status);
}

int fm_broker_stop(struct fm_broker *b)
{
	return broker_signal_wait(b, SIGTERM, FM_STOP_TIMEOUT_MS * fm_timeout_scale());
}

int fm_broker_kill9(struct fm_broker *b)
{
	return broker_signal_wait(b, SIGKILL, FM_STOP_TIMEOUT_MS * fm_timeout_scale());
}

bool fm_broker_alive(struct fm_broker *b)
{
	return b->pid > 0 && !broker_reap(b, WNOHANG);
}

const char *fm_broker_log_path(const struct fm_broker *b)
{
	return b->log_path;
}

char *fm_broker_log_text(const struct fm_broker *b)
{
	char *log = read_file(b->log_path);
	char *err = read_file(b->stderr_path);
	size_t ll = log ? strlen(log) : 0, el = err ? strlen(err) : 0;
	char *out = malloc(ll + el + 64);
	if(out){
		snprintf(out, ll + el + 64, "%s\n--- stderr ---\n%s", log ? log : "", err ? err : "");
	}
	free(log);
	free(err);
	return out;
}

void fm_broker_dump_log(const struct fm_broker *b, int lines)
{
	char *text = fm_broker_log_text(b);
	const char *start;
	int seen = 0;
	if(!text) return;
	start = text + strlen(text);
	while(start > text){
		start--;
		if(*start == '\n' && ++seen > lines){
			start++;
			break;
		}
	}
	fprintf(stderr, "\n----- %s (last %d lines) -----\n%s\n----- end of log -----\n",
			b->log_path, lines, start);
	free(text);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void fm_broker_cleanup(struct fm_broker *b)
{
	if(b->pid > 0) fm_broker_stop(b);
	check_sanitizer_reports(b);
	if(b->dir[0]){
		if(getenv("FLEETMQ_E2E_KEEP")){
			fprintf(stderr, "harness: keeping %s\n", b->dir);
		}else{
			nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		}
		b->dir[0] = '\0';
	}
}

int fm_text_line_of(const char *text, const char *needle)
{
	const char *p = text ? strstr(text, needle) : NULL;
	int line = 1;
	if(!p) return 0;
	for(const char *q = text; q < p; q++){
		if(*q == '\n') line++;
	}
	return line;
}

bool fm_text_mentions_line(const char *text, int line)
{
	char num[32];
	size_t nl;
	if(!text || line <= 0) return false;
	nl = (size_t)snprintf(num, sizeof(num), "%d", line);
	for(const char *p = strstr(text, num); p; p = strstr(p + 1, num)){
		char after = p[nl];
		if(after >= '0' && after <= '9') continue;
		if(p > text && (p[-1] == ':' || p[-1] == ' ')){
			if(p[-1] == ':') return true;
			if(p - text >= 5 && strncmp(p - 5, "line ", 5) == 0) return true;
		}
	}
	return false;
}

/* =========================================================================
 * client
 * ========================================================================= */

struct fm_client {
	struct mosquitto *mosq;
	char *id;
	pthread_t thread;
	bool thread_started;
	atomic_int stop;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fm_msg *head, *tail;
	uint64_t seq;
	int16_t *puback;          /* by mid: -1 = pending / unknown */
	int16_t *suback;
	int16_t *unsuback;        /* by mid: 1 once UNSUBACK arrived */
	int connack;              /* -1 until CONNACK */
	bool connected;
	bool disconnected;
	int disconnect_rc;
	unsigned control_seq;     /* correlation data counter (test thread only) */
};

void fm_msg_free(struct fm_msg *m)
{
	if(!m) return;
	free(m->topic);
	free(m->payload);
	free(m->correlation);
	free(m);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
		const mosquitto_property *props)
{
	struct fm_client *c = obj;
	pthread_mutex_lock(&c->lock);
	c->connack = rc;
	c->connected = rc == 0;
	if(rc != 0) c->disconnected = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	struct fm_client *c = obj;
	pthread_mutex_lock(&c->lock);
	c->connected = false;
	c->disconnected = true;
	c->disconnect_rc = rc;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code,
		const mosquitto_property *props)
{
	struct fm_client *c = obj;
	pthread_mutex_lock(&c->lock);
	c->puback[mid & 0xFFFF] = (int16_t)reason_code;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count,
		const int *granted_qos, const mosquitto_property *props)
{
	struct fm_client *c = obj;
	pthread_mutex_lock(&c->lock);
	c->suback[mid & 0xFFFF] = (int16_t)(qos_count > 0 ? granted_qos[0] : 0x80);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_unsubscribe(struct mosquitto *mosq, void *obj, int mid, const mosquitto_property *props)
{
	struct fm_client *c = obj;
	pthread_mutex_lock(&c->lock);
	c->unsuback[mid & 0xFFFF] = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct fm_client *c = obj;
	struct fm_msg *m = calloc(1, sizeof(*m));
	if(!m) return;
	m->topic = strdup(msg->topic);
	m->payload = malloc((size_t)msg->payloadlen + 1);
	if(!m->topic || !m->payload){
		fm_msg_free(m);
		return;
	}
	if(msg->payloadlen > 0) memcpy(m->payload, msg->payload, (size_t)msg->payloadlen);
	m->payload[msg->payloadlen] = '\0';
	m->payloadlen = (size_t)msg->payloadlen;
	m->qos = msg->qos;
	m->retain = msg->retain;
	if(props){
		void *corr = NULL;
		uint16_t clen = 0;
		if(mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &clen, false)){
			m->correlation = corr;
			m->correlation_len = clen;
		}
	}

	pthread_mutex_lock(&c->lock);
	m->seq = ++c->seq;
	if(c->tail) c->tail->next = m;
	else c->head = m;
	c->tail = m;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *client_thread(void *arg)
{
	struct fm_client *c = arg;
	while(!atomic_load(&c->stop)){
		int rc = mosquitto_loop(c->mosq, 20, 1);
		if(rc != MOSQ_ERR_SUCCESS) fm_sleep_ms(5);
	}
	return NULL;
}

static void lib_init_once(void)
{
	mosquitto_lib_init();
}

struct fm_client *fm_client_new(const char *client_id, const char *username, bool clean_start)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct fm_client *c;
	pthread_condattr_t ca;

	pthread_once(&once, lib_init_once);
	c = calloc(1, sizeof(*c));
	if(!c) return NULL;
	c->id = strdup(client_id);
	c->puback = malloc(FM_MID_SLOTS * sizeof(int16_t));
	c->suback = malloc(FM_MID_SLOTS * sizeof(int16_t));
	c->unsuback = calloc(FM_MID_SLOTS, sizeof(int16_t));
	if(!c->id || !c->puback || !c->suback || !c->unsuback) goto fail;
	memset(c->puback, 0xFF, FM_MID_SLOTS * sizeof(int16_t));
	memset(c->suback, 0xFF, FM_MID_SLOTS * sizeof(int16_t));
	c->connack = -1;
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);

	c->mosq = mosquitto_new(client_id, clean_start, c);
	if(!c->mosq) goto fail;
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_threaded_set(c->mosq, true);
	if(username) mosquitto_username_pw_set(c->mosq, username, NULL);
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
	mosquitto_unsubscribe_v5_callback_set(c->mosq, on_unsubscribe);
	mosquitto_message_v5_callback_set(c->mosq, on_message);
	return c;

fail:
	free(c->id);
	free(c->puback);
	free(c->suback);
	free(c->unsuback);
	free(c);
	return NULL;
}

const char *fm_client_id(const struct fm_client *c)
{
	return c->id;
}

int fm_client_connect(struct fm_client *c, int port, int keepalive_s, int timeout_ms)
{
	struct timespec dl;
	int rc;

	if(c->thread_started) return -1;
	rc = mosquitto_connect_bind_v5(c->mosq, "127.0.0.1", port, keepalive_s, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "harness: %s: connect to port %d: %s\n", c->id, port, mosquitto_strerror(rc));
		return -1;
	}
	if(pthread_create(&c->thread, NULL, client_thread, c) != 0) return -1;
	c->thread_started = true;

	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while(c->connack < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->connack;
	if(rc < 0 && c->disconnected) rc = -1;
	pthread_mutex_unlock(&c->lock);
	if(rc != 0) fprintf(stderr, "harness: %s: CONNACK %d\n", c->id, rc);
	return rc;
}

int fm_client_subscribe(struct fm_client *c, const char *filter, int qos, int options, int timeout_ms)
{
	struct timespec dl;
	int mid = 0, rc;

	rc = mosquitto_subscribe_v5(c->mosq, &mid, filter, qos, options, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "harness: %s: subscribe %s: %s\n", c->id, filter, mosquitto_strerror(rc));
		return -1;
	}
	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while(c->suback[mid] < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->suback[mid];
	pthread_mutex_unlock(&c->lock);
	return rc < 0 ? -1 : rc;
}

int fm_client_unsubscribe(struct fm_client *c, const char *filter, int timeout_ms)
{
	struct timespec dl;
	int mid = 0, rc;

	rc = mosquitto_unsubscribe_v5(c->mosq, &mid, filter, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "harness: %s: unsubscribe %s: %s\n", c->id, filter, mosquitto_strerror(rc));
		return -1;
	}
	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while(!c->unsuback[mid] && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->unsuback[mid] ? 0 : -1;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int fm_client_publish(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain, int *mid)
{
	return mosquitto_publish_v5(c->mosq, mid, topic, (int)len, payload, qos, retain, NULL);
}

int fm_client_publish_request(struct fm_client *c, const char *topic, const void *payload, size_t len,
		const char *response_topic, const void *correlation, size_t correlation_len, int *mid)
{
	mosquitto_property *props = NULL;
	int rc = MOSQ_ERR_SUCCESS;

	if(response_topic) rc = mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, response_topic);
	if(rc == MOSQ_ERR_SUCCESS && correlation && correlation_len){
		rc = correlation_len > UINT16_MAX ? MOSQ_ERR_INVAL
				: mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation,
					(uint16_t)correlation_len);
	}
	if(rc == MOSQ_ERR_SUCCESS) rc = mosquitto_publish_v5(c->mosq, mid, topic, (int)len, payload, 1, false, props);
	mosquitto_property_free_all(&props);
	return rc;
}

int fm_client_wait_puback(struct fm_client *c, int mid, int timeout_ms)
{
	struct timespec dl;
	int rc;
	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while(c->puback[mid & 0xFFFF] < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->puback[mid & 0xFFFF];
	pthread_mutex_unlock(&c->lock);
	return rc < 0 ? -1 : rc;
}

int fm_client_publish_wait(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain, int timeout_ms)
{
	int mid = 0;
	int rc = fm_client_publish(c, topic, payload, len, qos, retain, &mid);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "harness: %s: publish %s: %s\n", c->id, topic, mosquitto_strerror(rc));
		return -1;
	}
	return fm_client_wait_puback(c, mid, timeout_ms);
}

static bool msg_matches(const struct fm_msg *m, const char *filter, fm_msg_pred pred, void *ctx)
{
	bool result = false;
	if(filter && (mosquitto_topic_matches_sub(filter, m->topic, &result) != MOSQ_ERR_SUCCESS || !result)){
		return false;
	}
	return pred ? pred(m, ctx) : true;
}

struct fm_msg *fm_client_wait_match(struct fm_client *c, const char *filter, fm_msg_pred pred,
		void *ctx, int timeout_ms)
{
	struct timespec dl;
	struct fm_msg *found = NULL;
	bool timed_out = false;

	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	for(;;){
		struct fm_msg *prev = NULL;
		for(struct fm_msg *m = c->head; m; prev = m, m = m->next){
			if(msg_matches(m, filter, pred, ctx)){
				if(prev) prev->next = m->next;
				else c->head = m->next;
				if(c->tail == m) c->tail = prev;
				m->next = NULL;
				found = m;
				break;
			}
		}
		if(found || timed_out) break;
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) timed_out = true;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

struct fm_msg *fm_client_wait_message(struct fm_client *c, const char *filter, int timeout_ms)
{
	return fm_client_wait_match(c, filter, NULL, NULL, timeout_ms);
}

size_t fm_client_count(struct fm_client *c, const char *filter)
{
	size_t n = 0;
	pthread_mutex_lock(&c->lock);
	for(struct fm_msg *m = c->head; m; m = m->next){
		if(msg_matches(m, filter, NULL, NULL)) n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

size_t fm_client_drain_filter(struct fm_client *c, const char *filter)
{
	size_t n = 0;
	struct fm_msg *keep = NULL, *keep_tail = NULL, *m, *next;
	pthread_mutex_lock(&c->lock);
	for(m = c->head; m; m = next){
		next = m->next;
		m->next = NULL;
		if(!filter || msg_matches(m, filter, NULL, NULL)){
			fm_msg_free(m);
			n++;
		}else{
			if(keep_tail) keep_tail->next = m;
			else keep = m;
			keep_tail = m;
		}
	}
	c->head = keep;
	c->tail = keep_tail;
	pthread_mutex_unlock(&c->lock);
	return n;
}

size_t fm_client_drain(struct fm_client *c)
{
	return fm_client_drain_filter(c, NULL);
}

bool fm_client_connected(struct fm_client *c)
{
	bool r;
	pthread_mutex_lock(&c->lock);
	r = c->connected;
	pthread_mutex_unlock(&c->lock);
	return r;
}

int fm_client_wait_disconnect(struct fm_client *c, int timeout_ms)
{
	struct timespec dl;
	int rc;
	deadline_ts(&dl, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while(!c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->disconnected ? c->disconnect_rc : -1;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int fm_client_disconnect(struct fm_client *c)
{
	if(!fm_client_connected(c)) return -1;
	if(mosquitto_disconnect_v5(c->mosq, 0, NULL) != MOSQ_ERR_SUCCESS) return -1;
	return fm_client_wait_disconnect(c, 2000) < 0 ? -1 : 0;
}

void fm_client_destroy(struct fm_client *c)
{
	if(!c) return;
	if(c->thread_started){
		if(fm_client_connected(c)) fm_client_disconnect(c);
		atomic_store(&c->stop, 1);
		pthread_join(c->thread, NULL);
	}
	mosquitto_destroy(c->mosq);
	fm_client_drain(c);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->puback);
	free(c->suback);
	free(c->unsuback);
	free(c->id);
	free(c);
}

/* =========================================================================
 * raw
 * ========================================================================= */

static size_t put_varint(uint8_t *p, size_t v)
{
	size_t n = 0;
	do{
		uint8_t byte = (uint8_t)(v % 128);
		v /= 128;
		if(v) byte |= 0x80;
		p[n++] = byte;
	}while(v);
	return n;
}

static size_t put_str(uint8_t *p, const char *s)
{
	size_t l = strlen(s);
	p[0] = (uint8_t)(l >> 8);
	p[1] = (uint8_t)(l & 0xFF);
	memcpy(p + 2, s, l);
	return l + 2;
}

static int send_all(int fd, const uint8_t *buf, size_t len)
{
	while(len > 0){
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if(n < 0){
			if(errno == EINTR) continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, uint8_t *buf, size_t len, uint64_t deadline)
{
	while(len > 0){
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = fm_mono_ms();
		if(now >= deadline) return -1;
		if(poll(&pfd, 1, (int)(deadline - now)) <= 0) return -1;
		ssize_t n = recv(fd, buf, len, 0);
		if(n <= 0){
			if(n < 0 && errno == EINTR) continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Send one packet: fixed header byte + varint length + body. */
static int raw_send_packet(int fd, uint8_t type, const uint8_t *body, size_t blen)
{
	uint8_t hdr[8];
	size_t hl;
	hdr[0] = type;
	hl = 1 + put_varint(hdr + 1, blen);
	if(send_all(fd, hdr, hl) != 0) return -1;
	return send_all(fd, body, blen);
}

int fm_raw_connect(int port, const char *client_id, const char *username, int keepalive_s,
		int timeout_ms)
{
	struct sockaddr_in sa;
	uint8_t body[1024], hdr[2], rest[256];
	size_t n = 0, rl = 0;
	int shift = 0;
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	int fd;

	if(strlen(client_id) + (username ? strlen(username) : 0) > 900) return -1;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if(fd < 0) return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)port);
	if(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) goto fail;

	n += put_str(body + n, "MQTT");
	body[n++] = 5;                                   /* protocol level: v5 */
	body[n++] = (uint8_t)(0x02 | (username ? 0x80 : 0)); /* clean start, username */
	body[n++] = (uint8_t)(keepalive_s >> 8);
	body[n++] = (uint8_t)(keepalive_s & 0xFF);
	body[n++] = 0;                                   /* no properties */
	n += put_str(body + n, client_id);
	if(username) n += put_str(body + n, username);
	if(raw_send_packet(fd, 0x10, body, n) != 0) goto fail;

	/* CONNACK: 0x20, varint length, flags, reason code, properties. */
	if(recv_all(fd, hdr, 1, deadline) != 0 || hdr[0] != 0x20) goto fail;
	for(;;){
		if(recv_all(fd, hdr + 1, 1, deadline) != 0) goto fail;
		rl |= (size_t)(hdr[1] & 0x7F) << shift;
		shift += 7;
		if(!(hdr[1] & 0x80)) break;
		if(shift > 21) goto fail;
	}
	if(rl < 2 || rl > sizeof(rest) || recv_all(fd, rest, rl, deadline) != 0) goto fail;
	if(rest[1] != 0){
		fprintf(stderr, "harness: raw %s: CONNACK reason 0x%02x\n", client_id, rest[1]);
		goto fail;
	}
	return fd;

fail:
	close(fd);
	return -1;
}

int fm_raw_publish(int fd, const char *topic, const void *payload, size_t len)
{
	size_t tl = strlen(topic);
	uint8_t *body = malloc(tl + len + 8);
	size_t n = 0;
	int rc;
	if(!body) return -1;
	n += put_str(body + n, topic);
	body[n++] = 0;                                   /* no properties */
	if(len) memcpy(body + n, payload, len);
	n += len;
	rc = raw_send_packet(fd, 0x30, body, n);         /* PUBLISH, QoS 0 */
	free(body);
	return rc;
}

void fm_raw_drop(int fd)
{
	if(fd >= 0) close(fd);
}

/* =========================================================================
 * pb
 * ========================================================================= */

#define FM_PACK(type_prefix, msgp, lenp) do{ \
		size_t sz_ = type_prefix##__get_packed_size(msgp); \
		buf = malloc(sz_ ? sz_ : 1); \
		if(buf) *(lenp) = type_prefix##__pack(msgp, buf); \
	}while(0)

uint8_t *fm_pb_hello(uint64_t shadow_version, const char *device_type, const char *agent_version,
		size_t *len)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	uint8_t *buf = NULL;
	h.shadow_version = shadow_version;
	h.device_type = (char *)(device_type ? device_type : "");
	h.agent_version = (char *)(agent_version ? agent_version : "");
	h.hw_revision = (char *)"rev-a";
	h.sent_at_ms = fm_wall_ms();
	FM_PACK(fleetmq__v1__hello, &h, len);
	return buf;
}

uint8_t *fm_pb_update_request(const char *token, uint64_t expected_version, const char *reported,
		const char *desired, size_t *len)
{
	Fleetmq__V1__ShadowUpdateRequest r = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;
	uint8_t *buf = NULL;
	r.client_token = (char *)(token ? token : "");
	r.expected_version = expected_version;
	r.reported_json = (char *)(reported ? reported : "");
	r.desired_json = (char *)(desired ? desired : "");
	FM_PACK(fleetmq__v1__shadow_update_request, &r, len);
	return buf;
}

uint8_t *fm_pb_job_next_get(const char *token, size_t *len)
{
	Fleetmq__V1__JobNextGetRequest r = FLEETMQ__V1__JOB_NEXT_GET_REQUEST__INIT;
	uint8_t *buf = NULL;
	r.client_token = (char *)(token ? token : "");
	FM_PACK(fleetmq__v1__job_next_get_request, &r, len);
	return buf;
}

uint8_t *fm_pb_job_update(int status, uint64_t expected_version, int32_t progress, const char *token,
		size_t *len)
{
	Fleetmq__V1__JobExecutionUpdate u = FLEETMQ__V1__JOB_EXECUTION_UPDATE__INIT;
	uint8_t *buf = NULL;
	u.status = (Fleetmq__V1__ExecutionStatus)status;
	u.expected_version = expected_version;
	u.progress_percent = progress;
	u.client_token = (char *)(token ? token : "");
	FM_PACK(fleetmq__v1__job_execution_update, &u, len);
	return buf;
}

uint8_t *fm_pb_get_request(const char *token, size_t *len)
{
	Fleetmq__V1__ShadowGetRequest r = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;
	uint8_t *buf = NULL;
	r.client_token = (char *)(token ? token : "");
	FM_PACK(fleetmq__v1__shadow_get_request, &r, len);
	return buf;
}

uint8_t *fm_pb_telemetry(uint64_t sequence, const char *metric, double value, size_t *len)
{
	Fleetmq__V1__TelemetryBatch t = FLEETMQ__V1__TELEMETRY_BATCH__INIT;
	Fleetmq__V1__Metric m = FLEETMQ__V1__METRIC__INIT;
	Fleetmq__V1__Metric *mp = &m;
	uint8_t *buf = NULL;
	m.name = (char *)(metric ? metric : "sys.cpu.percent");
	m.value = value;
	t.sequence = sequence;
	t.timestamp_ms = fm_wall_ms();
	t.n_metrics = 1;
	t.metrics = &mp;
	FM_PACK(fleetmq__v1__telemetry_batch, &t, len);
	return buf;
}

Fleetmq__V1__HelloAccepted *fm_pb_hello_accepted(const struct fm_msg *m)
{
	return fleetmq__v1__hello_accepted__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__ShadowDocument *fm_pb_shadow_document(const struct fm_msg *m)
{
	return fleetmq__v1__shadow_document__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__ShadowUpdateAccepted *fm_pb_update_accepted(const struct fm_msg *m)
{
	return fleetmq__v1__shadow_update_accepted__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__ShadowDelta *fm_pb_shadow_delta(const struct fm_msg *m)
{
	return fleetmq__v1__shadow_delta__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__Rejection *fm_pb_rejection(const struct fm_msg *m)
{
	return fleetmq__v1__rejection__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__Presence *fm_pb_presence(const struct fm_msg *m)
{
	return fleetmq__v1__presence__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__JobNotify *fm_pb_job_notify(const struct fm_msg *m)
{
	return fleetmq__v1__job_notify__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__JobNextGetAccepted *fm_pb_job_next_accepted(const struct fm_msg *m)
{
	return fleetmq__v1__job_next_get_accepted__unpack(NULL, m->payloadlen, m->payload);
}

Fleetmq__V1__JobExecutionUpdateAccepted *fm_pb_job_update_accepted(const struct fm_msg *m)
{
	return fleetmq__v1__job_execution_update_accepted__unpack(NULL, m->payloadlen, m->payload);
}

const char *fm_exec_status_name(int status)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&fleetmq__v1__execution_status__descriptor, status);
	return v ? v->name : "?";
}

const char *fm_error_code_name(int code)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&fleetmq__v1__error_code__descriptor, code);
	return v ? v->name : "?";
}

const char *fm_presence_state_name(int state)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
			&fleetmq__v1__presence_state__descriptor, state);
	return v ? v->name : "?";
}

/* =========================================================================
 * device
 * ========================================================================= */

char *fm_topic(char *buf, size_t size, const char *device_id, const char *suffix)
{
	snprintf(buf, size, FM_TOPIC_PREFIX "/%s/%s", device_id, suffix);
	return buf;
}

struct fm_client *fm_device_connect(int port, const char *device_id)
{
	char filter[256];
	int rc;
	struct fm_client *c = fm_client_new(device_id, device_id, true);
	if(!c) return NULL;
	if(fm_client_connect(c, port, 60, FM_TIMEOUT_MS) != 0){
		fm_client_destroy(c);
		return NULL;
	}
	rc = fm_client_subscribe(c, fm_topic(filter, sizeof(filter), device_id, "#"), 1,
			MQTT_SUB_OPT_NO_LOCAL, FM_TIMEOUT_MS);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: device %s: SUBACK %d for %s\n", device_id, rc, filter);
		fm_client_destroy(c);
		return NULL;
	}
	return c;
}

struct fm_client *fm_operator_connect(int port, const char *name, const char *const *filters)
{
	struct fm_client *c = fm_client_new(name, name, true);
	if(!c) return NULL;
	if(fm_client_connect(c, port, 60, FM_TIMEOUT_MS) != 0){
		fm_client_destroy(c);
		return NULL;
	}
	for(size_t i = 0; filters && filters[i]; i++){
		int rc = fm_client_subscribe(c, filters[i], 1, 0, FM_TIMEOUT_MS);
		if(rc < 0 || rc >= 0x80){
			fprintf(stderr, "harness: operator %s: SUBACK %d for %s\n", name, rc, filters[i]);
			fm_client_destroy(c);
			return NULL;
		}
	}
	return c;
}

Fleetmq__V1__HelloAccepted *fm_device_hello(struct fm_client *c, const char *device_id,
		uint64_t shadow_version, int timeout_ms)
{
	char topic[256];
	size_t len = 0;
	uint8_t *buf = fm_pb_hello(shadow_version, "e2e-sensor", "e2e-1.0", &len);
	struct fm_msg *m;
	Fleetmq__V1__HelloAccepted *ha = NULL;
	int rc;

	if(!buf) return NULL;
	rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), device_id, "hello"), buf, len, 1,
			false, timeout_ms);
	free(buf);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: %s: hello PUBACK %d\n", device_id, rc);
		return NULL;
	}
	m = fm_client_wait_message(c, fm_topic(topic, sizeof(topic), device_id, "hello/accepted"), timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no hello/accepted within %d ms\n", device_id, timeout_ms);
		return NULL;
	}
	ha = fm_pb_hello_accepted(m);
	if(!ha) fprintf(stderr, "harness: %s: undecodable HelloAccepted\n", device_id);
	fm_msg_free(m);
	return ha;
}

void fm_update_result_clear(struct fm_update_result *r)
{
	if(r->accepted) fleetmq__v1__shadow_update_accepted__free_unpacked(r->accepted, NULL);
	if(r->rejected) fleetmq__v1__rejection__free_unpacked(r->rejected, NULL);
	r->accepted = NULL;
	r->rejected = NULL;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t sl = strlen(s), xl = strlen(suffix);
	return sl >= xl && strcmp(s + sl - xl, suffix) == 0;
}

/* Predicate: an .../accepted or .../rejected reply carrying token ctx. */
static bool reply_has_token(const struct fm_msg *m, void *ctx)
{
	const char *token = ctx;
	bool ok = false;
	if(ends_with(m->topic, "/rejected")){
		Fleetmq__V1__Rejection *r = fm_pb_rejection(m);
		ok = r && strcmp(r->client_token, token) == 0;
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}else if(ends_with(m->topic, "/update/accepted")){
		Fleetmq__V1__ShadowUpdateAccepted *a = fm_pb_update_accepted(m);
		ok = a && strcmp(a->client_token, token) == 0;
		if(a) fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
	}else if(ends_with(m->topic, "/get/accepted")){
		Fleetmq__V1__ShadowDocument *d = fm_pb_shadow_document(m);
		ok = d && strcmp(d->client_token, token) == 0;
		if(d) fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	return ok;
}

int fm_shadow_update(struct fm_client *c, const char *device_id, const char *token,
		uint64_t expected_version, const char *reported, const char *desired,
		struct fm_update_result *out, int timeout_ms)
{
	char topic[256], filter[256];
	size_t len = 0;
	uint8_t *buf;
	struct fm_msg *m;
	int rc, result = -1;

	out->accepted = NULL;
	out->rejected = NULL;
	buf = fm_pb_update_request(token, expected_version, reported, desired, &len);
	if(!buf) return -1;
	rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), device_id, "shadow/update"), buf, len,
			1, false, timeout_ms);
	free(buf);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: %s: shadow/update PUBACK %d\n", fm_client_id(c), rc);
		return -1;
	}
	m = fm_client_wait_match(c, fm_topic(filter, sizeof(filter), device_id, "shadow/update/+"),
			reply_has_token, (void *)token, timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no update reply for token '%s' within %d ms\n",
				fm_client_id(c), token, timeout_ms);
		return -1;
	}
	if(ends_with(m->topic, "/accepted")){
		out->accepted = fm_pb_update_accepted(m);
		if(out->accepted) result = 1;
	}else{
		out->rejected = fm_pb_rejection(m);
		if(out->rejected) result = 0;
	}
	fm_msg_free(m);
	return result;
}

Fleetmq__V1__ShadowDocument *fm_shadow_get(struct fm_client *c, const char *device_id,
		const char *token, int timeout_ms)
{
	char topic[256], filter[256];
	size_t len = 0;
	uint8_t *buf = fm_pb_get_request(token, &len);
	Fleetmq__V1__ShadowDocument *doc = NULL;
	struct fm_msg *m;
	int rc;

	if(!buf) return NULL;
	rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), device_id, "shadow/get"), buf, len,
			1, false, timeout_ms);
	free(buf);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: %s: shadow/get PUBACK %d\n", fm_client_id(c), rc);
		return NULL;
	}
	m = fm_client_wait_match(c, fm_topic(filter, sizeof(filter), device_id, "shadow/get/+"),
			reply_has_token, (void *)token, timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no get reply for token '%s' within %d ms\n",
				fm_client_id(c), token, timeout_ms);
		return NULL;
	}
	if(ends_with(m->topic, "/accepted")){
		doc = fm_pb_shadow_document(m);
	}else{
		Fleetmq__V1__Rejection *r = fm_pb_rejection(m);
		fprintf(stderr, "harness: %s: get rejected: %s %s\n", fm_client_id(c),
				r ? fm_error_code_name(r->code) : "?", r ? r->reason : "");
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	fm_msg_free(m);
	return doc;
}

struct rejection_ctx {
	const char *token;
};

static bool rejection_has_token(const struct fm_msg *m, void *ctx)
{
	struct rejection_ctx *rc = ctx;
	Fleetmq__V1__Rejection *r;
	bool ok;
	if(!rc->token) return true;
	r = fm_pb_rejection(m);
	ok = r && strcmp(r->client_token, rc->token) == 0;
	if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	return ok;
}

Fleetmq__V1__Rejection *fm_wait_rejection(struct fm_client *c, const char *topic,
		const char *token, int timeout_ms)
{
	struct rejection_ctx ctx = { token };
	struct fm_msg *m = fm_client_wait_match(c, topic, rejection_has_token, &ctx, timeout_ms);
	Fleetmq__V1__Rejection *r;
	if(!m) return NULL;
	r = fm_pb_rejection(m);
	fm_msg_free(m);
	return r;
}

Fleetmq__V1__Presence *fm_wait_presence(struct fm_client *c, const char *device_id,
		Fleetmq__V1__PresenceState state, bool *retained, int timeout_ms)
{
	char topic[256];
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	fm_topic(topic, sizeof(topic), device_id, "presence");
	for(;;){
		uint64_t now = fm_mono_ms();
		struct fm_msg *m;
		Fleetmq__V1__Presence *p;
		if(now >= deadline) return NULL;
		m = fm_client_wait_message(c, topic, (int)(deadline - now));
		if(!m) return NULL;
		p = fm_pb_presence(m);
		if(p && p->state == state){
			if(retained) *retained = m->retain;
			fm_msg_free(m);
			return p;
		}
		if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
		fm_msg_free(m);
	}
}

/* =========================================================================
 * jobs
 * ========================================================================= */

/* Predicate: a jobs .../accepted or .../rejected reply carrying token ctx. */
static bool job_reply_has_token(const struct fm_msg *m, void *ctx)
{
	const char *token = ctx;
	bool ok = false;
	if(ends_with(m->topic, "/rejected")){
		Fleetmq__V1__Rejection *r = fm_pb_rejection(m);
		ok = r && strcmp(r->client_token, token) == 0;
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}else if(ends_with(m->topic, "/next/get/accepted")){
		Fleetmq__V1__JobNextGetAccepted *a = fm_pb_job_next_accepted(m);
		ok = a && strcmp(a->client_token, token) == 0;
		if(a) fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
	}else if(ends_with(m->topic, "/update/accepted")){
		Fleetmq__V1__JobExecutionUpdateAccepted *a = fm_pb_job_update_accepted(m);
		ok = a && strcmp(a->client_token, token) == 0;
		if(a) fleetmq__v1__job_execution_update_accepted__free_unpacked(a, NULL);
	}
	return ok;
}

Fleetmq__V1__JobNextGetAccepted *fm_job_next_get(struct fm_client *c, const char *device_id,
		const char *token, int timeout_ms)
{
	char topic[256], filter[256];
	size_t len = 0;
	uint8_t *buf = fm_pb_job_next_get(token, &len);
	Fleetmq__V1__JobNextGetAccepted *a = NULL;
	struct fm_msg *m;
	int rc;

	if(!buf) return NULL;
	rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), device_id, "jobs/next/get"), buf, len, 1,
			false, timeout_ms);
	free(buf);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: %s: jobs/next/get PUBACK %d\n", fm_client_id(c), rc);
		return NULL;
	}
	m = fm_client_wait_match(c, fm_topic(filter, sizeof(filter), device_id, "jobs/next/get/+"),
			job_reply_has_token, (void *)token, timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no jobs/next/get reply for token '%s' within %d ms\n",
				fm_client_id(c), token, timeout_ms);
		return NULL;
	}
	if(ends_with(m->topic, "/accepted")){
		a = fm_pb_job_next_accepted(m);
	}else{
		Fleetmq__V1__Rejection *r = fm_pb_rejection(m);
		fprintf(stderr, "harness: %s: jobs/next/get rejected: %s %s\n", fm_client_id(c),
				r ? fm_error_code_name(r->code) : "?", r ? r->reason : "");
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	fm_msg_free(m);
	return a;
}

void fm_job_update_result_clear(struct fm_job_update_result *r)
{
	if(r->accepted) fleetmq__v1__job_execution_update_accepted__free_unpacked(r->accepted, NULL);
	if(r->rejected) fleetmq__v1__rejection__free_unpacked(r->rejected, NULL);
	r->accepted = NULL;
	r->rejected = NULL;
}

int fm_job_update(struct fm_client *c, const char *device_id, const char *job_id, int status,
		uint64_t expected_version, int32_t progress, const char *token,
		struct fm_job_update_result *out, int timeout_ms)
{
	char suffix[300], topic[512], filter[512];
	size_t len = 0;
	uint8_t *buf;
	struct fm_msg *m;
	int rc, result = -1;

	out->accepted = NULL;
	out->rejected = NULL;
	buf = fm_pb_job_update(status, expected_version, progress, token, &len);
	if(!buf) return -1;
	snprintf(suffix, sizeof(suffix), "jobs/%s/update", job_id);
	rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), device_id, suffix), buf, len, 1, false,
			timeout_ms);
	free(buf);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: %s: %s PUBACK %d\n", fm_client_id(c), topic, rc);
		return -1;
	}
	snprintf(suffix, sizeof(suffix), "jobs/%s/update/+", job_id);
	m = fm_client_wait_match(c, fm_topic(filter, sizeof(filter), device_id, suffix), job_reply_has_token,
			(void *)token, timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no reply on %s for token '%s' within %d ms\n", fm_client_id(c), filter,
				token, timeout_ms);
		return -1;
	}
	if(ends_with(m->topic, "/accepted")){
		out->accepted = fm_pb_job_update_accepted(m);
		if(out->accepted) result = 1;
	}else{
		out->rejected = fm_pb_rejection(m);
		if(out->rejected) result = 0;
	}
	fm_msg_free(m);
	return result;
}

Fleetmq__V1__JobNotify *fm_wait_job_notify(struct fm_client *c, const char *device_id,
		fm_notify_pred pred, void *ctx, int timeout_ms)
{
	char topic[256];
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	fm_topic(topic, sizeof(topic), device_id, "jobs/notify");
	for(;;){
		uint64_t now = fm_mono_ms();
		struct fm_msg *m;
		Fleetmq__V1__JobNotify *n;
		/* A timeout of 0 still looks at what has already arrived. */
		m = fm_client_wait_message(c, topic, now < deadline ? (int)(deadline - now) : 0);
		if(!m) return NULL;
		n = fm_pb_job_notify(m);
		fm_msg_free(m);
		if(!n){
			fprintf(stderr, "harness: %s: undecodable JobNotify\n", fm_client_id(c));
			continue;
		}
		if(!pred || pred(n, ctx)) return n;
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
}

int fm_job_summary_index(Fleetmq__V1__JobExecutionSummary *const *list, size_t n, const char *job_id)
{
	for(size_t i = 0; i < n; i++){
		if(list[i] && list[i]->job_id && strcmp(list[i]->job_id, job_id) == 0) return (int)i;
	}
	return -1;
}

/* =========================================================================
 * control
 * ========================================================================= */

char *fm_control_response_topic(const struct fm_client *c, char *buf, size_t size)
{
	snprintf(buf, size, "fleetmq-e2e/%s/control-response", c->id);
	return buf;
}

struct fm_client *fm_control_connect(int port, const char *name)
{
	char topic[256];
	int rc;
	struct fm_client *c = fm_client_new(name, name, true);
	if(!c) return NULL;
	if(fm_client_connect(c, port, 60, FM_TIMEOUT_MS) != 0){
		fm_client_destroy(c);
		return NULL;
	}
	rc = fm_client_subscribe(c, fm_control_response_topic(c, topic, sizeof(topic)), 1, 0, FM_TIMEOUT_MS);
	if(rc < 0 || rc >= 0x80){
		fprintf(stderr, "harness: control client %s: SUBACK %d for %s\n", name, rc, topic);
		fm_client_destroy(c);
		return NULL;
	}
	return c;
}

struct corr_ctx {
	const char *data;
	size_t len;
};

static bool msg_has_correlation(const struct fm_msg *m, void *ctx)
{
	const struct corr_ctx *x = ctx;
	return m->correlation && m->correlation_len == x->len && memcmp(m->correlation, x->data, x->len) == 0;
}

cJSON *fm_control_request_raw(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int timeout_ms)
{
	char resp_topic[256], corr[64];
	struct corr_ctx cx;
	struct fm_msg *m;
	cJSON *root;
	int rc;

	fm_control_response_topic(c, resp_topic, sizeof(resp_topic));
	snprintf(corr, sizeof(corr), "e2e-%s-%u", c->id, ++c->control_seq);
	rc = fm_client_publish_request(c, topic, payload, len, resp_topic, corr, strlen(corr), NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "harness: %s: publish %s: %s\n", c->id, topic, mosquitto_strerror(rc));
		return NULL;
	}
	cx.data = corr;
	cx.len = strlen(corr);
	m = fm_client_wait_match(c, resp_topic, msg_has_correlation, &cx, timeout_ms);
	if(!m){
		fprintf(stderr, "harness: %s: no control response with correlation '%s' within %d ms\n", c->id,
				corr, timeout_ms);
		return NULL;
	}
	root = cJSON_ParseWithLength((const char *)m->payload, m->payloadlen);
	if(!root) fprintf(stderr, "harness: %s: control response is not JSON: %.300s\n", c->id, m->payload);
	fm_msg_free(m);
	return root;
}

cJSON *fm_control_request(struct fm_client *c, const char *json, int timeout_ms)
{
	return fm_control_request_raw(c, FM_CONTROL_TOPIC, json, strlen(json), timeout_ms);
}

cJSON *fm_control_command(struct fm_client *c, const char *cmd_json, int timeout_ms)
{
	size_t n = strlen(cmd_json) + 32;
	char *req = malloc(n);
	cJSON *root, *responses, *first = NULL;

	if(!req) return NULL;
	snprintf(req, n, "{\"commands\":[%s]}", cmd_json);
	root = fm_control_request(c, req, timeout_ms);
	free(req);
	if(!root) return NULL;
	responses = cJSON_GetObjectItemCaseSensitive(root, "responses");
	if(cJSON_IsArray(responses) && cJSON_GetArraySize(responses) >= 1){
		first = cJSON_DetachItemFromArray(responses, 0);
	}else{
		char *text = cJSON_PrintUnformatted(root);
		fprintf(stderr, "harness: %s: control response without responses[]: %.300s\n", c->id,
				text ? text : "?");
		free(text);
	}
	cJSON_Delete(root);
	return first;
}

cJSON *fm_control_commandf(struct fm_client *c, const char *fmt, ...)
{
	va_list ap;
	char *cmd = NULL;
	cJSON *r;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&cmd, fmt, ap);
	va_end(ap);
	if(n < 0) return NULL;
	r = fm_control_command(c, cmd, FM_TIMEOUT_MS);
	free(cmd);
	return r;
}

/* =========================================================================
 * json
 * ========================================================================= */

cJSON *fm_json_parse(const char *text)
{
	return text ? cJSON_Parse(text) : NULL;
}

const cJSON *fm_json_path(const cJSON *root, const char *dotted)
{
	char key[256];
	const cJSON *cur = root;
	const char *p = dotted;
	while(cur && p && *p){
		const char *dot = strchr(p, '.');
		size_t kl = dot ? (size_t)(dot - p) : strlen(p);
		if(kl >= sizeof(key)) return NULL;
		memcpy(key, p, kl);
		key[kl] = '\0';
		if(!cJSON_IsObject(cur)) return NULL;
		cur = cJSON_GetObjectItemCaseSensitive(cur, key);
		p = dot ? dot + 1 : NULL;
	}
	return cur;
}

bool fm_json_has(const char *text, const char *dotted)
{
	cJSON *root = fm_json_parse(text);
	bool r = root && fm_json_path(root, dotted) != NULL;
	cJSON_Delete(root);
	return r;
}

double fm_json_number(const char *text, const char *dotted, double dflt)
{
	cJSON *root = fm_json_parse(text);
	const cJSON *it = root ? fm_json_path(root, dotted) : NULL;
	double r = (it && cJSON_IsNumber(it)) ? it->valuedouble : dflt;
	cJSON_Delete(root);
	return r;
}

char *fm_json_string(const char *text, const char *dotted, char *buf, size_t size)
{
	cJSON *root = fm_json_parse(text);
	const cJSON *it = root ? fm_json_path(root, dotted) : NULL;
	snprintf(buf, size, "%s", (it && cJSON_IsString(it)) ? it->valuestring : "");
	cJSON_Delete(root);
	return buf;
}

int fm_json_object_size(const char *text, const char *dotted)
{
	cJSON *root = fm_json_parse(text);
	const cJSON *it = root ? (dotted && *dotted ? fm_json_path(root, dotted) : root) : NULL;
	int r = (it && cJSON_IsObject(it)) ? cJSON_GetArraySize(it) : -1;
	cJSON_Delete(root);
	return r;
}

/* =========================================================================
 * run
 * ========================================================================= */

static uint64_t g_test_started_ms;

static void test_setup(void)
{
	g_test_started_ms = fm_mono_ms();
}

static void test_teardown(void)
{
	printf(" (%llu ms) ", (unsigned long long)(fm_mono_ms() - g_test_started_ms));
	fflush(stdout);
}

int fm_cunit_main(const char *suite, CU_InitializeFunc init, CU_CleanupFunc cleanup,
		const struct fm_test *tests)
{
	CU_pSuite s;
	unsigned failures, suites_failed, tests_failed;

	install_reaper();
	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite_with_setup_and_teardown(suite, init, cleanup, test_setup, test_teardown);
	if(!s){
		CU_cleanup_registry();
		return 2;
	}
	for(size_t i = 0; tests[i].name; i++){
		if(!CU_add_test(s, tests[i].name, tests[i].fn)){
			CU_cleanup_registry();
			return 2;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures();
	suites_failed = CU_get_number_of_suites_failed();
	tests_failed = CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	mosquitto_lib_cleanup();
	if(g_sanitizer_reports){
		fprintf(stderr, "harness: %d broker sanitizer report(s): failing\n", g_sanitizer_reports);
	}
	if(g_wrapper_reports){
		fprintf(stderr, "harness: %d broker(s) exited with the wrapper's error code %d: failing\n",
				g_wrapper_reports, g_wrap.error_exitcode);
	}
	return (failures || suites_failed || tests_failed || g_sanitizer_reports || g_wrapper_reports) ? 1 : 0;
}
