/*
 * cli_session.c - the CLI's MQTT v5 session and the operator API call.
 *
 * A synchronous layer over libmosquitto's network thread: connect (TCP or
 * TLS, username/password), subscribe, publish at QoS 1 and wait for the
 * acknowledgement, and wait for a matching message, all bounded by one
 * deadline (--timeout-ms). The network thread only records what arrived
 * under the session lock; the command thread waits on a condition variable.
 *
 * The operator API ($CONTROL/fleetmq/v1, JSON) is called with a response
 * topic private to this session, $CONTROL/fleetmq/v1/response/fleetmq-cli-
 * <random> (the plugin's ACL lets only operators subscribe under
 * $CONTROL/fleetmq/v1), and MQTT v5 correlation data unique per call, so
 * concurrent operators never see each other's answers and a late answer to
 * an earlier call is ignored.
 *
 * Must never: publish anything but requests, act on a message that is not
 * the awaited answer, or wait past the deadline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "cli.h"
#include "fleetmq_alloc.h"

#define KEEPALIVE_S 30
#define ACK_RING 32
#define CONTROL_TOPIC "$CONTROL/fleetmq/v1"
#define CONTROL_RESPONSE_PREFIX "$CONTROL/fleetmq/v1/response/"

struct cli_session {
	const struct cli_globals *g;
	struct mosquitto *mosq;
	uint64_t deadline_mono_ms;
	bool loop_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* guarded by lock */
	bool connack;
	int connack_rc;
	bool lost;
	int lost_rc;
	struct { int mid; int rc; } acks[ACK_RING];   /* SUBACK/PUBACK results, rc = worst code */
	unsigned ack_next;
	/* operator API */
	char resp_topic[128];
	bool resp_subscribed;
	char corr[48];               /* correlation data of the call in flight; "" = none */
	char *resp_text;             /* the matching response payload (owned) */
	/* retained reader */
	cli_retained_fn retained_fn;
	void *retained_ctx;
};

/* Connection problems are not reported while quiet (jobs watch retrying). */
static bool session_quiet;

void cli_session_set_quiet(bool quiet)
{
	session_quiet = quiet;
}

static void serr(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void serr(const char *fmt, ...)
{
	va_list ap;

	if(session_quiet) return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- callbacks */

static void ack_record(struct cli_session *s, int mid, int rc)
{
	pthread_mutex_lock(&s->lock);
	s->acks[s->ack_next % ACK_RING].mid = mid;
	s->acks[s->ack_next % ACK_RING].rc = rc;
	s->ack_next++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Caller holds lock. The recorded rc of mid, or -1 if not acknowledged yet. */
static int ack_find(const struct cli_session *s, int mid)
{
	unsigned i;

	for(i = 0; i < ACK_RING && i < s->ack_next; i++){
		if(s->acks[i].mid == mid) return s->acks[i].rc;
	}
	return -1;
}

static void cb_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	struct cli_session *s = obj;

	pthread_mutex_lock(&s->lock);
	s->connack = true;
	s->connack_rc = rc;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void cb_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	struct cli_session *s = obj;

	pthread_mutex_lock(&s->lock);
	if(rc != 0){
		s->lost = true;
		s->lost_rc = rc;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void cb_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted_qos,
		const mosquitto_property *props)
{
	int i, worst = 0;

	for(i = 0; i < qos_count; i++){
		if(granted_qos[i] >= 0x80 && worst < 0x80) worst = granted_qos[i];
	}
	ack_record(obj, mid, worst);
}

static void cb_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props)
{
	ack_record(obj, mid, reason_code);
}

static void cb_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct cli_session *s = obj;
	void *corr = NULL;
	uint16_t corr_len = 0;

	pthread_mutex_lock(&s->lock);
	if(s->retained_fn){
		s->retained_fn(s->retained_ctx, msg->topic, msg->payload, msg->payloadlen);
	}else if(s->corr[0] && !s->resp_text && !strcmp(msg->topic, s->resp_topic)
			&& mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &corr, &corr_len, false)){
		if(corr_len == strlen(s->corr) && !memcmp(corr, s->corr, corr_len)){
			s->resp_text = fm_malloc((size_t)msg->payloadlen + 1);
			if(s->resp_text){
				memcpy(s->resp_text, msg->payload, (size_t)msg->payloadlen);
				s->resp_text[msg->payloadlen] = '\0';
			}
			pthread_cond_broadcast(&s->cond);
		}
	}
	free(corr);   /* allocated by libmosquitto */
	pthread_mutex_unlock(&s->lock);
}

