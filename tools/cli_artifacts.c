/*
 * cli_artifacts.c - the artifact store and release keys:
 * `fleetmq artifacts add | list` and `fleetmq keys generate | sign | verify | id`.
 *
 * The store is a directory shared with the broker (its artifacts.dir):
 * <dir>/<name> is the payload, <dir>/<name>.json its signed metadata (see
 * common/artifact_sig.h for the fields and the canonical manifest that is
 * signed). Everything cryptographic (Ed25519, key ids, SHA-256) is done by
 * common/artifact_sig.c; this file only moves files and prints.
 *
 * artifacts add is crash-safe: the payload is copied to a hidden temporary
 * file in the store (the broker never serves names starting with '.'),
 * fsync'ed and hashed, then renamed into place; the metadata is written
 * last, atomically, so a metadata file always describes a complete payload.
 *
 * Must never: overwrite an artifact or a key without --force, or report a
 * payload as verified without hashing it.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact_sig.h"
#include "cli.h"
#include "fleetmq_alloc.h"

#define MAX_PATH_BYTES 4096
#define MAX_LIST_ARTIFACTS 100000

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static const char *signing_key(const struct cli_globals *g, const struct cli_args *a)
{
	const char *k = cli_opt(a, OPT_KEY);

	if(k) return k;
	if(g->signing_key) return g->signing_key;
	fprintf(stderr, "fleetmq: give the private signing key: --key PRIVATE.pem (or artifacts.signing_key in the config file)\n");
	return NULL;
}

static int sig_exit(int status)
{
	switch(status){
		case FLEETMQ_SIG_ERR_NOMEM: return cli_oom();
		case FLEETMQ_SIG_ERR_ARGS: return CLI_EXIT_USAGE;
		default: return CLI_EXIT_LOCAL;
	}
}

/* Serialize obj (two-space indents, trailing newline) and write it
 * atomically. */
static int write_json_file(const char *path, const cJSON *obj)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	int rc;

	if(!mem) return cli_oom();
	cli_print_json_pretty(mem, obj, 0);
	if(fclose(mem) != 0 || !buf){
		free(buf);
		return cli_oom();
	}
	rc = cli_write_atomic(path, buf, len, 0644);
	free(buf);   /* open_memstream allocates with malloc */
	return rc;
}

/* ================================================================
 * artifacts add
 * ================================================================ */

static int build_metadata(const struct cli_args *a, const char *name, const char *hex, uint64_t size, cJSON **out)
{
	cJSON *m = cJSON_CreateObject(), *types = NULL, *hw = NULL;

	*out = NULL;
	if(!m) return cli_oom();
	types = cli_split_list(a, OPT_DEVICE_TYPES, false);
	if(!types){
		cJSON_Delete(m);
		return CLI_EXIT_USAGE;
	}
	if(cli_flag(a, OPT_HW_REVISIONS)){
		hw = cli_split_list(a, OPT_HW_REVISIONS, false);
		if(!hw){
			cJSON_Delete(types);
			cJSON_Delete(m);
			return CLI_EXIT_USAGE;
		}
	}else{
		hw = cJSON_CreateArray();
	}
	cJSON_AddStringToObject(m, "name", name);
	cJSON_AddStringToObject(m, "version", cli_opt(a, OPT_VERSION));
	cJSON_AddItemToObject(m, "deviceTypes", types);
	cJSON_AddItemToObject(m, "hwRevisions", hw);
	cJSON_AddNumberToObject(m, "size", (double)size);
	cJSON_AddStringToObject(m, "sha256", hex);
	cJSON_AddBoolToObject(m, "critical", cli_flag(a, OPT_CRITICAL));
	cJSON_AddBoolToObject(m, "allowDowngrade", cli_flag(a, OPT_ALLOW_DOWNGRADE));
	*out = m;
	return CLI_EXIT_OK;
}

