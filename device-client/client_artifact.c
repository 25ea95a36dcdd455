/*
 * client_artifact.c - blocking artifact chunk reads, and the waiter list
 * shared by every blocking request of the library.
 *
 * A waiter lives on the caller's stack and is linked into c->waiters while
 * its caller sleeps on c->cond. The Paho thread that receives the answer
 * fills it (copying chunk data straight into the caller's buffer) under mu;
 * the caller always unlinks it before returning, so an answer arriving
 * after a timeout finds nothing and is dropped.
 *
 * Must never: write into a caller's buffer after that caller returned, or
 * accept a chunk that does not match the request (offset, size, token).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

struct fm_waiter *waiters__find_locked(struct fleetmq_client *c, enum fm_waiter_kind kind, const char *token)
{
	struct fm_waiter *w;

	for(w = c->waiters; w; w = w->next){
		if(w->kind == kind && !w->done && !strcmp(w->token, token)) return w;
	}
	return NULL;
}

void waiters__remove_locked(struct fleetmq_client *c, struct fm_waiter *w)
{
	struct fm_waiter **pp;

	for(pp = &c->waiters; *pp; pp = &(*pp)->next){
		if(*pp == w){
			*pp = w->next;
			w->next = NULL;
			return;
		}
	}
}

void waiters__fail_all_locked(struct fleetmq_client *c, int status)
{
	struct fm_waiter *w;

	for(w = c->waiters; w; w = w->next){
		if(!w->done){
			w->done = true;
			w->status = status;
		}
	}
	pthread_cond_broadcast(&c->cond);
}

int waiters__wait_locked(struct fleetmq_client *c, struct fm_waiter *w, uint64_t deadline_ms)
{
	struct timespec ts;

	ts.tv_sec = (time_t)(deadline_ms / 1000);
	ts.tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
	while(!w->done && !c->stopping){
		if(pthread_cond_timedwait(&c->cond, &c->mu, &ts) == ETIMEDOUT) break;
	}
	if(w->done) return w->status;
	return c->stopping ? FLEETMQ_CLIENT_ERR_STOPPED : FLEETMQ_CLIENT_ERR_TIMEOUT;
}

/* "artifacts/<name>/data" or "artifacts/<name>/get/rejected" */
void artifact__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len)
{
	const char *name = rest + strlen("artifacts/"), *slash = strchr(name, '/');
	struct fm_waiter *w;

	if(!slash) return;
	if(!strcmp(slash, "/data")){
		Fleetmq__V1__ArtifactChunk *ch = fleetmq__v1__artifact_chunk__unpack(NULL, len, p);
		if(!ch) return;
		w = ch->client_token[0] ? waiters__find_locked(c, FM_WAIT_ARTIFACT, ch->client_token) : NULL;
		if(w){
			if(ch->offset != w->offset || ch->data.len > w->len
					|| ch->offset + ch->data.len > ch->total_size){
				client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "artifact chunk does not match the request (offset %llu/%llu, %zu bytes for %u)",
						(unsigned long long)ch->offset, (unsigned long long)w->offset, ch->data.len, w->len);
				w->status = FLEETMQ_CLIENT_ERR_PROTOCOL;
			}else{
				if(ch->data.len) memcpy(w->buf, ch->data.data, ch->data.len);
				w->got = (uint32_t)ch->data.len;
				w->total_size = ch->total_size;
				snprintf(w->sha256, sizeof(w->sha256), "%s", ch->sha256 ? ch->sha256 : "");
				w->status = FLEETMQ_CLIENT_OK;
			}
			w->done = true;
			pthread_cond_broadcast(&c->cond);
		}
		fleetmq__v1__artifact_chunk__free_unpacked(ch, NULL);
	}else if(!strcmp(slash, "/get/rejected")){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);
		if(!r) return;
		w = r->client_token[0] ? waiters__find_locked(c, FM_WAIT_ARTIFACT, r->client_token) : NULL;
		if(!w && r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_TOPIC){
			/* an older plugin rejects the unknown topic without echoing the
			 * token: fail the (single) reader of this artifact name */
			for(w = c->waiters; w; w = w->next){
				if(w->kind == FM_WAIT_ARTIFACT && !w->done) break;
			}
		}
		if(w){
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "artifact request %s rejected: %s (%s)", r->client_token,
					fleetmq_client_strerror((int)r->code), r->reason);
			w->status = r->code ? (int)r->code : FLEETMQ_CLIENT_ERR_PROTOCOL;
			w->done = true;
			pthread_cond_broadcast(&c->cond);
		}
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
}

int fleetmq_client_artifact_read(struct fleetmq_client *c, const char *artifact, uint64_t offset, uint32_t len,
		uint8_t *buf, uint32_t *got, uint64_t *total_size, char *sha256_hex, int timeout_ms)
{
	Fleetmq__V1__ArtifactGetRequest g = FLEETMQ__V1__ARTIFACT_GET_REQUEST__INIT;
	struct fm_outq q = {0};
	struct fm_waiter w;
	char suffix[FM_MAX_ID_BYTES + 32];
	int rc;

	if(got) *got = 0;
	if(sha256_hex) sha256_hex[0] = '\0';
	if(!c || !client__valid_id(artifact) || !buf || !got || len == 0 || timeout_ms <= 0) return FLEETMQ_CLIENT_ERR_INVALID;
	memset(&w, 0, sizeof(w));
	w.kind = FM_WAIT_ARTIFACT;
	w.offset = offset;
	w.len = len;
	w.buf = buf;

	pthread_mutex_lock(&c->mu);
	if(c->stopping){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_STOPPED;
	}
	if(c->state != FM_CONN_ONLINE){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_DISCONNECTED;
	}
	client__token_locked(c, 'a', w.token, sizeof(w.token));
	g.offset = offset;
	g.length = len;
	g.client_token = w.token;
	snprintf(suffix, sizeof(suffix), "artifacts/%s/get", artifact);
	if((rc = client__queue_pb(c, &q, suffix, &g.base)) != FLEETMQ_CLIENT_OK){
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	w.next = c->waiters;
	c->waiters = &w;
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);

	pthread_mutex_lock(&c->mu);
	rc = waiters__wait_locked(c, &w, client__mono_ms() + (uint64_t)timeout_ms);
	waiters__remove_locked(c, &w);
	pthread_mutex_unlock(&c->mu);
	if(rc == FLEETMQ_CLIENT_OK){
		*got = w.got;
		if(total_size) *total_size = w.total_size;
		if(sha256_hex) memcpy(sha256_hex, w.sha256, sizeof(w.sha256));
	}
	return rc;
}
