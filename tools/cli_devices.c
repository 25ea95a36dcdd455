/*
 * cli_devices.c - `fleetmq devices list | show | presence`.
 *
 * list and show use the operator API (listDevices, describeDevice,
 * listJobExecutions); presence reads the retained Presence records from
 * <prefix>/<device>/presence, so it also works for a device the registry
 * has never seen (it then says so).
 *
 * Must never: change anything on the broker.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"

#define PAGE_DEVICES 1000
#define MAX_PRESENCE_DEVICES 1024

/* "fw 1.2.0, app 3.1" from [{"name":..,"version":..}]. */
static void format_software(char *buf, size_t len, const cJSON *sw)
{
	const cJSON *it;
	size_t used = 0;

	buf[0] = '\0';
	cJSON_ArrayForEach(it, sw){
		int n = snprintf(buf + used, len - used, "%s%s %s", used ? ", " : "", cli_jstr(it, "name"),
				cli_jstr(it, "version"));
		if(n < 0 || (size_t)n >= len - used) break;
		used += (size_t)n;
	}
	if(!buf[0]) snprintf(buf, len, "-");
}

static const char *dash(const char *s)
{
	return s && s[0] ? s : "-";
}

/* ---------------------------------------------------------------- list */

int cmd_devices_list(const struct cli_globals *g, const struct cli_args *a)
{
	struct cli_session *s = NULL;
	struct cli_table *t = NULL;
	cJSON *all = NULL, *out = NULL, *cmds = NULL, *root = NULL;
	const char *group = cli_opt(a, OPT_GROUP);
	uint64_t limit = UINT64_MAX, total = 0;
	char next[CLI_MAX_ID_BYTES + 1] = "";
	int rc;

	rc = cli_opt_uint(a, OPT_LIMIT, 1, 100000000, &limit, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	if(group && !cli_check_id("group", group)) return CLI_EXIT_USAGE;
	all = cJSON_CreateArray();
	if(!all) return cli_oom();

	rc = cli_session_open(g, &s);
	while(rc == CLI_EXIT_OK && (uint64_t)cJSON_GetArraySize(all) < limit){
		const cJSON *data, *it, *devs;
		cJSON *cmd;
		uint64_t want = limit - (uint64_t)cJSON_GetArraySize(all);

		if(want > PAGE_DEVICES) want = PAGE_DEVICES;
		cmds = cJSON_CreateArray();
		cmd = cJSON_CreateObject();
		if(!cmds || !cmd || !cJSON_AddItemToArray(cmds, cmd)){
			cJSON_Delete(cmd);
			rc = cli_oom();
			break;
		}
		cJSON_AddStringToObject(cmd, "command", "listDevices");
		cJSON_AddNumberToObject(cmd, "limit", (double)want);
		if(group) cJSON_AddStringToObject(cmd, "group", group);
		if(next[0]) cJSON_AddStringToObject(cmd, "after", next);
		cli_session_rearm(s);
		rc = cli_control_call(s, cmds, &root);
		cJSON_Delete(cmds);
		cmds = NULL;
		if(rc != CLI_EXIT_OK) break;
		data = cli_response_data(root, 0, "devices list", &rc, NULL);
		if(!data) break;
		total = cli_ju64(data, "totalDevices");
		devs = cJSON_GetObjectItemCaseSensitive(data, "devices");
		cJSON_ArrayForEach(it, devs){
			cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
		}
		snprintf(next, sizeof(next), "%s", cli_jstr(data, "next"));
		cJSON_Delete(root);
		root = NULL;
		if(!next[0] || cJSON_GetArraySize(devs) == 0) break;
	}
	cli_session_close(s);
	if(rc != CLI_EXIT_OK) goto cleanup;

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddItemToObject(out, "devices", all);
		all = NULL;
		cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(out, "devices")));
		cJSON_AddNumberToObject(out, "totalDevices", (double)total);
		if(next[0]) cJSON_AddStringToObject(out, "next", next);
		cli_print_json(out);
	}else{
		static const char *const headers[] = { "DEVICE", "PRESENCE", "LAST SEEN", "TYPE", "HW", "AGENT",
			"PENDING", "SOFTWARE" };
		const cJSON *it;
		uint64_t now = cli_now_ms();

		t = cli_table_new(8, headers);
		if(!t){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_ArrayForEach(it, all){
			char seen[32], pending[24], sw[256];
			const char *cells[8];

			cli_format_age(seen, sizeof(seen), cli_ju64(it, "lastSeenMs"), now);
			snprintf(pending, sizeof(pending), "%" PRIu64, cli_ju64(it, "pendingJobs"));
			format_software(sw, sizeof(sw), cJSON_GetObjectItemCaseSensitive(it, "software"));
			cells[0] = cli_jstr(it, "deviceId");
			cells[1] = dash(cli_jstr(it, "presence"));
			cells[2] = seen;
			cells[3] = dash(cli_jstr(it, "deviceType"));
			cells[4] = dash(cli_jstr(it, "hwRevision"));
			cells[5] = dash(cli_jstr(it, "agentVersion"));
			cells[6] = pending;
			cells[7] = sw;
			if(cli_table_add(t, cells) != 0){
				rc = cli_oom();
				goto cleanup;
			}
		}
		cli_table_print(t, stdout);
		printf("%d device%s", cJSON_GetArraySize(all), cJSON_GetArraySize(all) == 1 ? "" : "s");
		if(group) printf(" in group %s", group);
		printf(" (%" PRIu64 " registered)%s\n", total, next[0] ? "; more with a higher --limit" : "");
	}

cleanup:
	cli_table_free(t);
	cJSON_Delete(root);
	cJSON_Delete(out);
	cJSON_Delete(all);
	return rc;
}

