/*
 * artifact_sig.c - artifact metadata, canonical manifest, Ed25519
 * signatures, key ids, SHA-256 of files and version ordering (see
 * artifact_sig.h for the formats and rules).
 *
 * Layout: metadata (parse / free / manifest / compatibility), keys (PEM
 * loading, key ids, generation), signatures (sign, keyring, verify),
 * hashing, versions. The metadata and version code is pure; only the key,
 * signature and hashing functions touch OpenSSL or files.
 *
 * Must never: sign or verify anything but the canonical manifest, accept a
 * key that is not Ed25519, leave an OpenSSL object or file descriptor
 * behind, or print (errors go to the caller's buffer).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "artifact_sig.h"
#include "fleetmq_alloc.h"

#define SIG_PEM_MAX_BYTES 16384
#define SIG_READ_CHUNK_BYTES 65536
#define SIG_MAX_SIZE_VALUE 9007199254740992.0     /* 2^53: exact in a JSON double */
#define VERSION_MAX_NUMBERS 8
#define VERSION_MAX_DIGITS 18

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if(!err || errlen == 0) return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *fleetmq_sig_strerror(int status)
{
	switch(status){
		case FLEETMQ_SIG_OK: return "success";
		case FLEETMQ_SIG_ERR_ARGS: return "invalid argument";
		case FLEETMQ_SIG_ERR_METADATA: return "invalid artifact metadata";
		case FLEETMQ_SIG_ERR_KEY: return "invalid key";
		case FLEETMQ_SIG_ERR_NO_SIGNATURE: return "artifact is not signed";
		case FLEETMQ_SIG_ERR_UNKNOWN_KEY: return "unknown signing key";
		case FLEETMQ_SIG_ERR_BAD_SIGNATURE: return "bad signature";
		case FLEETMQ_SIG_ERR_IO: return "I/O error";
		case FLEETMQ_SIG_ERR_CRYPTO: return "crypto library error";
		case FLEETMQ_SIG_ERR_NOMEM: return "out of memory";
		case FLEETMQ_SIG_ERR_VERSION: return "invalid version";
		default: return "unknown status";
	}
}

/* ================================================================
 * Metadata
 * ================================================================ */