int cmd_artifacts_add(const struct cli_globals *g, const struct cli_args *a)
{
	const char *file = a->pos[0], *dir = g->artifacts_dir, *key, *name;
	char payload[MAX_PATH_BYTES], meta_path[MAX_PATH_BYTES + 8], tmp[MAX_PATH_BYTES + 64];
	char hex[FLEETMQ_SHA256_HEX_BYTES + 1], hex2[FLEETMQ_SHA256_HEX_BYTES + 1], err[256], sizebuf[32];
	char *base_copy = NULL;
	struct fleetmq_artifact_meta parsed;
	cJSON *meta = NULL;
	uint64_t size = 0, size2 = 0;
	bool tmp_made = false;
	int rc, st;

	memset(&parsed, 0, sizeof(parsed));
	if(!dir){
		fprintf(stderr, "fleetmq: give the artifact store: --dir DIR (or artifacts.dir in the config file)\n");
		return CLI_EXIT_USAGE;
	}
	if(!cli_opt(a, OPT_VERSION) || !cli_flag(a, OPT_DEVICE_TYPES)){
		fprintf(stderr, "fleetmq: artifacts add needs --version V and --device-types TYPE[,TYPE...]\n");
		return CLI_EXIT_USAGE;
	}
	if(!fleetmq_version_valid(cli_opt(a, OPT_VERSION))){
		fprintf(stderr, "fleetmq: --version '%s' is not a valid version (e.g. 1.2.0, 2.0.0-rc.1; no leading 'v')\n",
				cli_opt(a, OPT_VERSION));
		return CLI_EXIT_USAGE;
	}
	if(!(key = signing_key(g, a))) return CLI_EXIT_USAGE;
	name = cli_opt(a, OPT_NAME);
	if(!name){
		base_copy = fm_strdup(file);
		if(!base_copy) return cli_oom();
		name = basename(base_copy);
	}
	if(!cli_check_id("artifact name", name) || name[0] == '.'){
		if(name[0] == '.') fprintf(stderr, "fleetmq: artifact names must not start with '.'\n");
		rc = CLI_EXIT_USAGE;
		goto cleanup;
	}
	if(snprintf(payload, sizeof(payload), "%s/%s", dir, name) >= (int)sizeof(payload)){
		fprintf(stderr, "fleetmq: path too long\n");
		rc = CLI_EXIT_USAGE;
		goto cleanup;
	}
	snprintf(meta_path, sizeof(meta_path), "%s.json", payload);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dir, name, (long)getpid());
	if(!cli_flag(a, OPT_FORCE) && (exists(payload) || exists(meta_path))){
		fprintf(stderr, "fleetmq: artifact %s already exists in %s; artifacts are immutable once jobs use them:\n"
				"fleetmq: add it under a new name (--name), or replace it with --force\n", name, dir);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}

	/* 1. hash the source and sign the metadata (key problems show up
	 * before anything is written) */
	st = fleetmq_sha256_file(file, hex, &size, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: %s: %s\n", file, err);
		rc = sig_exit(st);
		goto cleanup;
	}
	rc = build_metadata(a, name, hex, size, &meta);
	if(rc != CLI_EXIT_OK) goto cleanup;
	st = fleetmq_artifact_meta_parse(meta, &parsed, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: invalid artifact metadata: %s\n", err);
		rc = st == FLEETMQ_SIG_ERR_METADATA ? CLI_EXIT_USAGE : sig_exit(st);
		goto cleanup;
	}
	st = fleetmq_artifact_sign(meta, key, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: cannot sign with %s: %s\n", key, err);
		rc = sig_exit(st);
		goto cleanup;
	}

	/* 2. copy into the store under a hidden name, check it is what was signed */
	rc = cli_copy_to_tmp(file, tmp);
	if(rc != CLI_EXIT_OK) goto cleanup;
	tmp_made = true;
	st = fleetmq_sha256_file(tmp, hex2, &size2, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK || size2 != size || strcmp(hex, hex2)){
		fprintf(stderr, "fleetmq: %s changed while it was copied (or the copy is unreadable: %s); nothing added\n",
				file, st == FLEETMQ_SIG_OK ? "content differs" : err);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}

	/* 3. payload into place, then the metadata */
	if(rename(tmp, payload) != 0){
		fprintf(stderr, "fleetmq: cannot move the payload into place as %s: %s\n", payload, strerror(errno));
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	tmp_made = false;
	rc = cli_fsync_dir_of(payload);
	if(rc == CLI_EXIT_OK) rc = write_json_file(meta_path, meta);
	if(rc != CLI_EXIT_OK) goto cleanup;

	if(g->json){
		cJSON *out = cJSON_Duplicate(meta, 1);
		if(out){
			cJSON_AddStringToObject(out, "path", payload);
			cJSON_AddStringToObject(out, "metadataPath", meta_path);
			cli_print_json(out);
			cJSON_Delete(out);
		}
	}else{
		cli_format_bytes(sizebuf, sizeof(sizebuf), size);
		printf("added artifact %s version %s (%s, sha256 %.16s...) to %s\n", name, cli_opt(a, OPT_VERSION),
				sizebuf, hex, dir);
		printf("signed with key %s; metadata in %s\n", cli_jstr(meta, "keyId"), meta_path);
		printf("roll it out with: fleetmq jobs create --type update --artifact %s --artifacts-dir %s --devices ...\n",
				name, dir);
	}

cleanup:
	if(tmp_made) unlink(tmp);
	fleetmq_artifact_meta_free(&parsed);
	cJSON_Delete(meta);
	fm_free(base_copy);
	return rc;
}

