/*
 * files.c - the agent's file primitives: atomic replacement (tmp + fsync +
 * rename + directory fsync), durable unlink, small reads, recursive mkdir /
 * remove, and a fsync'd copy.
 *
 * Every persistent write of the agent goes through agent__write_atomic, so
 * a power cut leaves either the old or the new file, never a torn one. The
 * agent writes rarely (job steps, download progress every N chunks, config,
 * flags): nothing here is meant for per-sample data.
 *
 * Must never: follow symlinks while deleting, leave a *.tmp behind on
 * failure, or print.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "fleetmq_alloc.h"

#define COPY_CHUNK_BYTES 65536

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if(!err || errlen == 0) return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- results */

void agent__result_init(struct agent_result *r)
{
	memset(r, 0, sizeof(*r));
	r->outcome = AGENT_OUT_NONE;
}

void agent__result_detail(struct agent_result *r, const char *key, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	for(i = 0; i < r->n_details; i++){
		if(!strcmp(r->keys[i], key)) break;
	}
	if(i == r->n_details){
		if(r->n_details == AGENT_MAX_DETAILS) return;
		snprintf(r->keys[i], sizeof(r->keys[i]), "%s", key);
		r->n_details++;
	}
	va_start(ap, fmt);
	vsnprintf(r->values[i], sizeof(r->values[i]), fmt, ap);
	va_end(ap);
}

const char *agent__result_detail_get(const struct agent_result *r, const char *key)
{
	size_t i;

	for(i = 0; i < r->n_details; i++){
		if(!strcmp(r->keys[i], key)) return r->values[i];
	}
	return NULL;
}

const char *agent__outcome_name(enum agent_outcome o)
{
	switch(o){
		case AGENT_OUT_IN_PROGRESS: return "IN_PROGRESS";
		case AGENT_OUT_SUCCEEDED: return "SUCCEEDED";
		case AGENT_OUT_FAILED: return "FAILED";
		case AGENT_OUT_REJECTED: return "REJECTED";
		case AGENT_OUT_INTERRUPTED: return "INTERRUPTED";
		case AGENT_OUT_CANCELED: return "CANCELED";
		case AGENT_OUT_NONE: return "NONE";
	}
	return "?";
}

/* ---------------------------------------------------------------- fsync */

int agent__fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if(fd < 0) return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