static bool has_ctl(const char *s)
{
	for(; *s; s++){
		if((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f) return true;
	}
	return false;
}

static bool is_hex_string(const char *s, size_t len)
{
	size_t i;

	if(strlen(s) != len) return false;
	for(i = 0; i < len; i++){
		char c = s[i];
		if(!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
	}
	return true;
}

static void lower_copy(char *dst, const char *src, size_t n)
{
	size_t i;

	for(i = 0; i < n && src[i]; i++){
		dst[i] = (src[i] >= 'A' && src[i] <= 'F') ? (char)(src[i] - 'A' + 'a') : src[i];
	}
	dst[i] = '\0';
}

static bool name_valid(const char *s)
{
	size_t len = strlen(s);

	if(len == 0 || len > FLEETMQ_ARTIFACT_NAME_MAX_BYTES || s[0] == '.') return false;
	if(strpbrk(s, "/+#")) return false;
	return !has_ctl(s);
}

static int parse_list(const cJSON *obj, const char *key, bool required, char ***items, size_t *count,
		char *err, size_t errlen)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(obj, key), *it;
	size_t n = 0;
	int i;

	*items = NULL;
	*count = 0;
	if(!a || cJSON_IsNull(a)){
		if(required){
			set_err(err, errlen, "'%s' is missing (array of strings)", key);
			return FLEETMQ_SIG_ERR_METADATA;
		}
		return FLEETMQ_SIG_OK;
	}
	if(!cJSON_IsArray(a)){
		set_err(err, errlen, "'%s' must be an array of strings", key);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	n = (size_t)cJSON_GetArraySize(a);
	if(required && n == 0){
		set_err(err, errlen, "'%s' must name at least one entry", key);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	if(n > FLEETMQ_ARTIFACT_LIST_MAX){
		set_err(err, errlen, "'%s' has %zu entries (at most %d)", key, n, FLEETMQ_ARTIFACT_LIST_MAX);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	if(n == 0) return FLEETMQ_SIG_OK;
	*items = fm_calloc(n, sizeof(char *));
	if(!*items) return FLEETMQ_SIG_ERR_NOMEM;
	i = 0;
	cJSON_ArrayForEach(it, a){
		const char *s = cJSON_IsString(it) ? it->valuestring : NULL;
		if(!s || !s[0] || strlen(s) > 128 || strchr(s, ',') || has_ctl(s)){
			set_err(err, errlen, "'%s[%d]' must be a string of 1-128 bytes without ',' or control characters", key, i);
			return FLEETMQ_SIG_ERR_METADATA;
		}
		(*items)[i] = fm_strdup(s);
		if(!(*items)[i]) return FLEETMQ_SIG_ERR_NOMEM;
		*count = (size_t)++i;
	}
	return FLEETMQ_SIG_OK;
}

static int parse_bool(const cJSON *obj, const char *key, bool *out, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	*out = false;
	if(!v || cJSON_IsNull(v)) return FLEETMQ_SIG_OK;
	if(!cJSON_IsBool(v)){
		set_err(err, errlen, "'%s' must be true or false", key);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	*out = cJSON_IsTrue(v);
	return FLEETMQ_SIG_OK;
}

int fleetmq_artifact_meta_parse(const cJSON *obj, struct fleetmq_artifact_meta *out,
		char *err, size_t errlen)
{
	const cJSON *v;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!out) return FLEETMQ_SIG_ERR_ARGS;
	memset(out, 0, sizeof(*out));
	if(!cJSON_IsObject(obj)){
		set_err(err, errlen, "metadata must be a JSON object");
		return obj ? FLEETMQ_SIG_ERR_METADATA : FLEETMQ_SIG_ERR_ARGS;
	}
	/* A repeated member is ambiguous (this parser takes the first, others
	 * the last) and fleetmq_artifact_sign would replace only the first
	 * "signature": refuse it. */
	for(v = obj->child; v; v = v->next){
		static const char *const fields[] = { "name", "version", "deviceTypes", "hwRevisions", "size",
			"sha256", "critical", "allowDowngrade", "signature", "keyId" };
		size_t i;
		for(i = 0; i < sizeof(fields) / sizeof(fields[0]); i++){
			if(v->string && !strcmp(v->string, fields[i]) && cJSON_GetObjectItemCaseSensitive(obj, fields[i]) != v){
				set_err(err, errlen, "'%s' appears more than once", fields[i]);
				return FLEETMQ_SIG_ERR_METADATA;
			}
		}
	}

	v = cJSON_GetObjectItemCaseSensitive(obj, "name");
	if(!cJSON_IsString(v) || !name_valid(v->valuestring)){
		set_err(err, errlen, "'name' must be a string of 1-%d bytes without '/', '+', '#', control characters or a leading '.'",
				FLEETMQ_ARTIFACT_NAME_MAX_BYTES);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	if(!(out->name = fm_strdup(v->valuestring))) return FLEETMQ_SIG_ERR_NOMEM;

	v = cJSON_GetObjectItemCaseSensitive(obj, "version");
	if(!cJSON_IsString(v) || strlen(v->valuestring) > FLEETMQ_ARTIFACT_VERSION_MAX_BYTES
			|| !fleetmq_version_valid(v->valuestring)){
		set_err(err, errlen, "'version' must be a version string such as \"1.2.3\" or \"2.0.0-rc.1\" (at most %d bytes)",
				FLEETMQ_ARTIFACT_VERSION_MAX_BYTES);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	if(!(out->version = fm_strdup(v->valuestring))) return FLEETMQ_SIG_ERR_NOMEM;

	rc = parse_list(obj, "deviceTypes", true, &out->device_types, &out->device_type_count, err, errlen);
	if(rc) return rc;
	rc = parse_list(obj, "hwRevisions", false, &out->hw_revisions, &out->hw_revision_count, err, errlen);
	if(rc) return rc;

	v = cJSON_GetObjectItemCaseSensitive(obj, "size");
	if(!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > SIG_MAX_SIZE_VALUE
			|| v->valuedouble != (double)(uint64_t)v->valuedouble){
		set_err(err, errlen, "'size' must be an integer number of bytes (0 to 2^53)");
		return FLEETMQ_SIG_ERR_METADATA;
	}
	out->size = (uint64_t)v->valuedouble;

	v = cJSON_GetObjectItemCaseSensitive(obj, "sha256");
	if(!cJSON_IsString(v) || !is_hex_string(v->valuestring, FLEETMQ_SHA256_HEX_BYTES)){
		set_err(err, errlen, "'sha256' must be %d hex digits", FLEETMQ_SHA256_HEX_BYTES);
		return FLEETMQ_SIG_ERR_METADATA;
	}
	lower_copy(out->sha256, v->valuestring, FLEETMQ_SHA256_HEX_BYTES);

	rc = parse_bool(obj, "critical", &out->critical, err, errlen);
	if(rc) return rc;
	rc = parse_bool(obj, "allowDowngrade", &out->allow_downgrade, err, errlen);
	if(rc) return rc;

	v = cJSON_GetObjectItemCaseSensitive(obj, "signature");
	if(v && !cJSON_IsNull(v)){
		if(!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) > 1024){
			set_err(err, errlen, "'signature' must be a base64 string");
			return FLEETMQ_SIG_ERR_METADATA;
		}
		if(!(out->signature = fm_strdup(v->valuestring))) return FLEETMQ_SIG_ERR_NOMEM;
	}
	v = cJSON_GetObjectItemCaseSensitive(obj, "keyId");
	if(v && !cJSON_IsNull(v)){
		if(!cJSON_IsString(v) || !is_hex_string(v->valuestring, FLEETMQ_KEY_ID_HEX_BYTES)){
			set_err(err, errlen, "'keyId' must be %d hex digits", FLEETMQ_KEY_ID_HEX_BYTES);
			return FLEETMQ_SIG_ERR_METADATA;
		}
		lower_copy(out->key_id, v->valuestring, FLEETMQ_KEY_ID_HEX_BYTES);
	}
	return FLEETMQ_SIG_OK;
}

static void free_list(char **items, size_t n)
{
	size_t i;

	if(!items) return;
	for(i = 0; i < n; i++) fm_free(items[i]);
	fm_free(items);
}

void fleetmq_artifact_meta_free(struct fleetmq_artifact_meta *m)
{
	if(!m) return;
	fm_free(m->name);
	fm_free(m->version);
	/* parse_list may leave a partly filled array: count covers the filled part */
	free_list(m->device_types, m->device_type_count);
	free_list(m->hw_revisions, m->hw_revision_count);
	fm_free(m->signature);
	memset(m, 0, sizeof(*m));
}

/* Growable string for the manifest. */
struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);

	if(b->oom) return;
	if(b->len + n + 1 > b->cap){
		size_t cap = b->cap ? b->cap : 256;
		char *p;
		while(cap < b->len + n + 1) cap *= 2;
		p = fm_realloc(b->p, cap);
		if(!p){
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n + 1);
	b->len += n;
}

static void sb_list(struct sbuf *b, char *const *items, size_t n)
{
	size_t i;

	for(i = 0; i < n; i++){
		if(i) sb_add(b, ",");
		sb_add(b, items[i]);
	}
}

int fleetmq_artifact_manifest(const struct fleetmq_artifact_meta *m, char **out)
{
	struct sbuf b = { NULL, 0, 0, false };
	char num[32];

	if(!m || !out || !m->name || !m->version) return FLEETMQ_SIG_ERR_ARGS;
	*out = NULL;
	sb_add(&b, FLEETMQ_ARTIFACT_MANIFEST_HEADER "\nname=");
	sb_add(&b, m->name);
	sb_add(&b, "\nversion=");
	sb_add(&b, m->version);
	snprintf(num, sizeof(num), "%" PRIu64, m->size);
	sb_add(&b, "\nsize=");
	sb_add(&b, num);
	sb_add(&b, "\nsha256=");
	sb_add(&b, m->sha256);
	sb_add(&b, "\ndevice_types=");
	sb_list(&b, m->device_types, m->device_type_count);
	sb_add(&b, "\nhw_revisions=");
	sb_list(&b, m->hw_revisions, m->hw_revision_count);
	sb_add(&b, m->critical ? "\ncritical=1" : "\ncritical=0");
	sb_add(&b, m->allow_downgrade ? "\nallow_downgrade=1\n" : "\nallow_downgrade=0\n");
	if(b.oom){
		fm_free(b.p);
		return FLEETMQ_SIG_ERR_NOMEM;
	}
	*out = b.p;
	return FLEETMQ_SIG_OK;
}

int fleetmq_artifact_manifest_from_json(const cJSON *obj, char **out, char *err, size_t errlen)
{
	struct fleetmq_artifact_meta m;
	int rc;

	if(!out) return FLEETMQ_SIG_ERR_ARGS;
	*out = NULL;
	rc = fleetmq_artifact_meta_parse(obj, &m, err, errlen);
	if(rc == FLEETMQ_SIG_OK) rc = fleetmq_artifact_manifest(&m, out);
	fleetmq_artifact_meta_free(&m);
	return rc;
}

bool fleetmq_artifact_fits_type(const struct fleetmq_artifact_meta *m, const char *device_type)
{
	size_t i;

	if(!m || !device_type) return false;
	for(i = 0; i < m->device_type_count; i++){
		if(!strcmp(m->device_types[i], device_type)) return true;
	}
	return false;
}

bool fleetmq_artifact_fits_hw(const struct fleetmq_artifact_meta *m, const char *hw_revision)
{
	size_t i;

	if(!m) return false;
	if(m->hw_revision_count == 0) return true;
	if(!hw_revision) return false;
	for(i = 0; i < m->hw_revision_count; i++){
		if(!strcmp(m->hw_revisions[i], hw_revision)) return true;
	}
	return false;
}

/* ================================================================
 * Keys
 * ================================================================ */

/* Read a whole (small) file into a new NUL-terminated buffer. */
static int read_small_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
	char *buf = NULL;
	size_t used = 0;
	ssize_t n;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0){
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return FLEETMQ_SIG_ERR_IO;
	}
	buf = fm_malloc(SIG_PEM_MAX_BYTES + 1);
	if(!buf){
		close(fd);
		return FLEETMQ_SIG_ERR_NOMEM;
	}
	while(used < SIG_PEM_MAX_BYTES && (n = read(fd, buf + used, SIG_PEM_MAX_BYTES - used)) != 0){
		if(n < 0){
			if(errno == EINTR) continue;
			set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			close(fd);
			fm_free(buf);
			return FLEETMQ_SIG_ERR_IO;
		}
		used += (size_t)n;
	}
	close(fd);
	if(used == SIG_PEM_MAX_BYTES){
		set_err(err, errlen, "%s: larger than %d bytes, not a key file", path, SIG_PEM_MAX_BYTES);
		fm_free(buf);
		return FLEETMQ_SIG_ERR_KEY;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	return FLEETMQ_SIG_OK;
}

/* Load a PEM key: public first (SubjectPublicKeyInfo), then private. Only
 * Ed25519 keys are returned. *is_private tells which one it was. */
static EVP_PKEY *load_pem_key(const char *pem, size_t len, bool want_private, bool *is_private)
{
	EVP_PKEY *k = NULL;
	BIO *bio;

	if(len > (size_t)SIG_PEM_MAX_BYTES) return NULL;
	*is_private = false;
	if(!want_private){
		bio = BIO_new_mem_buf(pem, (int)len);
		if(!bio) return NULL;
		k = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
	}
	if(!k){
		bio = BIO_new_mem_buf(pem, (int)len);
		if(!bio) return NULL;
		k = PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"");
		BIO_free(bio);
		if(k) *is_private = true;
	}
	if(k && EVP_PKEY_get_id(k) != EVP_PKEY_ED25519){
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for(i = 0; i < n; i++){
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
	out[2 * n] = '\0';
}

/* keyId of a loaded key (its public half). */
static int key_id_of(EVP_PKEY *k, char out[FLEETMQ_KEY_ID_HEX_BYTES + 1])
{
	unsigned char *der = NULL;
	char hex[FLEETMQ_SHA256_HEX_BYTES + 1];
	int n, rc;

	n = i2d_PUBKEY(k, &der);
	if(n <= 0) return FLEETMQ_SIG_ERR_CRYPTO;
	rc = fleetmq_sha256_hex(der, (size_t)n, hex);
	OPENSSL_free(der);
	if(rc) return rc;
	memcpy(out, hex, FLEETMQ_KEY_ID_HEX_BYTES);
	out[FLEETMQ_KEY_ID_HEX_BYTES] = '\0';
	return FLEETMQ_SIG_OK;
}

int fleetmq_sig_key_id_pem(const char *pem, size_t len, char out[FLEETMQ_KEY_ID_HEX_BYTES + 1],
		char *err, size_t errlen)
{
	EVP_PKEY *k;
	bool priv;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!pem || !out) return FLEETMQ_SIG_ERR_ARGS;
	k = load_pem_key(pem, len, false, &priv);
	if(!k){
		set_err(err, errlen, "not a PEM Ed25519 key");
		return FLEETMQ_SIG_ERR_KEY;
	}
	rc = key_id_of(k, out);
	EVP_PKEY_free(k);
	return rc;
}

int fleetmq_sig_key_id_file(const char *path, char out[FLEETMQ_KEY_ID_HEX_BYTES + 1],
		char *err, size_t errlen)
{
	char *pem = NULL;
	size_t len = 0;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!path || !out) return FLEETMQ_SIG_ERR_ARGS;
	rc = read_small_file(path, &pem, &len, err, errlen);
	if(rc) return rc;
	rc = fleetmq_sig_key_id_pem(pem, len, out, err, errlen);
	if(rc == FLEETMQ_SIG_ERR_KEY) set_err(err, errlen, "%s: not a PEM Ed25519 key", path);
	fm_free(pem);
	return rc;
}

/* Write a PEM (public or private) of k to path with the given mode, via a
 * temporary file, fsync'd and renamed. */
static int write_pem(const char *path, EVP_PKEY *k, bool priv, mode_t mode, char *err, size_t errlen)
{
	char tmp[4096];
	BIO *bio = NULL;
	char *data = NULL;
	long n;
	int fd = -1, rc = FLEETMQ_SIG_ERR_IO;
	ssize_t w;
	size_t off = 0;

	if(snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)){
		set_err(err, errlen, "%s: path too long", path);
		return FLEETMQ_SIG_ERR_ARGS;
	}
	bio = BIO_new(BIO_s_mem());
	if(!bio) return FLEETMQ_SIG_ERR_CRYPTO;
	if(!(priv ? PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_PUBKEY(bio, k))){
		BIO_free(bio);
		return FLEETMQ_SIG_ERR_CRYPTO;
	}
	n = BIO_get_mem_data(bio, &data);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if(fd < 0){
		set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
		goto cleanup;
	}
	if(fchmod(fd, mode) != 0){
		set_err(err, errlen, "%s: cannot chmod: %s", tmp, strerror(errno));
		goto cleanup;
	}
	while(off < (size_t)n){
		w = write(fd, data + off, (size_t)n - off);
		if(w < 0){
			if(errno == EINTR) continue;
			set_err(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
			goto cleanup;
		}
		off += (size_t)w;
	}
	if(fsync(fd) != 0){
		set_err(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
		goto cleanup;
	}
	close(fd);
	fd = -1;
	if(rename(tmp, path) != 0){
		set_err(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
		goto cleanup;
	}
	rc = FLEETMQ_SIG_OK;

cleanup:
	if(fd >= 0) close(fd);
	if(rc) unlink(tmp);
	BIO_free(bio);
	return rc;
}

int fleetmq_sig_keygen(const char *private_path, const char *public_path, char *err, size_t errlen)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *k = NULL;
	int rc = FLEETMQ_SIG_ERR_CRYPTO;

	set_err(err, errlen, "%s", "");
	if(!private_path || !public_path) return FLEETMQ_SIG_ERR_ARGS;
	ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	if(!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &k) <= 0){
		set_err(err, errlen, "cannot generate an Ed25519 key");
		goto cleanup;
	}
	rc = write_pem(private_path, k, true, 0600, err, errlen);
	if(rc) goto cleanup;
	rc = write_pem(public_path, k, false, 0644, err, errlen);

cleanup:
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* ================================================================
 * Signatures
 * ================================================================ */

int fleetmq_artifact_sign(cJSON *obj, const char *private_key_path, char *err, size_t errlen)
{
	struct fleetmq_artifact_meta m;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *k = NULL;
	char *pem = NULL, *manifest = NULL;
	unsigned char sig[FLEETMQ_SIGNATURE_BYTES];
	char b64[2 * FLEETMQ_SIGNATURE_BYTES + 8], key_id[FLEETMQ_KEY_ID_HEX_BYTES + 1];
	size_t pem_len = 0, sig_len = sizeof(sig);
	cJSON *s_item = NULL, *k_item = NULL;
	bool priv = false;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!obj || !private_key_path) return FLEETMQ_SIG_ERR_ARGS;
	rc = fleetmq_artifact_meta_parse(obj, &m, err, errlen);
	if(rc) goto cleanup;
	rc = fleetmq_artifact_manifest(&m, &manifest);
	if(rc) goto cleanup;
	rc = read_small_file(private_key_path, &pem, &pem_len, err, errlen);
	if(rc) goto cleanup;
	k = load_pem_key(pem, pem_len, true, &priv);
	if(!k || !priv){
		set_err(err, errlen, "%s: not a PEM Ed25519 private key", private_key_path);
		rc = FLEETMQ_SIG_ERR_KEY;
		goto cleanup;
	}
	rc = key_id_of(k, key_id);
	if(rc) goto cleanup;
	md = EVP_MD_CTX_new();
	if(!md || EVP_DigestSignInit(md, NULL, NULL, NULL, k) <= 0
			|| EVP_DigestSign(md, sig, &sig_len, (const unsigned char *)manifest, strlen(manifest)) <= 0
			|| sig_len != FLEETMQ_SIGNATURE_BYTES){
		set_err(err, errlen, "Ed25519 signing failed");
		rc = FLEETMQ_SIG_ERR_CRYPTO;
		goto cleanup;
	}
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)sig_len);
	s_item = cJSON_CreateString(b64);
	k_item = cJSON_CreateString(key_id);
	if(!s_item || !k_item){
		rc = FLEETMQ_SIG_ERR_NOMEM;
		goto cleanup;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(obj, "signature");
	cJSON_DeleteItemFromObjectCaseSensitive(obj, "keyId");
	cJSON_AddItemToObject(obj, "signature", s_item);
	cJSON_AddItemToObject(obj, "keyId", k_item);
	s_item = k_item = NULL;
	rc = FLEETMQ_SIG_OK;

cleanup:
	cJSON_Delete(s_item);
	cJSON_Delete(k_item);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	if(pem){
		OPENSSL_cleanse(pem, pem_len);
		fm_free(pem);
	}
	fm_free(manifest);
	fleetmq_artifact_meta_free(&m);
	return rc;
}

struct sig_key {
	EVP_PKEY *pkey;
	char id[FLEETMQ_KEY_ID_HEX_BYTES + 1];
};

struct fleetmq_sig_keyring {
	struct sig_key *keys;
	size_t count;
};

int fleetmq_sig_keyring_new(struct fleetmq_sig_keyring **out)
{
	if(!out) return FLEETMQ_SIG_ERR_ARGS;
	*out = fm_calloc(1, sizeof(**out));
	return *out ? FLEETMQ_SIG_OK : FLEETMQ_SIG_ERR_NOMEM;
}

int fleetmq_sig_keyring_add_pem(struct fleetmq_sig_keyring *kr, const char *pem, size_t len,
		char *err, size_t errlen)
{
	struct sig_key *keys;
	EVP_PKEY *k;
	char id[FLEETMQ_KEY_ID_HEX_BYTES + 1];
	bool priv = false;
	size_t i;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!kr || !pem) return FLEETMQ_SIG_ERR_ARGS;
	k = load_pem_key(pem, len, false, &priv);
	if(!k || priv){
		/* a private key in a device's trust store is a deployment mistake */
		set_err(err, errlen, priv ? "a private key, not a public key" : "not a PEM Ed25519 public key");
		EVP_PKEY_free(k);
		return FLEETMQ_SIG_ERR_KEY;
	}
	rc = key_id_of(k, id);
	if(rc){
		EVP_PKEY_free(k);
		return rc;
	}
	for(i = 0; i < kr->count; i++){
		if(!strcmp(kr->keys[i].id, id)){
			EVP_PKEY_free(k);
			return FLEETMQ_SIG_OK;
		}
	}
	keys = fm_realloc(kr->keys, (kr->count + 1) * sizeof(*keys));
	if(!keys){
		EVP_PKEY_free(k);
		return FLEETMQ_SIG_ERR_NOMEM;
	}
	kr->keys = keys;
	kr->keys[kr->count].pkey = k;
	memcpy(kr->keys[kr->count].id, id, sizeof(id));
	kr->count++;
	return FLEETMQ_SIG_OK;
}

