/*
 * cli_files.c - local files: reading (bounded), JSON from files and
 * arguments, and atomic writes.
 *
 * An atomic write never leaves a half-written file under the final name:
 * the data goes to <path>.tmp.<pid>, is fsync'ed, renamed over the final
 * name, and the directory is fsync'ed so the rename itself is durable.
 *
 * Must never: follow a partial write with a rename, or leave a temporary
 * file behind after an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "fleetmq_alloc.h"

int cli_read_file(const char *path, const char *what, size_t max_bytes, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd;

	*out = NULL;
	if(len) *len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0){
		fprintf(stderr, "fleetmq: %s %s: %s\n", what, path, strerror(errno));
		return CLI_EXIT_LOCAL;
	}
	if(fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)){
		fprintf(stderr, "fleetmq: %s %s: not a regular file\n", what, path);
		close(fd);
		return CLI_EXIT_LOCAL;
	}
	if((uint64_t)st.st_size > max_bytes){
		fprintf(stderr, "fleetmq: %s %s: %lld bytes, more than the %zu allowed\n", what, path,
				(long long)st.st_size, max_bytes);
		close(fd);
		return CLI_EXIT_LOCAL;
	}
	buf = fm_malloc((size_t)st.st_size + 1);
	if(!buf){
		close(fd);
		return cli_oom();
	}
	while(got < (size_t)st.st_size){
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if(n < 0 && errno == EINTR) continue;
		if(n <= 0) break;
		got += (size_t)n;
	}
	close(fd);
	if(got != (size_t)st.st_size){
		fprintf(stderr, "fleetmq: %s %s: short read\n", what, path);
		fm_free(buf);
		return CLI_EXIT_LOCAL;
	}
	buf[got] = '\0';
	*out = buf;
	if(len) *len = got;
	return CLI_EXIT_OK;
}

/* Line and column of offset in text, for syntax error messages. */
static void position_of(const char *text, size_t offset, int *line, int *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for(i = 0; i < offset && text[i]; i++){
		if(text[i] == '\n'){
			(*line)++;
			*col = 1;
		}else{
			(*col)++;
		}
	}
}

/* Parse text as one JSON value (trailing white space allowed). On a syntax
 * error *errpos is the offset of the problem. */