/* ---------------------------------------------------------------- waiting */

/* Wait (lock held) for a change or the deadline. False at the deadline. */
static bool wait_locked(struct cli_session *s)
{
	uint64_t now = cli_mono_ms();
	struct timespec ts;

	if(now >= s->deadline_mono_ms) return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)((s->deadline_mono_ms - now) / 1000u);
	ts.tv_nsec += (long)((s->deadline_mono_ms - now) % 1000u) * 1000000L;
	if(ts.tv_nsec >= 1000000000L){
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	return true;
}

static void report_lost(const struct cli_session *s)
{
	const struct cli_globals *g = s->g;

	if(s->lost_rc == MOSQ_ERR_ERRNO || s->lost_rc == MOSQ_ERR_CONN_LOST){
		serr("fleetmq: connection to %s:%d lost\n", g->host, g->port);
	}else if(s->lost_rc == MOSQ_ERR_TLS){
		serr("fleetmq: TLS failure on the connection to %s:%d (certificate or protocol mismatch?)\n",
				g->host, g->port);
	}else{
		serr("fleetmq: connection to %s:%d closed by the broker: %s\n", g->host, g->port,
				mosquitto_reason_string(s->lost_rc));
	}
}

void cli_session_rearm(struct cli_session *s)
{
	if(s) s->deadline_mono_ms = cli_mono_ms() + (uint64_t)s->g->timeout_ms;
}

/* ---------------------------------------------------------------- open / close */

static int setup_tls(struct cli_session *s, const struct cli_globals *g)
{
	int rc;

	if(!g->tls) return CLI_EXIT_OK;
	if((g->tls_cert != NULL) != (g->tls_key != NULL)){
		serr("fleetmq: --tls-cert and --tls-key go together (client certificate and its key)\n");
		return CLI_EXIT_USAGE;
	}
	if(g->tls_ca){
		rc = mosquitto_tls_set(s->mosq, g->tls_ca, NULL, g->tls_cert, g->tls_key, NULL);
	}else{
		mosquitto_int_option(s->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
		rc = mosquitto_tls_set(s->mosq, NULL, "/etc/ssl/certs", g->tls_cert, g->tls_key, NULL);
	}
	if(rc != MOSQ_ERR_SUCCESS){
		serr("fleetmq: cannot use the TLS files (CA %s, certificate %s, key %s): %s\n",
				g->tls_ca ? g->tls_ca : "system", g->tls_cert ? g->tls_cert : "-", g->tls_key ? g->tls_key : "-",
				rc == MOSQ_ERR_ERRNO ? strerror(errno) : "missing, unreadable or invalid file");
		return CLI_EXIT_LOCAL;
	}
	return CLI_EXIT_OK;
}

int cli_session_open(const struct cli_globals *g, struct cli_session **out)
{
	struct cli_session *s;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	s = fm_calloc(1, sizeof(*s));
	if(!s) return cli_oom();
	s->g = g;
	cli_session_rearm(s);
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);

	s->mosq = mosquitto_new(g->client_id, true, s);
	if(!s->mosq){
		serr("fleetmq: cannot create an MQTT client: %s\n", strerror(errno));
		cli_session_close(s);
		return CLI_EXIT_UNREACHABLE;
	}
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_username_pw_set(s->mosq, g->username, g->password);
	rc = setup_tls(s, g);
	if(rc != CLI_EXIT_OK){
		cli_session_close(s);
		return rc;
	}
	/* One attempt only: make the network thread's retry delay longer than
	 * any sensible timeout. */
	mosquitto_reconnect_delay_set(s->mosq, 3600, 3600, false);
	mosquitto_connect_v5_callback_set(s->mosq, cb_connect);
	mosquitto_disconnect_v5_callback_set(s->mosq, cb_disconnect);
	mosquitto_subscribe_v5_callback_set(s->mosq, cb_subscribe);
	mosquitto_publish_v5_callback_set(s->mosq, cb_publish);
	mosquitto_message_v5_callback_set(s->mosq, cb_message);

	/* Asynchronous connect, so an unreachable host honours --timeout-ms. */
	rc = mosquitto_connect_bind_async(s->mosq, g->host, g->port, KEEPALIVE_S, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		int e = errno;
		serr("fleetmq: cannot connect to %s:%d: %s\n", g->host, g->port,
				rc == MOSQ_ERR_ERRNO ? strerror(e) : mosquitto_strerror(rc));
		if(rc == MOSQ_ERR_ERRNO && e == ECONNREFUSED){
			serr("fleetmq: is the broker running and listening on that port?\n");
		}
		cli_session_close(s);
		return CLI_EXIT_UNREACHABLE;
	}
	rc = mosquitto_loop_start(s->mosq);
	if(rc != MOSQ_ERR_SUCCESS){
		serr("fleetmq: cannot start the network thread: %s\n", mosquitto_strerror(rc));
		cli_session_close(s);
		return CLI_EXIT_UNREACHABLE;
	}
	s->loop_started = true;

	pthread_mutex_lock(&s->lock);
	while(!s->connack && !s->lost){
		if(!wait_locked(s)) break;
	}
	if(s->connack && s->connack_rc == 0){
		pthread_mutex_unlock(&s->lock);
		*out = s;
		return CLI_EXIT_OK;
	}
	rc = CLI_EXIT_UNREACHABLE;
	if(s->connack){
		serr("fleetmq: the broker at %s:%d refused the connection: %s\n", g->host, g->port,
				mosquitto_reason_string(s->connack_rc));
		if(s->connack_rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD || s->connack_rc == MQTT_RC_NOT_AUTHORIZED){
			serr("fleetmq: check --username / --password (or FLEETMQ_USERNAME / FLEETMQ_PASSWORD)\n");
			rc = CLI_EXIT_REFUSED;
		}
	}else if(s->lost){
		serr("fleetmq: cannot connect to %s:%d (%s)\n", g->host, g->port,
				s->lost_rc == MOSQ_ERR_TLS ? "TLS handshake failed" : "connection refused or closed");
		if(s->lost_rc != MOSQ_ERR_TLS) serr("fleetmq: is the broker running and listening on that port?\n");
	}else{
		serr("fleetmq: no answer from a broker at %s:%d within %ld ms\n", g->host, g->port, g->timeout_ms);
	}
	pthread_mutex_unlock(&s->lock);
	cli_session_close(s);
	return rc;
}