int fleetmq_sig_keyring_add_file(struct fleetmq_sig_keyring *kr, const char *path,
		char *err, size_t errlen)
{
	char *pem = NULL, msg[256];
	size_t len = 0;
	int rc;

	set_err(err, errlen, "%s", "");
	if(!kr || !path) return FLEETMQ_SIG_ERR_ARGS;
	rc = read_small_file(path, &pem, &len, err, errlen);
	if(rc) return rc;
	rc = fleetmq_sig_keyring_add_pem(kr, pem, len, msg, sizeof(msg));
	if(rc) set_err(err, errlen, "%s: %s", path, msg);
	fm_free(pem);
	return rc;
}

size_t fleetmq_sig_keyring_count(const struct fleetmq_sig_keyring *kr)
{
	return kr ? kr->count : 0;
}

const char *fleetmq_sig_keyring_key_id(const struct fleetmq_sig_keyring *kr, size_t i)
{
	return kr && i < kr->count ? kr->keys[i].id : NULL;
}

void fleetmq_sig_keyring_free(struct fleetmq_sig_keyring *kr)
{
	size_t i;

	if(!kr) return;
	for(i = 0; i < kr->count; i++) EVP_PKEY_free(kr->keys[i].pkey);
	fm_free(kr->keys);
	fm_free(kr);
}

