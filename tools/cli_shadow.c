/*
 * cli_shadow.c - `fleetmq shadow get | set-desired` over the operator API
 * (getShadow, updateDesired).
 *
 * The plugin merges a desired patch (nested objects key by key, null
 * deletes) and pushes the delta to the device if it is connected; the CLI
 * only validates that the patch is a non-empty JSON object.
 *
 * Must never: touch the reported side of a shadow.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "fleetmq_alloc.h"

int cmd_shadow_get(const struct cli_globals *g, const struct cli_args *a)
{
	const char *device = a->pos[0];
	cJSON *cmd, *root = NULL, *state = NULL, *delta = NULL, *out = NULL;
	const cJSON *data;
	uint64_t version;
	int rc;

	if(!cli_check_id("device id", device)) return CLI_EXIT_USAGE;
	cmd = cJSON_CreateObject();
	if(!cmd) return cli_oom();
	cJSON_AddStringToObject(cmd, "command", "getShadow");
	cJSON_AddStringToObject(cmd, "deviceId", device);
	rc = cli_control_one(g, cmd, "shadow get", &root, &data);
	cJSON_Delete(cmd);
	if(rc != CLI_EXIT_OK) return rc;

	version = cli_ju64(data, "version");
	state = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(data, "state"), 1);
	if(!cJSON_IsObject(state)){
		cJSON_Delete(state);
		state = cJSON_CreateObject();
	}
	delta = cJSON_DetachItemFromObjectCaseSensitive(state, "delta");
	if(delta && (!cJSON_IsObject(delta) || !delta->child)){
		cJSON_Delete(delta);
		delta = NULL;
	}
	if(g->json){
		const cJSON *meta = cJSON_GetObjectItemCaseSensitive(data, "metadata");
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddStringToObject(out, "device", device);
		cJSON_AddNumberToObject(out, "version", (double)version);
		cJSON_AddItemToObject(out, "state", state);
		state = NULL;
		cJSON_AddItemToObject(out, "delta", delta ? delta : cJSON_CreateNull());
		delta = NULL;
		cJSON_AddItemToObject(out, "metadata", meta ? cJSON_Duplicate(meta, 1) : cJSON_CreateNull());
		cJSON_AddNumberToObject(out, "updated_ms", cli_jnum(data, "updatedMs", 0));
		cli_print_json(out);
	}else{
		printf("shadow of %s, version %" PRIu64 "%s\n", device, version, version == 0 ? " (never updated)" : "");
		cli_print_json_pretty(stdout, state, 0);
		if(delta){
			char *d = cJSON_PrintUnformatted(delta);
			printf("delta: %s  (desired, not yet reported by the device)\n", d ? d : "?");
			cJSON_free(d);
		}else{
			printf("delta: none (reported matches desired)\n");
		}
	}

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(state);
	cJSON_Delete(delta);
	cJSON_Delete(root);
	return rc;
}

int cmd_shadow_set_desired(const struct cli_globals *g, const struct cli_args *a)
{
	const char *device = a->pos[0];
	struct cli_session *s = NULL;
	cJSON *patch = NULL, *cmd = NULL, *cmds = NULL, *root = NULL, *out = NULL;
	const cJSON *data;
	const char *code = "";
	uint64_t expected = 0;
	bool has_expected = false;
	int rc;

	if(!cli_check_id("device id", device)) return CLI_EXIT_USAGE;
	rc = cli_opt_uint(a, OPT_EXPECTED_VERSION, 0, (1ULL << 53), &expected, &has_expected);
	if(rc != CLI_EXIT_OK) return rc;
	rc = cli_parse_json_arg(a->pos[1], "desired state", true, &patch);
	if(rc != CLI_EXIT_OK) return rc;
	if(!patch->child){
		fprintf(stderr, "fleetmq: desired state is empty: give at least one key (null deletes a key)\n");
		cJSON_Delete(patch);
		return CLI_EXIT_USAGE;
	}
	cmds = cJSON_CreateArray();
	cmd = cJSON_CreateObject();
	if(!cmds || !cmd || !cJSON_AddItemToArray(cmds, cmd)){
		cJSON_Delete(cmd);
		rc = cli_oom();
		goto cleanup;
	}
	cJSON_AddStringToObject(cmd, "command", "updateDesired");
	cJSON_AddStringToObject(cmd, "deviceId", device);
	cJSON_AddItemToObject(cmd, "desired", patch);
	patch = NULL;
	if(has_expected) cJSON_AddNumberToObject(cmd, "expectedVersion", (double)expected);

	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK) rc = cli_control_call(s, cmds, &root);
	cli_session_close(s);
	if(rc != CLI_EXIT_OK) goto cleanup;
	data = cli_response_data(root, 0, "shadow set-desired", &rc, &code);
	if(!data){
		if(!strcmp(code, "CONFLICT")){
			const cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "responses"), 0);
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(r, "data");
			fprintf(stderr, "fleetmq: the shadow is at version %" PRIu64 "; read it again (shadow get) and retry\n",
					cli_ju64(d, "currentVersion"));
		}
		goto cleanup;
	}
	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddStringToObject(out, "device", device);
		cJSON_AddNumberToObject(out, "version", cli_jnum(data, "version", 0));
		cli_print_json(out);
	}else{
		printf("%s: desired state updated, shadow version %" PRIu64 "\n", device, cli_ju64(data, "version"));
	}

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(root);
	cJSON_Delete(cmds);
	cJSON_Delete(patch);
	return rc;
}