/* ---------------------------------------------------------------- show */

int cmd_devices_show(const struct cli_globals *g, const struct cli_args *a)
{
	const char *id = a->pos[0];
	struct cli_session *s = NULL;
	cJSON *cmds = NULL, *root = NULL, *out = NULL, *c;
	const cJSON *dev, *d0, *d1, *execs;
	int rc;

	if(!cli_check_id("device id", id)) return CLI_EXIT_USAGE;
	cmds = cJSON_CreateArray();
	if(!cmds) return cli_oom();
	c = cJSON_CreateObject();
	cJSON_AddItemToArray(cmds, c);
	cJSON_AddStringToObject(c, "command", "describeDevice");
	cJSON_AddStringToObject(c, "deviceId", id);
	c = cJSON_CreateObject();
	cJSON_AddItemToArray(cmds, c);
	cJSON_AddStringToObject(c, "command", "listJobExecutions");
	cJSON_AddStringToObject(c, "deviceId", id);
	cJSON_AddNumberToObject(c, "limit", 10000);

	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK) rc = cli_control_call(s, cmds, &root);
	cli_session_close(s);
	cJSON_Delete(cmds);
	if(rc != CLI_EXIT_OK) return rc;
	d0 = cli_response_data(root, 0, "devices show", &rc, NULL);
	if(!d0) goto cleanup;
	d1 = cli_response_data(root, 1, "devices show (executions)", &rc, NULL);
	if(!d1) goto cleanup;
	dev = cJSON_GetObjectItemCaseSensitive(d0, "device");
	execs = cJSON_GetObjectItemCaseSensitive(d1, "executions");

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddItemToObject(out, "device", cJSON_Duplicate(dev, 1));
		cJSON_AddItemToObject(out, "executions", execs ? cJSON_Duplicate(execs, 1) : cJSON_CreateArray());
		cli_print_json(out);
	}else{
		char since[32], seen[32], conn[32], created[32], buf[1024];
		uint64_t now = cli_now_ms();

		cli_format_age(since, sizeof(since), cli_ju64(dev, "presenceSinceMs"), now);
		cli_format_age(seen, sizeof(seen), cli_ju64(dev, "lastSeenMs"), now);
		cli_format_age(conn, sizeof(conn), cli_ju64(dev, "connectedAtMs"), now);
		cli_format_time(created, sizeof(created), cli_ju64(dev, "createdMs"));
		printf("device       %s\n", cli_jstr(dev, "deviceId"));
		printf("presence     %s since %s; last seen %s; last connected %s\n", dash(cli_jstr(dev, "presence")),
				since, seen, conn);
		printf("type         %s   hw revision %s   agent %s\n", dash(cli_jstr(dev, "deviceType")),
				dash(cli_jstr(dev, "hwRevision")), dash(cli_jstr(dev, "agentVersion")));
		format_software(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(dev, "software"));
		printf("software     %s\n", buf);
		cli_format_strings(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(dev, "groups"));
		printf("groups       %s\n", buf);
		cli_format_strings(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(dev, "attributes"));
		printf("attributes   %s  (set by operators)\n", buf);
		cli_format_strings(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(dev, "reportedAttributes"));
		printf("reported     %s  (from the device's hello)\n", buf);
		printf("shadow       version %" PRIu64 "\n", cli_ju64(dev, "shadowVersion"));
		printf("registered   %s\n", created);
		printf("pending jobs %" PRIu64 "\n", cli_ju64(dev, "pendingJobs"));
		if(cJSON_GetArraySize(execs) > 0){
			printf("\n");
			cli_print_executions(execs, "JOB");
		}
	}

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(root);
	return rc;
}

/* ---------------------------------------------------------------- presence */

struct presence_row {
	const char *device;
	char topic[CLI_MAX_TOPIC_BYTES];
	bool found;
	bool bad;                    /* undecodable payload */
	Fleetmq__V1__PresenceState state;
	uint64_t since_ms, last_seen_ms, connected_at_ms;
	char device_type[130];
	char agent_version[130];
};

struct presence_ctx {
	struct presence_row *rows;
	int count;
};

