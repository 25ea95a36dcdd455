/*
 * artifact.c - chunked, resumable artifact transfer over MQTT.
 *
 * Serves files from artifacts.dir: the payload <dir>/<name> and its metadata
 * <dir>/<name>.json (written by `fleetmq artifacts add`). A device asks for
 * one chunk at a time (offset, length) on <prefix>/<id>/artifacts/<name>/get
 * and gets an ArtifactChunk on .../<name>/data; resuming after a lost link
 * or a power cut is just asking again from the offset it has stored. The
 * broker keeps no per-transfer state.
 *
 * A device may fetch only artifacts named by one of its active (queued or
 * in-progress) update executions, so artifact names are not a way to probe
 * the store. Reads are bounded (artifacts.max_chunk_bytes) pread()s of a
 * local file on the broker thread.
 *
 * Must never: serve a path outside artifacts.dir (names are single topic
 * levels, no leading '.'), or hold a file descriptor across callbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <cjson/cJSON.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

struct allowed_ctx {
	struct fleetmq_plugin *pl;
	char jobs[64][FLEETMQ_MAX_ID_BYTES + 1];
	int n;
};

static int allowed_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	struct allowed_ctx *x = ud;

	if(x->n < 64) snprintf(x->jobs[x->n++], sizeof(x->jobs[0]), "%s", rec->job_id);
	return 0;
}

/* Is `name` the artifact of one of the device's active update executions? */
static bool artifact_allowed(struct fleetmq_plugin *pl, const char *device_id, const char *name)
{
	struct allowed_ctx x;
	int i;

	memset(&x, 0, sizeof(x));
	x.pl = pl;
	if(fleetmq_store_exec_foreach_device(pl->store, device_id, true, allowed_cb, &x) != FLEETMQ_OK) return false;
	for(i = 0; i < x.n; i++){
		const char *a = job__artifact_of(pl, x.jobs[i]);
		if(a && !strcmp(a, name)) return true;
	}
	return false;
}

/* sha256 from the metadata file, "" if none. */
static void read_sha256(const char *meta_path, char *out, size_t outlen)
{
	char buf[8192];
	ssize_t n;
	int fd;
	cJSON *m;
	const cJSON *v;

	out[0] = '\0';
	fd = open(meta_path, O_RDONLY | O_CLOEXEC);
	if(fd < 0) return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if(n <= 0) return;
	buf[n] = '\0';
	m = cJSON_Parse(buf);
	v = cJSON_GetObjectItemCaseSensitive(m, "sha256");
	if(cJSON_IsString(v) && strlen(v->valuestring) == 64) snprintf(out, outlen, "%s", v->valuestring);
	cJSON_Delete(m);
}

void artifact__handle_get(struct fleetmq_plugin *pl, const char *device_id, const char *name, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms)
{
	Fleetmq__V1__ArtifactGetRequest *req = NULL;
	Fleetmq__V1__ArtifactChunk chunk = FLEETMQ__V1__ARTIFACT_CHUNK__INIT;
	char path[1024], meta_path[1100], sha[65], reason[256], suffix[FLEETMQ_MAX_ID_BYTES + 32];
	uint8_t *data = NULL, *buf = NULL;
	struct stat st;
	uint64_t want;
	ssize_t got;
	size_t plen;
	int fd = -1;

	req = fleetmq__v1__artifact_get_request__unpack(NULL, len, payload);
	if(!req){
		handlers__reject(pl, topic, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.ArtifactGetRequest protobuf message", NULL, 0);
		return;
	}
	if(strlen(req->client_token) > 64){
		handlers__reject(pl, topic, FLEETMQ_ERR_BAD_REQUEST, "client_token is longer than 64 bytes", NULL, 0);
		goto cleanup;
	}
	if(!pl->cfg.artifacts_dir || !pl->cfg.artifacts_dir[0]){
		handlers__reject(pl, topic, FLEETMQ_ERR_UNAVAILABLE, "artifact serving is not configured (artifacts.dir)",
				req->client_token, 0);
		goto cleanup;
	}
	if(name[0] == '.' || !artifact_allowed(pl, device_id, name)){
		snprintf(reason, sizeof(reason), "artifact '%.128s' is not part of an active update job of this device", name);
		handlers__reject(pl, topic, FLEETMQ_ERR_NOT_FOUND, reason, req->client_token, 0);
		goto cleanup;
	}
	snprintf(path, sizeof(path), "%s/%s", pl->cfg.artifacts_dir, name);
	snprintf(meta_path, sizeof(meta_path), "%s.json", path);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)){
		snprintf(reason, sizeof(reason), "artifact '%.128s' is not in the artifact store", name);
		handlers__reject(pl, topic, FLEETMQ_ERR_NOT_FOUND, reason, req->client_token, 0);
		goto cleanup;
	}
	if(req->offset > (uint64_t)st.st_size){
		snprintf(reason, sizeof(reason), "offset %" PRIu64 " is past the end (%lld bytes)", req->offset, (long long)st.st_size);
		handlers__reject(pl, topic, FLEETMQ_ERR_BAD_REQUEST, reason, req->client_token, 0);
		goto cleanup;
	}
	want = req->length ? req->length : (uint64_t)pl->cfg.artifacts_max_chunk_bytes;
	if(want > (uint64_t)pl->cfg.artifacts_max_chunk_bytes) want = (uint64_t)pl->cfg.artifacts_max_chunk_bytes;
	if(want > (uint64_t)st.st_size - req->offset) want = (uint64_t)st.st_size - req->offset;
	data = fm_malloc(want ? want : 1);
	if(!data) goto cleanup;
	got = want ? pread(fd, data, want, (off_t)req->offset) : 0;
	if(got < 0 || (uint64_t)got != want){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot read artifact %s: %s", path, got < 0 ? strerror(errno) : "short read");
		handlers__reject(pl, topic, FLEETMQ_ERR_INTERNAL, "cannot read the artifact", req->client_token, 0);
		goto cleanup;
	}
	read_sha256(meta_path, sha, sizeof(sha));
	chunk.artifact = (char *)name;
	chunk.offset = req->offset;
	chunk.data.data = data;
	chunk.data.len = (size_t)want;
	chunk.total_size = (uint64_t)st.st_size;
	chunk.sha256 = sha;
	chunk.eof = req->offset + want == (uint64_t)st.st_size;
	chunk.client_token = req->client_token;
	plen = fleetmq__v1__artifact_chunk__get_packed_size(&chunk);
	buf = fm_malloc(plen ? plen : 1);
	if(!buf) goto cleanup;
	fleetmq__v1__artifact_chunk__pack(&chunk, buf);
	snprintf(suffix, sizeof(suffix), "artifacts/%s/data", name);
	publish__queue_device(pl, device_id, suffix, buf, plen, 1, false);
	buf = NULL;
	(void)now_ms;

cleanup:
	if(fd >= 0) close(fd);
	fm_free(data);
	fm_free(buf);
	fleetmq__v1__artifact_get_request__free_unpacked(req, NULL);
}