void cli_session_close(struct cli_session *s)
{
	bool connected;

	if(!s) return;
	if(s->mosq){
		pthread_mutex_lock(&s->lock);
		s->retained_fn = NULL;
		s->corr[0] = '\0';
		connected = s->connack && s->connack_rc == 0 && !s->lost;
		pthread_mutex_unlock(&s->lock);
		if(s->loop_started){
			if(connected) mosquitto_disconnect_v5(s->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
			else mosquitto_disconnect(s->mosq);
			mosquitto_loop_stop(s->mosq, !connected);
		}
		mosquitto_destroy(s->mosq);
	}
	fm_free(s->resp_text);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	fm_free(s);
}

/* ---------------------------------------------------------------- acknowledgements */

static int wait_ack(struct cli_session *s, int mid, const char *what, const char *topic)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	while((rc = ack_find(s, mid)) < 0 && !s->lost){
		if(!wait_locked(s)) break;
	}
	if(rc < 0){
		if(s->lost) report_lost(s);
		else serr("fleetmq: the broker did not acknowledge the %s of %s within %ld ms\n",
				what, topic, s->g->timeout_ms);
		pthread_mutex_unlock(&s->lock);
		return CLI_EXIT_UNREACHABLE;
	}
	pthread_mutex_unlock(&s->lock);
	if(rc >= 0x80){
		serr("fleetmq: not authorised: the broker refused the %s of %s: %s\n", what, topic,
				mosquitto_reason_string(rc));
		if(rc == MQTT_RC_NOT_AUTHORIZED){
			serr("fleetmq: user '%s' needs the operator role: list it in security.operator_usernames of the\n"
					"fleetmq: plugin's fleetmq.yaml, or connect as an operator (--username / FLEETMQ_USERNAME)\n",
					s->g->username);
		}
		return CLI_EXIT_REFUSED;
	}
	return CLI_EXIT_OK;
}

static int subscribe_wait(struct cli_session *s, char *const *filters, int count, int qos, int options)
{
	int mid = 0, rc;

	rc = mosquitto_subscribe_multiple(s->mosq, &mid, count, filters, qos, options, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		serr("fleetmq: cannot subscribe to %s: %s\n", filters[0], mosquitto_strerror(rc));
		return CLI_EXIT_UNREACHABLE;
	}
	return wait_ack(s, mid, "subscription", count > 1 ? "the requested topics" : filters[0]);
}