int agent__fsync_dir_of(const char *path)
{
	char buf[PATH_MAX];

	if(snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)){
		errno = ENAMETOOLONG;
		return -1;
	}
	return agent__fsync_dir(dirname(buf));
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while(len > 0){
		ssize_t n = write(fd, p, len);
		if(n < 0){
			if(errno == EINTR) continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int agent__write_atomic(const char *path, const void *data, size_t len, unsigned mode,
		char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	int fd, saved;

	if(snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)){
		set_err(err, errlen, "%s: path too long", path);
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
	if(fd < 0){
		set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		return -1;
	}
	if(write_all(fd, data, len) != 0 || fsync(fd) != 0){
		saved = errno;
		set_err(err, errlen, "%s: cannot write: %s", tmp, strerror(saved));
		close(fd);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if(close(fd) != 0){
		saved = errno;
		set_err(err, errlen, "%s: close: %s", tmp, strerror(saved));
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if(rename(tmp, path) != 0){
		saved = errno;
		set_err(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(saved));
		unlink(tmp);
		errno = saved;
		return -1;
	}
	if(agent__fsync_dir_of(path) != 0){
		set_err(err, errlen, "%s: cannot fsync its directory: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int agent__write_json_atomic(const char *path, const cJSON *json, char *err, size_t errlen)
{
	char *text = cJSON_Print(json);
	int rc;

	if(!text){
		set_err(err, errlen, "%s: out of memory", path);
		return -1;
	}
	rc = agent__write_atomic(path, text, strlen(text), 0644, err, errlen);
	cJSON_free(text);
	return rc;
}

int agent__unlink_durable(const char *path)
{
	if(unlink(path) != 0){
		if(errno == ENOENT) return 0;
		return -1;
	}
	return agent__fsync_dir_of(path);
}

/* ---------------------------------------------------------------- reads */

int agent__read_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t used = 0, cap;
	ssize_t n;
	int fd, saved;

	*out = NULL;
	if(len) *len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0) return -1;
	if(fstat(fd, &st) != 0){
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if((uint64_t)st.st_size > max){
		close(fd);
		errno = EFBIG;
		return -1;
	}
	cap = (size_t)st.st_size + 1;
	buf = fm_malloc(cap + 1);
	if(!buf){
		close(fd);
		errno = ENOMEM;
		return -1;
	}
	/* files in /proc report size 0: grow as needed, bounded by max */
	for(;;){
		if(used == cap){
			char *p;
			if(cap > max){
				fm_free(buf);
				close(fd);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			p = fm_realloc(buf, cap + 1);
			if(!p){
				fm_free(buf);
				close(fd);
				errno = ENOMEM;
				return -1;
			}
			buf = p;
		}
		n = read(fd, buf + used, cap - used);
		if(n < 0){
			if(errno == EINTR) continue;
			saved = errno;
			fm_free(buf);
			close(fd);
			errno = saved;
			return -1;
		}
		if(n == 0) break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	*out = buf;
	if(len) *len = used;
	return 0;
}

int agent__read_json(const char *path, cJSON **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;

	*out = NULL;
	if(agent__read_file(path, 16u * 1024u * 1024u, &text, &len) != 0){
		if(errno == ENOENT) return 1;
		set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	*out = cJSON_ParseWithLength(text, len);
	fm_free(text);
	if(!*out){
		set_err(err, errlen, "%s: not valid JSON", path);
		return -1;
	}
	return 0;
}

/* ---------------------------------------------------------------- directories */

int agent__mkdir_p(const char *path, unsigned mode)
{
	char buf[PATH_MAX];
	char *p;
	size_t len;

	len = (size_t)snprintf(buf, sizeof(buf), "%s", path);
	if(len >= sizeof(buf)){
		errno = ENAMETOOLONG;
		return -1;
	}
	while(len > 1 && buf[len - 1] == '/') buf[--len] = '\0';
	for(p = buf + 1; *p; p++){
		if(*p != '/') continue;
		*p = '\0';
		if(mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) return -1;
		*p = '/';
	}
	if(mkdir(buf, (mode_t)mode) != 0 && errno != EEXIST) return -1;
	return 0;
}

static int rm_rf_at(int parent, const char *name)
{
	struct stat st;
	DIR *d;
	struct dirent *e;
	int fd, rc = 0;

	if(fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return errno == ENOENT ? 0 : -1;
	if(!S_ISDIR(st.st_mode)) return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? 0 : -1;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if(fd < 0) return -1;
	d = fdopendir(fd);
	if(!d){
		close(fd);
		return -1;
	}
	while((e = readdir(d)) != NULL){
		if(!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
		if(rm_rf_at(dirfd(d), e->d_name) != 0) rc = -1;
	}
	closedir(d);
	if(rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -1;
	return rc;
}

int agent__rm_rf(const char *path)
{
	return rm_rf_at(AT_FDCWD, path);
}

int agent__copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
	char *buf = NULL;
	ssize_t n;
	int in = -1, out = -1, rc = -1;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if(in < 0){
		set_err(err, errlen, "%s: cannot open: %s", src, strerror(errno));
		goto cleanup;
	}
	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if(out < 0){
		set_err(err, errlen, "%s: cannot create: %s", dst, strerror(errno));
		goto cleanup;
	}
	buf = fm_malloc(COPY_CHUNK_BYTES);
	if(!buf){
		set_err(err, errlen, "out of memory");
		goto cleanup;
	}
	while((n = read(in, buf, COPY_CHUNK_BYTES)) != 0){
		if(n < 0){
			if(errno == EINTR) continue;
			set_err(err, errlen, "%s: cannot read: %s", src, strerror(errno));
			goto cleanup;
		}
		if(write_all(out, buf, (size_t)n) != 0){
			set_err(err, errlen, "%s: cannot write: %s", dst, strerror(errno));
			goto cleanup;
		}
	}
	if(fsync(out) != 0){
		set_err(err, errlen, "%s: fsync: %s", dst, strerror(errno));
		goto cleanup;
	}
	rc = 0;

cleanup:
	fm_free(buf);
	if(in >= 0) close(in);
	if(out >= 0 && close(out) != 0 && rc == 0){
		set_err(err, errlen, "%s: close: %s", dst, strerror(errno));
		rc = -1;
	}
	return rc;
}
