/*
 * statefile.c - small files in the client's state directory.
 *
 * Owns nothing but file descriptors for the duration of a call. Every
 * replacement of a file is atomic and durable: write <name>.tmp, fsync it,
 * rename over <name>, fsync the directory. A crash leaves either the old or
 * the new content, never a mix.
 *
 * Must never: leave a file descriptor open, or write outside the directory
 * it was given.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

int statefile__fsync_dir(const char *dir)
{
	int fd, rc = FLEETMQ_CLIENT_OK;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0) return FLEETMQ_CLIENT_ERR_IO;
	if(fsync(fd) != 0) rc = FLEETMQ_CLIENT_ERR_IO;
	close(fd);
	return rc;
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

int statefile__write_atomic(const char *dir, const char *name, const void *data, size_t len)
{
	char path[4096], tmp[4200];
	int fd = -1, rc = FLEETMQ_CLIENT_ERR_IO;

	if(!dir || !name || (!data && len)) return FLEETMQ_CLIENT_ERR_INVALID;
	if((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) return FLEETMQ_CLIENT_ERR_INVALID;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if(fd < 0) goto cleanup;
	if(write_all(fd, data, len) != 0) goto cleanup;
	if(fsync(fd) != 0) goto cleanup;
	if(close(fd) != 0){
		fd = -1;
		goto cleanup;
	}
	fd = -1;
	if(rename(tmp, path) != 0) goto cleanup;
	rc = statefile__fsync_dir(dir);

cleanup:
	if(fd >= 0) close(fd);
	if(rc != FLEETMQ_CLIENT_OK) unlink(tmp);
	return rc;
}

int statefile__read(const char *dir, const char *name, char **data, size_t *len)
{
	char path[4096];
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	int fd, rc = FLEETMQ_CLIENT_ERR_IO;

	*data = NULL;
	if(len) *len = 0;
	if((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) return FLEETMQ_CLIENT_ERR_INVALID;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0) return errno == ENOENT ? FLEETMQ_CLIENT_ERR_NOT_FOUND : FLEETMQ_CLIENT_ERR_IO;
	if(fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > (off_t)64 * 1024 * 1024) goto cleanup;
	buf = fm_malloc((size_t)st.st_size + 1);
	if(!buf){
		rc = FLEETMQ_CLIENT_ERR_NOMEM;
		goto cleanup;
	}
	while(have < (size_t)st.st_size){
		ssize_t n = read(fd, buf + have, (size_t)st.st_size - have);
		if(n < 0 && errno == EINTR) continue;
		if(n < 0) goto cleanup;
		if(n == 0) break;
		have += (size_t)n;
	}
	buf[have] = '\0';
	*data = buf;
	buf = NULL;
	if(len) *len = have;
	rc = FLEETMQ_CLIENT_OK;

cleanup:
	fm_free(buf);
	close(fd);
	return rc;
}