/* Decode standard base64 (with padding) into exactly FLEETMQ_SIGNATURE_BYTES. */
static bool decode_signature(const char *b64, unsigned char out[FLEETMQ_SIGNATURE_BYTES])
{
	unsigned char buf[3 * 1024 / 4 + 4];
	size_t len = strlen(b64), pad = 0;
	int n;

	if(len == 0 || len % 4 != 0 || len > 1024) return false;
	if(b64[len - 1] == '=') pad++;
	if(b64[len - 2] == '=') pad++;
	n = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)len);
	if(n < 0 || (size_t)n < pad || (size_t)n - pad != FLEETMQ_SIGNATURE_BYTES) return false;
	memcpy(out, buf, FLEETMQ_SIGNATURE_BYTES);
	return true;
}

static bool verify_one(EVP_PKEY *k, const unsigned char *sig, const char *manifest, int *crypto_err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int r;

	if(!md){
		*crypto_err = 1;
		return false;
	}
	if(EVP_DigestVerifyInit(md, NULL, NULL, NULL, k) <= 0){
		*crypto_err = 1;
		EVP_MD_CTX_free(md);
		return false;
	}
	r = EVP_DigestVerify(md, sig, FLEETMQ_SIGNATURE_BYTES, (const unsigned char *)manifest, strlen(manifest));
	EVP_MD_CTX_free(md);
	return r == 1;
}

