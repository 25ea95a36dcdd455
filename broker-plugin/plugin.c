/*
 * plugin.c - Mosquitto 2.0 entry points and event dispatch.
 *
 * Thin on purpose: loads the configuration, opens the store, registers the
 * callbacks and turns Mosquitto events into calls of device.c, handlers.c
 * and publish.c. All state lives in one struct fleetmq_plugin passed as
 * callback userdata. Statuses become MOSQ_ERR_* only here.
 *
 * Events used: ACL_CHECK (isolation), MESSAGE (device requests), CONTROL
 * (operator API), TICK (group commit, presence timers, job fan-out,
 * rollouts, timeouts), DISCONNECT (presence). BASIC_AUTH is not used:
 * a plugin that defers there turns every username login into a refusal
 * when no other authentication is configured (Mosquitto 2.0.11).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#include "acl.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

uint64_t fleetmq_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t fleetmq_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool plugin__is_operator(struct fleetmq_plugin *pl, const struct mosquitto *client)
{
	const char *username = mosquitto_client_username(client);

	return username && fleetmq_strlist_contains(&pl->cfg.operator_usernames, username);
}

/* ---------------------------------------------------------------- callbacks */

static int cb_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	struct fleetmq_plugin *pl = userdata;
	struct fleetmq_acl_subject who;
	enum fleetmq_acl_result res;
	const char *reason = NULL;

	who.client_id = mosquitto_client_id(ed->client);
	who.username = mosquitto_client_username(ed->client);
	who.is_operator = plugin__is_operator(pl, ed->client);
	who.require_username_match = pl->cfg.require_username_match;

	res = fleetmq_acl_check(pl->cfg.topic_prefix, &who, ed->topic, ed->access, &reason);
	switch(res){
		case FM_ACL_DEFER:
			return pl->cfg.other_topics_allow ? MOSQ_ERR_SUCCESS : MOSQ_ERR_PLUGIN_DEFER;
		case FM_ACL_DENY:
			if(ed->access != FM_ACCESS_READ){
				mosquitto_log_printf(MOSQ_LOG_NOTICE, "fleetmq: denied %s of '%s' to client %s (user %s): %s",
						ed->access == FM_ACCESS_WRITE ? "publish" : "subscribe", ed->topic,
						who.client_id ? who.client_id : "?", who.username ? who.username : "-",
						reason ? reason : "");
			}
			return MOSQ_ERR_ACL_DENIED;
		case FM_ACL_ALLOW:
		default:
			if(ed->access == FM_ACCESS_SUBSCRIBE && !who.is_operator){
				/* A subscription is a sign of life of this session (it also
				 * cancels a pending OFFLINE after a session takeover). */
				struct fleetmq_device *dev = device__find(pl, who.client_id);
				if(dev){
					device__on_activity(pl, dev, ed->client, fleetmq_now_ms());
					publish__maybe_flush(pl);
				}
			}
			return MOSQ_ERR_SUCCESS;
	}
}

static int cb_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	struct fleetmq_plugin *pl = userdata;

	handlers__message(pl, ed->client, ed->topic, ed->payload, ed->payloadlen);
	publish__maybe_flush(pl);
	/* Always let the message through: other subscribers (operators,
	 * bridges, loggers) may want it. Refusals are answered on .../rejected. */
	return MOSQ_ERR_SUCCESS;
}

static int cb_tick(int event, void *event_data, void *userdata)
{
	struct fleetmq_plugin *pl = userdata;

	pl->last_tick_mono_ms = fleetmq_mono_ms();
	device__tick(pl, fleetmq_now_ms());
	job__tick(pl, fleetmq_now_ms());
	if(pl->out_head || fleetmq_store_in_txn(pl->store)){
		publish__flush(pl);
	}
	return MOSQ_ERR_SUCCESS;
}

static int cb_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	struct fleetmq_plugin *pl = userdata;

	control__handle(pl, ed->client, ed->topic, ed->payload, ed->payloadlen, ed->properties);
	publish__maybe_flush(pl);
	return MOSQ_ERR_SUCCESS;
}

static int cb_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	struct fleetmq_plugin *pl = userdata;

	device__on_disconnect(pl, ed->client, fleetmq_now_ms());
	publish__maybe_flush(pl);
	return MOSQ_ERR_SUCCESS;
}

/* ---------------------------------------------------------------- lifecycle */

static void plugin_free(struct fleetmq_plugin *pl)
{
	if(!pl) return;
	publish__cleanup(pl);
	job__cleanup(pl);
	device__cleanup(pl);
	fleetmq_store_close(pl->store);
	fleetmq_cfg_free(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &pl->cfg);
	fm_free(pl);
}

static const char *find_opt(struct mosquitto_opt *opts, int count, const char *key)
{
	int i;

	for(i = 0; i < count; i++){
		if(opts[i].key && !strcmp(opts[i].key, key)) return opts[i].value;
	}
	return NULL;
}