/* ---------------------------------------------------------------- operator API */

int cli_control_call(struct cli_session *s, const cJSON *commands, cJSON **root)
{
	mosquitto_property *props = NULL;
	cJSON *req = NULL;
	char *text = NULL, *resp = NULL;
	char token[40];
	int mid = 0, rc;

	*root = NULL;
	if(!s->resp_subscribed){
		char *filters[1];
		cli_make_token("fleetmq-cli", token, sizeof(token));
		snprintf(s->resp_topic, sizeof(s->resp_topic), "%s%s", CONTROL_RESPONSE_PREFIX, token);
		filters[0] = s->resp_topic;
		rc = subscribe_wait(s, filters, 1, 1, 0);
		if(rc != CLI_EXIT_OK) return rc;
		s->resp_subscribed = true;
	}
	req = cJSON_CreateObject();
	if(!req || !cJSON_AddItemToObject(req, "commands", cJSON_Duplicate(commands, 1))){
		cJSON_Delete(req);
		return cli_oom();
	}
	text = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if(!text) return cli_oom();

	pthread_mutex_lock(&s->lock);
	cli_make_token("c", s->corr, sizeof(s->corr));
	fm_free(s->resp_text);
	s->resp_text = NULL;
	pthread_mutex_unlock(&s->lock);

	rc = mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, s->resp_topic);
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, s->corr, (uint16_t)strlen(s->corr));
	}
	if(rc == MOSQ_ERR_SUCCESS){
		rc = mosquitto_publish_v5(s->mosq, &mid, CONTROL_TOPIC, (int)strlen(text), text, 1, false, props);
	}
	mosquitto_property_free_all(&props);
	cJSON_free(text);
	if(rc != MOSQ_ERR_SUCCESS){
		serr("fleetmq: cannot publish to %s: %s\n", CONTROL_TOPIC, mosquitto_strerror(rc));
		return CLI_EXIT_UNREACHABLE;
	}
	rc = wait_ack(s, mid, "publish", CONTROL_TOPIC);
	if(rc != CLI_EXIT_OK) goto done;

	pthread_mutex_lock(&s->lock);
	while(!s->resp_text && !s->lost){
		if(!wait_locked(s)) break;
	}
	resp = s->resp_text;
	s->resp_text = NULL;
	s->corr[0] = '\0';
	if(!resp){
		if(s->lost){
			report_lost(s);
		}else{
			serr("fleetmq: no answer from the operator API within %ld ms (--timeout-ms): is the fleetmq plugin\n"
					"fleetmq: loaded in the broker at %s:%d? (A request or an answer that the broker's own ACL\n"
					"fleetmq: denies is dropped silently, too.)\n",
					s->g->timeout_ms, s->g->host, s->g->port);
		}
		rc = CLI_EXIT_UNREACHABLE;
	}
	pthread_mutex_unlock(&s->lock);
	if(!resp) goto done;
	*root = cJSON_Parse(resp);
	if(!*root || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(*root, "responses"))){
		serr("fleetmq: the operator API sent an answer that is not {\"responses\":[...]}: %.200s\n", resp);
		cJSON_Delete(*root);
		*root = NULL;
		rc = CLI_EXIT_REFUSED;
	}

done:
	fm_free(resp);
	return rc;
}

const cJSON *cli_response_data(const cJSON *root, int i, const char *what, int *rc, const char **code_out)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "responses");
	const cJSON *r = cJSON_GetArrayItem(arr, i);
	const cJSON *data, *err;
	const char *code;

	if(code_out) *code_out = "";
	if(!r){
		/* A refusal of the whole request comes as a single response. */
		r = cJSON_GetArrayItem(arr, 0);
		if(!r || !cJSON_GetObjectItemCaseSensitive(r, "error")){
			fprintf(stderr, "fleetmq: %s: the operator API sent no response for this command\n", what);
			*rc = CLI_EXIT_REFUSED;
			return NULL;
		}
	}
	err = cJSON_GetObjectItemCaseSensitive(r, "error");
	if(err){
		code = cli_jstr(r, "code");
		if(code_out) *code_out = code;
		fprintf(stderr, "fleetmq: %s: %s (%s)\n", what, cJSON_IsString(err) ? err->valuestring : "error",
				code[0] ? code : "ERROR");
		if(!strcmp(code, "FORBIDDEN")){
			fprintf(stderr, "fleetmq: not authorised: add the user to security.operator_usernames of the plugin,\n"
					"fleetmq: or connect as an operator (--username / FLEETMQ_USERNAME)\n");
		}
		*rc = CLI_EXIT_REFUSED;
		return NULL;
	}
	data = cJSON_GetObjectItemCaseSensitive(r, "data");
	if(!cJSON_IsObject(data)){
		fprintf(stderr, "fleetmq: %s: the operator API answered without data\n", what);
		*rc = CLI_EXIT_REFUSED;
		return NULL;
	}
	*rc = CLI_EXIT_OK;
	return data;
}