int fleetmq_artifact_verify(const struct fleetmq_artifact_meta *m, const struct fleetmq_sig_keyring *kr,
		char *err, size_t errlen)
{
	unsigned char sig[FLEETMQ_SIGNATURE_BYTES];
	char *manifest = NULL;
	bool tried = false, ok = false;
	int crypto_err = 0, rc;
	size_t i;

	set_err(err, errlen, "%s", "");
	if(!m || !kr) return FLEETMQ_SIG_ERR_ARGS;
	if(!m->signature || !m->signature[0]){
		set_err(err, errlen, "artifact '%s' carries no signature", m->name ? m->name : "?");
		return FLEETMQ_SIG_ERR_NO_SIGNATURE;
	}
	if(kr->count == 0){
		set_err(err, errlen, "no trusted public keys are configured");
		return FLEETMQ_SIG_ERR_UNKNOWN_KEY;
	}
	if(!decode_signature(m->signature, sig)){
		set_err(err, errlen, "signature is not %d bytes of base64", FLEETMQ_SIGNATURE_BYTES);
		return FLEETMQ_SIG_ERR_BAD_SIGNATURE;
	}
	rc = fleetmq_artifact_manifest(m, &manifest);
	if(rc) return rc;
	for(i = 0; i < kr->count && !ok; i++){
		if(m->key_id[0] && strcmp(m->key_id, kr->keys[i].id)) continue;
		tried = true;
		ok = verify_one(kr->keys[i].pkey, sig, manifest, &crypto_err);
	}
	fm_free(manifest);
	if(ok) return FLEETMQ_SIG_OK;
	if(!tried){
		set_err(err, errlen, "signed with key %s, which is not among the %zu trusted key(s)", m->key_id, kr->count);
		return FLEETMQ_SIG_ERR_UNKNOWN_KEY;
	}
	if(crypto_err){
		set_err(err, errlen, "signature verification could not run");
		return FLEETMQ_SIG_ERR_CRYPTO;
	}
	if(m->key_id[0]) set_err(err, errlen, "signature does not match the metadata (key %s)", m->key_id);
	else set_err(err, errlen, "signature does not match the metadata under any of the %zu trusted key(s)", kr->count);
	return FLEETMQ_SIG_ERR_BAD_SIGNATURE;
}

