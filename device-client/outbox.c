/*
 * outbox.c - the durable, ordered queue of job status reports.
 *
 * A job status report must never be lost: it is appended to
 * <state_dir>/outbox.jsonl and fsync'd before fleetmq_client_job_report()
 * returns, and leaves the queue only when the broker answered it. The file
 * is a log of one JSON object per line:
 *
 *   {"op":"add","seq":7,"job":"j1","st":3,"pct":-1,"step":"","ft":"",
 *    "det":{"k":"v"},"tok":"r1a2b3c4-9"[,"ev":4]}   a new report
 *   {"op":"ev","seq":7,"ev":4}                        its expected_version was resolved
 *   {"op":"done","seq":7}                             the broker answered it
 *
 * "done" records are not fsync'd: losing one only makes the report go out
 * once more, which the broker answers as a duplicate. Loading ignores lines
 * that do not parse (a torn last write) and rewrites the file compactly
 * (atomically); the file is compacted again when answered records dominate,
 * and before the next append after a failed write (so a half-written line
 * can never swallow a later record).
 *
 * Owns: the entries (a singly linked FIFO), the append descriptor.
 * Must never: drop an entry that was not popped, or reorder entries.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

#define OUTBOX_FILE "outbox.jsonl"
#define OUTBOX_COMPACT_MIN_DEAD 64

void outbox__entry_free(struct outbox_entry *e)
{
	size_t i;

	if(!e) return;
	fm_free(e->job_id);
	fm_free(e->step);
	fm_free(e->failure_type);
	for(i = 0; i < e->n_details; i++){
		fm_free(e->detail_keys ? e->detail_keys[i] : NULL);
		fm_free(e->detail_values ? e->detail_values[i] : NULL);
	}
	fm_free(e->detail_keys);
	fm_free(e->detail_values);
	fm_free(e);
}

static cJSON *entry_json(const struct outbox_entry *e)
{
	cJSON *o = cJSON_CreateObject(), *det;
	size_t i;

	if(!o) return NULL;
	det = cJSON_CreateObject();
	if(!det){
		cJSON_Delete(o);
		return NULL;
	}
	for(i = 0; i < e->n_details; i++) cJSON_AddStringToObject(det, e->detail_keys[i], e->detail_values[i]);
	cJSON_AddStringToObject(o, "op", "add");
	cJSON_AddNumberToObject(o, "seq", (double)e->seq);
	cJSON_AddStringToObject(o, "job", e->job_id);
	cJSON_AddNumberToObject(o, "st", e->status);
	cJSON_AddNumberToObject(o, "pct", e->progress_percent);
	cJSON_AddStringToObject(o, "step", e->step);
	cJSON_AddStringToObject(o, "ft", e->failure_type);
	cJSON_AddItemToObject(o, "det", det);
	cJSON_AddStringToObject(o, "tok", e->token);
	if(e->ev_known) cJSON_AddNumberToObject(o, "ev", (double)e->expected_version);
	return o;
}

/* Serialise j as one line (with '\n'); caller fm_free()s. */
static char *json_line(cJSON *j, size_t *len)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL, *line;
	size_t n;

	if(!s) return NULL;
	n = strlen(s);
	line = fm_malloc(n + 2);
	if(line){
		memcpy(line, s, n);
		line[n] = '\n';
		line[n + 1] = '\0';
		*len = n + 1;
	}
	cJSON_free(s);
	return line;
}

static int append_line(struct outbox *o, cJSON *rec, bool sync)
{
	char *line;
	size_t len = 0, off = 0;
	int rc = FLEETMQ_CLIENT_OK;

	if(o->fd < 0) return FLEETMQ_CLIENT_OK;   /* memory only */
	line = json_line(rec, &len);
	if(!line) return FLEETMQ_CLIENT_ERR_NOMEM;
	while(off < len){
		ssize_t n = write(o->fd, line + off, len - off);
		if(n < 0 && errno == EINTR) continue;
		if(n <= 0){
			rc = FLEETMQ_CLIENT_ERR_IO;
			break;
		}
		off += (size_t)n;
	}
	if(rc == FLEETMQ_CLIENT_OK && sync && fdatasync(o->fd) != 0) rc = FLEETMQ_CLIENT_ERR_IO;
	if(rc != FLEETMQ_CLIENT_OK) o->needs_compact = true;
	fm_free(line);
	return rc;
}

