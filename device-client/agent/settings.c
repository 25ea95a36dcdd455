/*
 * settings.c - the config and feature executors: key/values and feature
 * switches that jobs and the shadow's desired state set on the device.
 *
 * config.file is ONE JSON object of top-level keys (values: any JSON).
 * A config job {"set":{k:v,...}, "unset":[k,...]} (or desired.config,
 * treated as "set") produces the new object, which goes through:
 *   1. candidate  <file>.candidate written and fsync'd;
 *   2. validate   config.validate_cmd with "$1" = $FLEETMQ_CONFIG_FILE =
 *                 the candidate; non-zero exit: candidate removed, old file
 *                 untouched, FAILED (failure_type "validate");
 *   3. switch     rename over the file, fsync the directory (atomic);
 *   4. reload     config.reload_cmd with "$1" = the file; non-zero exit: the
 *                 previous content is written back atomically (and reload
 *                 run once more for it), FAILED (failure_type "reload").
 * An unchanged object is SUCCEEDED without touching anything.
 *
 * features.file is a JSON object {"<name>": true|false}: a feature job
 * {"disable":[..], "enable":[..]} (or desired.features {"name": bool})
 * sets entries and writes the file atomically if anything changed.
 *
 * Both keep the file format readable by people and by applications (which
 * may read config.file directly, or the library's feature API).
 * Bad documents are REJECTED with a reason and change nothing.
 *
 * Must never: leave a half-written config or feature file, or report
 * SUCCEEDED before the new file is durable. Not thread-safe: the agent
 * serialises calls (one mutex for both files).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "fleetmq_alloc.h"

#define SETTINGS_MAX_KEYS 1024
#define SETTINGS_KEY_MAX_BYTES 128

static bool key_valid(const char *k)
{
	size_t n = k ? strlen(k) : 0, i;

	if(n == 0 || n > SETTINGS_KEY_MAX_BYTES) return false;
	for(i = 0; i < n; i++){
		if((unsigned char)k[i] < 0x20 || k[i] == 0x7f) return false;
	}
	return true;
}

static void reject(struct agent_result *r, const char *step, const char *fmt, const char *arg)
{
	r->outcome = AGENT_OUT_REJECTED;
	snprintf(r->step, sizeof(r->step), "%s", step);
	snprintf(r->failure_type, sizeof(r->failure_type), "document");
	agent__result_detail(r, "reason", fmt, arg ? arg : "");
}

static void failed(struct agent_result *r, const char *step, const char *type, const char *reason)
{
	r->outcome = AGENT_OUT_FAILED;
	snprintf(r->step, sizeof(r->step), "%s", step);
	snprintf(r->failure_type, sizeof(r->failure_type), "%s", type);
	agent__result_detail(r, "reason", "%s", reason);
}

/* Read a JSON object file; missing = {}. NULL on error (err). */
static cJSON *read_object(const char *path, char *err, size_t errlen)
{
	cJSON *o = NULL;
	int rc = agent__read_json(path, &o, err, errlen);

	if(rc == 1) return cJSON_CreateObject();
	if(rc != 0) return NULL;
	if(!cJSON_IsObject(o)){
		snprintf(err, errlen, "%s: not a JSON object", path);
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* ================================================================
 * config
 * ================================================================ */

cJSON *agent__config_read(const struct agent_settings *s, char *err, size_t errlen)
{
	return read_object(s->config_file, err, errlen);
}

/* Check a "set" object / "unset" array. NULL = ok, else the reason. */
static const char *check_config_doc(const cJSON *set, const cJSON *unset, const char **bad_key)
{
	const cJSON *it;

	*bad_key = NULL;
	if(!set && !unset) return "the document needs 'set' (object of key/values) and/or 'unset' (array of keys)";
	if(set && !cJSON_IsObject(set)) return "'set' must be an object of key/values";
	if(unset && !cJSON_IsArray(unset)) return "'unset' must be an array of key names";
	if((set ? cJSON_GetArraySize(set) : 0) + (unset ? cJSON_GetArraySize(unset) : 0) > SETTINGS_MAX_KEYS){
		return "too many keys in one document";
	}
	cJSON_ArrayForEach(it, set){
		if(!key_valid(it->string)){
			*bad_key = it->string;
			return "invalid key (1-128 bytes, no control characters)";
		}
	}
	cJSON_ArrayForEach(it, unset){
		if(!cJSON_IsString(it) || !key_valid(it->valuestring)) return "'unset' must hold key names (1-128 bytes)";
		if(set && cJSON_GetObjectItemCaseSensitive(set, it->valuestring)){
			*bad_key = it->valuestring;
			return "key is both set and unset";
		}
	}
	return NULL;
}

static int run_cmd(const struct agent_settings *s, const char *cmd, const char *file, char *out, size_t outlen)
{
	char envbuf[4200];
	const char *args[2] = { file, NULL };
	const char *env[2] = { envbuf, NULL };

	snprintf(envbuf, sizeof(envbuf), "FLEETMQ_CONFIG_FILE=%.4150s", file);
	return agent__run_shell(cmd, args, env, s->cmd_timeout_ms > 0 ? s->cmd_timeout_ms : 30000, out, outlen);
}

static void describe_exit(char *buf, size_t len, const char *what, int rc, char *output)
{
	if(rc == -2) snprintf(buf, len, "%s timed out", what);
	else if(rc == -1) snprintf(buf, len, "%s could not be started", what);
	else snprintf(buf, len, "%s exited with %d%s%.150s", what, rc, output[0] ? ": " : "", agent__flatten(output));
}

void agent__config_apply(const struct agent_settings *s, const cJSON *doc, cJSON **applied,
		struct agent_result *r)
{
	const cJSON *set, *unset, *it;
	cJSON *old = NULL, *cur = NULL;
	char *old_text = NULL, *new_text = NULL;
	char cand[4200], err[AGENT_ERR_BYTES], output[256], msg[512];
	const char *why, *bad_key;
	bool had_file;
	int rc;

	agent__result_init(r);
	if(applied) *applied = NULL;
	if(!cJSON_IsObject(doc)){
		reject(r, "validate", "%s", "the config document must be a JSON object");
		return;
	}
	set = cJSON_GetObjectItemCaseSensitive(doc, "set");
	unset = cJSON_GetObjectItemCaseSensitive(doc, "unset");
	if((why = check_config_doc(set, unset, &bad_key)) != NULL){
		if(bad_key){
			snprintf(msg, sizeof(msg), "%s: '%.100s'", why, bad_key);
			reject(r, "validate", "%s", msg);
		}else{
			reject(r, "validate", "%s", why);
		}
		return;
	}

	had_file = access(s->config_file, F_OK) == 0;
	old = agent__config_read(s, err, sizeof(err));
	if(!old){
		failed(r, "read", "io", err);
		goto cleanup;
	}
	cur = cJSON_Duplicate(old, 1);
	if(!cur){
		failed(r, "apply", "internal", "out of memory");
		goto cleanup;
	}
	cJSON_ArrayForEach(it, unset) cJSON_DeleteItemFromObjectCaseSensitive(cur, it->valuestring);
	cJSON_ArrayForEach(it, set){
		cJSON *dup = cJSON_Duplicate(it, 1);
		if(!dup){
			failed(r, "apply", "internal", "out of memory");
			goto cleanup;
		}
		if(cJSON_GetObjectItemCaseSensitive(cur, it->string)) cJSON_ReplaceItemInObjectCaseSensitive(cur, it->string, dup);
		else cJSON_AddItemToObject(cur, it->string, dup);
	}
	if(had_file && cJSON_Compare(old, cur, true)){
		r->outcome = AGENT_OUT_SUCCEEDED;
		snprintf(r->step, sizeof(r->step), "apply");
		agent__result_detail(r, "result", "unchanged");
		goto done;
	}

	new_text = cJSON_Print(cur);
	old_text = had_file ? cJSON_Print(old) : NULL;
	if(!new_text || (had_file && !old_text)){
		failed(r, "apply", "internal", "out of memory");
		goto cleanup;
	}
	/* 1. candidate (written atomically too, so a crash leaves no torn file) */
	snprintf(cand, sizeof(cand), "%s.candidate", s->config_file);
	if(agent__write_atomic(cand, new_text, strlen(new_text), 0644, err, sizeof(err)) != 0){
		failed(r, "write", "io", err);
		goto cleanup;
	}
	/* 2. validate */
	if(s->validate_cmd && s->validate_cmd[0]){
		rc = run_cmd(s, s->validate_cmd, cand, output, sizeof(output));
		if(rc != 0){
			unlink(cand);
			describe_exit(msg, sizeof(msg), "validate command", rc, output);
			failed(r, "validate", "validate", msg);
			goto cleanup;
		}
	}
	/* 3. switch */
	if(rename(cand, s->config_file) != 0 || agent__fsync_dir_of(s->config_file) != 0){
		snprintf(msg, sizeof(msg), "%s: cannot replace: %s", s->config_file, strerror(errno));
		unlink(cand);
		failed(r, "write", "io", msg);
		goto cleanup;
	}
	/* 4. reload */
	if(s->reload_cmd && s->reload_cmd[0]){
		rc = run_cmd(s, s->reload_cmd, s->config_file, output, sizeof(output));
		if(rc != 0){
			describe_exit(msg, sizeof(msg), "reload command", rc, output);
			if(old_text){
				if(agent__write_atomic(s->config_file, old_text, strlen(old_text), 0644, err, sizeof(err)) != 0){
					snprintf(msg + strlen(msg), sizeof(msg) - strlen(msg), "; restoring the old file failed too");
				}
			}else{
				agent__unlink_durable(s->config_file);
			}
			run_cmd(s, s->reload_cmd, s->config_file, output, sizeof(output));
			failed(r, "reload", "reload", msg);
			goto cleanup;
		}
	}
	r->outcome = AGENT_OUT_SUCCEEDED;
	snprintf(r->step, sizeof(r->step), "apply");
	agent__result_detail(r, "result", "applied");

done:
	agent__result_detail(r, "keys", "%d", cJSON_GetArraySize(cur));
	if(applied){
		*applied = cur;
		cur = NULL;
	}

cleanup:
	cJSON_Delete(old);
	cJSON_Delete(cur);
	cJSON_free(old_text);
	cJSON_free(new_text);
}

/* ================================================================
 * features
 * ================================================================ */

cJSON *agent__features_read(const struct agent_settings *s, char *err, size_t errlen)
{
	return read_object(s->features_file, err, errlen);
}

static const char *check_names(const cJSON *a, const char *what)
{
	const cJSON *it;

	if(!a) return NULL;
	if(!cJSON_IsArray(a) || cJSON_GetArraySize(a) > SETTINGS_MAX_KEYS) return what;
	cJSON_ArrayForEach(it, a){
		if(!cJSON_IsString(it) || !key_valid(it->valuestring)) return what;
	}
	return NULL;
}

/* Write map into features_file if it differs from the stored one. */
static void features_store(const struct agent_settings *s, cJSON *map, const cJSON *stored, bool had_file,
		cJSON **applied, struct agent_result *r)
{
	char err[AGENT_ERR_BYTES];

	if(!had_file || !cJSON_Compare(map, stored, true)){
		if(agent__write_json_atomic(s->features_file, map, err, sizeof(err)) != 0){
			failed(r, "write", "io", err);
			cJSON_Delete(map);
			return;
		}
		agent__result_detail(r, "result", "applied");
	}else{
		agent__result_detail(r, "result", "unchanged");
	}
	r->outcome = AGENT_OUT_SUCCEEDED;
	snprintf(r->step, sizeof(r->step), "apply");
	if(applied) *applied = map;
	else cJSON_Delete(map);
}

static void set_flag(cJSON *map, const char *name, bool on)
{
	cJSON *v = cJSON_CreateBool(on);

	if(!v) return;
	if(cJSON_GetObjectItemCaseSensitive(map, name)) cJSON_ReplaceItemInObjectCaseSensitive(map, name, v);
	else cJSON_AddItemToObject(map, name, v);
}

void agent__features_apply(const struct agent_settings *s, const cJSON *doc, cJSON **applied,
		struct agent_result *r)
{
	const cJSON *dis, *en, *it;
	cJSON *stored, *map;
	char err[AGENT_ERR_BYTES];
	const char *why;
	bool had_file;

	agent__result_init(r);
	if(applied) *applied = NULL;
	if(!cJSON_IsObject(doc)){
		reject(r, "validate", "%s", "the feature document must be a JSON object");
		return;
	}
	dis = cJSON_GetObjectItemCaseSensitive(doc, "disable");
	en = cJSON_GetObjectItemCaseSensitive(doc, "enable");
	if(!dis && !en){
		reject(r, "validate", "%s", "the document needs 'disable' and/or 'enable' (arrays of feature names)");
		return;
	}
	if((why = check_names(dis, "'disable' must be an array of feature names (1-128 bytes)")) != NULL
			|| (why = check_names(en, "'enable' must be an array of feature names (1-128 bytes)")) != NULL){
		reject(r, "validate", "%s", why);
		return;
	}
	cJSON_ArrayForEach(it, en){
		const cJSON *d;
		cJSON_ArrayForEach(d, dis){
			if(!strcmp(d->valuestring, it->valuestring)){
				reject(r, "validate", "feature '%.128s' is both enabled and disabled", it->valuestring);
				return;
			}
		}
	}
	had_file = access(s->features_file, F_OK) == 0;
	stored = agent__features_read(s, err, sizeof(err));
	if(!stored){
		failed(r, "read", "io", err);
		return;
	}
	map = cJSON_Duplicate(stored, 1);
	if(!map){
		cJSON_Delete(stored);
		failed(r, "apply", "internal", "out of memory");
		return;
	}
	cJSON_ArrayForEach(it, dis) set_flag(map, it->valuestring, false);
	cJSON_ArrayForEach(it, en) set_flag(map, it->valuestring, true);
	features_store(s, map, stored, had_file, applied, r);
	cJSON_Delete(stored);
}

void agent__features_apply_map(const struct agent_settings *s, const cJSON *desired, cJSON **applied,
		struct agent_result *r)
{
	const cJSON *it;
	cJSON *stored, *map;
	char err[AGENT_ERR_BYTES];
	bool had_file;

	agent__result_init(r);
	if(applied) *applied = NULL;
	if(!cJSON_IsObject(desired)){
		reject(r, "validate", "%s", "features must be an object of name: true|false");
		return;
	}
	cJSON_ArrayForEach(it, desired){
		if(!key_valid(it->string) || !cJSON_IsBool(it)){
			reject(r, "validate", "feature '%.128s' must be true or false", it->string ? it->string : "");
			return;
		}
	}
	had_file = access(s->features_file, F_OK) == 0;
	stored = agent__features_read(s, err, sizeof(err));
	if(!stored){
		failed(r, "read", "io", err);
		return;
	}
	map = cJSON_Duplicate(stored, 1);
	if(!map){
		cJSON_Delete(stored);
		failed(r, "apply", "internal", "out of memory");
		return;
	}
	cJSON_ArrayForEach(it, desired) set_flag(map, it->string, cJSON_IsTrue(it));
	features_store(s, map, stored, had_file, applied, r);
	cJSON_Delete(stored);
}