/* ================================================================
 * Hashing
 * ================================================================ */

int fleetmq_sha256_hex(const void *buf, size_t len, char hex[FLEETMQ_SHA256_HEX_BYTES + 1])
{
	unsigned char d[32];
	unsigned int dlen = 0;

	if((!buf && len) || !hex) return FLEETMQ_SIG_ERR_ARGS;
	if(EVP_Digest(buf ? buf : "", len, d, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) return FLEETMQ_SIG_ERR_CRYPTO;
	hex_encode(d, 32, hex);
	return FLEETMQ_SIG_OK;
}

int fleetmq_sha256_file(const char *path, char hex[FLEETMQ_SHA256_HEX_BYTES + 1], uint64_t *size,
		char *err, size_t errlen)
{
	EVP_MD_CTX *md = NULL;
	unsigned char *buf = NULL, d[32];
	unsigned int dlen = 0;
	uint64_t total = 0;
	ssize_t n;
	int fd = -1, rc = FLEETMQ_SIG_ERR_IO;

	set_err(err, errlen, "%s", "");
	if(!path || !hex) return FLEETMQ_SIG_ERR_ARGS;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if(fd < 0){
		set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return FLEETMQ_SIG_ERR_IO;
	}
	buf = fm_malloc(SIG_READ_CHUNK_BYTES);
	md = EVP_MD_CTX_new();
	if(!buf || !md){
		rc = buf ? FLEETMQ_SIG_ERR_CRYPTO : FLEETMQ_SIG_ERR_NOMEM;
		goto cleanup;
	}
	if(EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1){
		rc = FLEETMQ_SIG_ERR_CRYPTO;
		goto cleanup;
	}
	while((n = read(fd, buf, SIG_READ_CHUNK_BYTES)) != 0){
		if(n < 0){
			if(errno == EINTR) continue;
			set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
			goto cleanup;
		}
		if(EVP_DigestUpdate(md, buf, (size_t)n) != 1){
			rc = FLEETMQ_SIG_ERR_CRYPTO;
			goto cleanup;
		}
		total += (uint64_t)n;
	}
	if(EVP_DigestFinal_ex(md, d, &dlen) != 1 || dlen != 32){
		rc = FLEETMQ_SIG_ERR_CRYPTO;
		goto cleanup;
	}
	hex_encode(d, 32, hex);
	if(size) *size = total;
	rc = FLEETMQ_SIG_OK;

cleanup:
	if(rc == FLEETMQ_SIG_ERR_CRYPTO) set_err(err, errlen, "%s: SHA-256 failed", path);
	EVP_MD_CTX_free(md);
	fm_free(buf);
	close(fd);
	return rc;
}

/* ================================================================
 * Versions
 * ================================================================ */

struct version {
	uint64_t nums[VERSION_MAX_NUMBERS];
	int n;
	const char *pre;          /* start of the pre-release, NULL = none */
	size_t pre_len;
};

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static bool ident_char(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* Check a dot-separated identifier list s[0..len). */
static bool idents_valid(const char *s, size_t len)
{
	size_t i, run = 0;

	if(len == 0) return false;
	for(i = 0; i < len; i++){
		if(s[i] == '.'){
			if(run == 0) return false;
			run = 0;
		}else if(ident_char(s[i])){
			run++;
		}else{
			return false;
		}
	}
	return run > 0;
}

static bool version_parse(const char *s, struct version *v)
{
	const char *p = s, *plus;
	size_t digits;

	memset(v, 0, sizeof(*v));
	if(!s || !*s) return false;
	for(;;){
		uint64_t x = 0;
		if(v->n == VERSION_MAX_NUMBERS) return false;
		digits = 0;
		while(is_digit(*p)){
			if(++digits > VERSION_MAX_DIGITS) return false;
			x = x * 10 + (uint64_t)(*p - '0');
			p++;
		}
		if(digits == 0) return false;
		v->nums[v->n++] = x;
		if(*p != '.') break;
		p++;
	}
	plus = strchr(p, '+');
	if(*p == '-'){
		p++;
		v->pre = p;
		v->pre_len = plus ? (size_t)(plus - p) : strlen(p);
		if(!idents_valid(v->pre, v->pre_len)) return false;
		p += v->pre_len;
	}
	if(*p == '+'){
		p++;
		if(!idents_valid(p, strlen(p))) return false;
		p += strlen(p);
	}
	return *p == '\0';
}

bool fleetmq_version_valid(const char *s)
{
	struct version v;
	return version_parse(s, &v);
}

/* Compare one pre-release identifier a[0..al) with b[0..bl). */
static int ident_compare(const char *a, size_t al, const char *b, size_t bl)
{
	bool an = true, bn = true;
	size_t i;
	int c;

	for(i = 0; i < al; i++) an = an && is_digit(a[i]);
	for(i = 0; i < bl; i++) bn = bn && is_digit(b[i]);
	if(an && bn){
		/* numeric: strip leading zeros, longer is larger, then lexical */
		while(al > 1 && *a == '0'){ a++; al--; }
		while(bl > 1 && *b == '0'){ b++; bl--; }
		if(al != bl) return al < bl ? -1 : 1;
		c = memcmp(a, b, al);
		return c < 0 ? -1 : c > 0;
	}
	if(an != bn) return an ? -1 : 1;
	c = memcmp(a, b, al < bl ? al : bl);
	if(c) return c < 0 ? -1 : 1;
	return al == bl ? 0 : (al < bl ? -1 : 1);
}

static int pre_compare(const struct version *a, const struct version *b)
{
	const char *pa = a->pre, *pb = b->pre, *ea, *eb;

	if(!a->pre && !b->pre) return 0;
	if(!a->pre) return 1;
	if(!b->pre) return -1;
	ea = a->pre + a->pre_len;   /* only now: NULL + 0 is undefined */
	eb = b->pre + b->pre_len;
	while(pa < ea && pb < eb){
		const char *da = memchr(pa, '.', (size_t)(ea - pa)), *db = memchr(pb, '.', (size_t)(eb - pb));
		size_t la = da ? (size_t)(da - pa) : (size_t)(ea - pa);
		size_t lb = db ? (size_t)(db - pb) : (size_t)(eb - pb);
		int c = ident_compare(pa, la, pb, lb);
		if(c) return c;
		pa += la + (da ? 1 : 0);
		pb += lb + (db ? 1 : 0);
	}
	if(pa >= ea && pb >= eb) return 0;
	return pa >= ea ? -1 : 1;
}

int fleetmq_version_compare(const char *a, const char *b, int *result)
{
	struct version va, vb;
	int i, n;

	if(!a || !b || !result) return FLEETMQ_SIG_ERR_ARGS;
	if(!version_parse(a, &va) || !version_parse(b, &vb)) return FLEETMQ_SIG_ERR_VERSION;
	n = va.n > vb.n ? va.n : vb.n;
	for(i = 0; i < n; i++){
		uint64_t x = i < va.n ? va.nums[i] : 0, y = i < vb.n ? vb.nums[i] : 0;
		if(x != y){
			*result = x < y ? -1 : 1;
			return FLEETMQ_SIG_OK;
		}
	}
	*result = pre_compare(&va, &vb);
	return FLEETMQ_SIG_OK;
}