static cJSON *parse_whole(const char *text, size_t *errpos)
{
	const char *end = NULL;
	cJSON *v = cJSON_ParseWithOpts(text, &end, 0);

	if(!v){
		const char *e = cJSON_GetErrorPtr();
		*errpos = e && e >= text ? (size_t)(e - text) : 0;
		return NULL;
	}
	while(end && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
	if(end && *end){
		*errpos = (size_t)(end - text);
		cJSON_Delete(v);
		return NULL;
	}
	return v;
}

int cli_read_json_file(const char *path, const char *what, bool want_object, cJSON **out)
{
	char *text = NULL;
	size_t errpos = 0;
	int rc, line, col;

	*out = NULL;
	rc = cli_read_file(path, what, 64u * 1024 * 1024, &text, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	*out = parse_whole(text, &errpos);
	if(!*out){
		position_of(text, errpos, &line, &col);
		fprintf(stderr, "fleetmq: %s %s:%d:%d: invalid JSON near '%.30s'\n", what, path, line, col, text + errpos);
		fm_free(text);
		return CLI_EXIT_LOCAL;
	}
	fm_free(text);
	if(want_object && !cJSON_IsObject(*out)){
		fprintf(stderr, "fleetmq: %s %s: must hold a JSON object ({...})\n", what, path);
		cJSON_Delete(*out);
		*out = NULL;
		return CLI_EXIT_LOCAL;
	}
	return CLI_EXIT_OK;
}

int cli_parse_json_arg(const char *text, const char *opt_name, bool want_object, cJSON **out)
{
	size_t errpos = 0;

	*out = parse_whole(text, &errpos);
	if(!*out){
		fprintf(stderr, "fleetmq: %s: invalid JSON at character %zu, near '%.30s'\n", opt_name, errpos + 1,
				text + errpos);
		fprintf(stderr, "fleetmq: (quote it for the shell, e.g. %s '{\"key\":\"value\"}')\n", opt_name);
		return CLI_EXIT_USAGE;
	}
	if(want_object && !cJSON_IsObject(*out)){
		fprintf(stderr, "fleetmq: %s: must be a JSON object, e.g. '{\"key\":\"value\"}'\n", opt_name);
		cJSON_Delete(*out);
		*out = NULL;
		return CLI_EXIT_USAGE;
	}
	return CLI_EXIT_OK;
}

int cli_fsync_dir_of(const char *path)
{
	char *copy = fm_strdup(path);
	int fd, rc = CLI_EXIT_OK;

	if(!copy) return cli_oom();
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0 || fsync(fd) != 0){
		fprintf(stderr, "fleetmq: cannot sync the directory of %s: %s\n", path, strerror(errno));
		rc = CLI_EXIT_LOCAL;
	}
	if(fd >= 0) close(fd);
	fm_free(copy);
	return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while(len > 0){
		ssize_t n = write(fd, p, len);
		if(n < 0 && errno == EINTR) continue;
		if(n <= 0) return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int cli_write_atomic(const char *path, const void *data, size_t len, int mode)
{
	char tmp[4096];
	int fd;

	if(snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp)){
		fprintf(stderr, "fleetmq: path too long: %s\n", path);
		return CLI_EXIT_LOCAL;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if(fd < 0){
		fprintf(stderr, "fleetmq: cannot create %s: %s\n", tmp, strerror(errno));
		return CLI_EXIT_LOCAL;
	}
	if(write_all(fd, data, len) != 0 || fsync(fd) != 0){
		fprintf(stderr, "fleetmq: cannot write %s: %s\n", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return CLI_EXIT_LOCAL;
	}
	if(close(fd) != 0 || rename(tmp, path) != 0){
		fprintf(stderr, "fleetmq: cannot replace %s: %s\n", path, strerror(errno));
		unlink(tmp);
		return CLI_EXIT_LOCAL;
	}
	return cli_fsync_dir_of(path);
}

int cli_copy_to_tmp(const char *src, const char *dst_tmp)
{
	char buf[65536];
	int in, out;
	ssize_t n;

	in = open(src, O_RDONLY | O_CLOEXEC);
	if(in < 0){
		fprintf(stderr, "fleetmq: cannot open %s: %s\n", src, strerror(errno));
		return CLI_EXIT_LOCAL;
	}
	out = open(dst_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if(out < 0){
		fprintf(stderr, "fleetmq: cannot create %s: %s\n", dst_tmp, strerror(errno));
		close(in);
		return CLI_EXIT_LOCAL;
	}
	for(;;){
		n = read(in, buf, sizeof(buf));
		if(n < 0 && errno == EINTR) continue;
		if(n < 0){
			fprintf(stderr, "fleetmq: cannot read %s: %s\n", src, strerror(errno));
			goto fail;
		}
		if(n == 0) break;
		if(write_all(out, buf, (size_t)n) != 0){
			fprintf(stderr, "fleetmq: cannot write %s: %s\n", dst_tmp, strerror(errno));
			goto fail;
		}
	}
	if(fsync(out) != 0){
		fprintf(stderr, "fleetmq: cannot write %s: %s\n", dst_tmp, strerror(errno));
		goto fail;
	}
	if(close(out) != 0){
		out = -1;
		fprintf(stderr, "fleetmq: cannot write %s: %s\n", dst_tmp, strerror(errno));
		goto fail;
	}
	close(in);
	return CLI_EXIT_OK;

fail:
	if(out >= 0) close(out);
	close(in);
	unlink(dst_tmp);
	return CLI_EXIT_LOCAL;
}