/* Rewrite the file with the live entries only and reopen it for appending. */
static int compact(struct outbox *o)
{
	struct outbox_entry *e;
	char *buf = NULL, *line;
	size_t len = 0, cap = 0, n;
	int rc = FLEETMQ_CLIENT_OK;

	if(!o->path) return FLEETMQ_CLIENT_OK;
	for(e = o->head; e; e = e->next){
		cJSON *j = entry_json(e);
		line = json_line(j, &n);
		cJSON_Delete(j);
		if(!line){
			rc = FLEETMQ_CLIENT_ERR_NOMEM;
			goto cleanup;
		}
		if(len + n + 1 > cap){
			size_t ncap = (len + n + 1) * 2;
			char *nb = fm_realloc(buf, ncap);
			if(!nb){
				fm_free(line);
				rc = FLEETMQ_CLIENT_ERR_NOMEM;
				goto cleanup;
			}
			buf = nb;
			cap = ncap;
		}
		memcpy(buf + len, line, n);
		len += n;
		fm_free(line);
	}
	rc = statefile__write_atomic(o->dir, OUTBOX_FILE, buf ? buf : "", len);
	if(rc != FLEETMQ_CLIENT_OK) goto cleanup;
	if(o->fd >= 0) close(o->fd);
	o->fd = open(o->path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if(o->fd < 0){
		rc = FLEETMQ_CLIENT_ERR_IO;
		goto cleanup;
	}
	o->dead_records = 0;
	o->needs_compact = false;

cleanup:
	fm_free(buf);
	return rc;
}

static struct outbox_entry *find_seq(struct outbox *o, uint64_t seq)
{
	struct outbox_entry *e;
	for(e = o->head; e; e = e->next){
		if(e->seq == seq) return e;
	}
	return NULL;
}

static const char *jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jnum(const cJSON *o, const char *k, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if(!cJSON_IsNumber(v)) return false;
	*out = v->valuedouble;
	return true;
}

static struct outbox_entry *entry_from_json(const cJSON *j)
{
	struct outbox_entry *e;
	const char *job = jstr(j, "job"), *step = jstr(j, "step"), *ft = jstr(j, "ft"), *tok = jstr(j, "tok");
	const cJSON *det = cJSON_GetObjectItemCaseSensitive(j, "det"), *it;
	double seq, st, pct, ev;
	size_t n, i = 0;

	if(!job || !tok || strlen(tok) > FM_MAX_TOKEN_BYTES || !jnum(j, "seq", &seq) || !jnum(j, "st", &st)) return NULL;
	if(!jnum(j, "pct", &pct)) pct = -1;
	e = fm_calloc(1, sizeof(*e));
	if(!e) return NULL;
	e->seq = (uint64_t)seq;
	e->status = (int)st;
	e->progress_percent = (int32_t)pct;
	e->job_id = fm_strdup(job);
	e->step = fm_strdup(step ? step : "");
	e->failure_type = fm_strdup(ft ? ft : "");
	snprintf(e->token, sizeof(e->token), "%s", tok);
	if(jnum(j, "ev", &ev)){
		e->ev_known = true;
		e->expected_version = (uint64_t)ev;
	}
	n = cJSON_IsObject(det) ? (size_t)cJSON_GetArraySize(det) : 0;
	if(n){
		e->detail_keys = fm_calloc(n, sizeof(char *));
		e->detail_values = fm_calloc(n, sizeof(char *));
		if(!e->detail_keys || !e->detail_values) goto fail;
		cJSON_ArrayForEach(it, det){
			if(!cJSON_IsString(it) || !it->string) continue;
			e->detail_keys[i] = fm_strdup(it->string);
			e->detail_values[i] = fm_strdup(it->valuestring);
			i++;
			if(!e->detail_keys[i - 1] || !e->detail_values[i - 1]){
				e->n_details = i;
				goto fail;
			}
		}
		e->n_details = i;
	}
	if(!e->job_id || !e->step || !e->failure_type) goto fail;
	return e;

fail:
	outbox__entry_free(e);
	return NULL;
}

static void link_tail(struct outbox *o, struct outbox_entry *e)
{
	e->next = NULL;
	if(o->tail) o->tail->next = e;
	else o->head = e;
	o->tail = e;
	o->count++;
}

/* Apply one log record while loading. */
static void load_record(struct outbox *o, const cJSON *j)
{
	const char *op = jstr(j, "op");
	double seq, ev;
	struct outbox_entry *e, **pp;

	if(!op || !jnum(j, "seq", &seq)) return;
	if(!strcmp(op, "add")){
		if(find_seq(o, (uint64_t)seq)) return;
		e = entry_from_json(j);
		if(!e) return;
		link_tail(o, e);
		if(e->seq >= o->next_seq) o->next_seq = e->seq + 1;
	}else if(!strcmp(op, "ev")){
		e = find_seq(o, (uint64_t)seq);
		if(e && jnum(j, "ev", &ev)){
			e->ev_known = true;
			e->expected_version = (uint64_t)ev;
		}
	}else if(!strcmp(op, "done")){
		for(pp = &o->head; *pp; pp = &(*pp)->next){
			if((*pp)->seq == (uint64_t)seq){
				e = *pp;
				*pp = e->next;
				o->count--;
				outbox__entry_free(e);
				break;
			}
		}
		o->tail = NULL;
		for(e = o->head; e; e = e->next) o->tail = e;
	}
}

int outbox__open(struct outbox *o, const char *dir)
{
	char *text = NULL, *line, *save = NULL;
	char path[4096];
	int rc;

	memset(o, 0, sizeof(*o));
	o->fd = -1;
	o->next_seq = 1;
	if(!dir) return FLEETMQ_CLIENT_OK;
	if((size_t)snprintf(path, sizeof(path), "%s/%s", dir, OUTBOX_FILE) >= sizeof(path)) return FLEETMQ_CLIENT_ERR_CONFIG;
	o->path = fm_strdup(path);
	o->dir = fm_strdup(dir);
	if(!o->path || !o->dir) return FLEETMQ_CLIENT_ERR_NOMEM;

	rc = statefile__read(dir, OUTBOX_FILE, &text, NULL);
	if(rc == FLEETMQ_CLIENT_OK){
		for(line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
			cJSON *j = cJSON_Parse(line);
			if(j) load_record(o, j);   /* unparsable = torn write: ignored */
			cJSON_Delete(j);
		}
	}else if(rc != FLEETMQ_CLIENT_ERR_NOT_FOUND){
		return rc;
	}
	fm_free(text);
	return compact(o);
}

int outbox__append(struct outbox *o, struct outbox_entry *e)
{
	cJSON *j;
	int rc;

	if(o->needs_compact && (rc = compact(o)) != FLEETMQ_CLIENT_OK) return rc;
	e->seq = o->next_seq;
	j = entry_json(e);
	if(!j) return FLEETMQ_CLIENT_ERR_NOMEM;
	rc = append_line(o, j, true);
	cJSON_Delete(j);
	if(rc != FLEETMQ_CLIENT_OK) return rc;
	o->next_seq++;
	link_tail(o, e);
	return FLEETMQ_CLIENT_OK;
}

int outbox__set_expected_version(struct outbox *o, struct outbox_entry *e, uint64_t ev)
{
	cJSON *j = cJSON_CreateObject();
	int rc;

	if(!j) return FLEETMQ_CLIENT_ERR_NOMEM;
	if(o->needs_compact){
		e->ev_known = true;      /* the compaction writes it with the entry */
		e->expected_version = ev;
		rc = compact(o);
		cJSON_Delete(j);
		if(rc != FLEETMQ_CLIENT_OK) e->ev_known = false;
		return rc;
	}
	cJSON_AddStringToObject(j, "op", "ev");
	cJSON_AddNumberToObject(j, "seq", (double)e->seq);
	cJSON_AddNumberToObject(j, "ev", (double)ev);
	rc = append_line(o, j, true);
	cJSON_Delete(j);
	if(rc == FLEETMQ_CLIENT_OK){
		e->ev_known = true;
		e->expected_version = ev;
		o->dead_records++;
	}
	return rc;
}

void outbox__pop(struct outbox *o)
{
	struct outbox_entry *e = o->head;
	cJSON *j;

	if(!e) return;
	o->head = e->next;
	if(!o->head) o->tail = NULL;
	o->count--;
	j = cJSON_CreateObject();
	if(j){
		cJSON_AddStringToObject(j, "op", "done");
		cJSON_AddNumberToObject(j, "seq", (double)e->seq);
		append_line(o, j, false);   /* failure only costs a duplicate resend */
		cJSON_Delete(j);
	}
	o->dead_records += 2;
	outbox__entry_free(e);
	if(o->path && (o->needs_compact || (o->dead_records >= OUTBOX_COMPACT_MIN_DEAD && o->dead_records > 4 * o->count))){
		compact(o);
	}
}

bool outbox__has_job(const struct outbox *o, const char *job_id, bool final_only)
{
	const struct outbox_entry *e;

	for(e = o->head; e; e = e->next){
		if(strcmp(e->job_id, job_id)) continue;
		if(!final_only || e->status != FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS) return true;
	}
	return false;
}

void outbox__close(struct outbox *o)
{
	struct outbox_entry *e, *n;

	for(e = o->head; e; e = n){
		n = e->next;
		outbox__entry_free(e);
	}
	if(o->fd >= 0) close(o->fd);
	fm_free(o->path);
	fm_free(o->dir);
	memset(o, 0, sizeof(*o));
	o->fd = -1;
}