int cli_control_one(const struct cli_globals *g, const cJSON *cmd, const char *what, cJSON **root,
		const cJSON **data)
{
	struct cli_session *s = NULL;
	cJSON *cmds;
	int rc;

	*root = NULL;
	*data = NULL;
	cmds = cJSON_CreateArray();
	if(!cmds || !cJSON_AddItemToArray(cmds, cJSON_Duplicate(cmd, 1))){
		cJSON_Delete(cmds);
		return cli_oom();
	}
	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK) rc = cli_control_call(s, cmds, root);
	cli_session_close(s);
	cJSON_Delete(cmds);
	if(rc != CLI_EXIT_OK) return rc;
	*data = cli_response_data(*root, 0, what, &rc, NULL);
	if(rc != CLI_EXIT_OK){
		cJSON_Delete(*root);
		*root = NULL;
	}
	return rc;
}

/* ---------------------------------------------------------------- retained messages */

int cli_session_read_retained(struct cli_session *s, char *const *filters, int count, cli_retained_fn fn,
		void *ctx)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	s->retained_fn = fn;
	s->retained_ctx = ctx;
	pthread_mutex_unlock(&s->lock);
	/* QoS 0 keeps the retained records in order with the SUBACKs. */
	rc = subscribe_wait(s, filters, count, 0, 0);
	if(rc == CLI_EXIT_OK){
		/* The broker sends retained messages right after a SUBACK. Subscribing
		 * once more (without retained messages) and waiting for that SUBACK
		 * means every record that exists has arrived. */
		rc = subscribe_wait(s, filters, 1, 0, MQTT_SUB_OPT_SEND_RETAIN_NEVER);
	}
	pthread_mutex_lock(&s->lock);
	s->retained_fn = NULL;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int cli_collect_pages(struct cli_session *s, const char *command, const char *what, const cJSON *extra,
		const char *cursor_req, const char *cursor_resp, const char *array_key,
		uint64_t page_max, uint64_t limit, cJSON *all, bool *more_out)
{
	uint64_t cursor = 0;
	bool more = true;
	int rc = CLI_EXIT_OK;

	while(more && (uint64_t)cJSON_GetArraySize(all) < limit){
		uint64_t want = limit - (uint64_t)cJSON_GetArraySize(all);
		cJSON *cmds = cJSON_CreateArray(), *cmd = extra ? cJSON_Duplicate(extra, 1) : cJSON_CreateObject();
		cJSON *root = NULL;
		const cJSON *data, *it, *items;

		if(!cmds || !cmd || !cJSON_AddItemToArray(cmds, cmd)){
			cJSON_Delete(cmds);
			cJSON_Delete(cmd);
			return cli_oom();
		}
		if(want > page_max) want = page_max;
		cJSON_AddStringToObject(cmd, "command", command);
		cJSON_AddNumberToObject(cmd, "limit", (double)want);
		if(cursor) cJSON_AddNumberToObject(cmd, cursor_req, (double)cursor);
		cli_session_rearm(s);
		rc = cli_control_call(s, cmds, &root);
		cJSON_Delete(cmds);
		if(rc != CLI_EXIT_OK) break;
		data = cli_response_data(root, 0, what, &rc, NULL);
		if(!data){
			cJSON_Delete(root);
			break;
		}
		items = cJSON_GetObjectItemCaseSensitive(data, array_key);
		cJSON_ArrayForEach(it, items){
			cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
		}
		cursor = cli_ju64(data, cursor_resp);
		more = cursor > 0 && cJSON_GetArraySize(items) > 0;
		cJSON_Delete(root);
	}
	if(more_out) *more_out = more;
	return rc;
}
