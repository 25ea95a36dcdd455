/*
 * cli_audit.c - `fleetmq audit`: the plugin's audit log (getAuditLog).
 *
 * Every state-changing operator command and every job execution transition
 * is recorded by the plugin with who did it; this command reads it back,
 * newest first, filtered by actor, target (job or device id) and time.
 *
 * Must never: change anything on the broker.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fleetmq_alloc.h"

#define PAGE_AUDIT 10000
#define DEFAULT_AUDIT_LIMIT 50
#define DETAIL_COLUMN_BYTES 100

/*
 * --since: milliseconds since the epoch ("1718000000000"), a duration back
 * from now ("90s", "15m", "2h", "7d"), or a UTC date / time
 * ("2024-06-10", "2024-06-10T12:00", "2024-06-10T12:00:05Z").
 */
static bool parse_since(const char *s, uint64_t *out)
{
	uint64_t v, unit = 0, now = cli_now_ms();
	struct tm tm;
	const char *end;
	char *p;

	if(cli_parse_u64(s, &v)){
		*out = v;
		return true;
	}
	if(isdigit((unsigned char)s[0])){
		v = strtoull(s, &p, 10);
		if(p != s && p[0] && !p[1]){
			switch(p[0]){
				case 's': unit = 1000; break;
				case 'm': unit = 60000; break;
				case 'h': unit = 3600000; break;
				case 'd': unit = 86400000; break;
				default: break;
			}
			if(unit && v < (1ULL << 40)){
				*out = v * unit >= now ? 1 : now - v * unit;
				return true;
			}
		}
	}
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%d", &tm);
	if(!end) return false;
	if(*end == 'T' || *end == ' '){
		const char *t = strptime(end + 1, "%H:%M:%S", &tm);
		if(!t) t = strptime(end + 1, "%H:%M", &tm);
		if(!t) return false;
		end = t;
	}
	if(*end == 'Z') end++;
	if(*end) return false;
	*out = (uint64_t)timegm(&tm) * 1000u;
	return true;
}

int cmd_audit(const struct cli_globals *g, const struct cli_args *a)
{
	struct cli_session *s = NULL;
	struct cli_table *t = NULL;
	cJSON *all = NULL, *root = NULL, *out = NULL;
	const char *actor = cli_opt(a, OPT_ACTOR), *target = cli_opt(a, OPT_TARGET);
	uint64_t limit = DEFAULT_AUDIT_LIMIT, since = 0;
	bool more = false;
	int rc;

	rc = cli_opt_uint(a, OPT_LIMIT, 1, 1000000, &limit, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	if(cli_flag(a, OPT_SINCE) && !parse_since(cli_opt(a, OPT_SINCE), &since)){
		fprintf(stderr, "fleetmq: --since '%s': give ms since the epoch, a duration (90s, 15m, 2h, 7d) or a UTC\n"
				"fleetmq: date/time (2024-06-10, 2024-06-10T12:00:05Z)\n", cli_opt(a, OPT_SINCE));
		return CLI_EXIT_USAGE;
	}
	all = cJSON_CreateArray();
	if(!all) return cli_oom();
	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK){
		cJSON *filter = cJSON_CreateObject();
		if(!filter){
			rc = cli_oom();
		}else{
			if(actor) cJSON_AddStringToObject(filter, "actor", actor);
			if(target) cJSON_AddStringToObject(filter, "target", target);
			if(since) cJSON_AddNumberToObject(filter, "sinceMs", (double)since);
			rc = cli_collect_pages(s, "getAuditLog", "audit", filter, "beforeSeq", "nextBeforeSeq", "entries",
					PAGE_AUDIT, limit, all, &more);
			cJSON_Delete(filter);
		}
	}
	cli_session_close(s);
	if(rc != CLI_EXIT_OK) goto cleanup;

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(all));
		cJSON_AddItemToObject(out, "entries", all);
		all = NULL;
		cli_print_json(out);
	}else{
		static const char *const headers[] = { "TIME", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAIL" };
		const cJSON *it;

		t = cli_table_new(6, headers);
		if(!t){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_ArrayForEach(it, all){
			cJSON *detail = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(it, "detail"), 1);
			char when[32], result[64], shown[DETAIL_COLUMN_BYTES + 4];
			const char *cells[6];
			char *text;

			cli_format_time(when, sizeof(when), cli_ju64(it, "timestampMs"));
			snprintf(result, sizeof(result), "%s", cli_jstr(detail, "result"));
			cJSON_DeleteItemFromObjectCaseSensitive(detail, "result");
			cJSON_DeleteItemFromObjectCaseSensitive(detail, "command");
			text = detail && cJSON_GetArraySize(detail) > 0 ? cJSON_PrintUnformatted(detail) : NULL;
			if(text && strlen(text) > DETAIL_COLUMN_BYTES) snprintf(shown, sizeof(shown), "%.*s...", DETAIL_COLUMN_BYTES - 3, text);
			else snprintf(shown, sizeof(shown), "%s", text ? text : "");
			cells[0] = when;
			cells[1] = cli_jstr(it, "actor");
			cells[2] = cli_jstr(it, "action");
			cells[3] = cli_jstr(it, "target")[0] ? cli_jstr(it, "target") : "-";
			cells[4] = result[0] ? result : "-";
			cells[5] = shown;
			cJSON_free(text);
			cJSON_Delete(detail);
			if(cli_table_add(t, cells) != 0){
				rc = cli_oom();
				goto cleanup;
			}
		}
		cli_table_print(t, stdout);
		printf("%d entr%s, newest first%s\n", cJSON_GetArraySize(all), cJSON_GetArraySize(all) == 1 ? "y" : "ies",
				more && (uint64_t)cJSON_GetArraySize(all) >= limit ? "; older ones with a higher --limit" : "");
	}

cleanup:
	cli_table_free(t);
	cJSON_Delete(root);
	cJSON_Delete(out);
	cJSON_Delete(all);
	return rc;
}