static void presence_on_message(void *ctx, const char *topic, const void *payload, int len)
{
	struct presence_ctx *c = ctx;
	int i;

	for(i = 0; i < c->count; i++){
		struct presence_row *r = &c->rows[i];
		Fleetmq__V1__Presence *p;

		if(strcmp(topic, r->topic)) continue;   /* (a device may be listed twice) */
		if(len == 0) continue;                  /* retained record cleared */
		p = fleetmq__v1__presence__unpack(NULL, (size_t)len, payload);
		r->found = true;
		r->bad = !p;
		if(p){
			r->state = p->state;
			r->since_ms = p->since_ms;
			r->last_seen_ms = p->last_seen_ms;
			r->connected_at_ms = p->connected_at_ms;
			snprintf(r->device_type, sizeof(r->device_type), "%s", p->device_type);
			snprintf(r->agent_version, sizeof(r->agent_version), "%s", p->agent_version);
			fleetmq__v1__presence__free_unpacked(p, NULL);
		}
	}
}

static const char *presence_name(const struct presence_row *r)
{
	if(!r->found) return "unknown";
	if(r->bad) return "invalid";
	switch(r->state){
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE: return "online";
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_OFFLINE: return "offline";
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_SILENT: return "silent";
		default: return "unknown";
	}
}

static void presence_print(const struct cli_globals *g, const struct presence_row *rows, int count)
{
	uint64_t now = cli_now_ms();
	int i, w = (int)strlen("DEVICE");
	bool connected = false;

	if(g->json){
		cJSON *arr = cJSON_CreateArray();
		for(i = 0; arr && i < count; i++){
			const struct presence_row *r = &rows[i];
			cJSON *o = cJSON_CreateObject();
			if(!o) break;
			cJSON_AddItemToArray(arr, o);
			cJSON_AddStringToObject(o, "device", r->device);
			cJSON_AddStringToObject(o, "state", presence_name(r));
			cJSON_AddBoolToObject(o, "found", r->found && !r->bad);
			cJSON_AddNumberToObject(o, "since_ms", (double)r->since_ms);
			cJSON_AddNumberToObject(o, "last_seen_ms", (double)r->last_seen_ms);
			cJSON_AddNumberToObject(o, "connected_at_ms", (double)r->connected_at_ms);
			cJSON_AddStringToObject(o, "device_type", r->device_type);
			cJSON_AddStringToObject(o, "agent_version", r->agent_version);
		}
		if(arr) cli_print_json(arr);
		cJSON_Delete(arr);
		return;
	}
	for(i = 0; i < count; i++){
		int l = (int)strlen(rows[i].device);
		if(l > w) w = l;
	}
	printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, "DEVICE", "STATE", "SINCE", "LAST SEEN", "TYPE");
	for(i = 0; i < count; i++){
		const struct presence_row *r = &rows[i];
		char since[32], seen[32];

		if(!r->found || r->bad){
			printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, r->device, presence_name(r), "-", "-",
					r->bad ? "(undecodable presence record)" : "(no presence record: never connected?)");
			continue;
		}
		cli_format_age(since, sizeof(since), r->since_ms, now);
		cli_format_age(seen, sizeof(seen), r->last_seen_ms, now);
		printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, r->device, presence_name(r), since, seen,
				r->device_type[0] ? r->device_type : "-");
		if(r->state == FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE
				|| r->state == FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_SILENT) connected = true;
	}
	if(connected){
		/* The record is republished on state changes only (see device.c). */
		printf("(last seen: as of the latest state change; presence is republished on changes only)\n");
	}
}

int cmd_devices_presence(const struct cli_globals *g, const struct cli_args *a)
{
	struct presence_row *rows = NULL;
	struct presence_ctx ctx;
	struct cli_session *s = NULL;
	char **filters = NULL;
	int i, rc;

	if(a->npos > MAX_PRESENCE_DEVICES){
		fprintf(stderr, "fleetmq: at most %d devices per call\n", MAX_PRESENCE_DEVICES);
		return CLI_EXIT_USAGE;
	}
	for(i = 0; i < a->npos; i++){
		if(!cli_check_id("device id", a->pos[i])) return CLI_EXIT_USAGE;
	}
	rows = fm_calloc((size_t)a->npos, sizeof(*rows));
	filters = fm_calloc((size_t)a->npos, sizeof(*filters));
	if(!rows || !filters){
		rc = cli_oom();
		goto cleanup;
	}
	for(i = 0; i < a->npos; i++){
		rows[i].device = a->pos[i];
		snprintf(rows[i].topic, sizeof(rows[i].topic), "%s/%s/presence", g->prefix, a->pos[i]);
		filters[i] = rows[i].topic;
	}
	ctx.rows = rows;
	ctx.count = a->npos;
	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK) rc = cli_session_read_retained(s, filters, a->npos, presence_on_message, &ctx);
	cli_session_close(s);
	if(rc == CLI_EXIT_OK) presence_print(g, rows, a->npos);

cleanup:
	fm_free(rows);
	fm_free(filters);
	return rc;
}