/* ================================================================
 * artifacts list
 * ================================================================ */

static int name_cmp(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Load the keyring of every --key. NULL *kr when none given. */
static int load_keyring(const struct cli_args *a, struct fleetmq_sig_keyring **kr)
{
	char err[256];
	int i, st;

	*kr = NULL;
	if(a->nvals[OPT_KEY] == 0) return CLI_EXIT_OK;
	st = fleetmq_sig_keyring_new(kr);
	if(st != FLEETMQ_SIG_OK) return sig_exit(st);
	for(i = 0; i < a->nvals[OPT_KEY]; i++){
		st = fleetmq_sig_keyring_add_file(*kr, a->vals[OPT_KEY][i], err, sizeof(err));
		if(st != FLEETMQ_SIG_OK){
			fprintf(stderr, "fleetmq: public key %s: %s\n", a->vals[OPT_KEY][i], err);
			fleetmq_sig_keyring_free(*kr);
			*kr = NULL;
			return sig_exit(st);
		}
	}
	return CLI_EXIT_OK;
}

/* Check the payload at path against m: size and, when hash is set, SHA-256.
 * Returns NULL if it matches, else a short reason (static or in buf). */
static const char *check_payload(const char *path, const struct fleetmq_artifact_meta *m, bool hash, char *buf,
		size_t len)
{
	char hex[FLEETMQ_SHA256_HEX_BYTES + 1], err[256];
	struct stat st;
	uint64_t size = 0;

	if(stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return "payload missing";
	if((uint64_t)st.st_size != m->size){
		snprintf(buf, len, "payload is %lld bytes, metadata says %" PRIu64, (long long)st.st_size, m->size);
		return buf;
	}
	if(!hash) return NULL;
	if(fleetmq_sha256_file(path, hex, &size, err, sizeof(err)) != FLEETMQ_SIG_OK){
		snprintf(buf, len, "cannot hash the payload: %s", err);
		return buf;
	}
	if(size != m->size || strcmp(hex, m->sha256)){
		snprintf(buf, len, "payload sha256 %.16s... does not match the metadata's %.16s...", hex, m->sha256);
		return buf;
	}
	return NULL;
}

int cmd_artifacts_list(const struct cli_globals *g, const struct cli_args *a)
{
	const char *dir = g->artifacts_dir;
	struct fleetmq_sig_keyring *kr = NULL;
	struct cli_table *t = NULL;
	cJSON *arr = NULL;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	bool all_ok = true;
	DIR *d = NULL;
	int rc;

	if(!dir){
		fprintf(stderr, "fleetmq: give the artifact store: --dir DIR (or artifacts.dir in the config file)\n");
		return CLI_EXIT_USAGE;
	}
	rc = load_keyring(a, &kr);
	if(rc != CLI_EXIT_OK) return rc;
	d = opendir(dir);
	if(!d){
		fprintf(stderr, "fleetmq: artifact store %s: %s\n", dir, strerror(errno));
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	while((de = readdir(d)) != NULL){
		size_t l = strlen(de->d_name);
		if(de->d_name[0] == '.' || l <= 5 || strcmp(de->d_name + l - 5, ".json")) continue;
		if(n == cap){
			size_t nc = cap ? cap * 2 : 64;
			char **nn;
			if(nc > MAX_LIST_ARTIFACTS) break;
			nn = fm_realloc(names, nc * sizeof(*nn));
			if(!nn){
				rc = cli_oom();
				goto cleanup;
			}
			names = nn;
			cap = nc;
		}
		names[n] = fm_strndup(de->d_name, l - 5);
		if(!names[n]){
			rc = cli_oom();
			goto cleanup;
		}
		n++;
	}
	if(n) qsort(names, n, sizeof(*names), name_cmp);

	arr = cJSON_CreateArray();
	if(!g->json){
		static const char *const headers[] = { "NAME", "VERSION", "SIZE", "DEVICE TYPES", "HW", "FLAGS", "KEY", "STATUS" };
		t = cli_table_new(8, headers);
	}
	if(!arr || (!g->json && !t)){
		rc = cli_oom();
		goto cleanup;
	}
	for(i = 0; i < n; i++){
		char path[MAX_PATH_BYTES], mpath[MAX_PATH_BYTES + 8], reason[300], err[256], sizebuf[32], types[512], hw[512];
		char flags[48];
		struct fleetmq_artifact_meta m;
		cJSON *md = NULL, *row;
		const char *status = "ok", *problem;
		const char *cells[8];
		int st;

		memset(&m, 0, sizeof(m));
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		snprintf(mpath, sizeof(mpath), "%s.json", path);
		if(cli_read_json_file(mpath, "artifact metadata", true, &md) != CLI_EXIT_OK){
			status = "unreadable metadata";
		}else if((st = fleetmq_artifact_meta_parse(md, &m, err, sizeof(err))) != FLEETMQ_SIG_OK){
			snprintf(reason, sizeof(reason), "invalid metadata: %s", err);
			status = reason;
		}else if((problem = check_payload(path, &m, kr != NULL, reason, sizeof(reason))) != NULL){
			status = problem;
		}else if(!m.signature){
			status = "unsigned";
		}else if(kr){
			st = fleetmq_artifact_verify(&m, kr, err, sizeof(err));
			if(st != FLEETMQ_SIG_OK){
				snprintf(reason, sizeof(reason), "%s: %s", fleetmq_sig_strerror(st), err);
				status = reason;
			}else{
				status = "verified";
			}
		}
		if(strcmp(status, "ok") && strcmp(status, "verified")) all_ok = false;
		row = md ? cJSON_Duplicate(md, 1) : cJSON_CreateObject();
		if(row){
			if(!cJSON_GetObjectItemCaseSensitive(row, "name")) cJSON_AddStringToObject(row, "name", names[i]);
			cJSON_AddStringToObject(row, "status", status);
			cJSON_AddItemToArray(arr, row);
		}
		if(t){
			cli_format_bytes(sizebuf, sizeof(sizebuf), m.size);
			cli_format_strings(types, sizeof(types), cJSON_GetObjectItemCaseSensitive(md, "deviceTypes"));
			cli_format_strings(hw, sizeof(hw), cJSON_GetObjectItemCaseSensitive(md, "hwRevisions"));
			snprintf(flags, sizeof(flags), "%s%s%s", m.critical ? "critical" : "",
					m.critical && m.allow_downgrade ? "," : "", m.allow_downgrade ? "downgrade" : "");
			cells[0] = names[i];
			cells[1] = m.version ? m.version : "-";
			cells[2] = m.name ? sizebuf : "-";
			cells[3] = types;
			cells[4] = strcmp(hw, "-") ? hw : "any";
			cells[5] = flags[0] ? flags : "-";
			cells[6] = m.key_id[0] ? m.key_id : "-";
			cells[7] = status;
			cli_table_add(t, cells);
		}
		fleetmq_artifact_meta_free(&m);
		cJSON_Delete(md);
	}
	if(g->json){
		cJSON *out = cJSON_CreateObject();
		if(out){
			cJSON_AddStringToObject(out, "dir", dir);
			cJSON_AddItemToObject(out, "artifacts", arr);
			arr = NULL;
			cli_print_json(out);
			cJSON_Delete(out);
		}
	}else{
		cli_table_print(t, stdout);
		printf("%zu artifact%s in %s%s\n", n, n == 1 ? "" : "s", dir,
				kr ? " (signatures and payload hashes checked)" : " (sizes checked; --key PUBLIC.pem verifies signatures and hashes)");
	}
	rc = kr && !all_ok ? CLI_EXIT_LOCAL : CLI_EXIT_OK;

cleanup:
	if(d) closedir(d);
	for(i = 0; i < n; i++) fm_free(names[i]);
	fm_free(names);
	cli_table_free(t);
	cJSON_Delete(arr);
	fleetmq_sig_keyring_free(kr);
	return rc;
}

/* ================================================================
 * keys
 * ================================================================ */

int cmd_keys_generate(const struct cli_globals *g, const struct cli_args *a)
{
	const char *priv = a->pos[0], *pub = a->pos[1];
	char id[FLEETMQ_KEY_ID_HEX_BYTES + 1], err[256];
	int st;

	if(!strcmp(priv, pub)){
		fprintf(stderr, "fleetmq: the private and the public key need two different files\n");
		return CLI_EXIT_USAGE;
	}
	if(!cli_flag(a, OPT_FORCE) && (exists(priv) || exists(pub))){
		fprintf(stderr, "fleetmq: %s already exists; keys are never overwritten without --force\n",
				exists(priv) ? priv : pub);
		return CLI_EXIT_LOCAL;
	}
	st = fleetmq_sig_keygen(priv, pub, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: cannot generate the key pair: %s\n", err);
		return sig_exit(st);
	}
	st = fleetmq_sig_key_id_file(pub, id, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: %s: %s\n", pub, err);
		return sig_exit(st);
	}
	if(g->json){
		cJSON *o = cJSON_CreateObject();
		if(o){
			cJSON_AddStringToObject(o, "privateKey", priv);
			cJSON_AddStringToObject(o, "publicKey", pub);
			cJSON_AddStringToObject(o, "keyId", id);
			cli_print_json(o);
			cJSON_Delete(o);
		}
	}else{
		printf("generated Ed25519 key %s\n  private %s (mode 0600: keep it offline, it signs releases)\n"
				"  public  %s (install it in the devices' keyring)\n", id, priv, pub);
	}
	return CLI_EXIT_OK;
}

int cmd_keys_sign(const struct cli_globals *g, const struct cli_args *a)
{
	const char *path = a->pos[0], *key, *payload = cli_opt(a, OPT_PAYLOAD);
	char hex[FLEETMQ_SHA256_HEX_BYTES + 1], err[256];
	cJSON *md = NULL;
	uint64_t size = 0;
	int rc, st;

	if(!(key = signing_key(g, a))) return CLI_EXIT_USAGE;
	rc = cli_read_json_file(path, "artifact metadata", true, &md);
	if(rc != CLI_EXIT_OK) return rc;
	if(payload){
		st = fleetmq_sha256_file(payload, hex, &size, err, sizeof(err));
		if(st != FLEETMQ_SIG_OK){
			fprintf(stderr, "fleetmq: payload %s: %s\n", payload, err);
			rc = sig_exit(st);
			goto cleanup;
		}
		cJSON_DeleteItemFromObjectCaseSensitive(md, "size");
		cJSON_DeleteItemFromObjectCaseSensitive(md, "sha256");
		cJSON_AddNumberToObject(md, "size", (double)size);
		cJSON_AddStringToObject(md, "sha256", hex);
	}
	st = fleetmq_artifact_sign(md, key, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: cannot sign %s: %s\n", path, err);
		rc = sig_exit(st);
		goto cleanup;
	}
	rc = write_json_file(path, md);
	if(rc != CLI_EXIT_OK) goto cleanup;
	if(g->json){
		cli_print_json(md);
	}else{
		printf("signed %s with key %s%s\n", path, cli_jstr(md, "keyId"),
				payload ? " (size and sha256 taken from the payload)" : "");
	}

cleanup:
	cJSON_Delete(md);
	return rc;
}

int cmd_keys_verify(const struct cli_globals *g, const struct cli_args *a)
{
	const char *path = a->pos[0];
	char payload[MAX_PATH_BYTES], err[256], reason[300];
	struct fleetmq_sig_keyring *kr = NULL;
	struct fleetmq_artifact_meta m;
	const char *sig_status = "not checked", *payload_status = "not checked";
	cJSON *md = NULL;
	size_t l = strlen(path);
	bool ok = false;
	int rc, st;

	memset(&m, 0, sizeof(m));
	if(a->nvals[OPT_KEY] == 0){
		fprintf(stderr, "fleetmq: give one or more trusted public keys: --key PUBLIC.pem [--key OTHER.pem]\n");
		return CLI_EXIT_USAGE;
	}
	if(cli_opt(a, OPT_PAYLOAD)){
		snprintf(payload, sizeof(payload), "%s", cli_opt(a, OPT_PAYLOAD));
	}else if(l > 5 && !strcmp(path + l - 5, ".json") && l - 5 < sizeof(payload)){
		memcpy(payload, path, l - 5);
		payload[l - 5] = '\0';
	}else{
		fprintf(stderr, "fleetmq: which payload? give --payload FILE (by default <metadata without .json>)\n");
		return CLI_EXIT_USAGE;
	}
	rc = load_keyring(a, &kr);
	if(rc != CLI_EXIT_OK) return rc;
	rc = cli_read_json_file(path, "artifact metadata", true, &md);
	if(rc != CLI_EXIT_OK) goto cleanup;
	st = fleetmq_artifact_meta_parse(md, &m, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: artifact metadata %s: %s\n", path, err);
		rc = sig_exit(st);
		goto cleanup;
	}
	st = fleetmq_artifact_verify(&m, kr, err, sizeof(err));
	if(st != FLEETMQ_SIG_OK){
		snprintf(reason, sizeof(reason), "%s: %s", fleetmq_sig_strerror(st), err);
		sig_status = reason;
		fprintf(stderr, "fleetmq: %s: signature check FAILED: %s\n", path, reason);
	}else{
		const char *problem;
		sig_status = "ok";
		problem = check_payload(payload, &m, true, reason, sizeof(reason));
		if(problem){
			payload_status = problem;
			fprintf(stderr, "fleetmq: %s: payload check FAILED: %s\n", payload, problem);
		}else{
			payload_status = "ok";
			ok = true;
		}
	}
	if(g->json){
		cJSON *o = cJSON_CreateObject();
		if(o){
			cJSON_AddBoolToObject(o, "valid", ok);
			cJSON_AddStringToObject(o, "name", m.name);
			cJSON_AddStringToObject(o, "version", m.version);
			cJSON_AddStringToObject(o, "keyId", m.key_id);
			cJSON_AddStringToObject(o, "signature", sig_status);
			cJSON_AddStringToObject(o, "payload", payload_status);
			cJSON_AddStringToObject(o, "payloadPath", payload);
			cli_print_json(o);
			cJSON_Delete(o);
		}
	}else if(ok){
		printf("OK: %s %s is signed by trusted key %s and %s matches it (%" PRIu64 " bytes, sha256 %.16s...)\n",
				m.name, m.version, m.key_id, payload, m.size, m.sha256);
	}
	rc = ok ? CLI_EXIT_OK : CLI_EXIT_LOCAL;

cleanup:
	fleetmq_artifact_meta_free(&m);
	cJSON_Delete(md);
	fleetmq_sig_keyring_free(kr);
	return rc;
}

int cmd_keys_id(const struct cli_globals *g, const struct cli_args *a)
{
	char id[FLEETMQ_KEY_ID_HEX_BYTES + 1], err[256];
	int st = fleetmq_sig_key_id_file(a->pos[0], id, err, sizeof(err));

	if(st != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: %s: %s\n", a->pos[0], err);
		return sig_exit(st);
	}
	if(g->json){
		cJSON *o = cJSON_CreateObject();
		if(o){
			cJSON_AddStringToObject(o, "keyId", id);
			cli_print_json(o);
			cJSON_Delete(o);
		}
	}else{
		printf("%s\n", id);
	}
	return CLI_EXIT_OK;
}
