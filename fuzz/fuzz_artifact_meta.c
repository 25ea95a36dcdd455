/*
 * fuzz_artifact_meta - artifact metadata (common/artifact_sig.h): parse,
 * canonical manifest, signature verification and version ordering.
 *
 * Input: a JSON metadata object (or update job document). An input that
 * starts with "-----BEGIN" is a PEM key instead and goes to the key parsers.
 * An optional extra member "versions" (array of strings; ignored by the
 * parser) feeds the version comparison.
 *
 * Checked (all documented in artifact_sig.h):
 *   - accepted metadata has a valid version and a 9-line manifest that
 *     fleetmq_artifact_manifest_from_json builds identically;
 *   - signing accepted metadata with the fixed test key succeeds, the signed
 *     object parses and verifies with the test keyring, and changing a
 *     signed field (critical) makes verification fail with BAD_SIGNATURE;
 *   - version comparison is reflexive and antisymmetric;
 *   - error messages are NUL-terminated; meta_free is safe twice.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "artifact_sig.h"
#include "fleetmq_alloc.h"

/* A throw-away Ed25519 key pair made for this fuzzer (openssl genpkey
 * -algorithm ED25519); it signs nothing else. */
static const char test_private_pem[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEILbCfiTF8RaARVndEiITZ7/U7SipHumGA1JKAz0ITAU1\n"
	"-----END PRIVATE KEY-----\n";
static const char test_public_pem[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MCowBQYDK2VwAyEA1n9YcftZsmNfTYoZm7ZdnwhkGbV2DE1Jq71n2VDwKpY=\n"
	"-----END PUBLIC KEY-----\n";

static const char *const fixed_versions[] = {
	"0", "1", "1.0", "1.2.0", "1.2.0-rc.1", "1.2.0-rc.10", "1.2.0-rcx", "1.2.0+build.5", "2.0.0-alpha", "10.0",
};

static struct fleetmq_sig_keyring *keyring;
static char key_path[256];

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_artifact_meta: %s\n%s\n", what, detail ? detail : "");
	abort();
}

static void remove_key(void)
{
	unlink(key_path);
}

static void setup(void)
{
	const char *base = getenv("TMPDIR");
	char err[256];
	FILE *f;
	int fd;

	if(keyring) return;
	snprintf(key_path, sizeof(key_path), "%s/fleetmq-fuzz-key-XXXXXX", base && base[0] ? base : "/tmp");
	fd = mkstemp(key_path);
	if(fd < 0 || !(f = fdopen(fd, "w")) || fputs(test_private_pem, f) < 0 || fclose(f) != 0) fail("cannot write the test key", key_path);
	atexit(remove_key);
	if(fleetmq_sig_keyring_new(&keyring) != FLEETMQ_SIG_OK
			|| fleetmq_sig_keyring_add_pem(keyring, test_public_pem, strlen(test_public_pem), err, sizeof(err)) != FLEETMQ_SIG_OK){
		fail("cannot load the test public key", err);
	}
}

static void check_versions(const char *a, const char *b)
{
	int ab, ba, aa;
	int rc1 = fleetmq_version_compare(a, b, &ab);
	int rc2 = fleetmq_version_compare(b, a, &ba);

	if((rc1 == FLEETMQ_SIG_OK) != (rc2 == FLEETMQ_SIG_OK)) fail("version compare accepts one order only", a);
	if(rc1 == FLEETMQ_SIG_OK){
		if(!fleetmq_version_valid(a) || !fleetmq_version_valid(b)) fail("compared an invalid version", a);
		if(ab != -ba || ab < -1 || ab > 1) fail("version compare is not antisymmetric", a);
		if(fleetmq_version_compare(a, a, &aa) != FLEETMQ_SIG_OK || aa != 0) fail("version compare is not reflexive", a);
	}else if(fleetmq_version_valid(a) && fleetmq_version_valid(b)){
		fail("valid versions refused by compare", a);
	}
}

static void pem_input(const uint8_t *data, size_t size)
{
	struct fleetmq_sig_keyring *kr = NULL;
	char id[FLEETMQ_KEY_ID_HEX_BYTES + 1], err[128];

	fleetmq_sig_key_id_pem((const char *)data, size, id, err, sizeof(err));
	if(fleetmq_sig_keyring_new(&kr) != FLEETMQ_SIG_OK) abort();
	if(fleetmq_sig_keyring_add_pem(kr, (const char *)data, size, err, sizeof(err)) == FLEETMQ_SIG_OK){
		if(fleetmq_sig_keyring_count(kr) != 1 || !fleetmq_sig_keyring_key_id(kr, 0)) fail("key added but not listed", NULL);
	}
	fleetmq_sig_keyring_free(kr);
}

static void sign_and_verify(const cJSON *obj)
{
	struct fleetmq_artifact_meta m;
	cJSON *copy = cJSON_Duplicate(obj, 1);
	char err[256];
	int rc;

	if(!copy) abort();
	if((rc = fleetmq_artifact_sign(copy, key_path, err, sizeof(err))) != FLEETMQ_SIG_OK) fail("cannot sign accepted metadata", err);
	memset(&m, 0, sizeof(m));
	if(fleetmq_artifact_meta_parse(copy, &m, err, sizeof(err)) != FLEETMQ_SIG_OK) fail("signed metadata does not parse", err);
	if((rc = fleetmq_artifact_verify(&m, keyring, err, sizeof(err))) != FLEETMQ_SIG_OK) fail("signed metadata does not verify", err);
	m.critical = !m.critical;
	if(fleetmq_artifact_verify(&m, keyring, err, sizeof(err)) != FLEETMQ_SIG_ERR_BAD_SIGNATURE) fail("tampered metadata verifies", err);
	fleetmq_artifact_meta_free(&m);
	cJSON_Delete(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fleetmq_artifact_meta m;
	cJSON *obj;
	const cJSON *vs, *v;
	char err[256], *man = NULL, *man2 = NULL;
	const char *p;
	size_t lines = 0, i;
	int rc;

	setup();
	if(size >= 10 && !memcmp(data, "-----BEGIN", 10)){
		pem_input(data, size);
		return 0;
	}
	obj = cJSON_ParseWithLength((const char *)data, size);
	if(!obj) return 0;

	memset(&m, 0, sizeof(m));
	memset(err, 'x', sizeof(err));
	rc = fleetmq_artifact_meta_parse(obj, &m, err, sizeof(err));
	if(!memchr(err, '\0', sizeof(err))) fail("error message not terminated", NULL);
	if(rc == FLEETMQ_SIG_OK){
		if(!fleetmq_version_valid(m.version)) fail("accepted metadata with an invalid version", m.version);
		if(fleetmq_artifact_manifest(&m, &man) != FLEETMQ_SIG_OK) fail("no manifest for accepted metadata", NULL);
		if(strncmp(man, FLEETMQ_ARTIFACT_MANIFEST_HEADER "\n", strlen(FLEETMQ_ARTIFACT_MANIFEST_HEADER) + 1)) fail("manifest header", man);
		for(p = man; *p; p++) lines += *p == '\n';
		if(lines != 9 || p == man || p[-1] != '\n') fail("manifest is not 9 lines", man);
		if(fleetmq_artifact_manifest_from_json(obj, &man2, err, sizeof(err)) != FLEETMQ_SIG_OK || strcmp(man, man2)) {
			fail("manifest_from_json differs", man);
		}
		fleetmq_artifact_fits_type(&m, "sensor");
		fleetmq_artifact_fits_hw(&m, "r1");
		fleetmq_artifact_fits_hw(&m, NULL);
		fleetmq_artifact_verify(&m, keyring, err, sizeof(err));
		for(i = 0; i < sizeof(fixed_versions) / sizeof(fixed_versions[0]); i++) check_versions(m.version, fixed_versions[i]);
		sign_and_verify(obj);
	}else if(fleetmq_artifact_manifest_from_json(obj, &man2, err, sizeof(err)) == FLEETMQ_SIG_OK){
		fail("manifest_from_json accepts what meta_parse refuses", man2);
	}
	fleetmq_artifact_meta_free(&m);
	fleetmq_artifact_meta_free(&m);   /* documented as harmless */
	fm_free(man);
	fm_free(man2);

	vs = cJSON_GetObjectItemCaseSensitive(obj, "versions");
	i = 0;
	cJSON_ArrayForEach(v, vs){
		const cJSON *w;
		size_t k = 0;
		if(!cJSON_IsString(v) || i++ >= 8) continue;
		check_versions(v->valuestring, v->valuestring);
		cJSON_ArrayForEach(w, vs){
			if(cJSON_IsString(w) && k++ < 8) check_versions(v->valuestring, w->valuestring);
		}
		for(k = 0; k < sizeof(fixed_versions) / sizeof(fixed_versions[0]); k++) check_versions(v->valuestring, fixed_versions[k]);
	}
	cJSON_Delete(obj);
	return 0;
}