static int validate_config(const struct fleetmq_plugin_config *cfg, char *err, size_t errlen)
{
	const char *p = cfg->topic_prefix;

	if(!p || !p[0] || strpbrk(p, "/+#") || p[0] == '$'){
		snprintf(err, errlen, "topic_prefix: '%s' must be one non-empty topic level without '/', '+', '#' or a leading '$'",
				p ? p : "");
		return FLEETMQ_ERR_CONFIG;
	}
	if(!cfg->store_path || !cfg->store_path[0]){
		snprintf(err, errlen, "store.path: must not be empty");
		return FLEETMQ_ERR_CONFIG;
	}
	return FLEETMQ_OK;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	int i;

	for(i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *opts, int opt_count)
{
	static const struct fleetmq_allocator mosq_alloc = {
		mosquitto_malloc, mosquitto_calloc, mosquitto_realloc, mosquitto_free
	};
	struct fleetmq_plugin *pl = NULL;
	struct fleetmq_store_options sopts;
	const char *config_file;
	char err[512];
	uint64_t now;

	fleetmq_alloc_set(&mosq_alloc);
	config_file = find_opt(opts, opt_count, "config_file");
	if(!config_file){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: plugin_opt_config_file is required (path to fleetmq.yaml)");
		return MOSQ_ERR_INVAL;
	}
	pl = fm_calloc(1, sizeof(*pl));
	if(!pl) return MOSQ_ERR_NOMEM;
	pl->identifier = identifier;

	err[0] = '\0';
	if(fleetmq_cfg_load_file(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &pl->cfg,
				config_file, err, sizeof(err)) != FLEETMQ_OK
			|| validate_config(&pl->cfg, err, sizeof(err)) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: invalid configuration: %s", err);
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: refusing to start; see docs/CONFIG.md");
		goto fail;
	}
	pl->cfg.other_topics_allow = pl->cfg.other_topics == 1;
	pl->limits.max_document_bytes = (size_t)pl->cfg.shadow_max_document_bytes;
	pl->limits.max_depth = (int)pl->cfg.shadow_max_depth;

	memset(&sopts, 0, sizeof(sopts));
	sopts.sync = pl->cfg.store_synchronous == 0 ? FLEETMQ_STORE_SYNC_FULL : FLEETMQ_STORE_SYNC_NORMAL;
	sopts.busy_timeout_ms = 5000;
	if(fleetmq_store_open(pl->cfg.store_path, &sopts, &pl->store, err, sizeof(err)) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot open store %s: %s", pl->cfg.store_path, err);
		goto fail;
	}
	if(device__load_all(pl) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot load devices from %s: %s", pl->cfg.store_path,
				fleetmq_store_last_error(pl->store));
		goto fail;
	}
	if(job__load_all(pl) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot load jobs from %s: %s", pl->cfg.store_path,
				fleetmq_store_last_error(pl->store));
		goto fail;
	}
	now = fleetmq_now_ms();
	device__mark_all_offline_at_start(pl, now);
	pl->last_tick_mono_ms = fleetmq_mono_ms();

	if(mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, cb_acl_check, NULL, pl)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, cb_message, NULL, pl)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_TICK, cb_tick, NULL, pl)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, cb_disconnect, NULL, pl)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_TOPIC, pl)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_CREATE_PB_TOPIC, pl)){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot register callbacks");
		goto fail;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: ready: prefix '%s', store %s (synchronous=%s, group commit %s), %zu devices",
			pl->cfg.topic_prefix, pl->cfg.store_path, pl->cfg.store_synchronous == 0 ? "full" : "normal",
			pl->cfg.store_group_commit ? "on" : "off", pl->device_count);
	*userdata = pl;
	return MOSQ_ERR_SUCCESS;

fail:
	if(pl->identifier){
		mosquitto_callback_unregister(identifier, MOSQ_EVT_ACL_CHECK, cb_acl_check, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_MESSAGE, cb_message, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_TICK, cb_tick, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_DISCONNECT, cb_disconnect, NULL);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_TOPIC);
		mosquitto_callback_unregister(identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_CREATE_PB_TOPIC);
	}
	plugin_free(pl);
	return MOSQ_ERR_UNKNOWN;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	struct fleetmq_plugin *pl = userdata;

	if(!pl) return MOSQ_ERR_SUCCESS;
	/* Make queued writes durable; the broker is stopping, so responses are
	 * not sent (devices re-ask after reconnecting). */
	if(fleetmq_store_in_txn(pl->store)) fleetmq_store_commit(pl->store);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_ACL_CHECK, cb_acl_check, NULL);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_MESSAGE, cb_message, NULL);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_TICK, cb_tick, NULL);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_DISCONNECT, cb_disconnect, NULL);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_TOPIC);
	mosquitto_callback_unregister(pl->identifier, MOSQ_EVT_CONTROL, cb_control, FLEETMQ_CONTROL_CREATE_PB_TOPIC);
	plugin_free(pl);
	return MOSQ_ERR_SUCCESS;
}
