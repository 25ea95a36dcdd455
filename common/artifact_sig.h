/*
 * artifact_sig.h - update artifacts: metadata, canonical manifest, Ed25519
 * signatures, key ids, file hashing and version ordering.
 *
 * Shared by the device agent (verification before anything is downloaded)
 * and the operator CLI (key generation, signing). Uses OpenSSL 3 (libcrypto)
 * and cJSON; every OpenSSL object is freed before a function returns.
 *
 * ARTIFACTS
 *   An artifact is a payload file plus a metadata JSON object:
 *
 *     {"name":"fw-1.2.0.bin",          artifact name = file name in the store
 *      "version":"1.2.0",              software version it installs
 *      "deviceTypes":["sensor-v2"],    compatible device types (at least one)
 *      "hwRevisions":["r1","r2"],      compatible hw revisions ([] = any)
 *      "size":1048576,                 payload size in bytes
 *      "sha256":"<64 hex>",            SHA-256 of the payload
 *      "critical":false,               security/critical fix (update policy)
 *      "allowDowngrade":false,         may replace a newer version
 *      "signature":"<base64>",         Ed25519 signature of the manifest
 *      "keyId":"<16 hex>"}             which release key signed it
 *
 *   The broker stores it as <artifacts.dir>/<name> and <name>.json. The
 *   update JOB DOCUMENT is the same object plus "artifact": <name> (the CLI
 *   copies the metadata into the job), so a device can check everything
 *   before it downloads a single byte. Unknown members are ignored.
 *
 *   Field rules (checked by fleetmq_artifact_meta_parse): name 1-128 bytes,
 *   no '/', '+', '#', control characters or leading '.'; version 1-64
 *   bytes and a valid version (see VERSIONS); device types and hw revisions
 *   1-128 bytes each, no ',' or control characters, at most 64 entries;
 *   size an integer 0..2^53; sha256 64 hex digits (either case, normalised
 *   to lower case); critical / allowDowngrade booleans (absent = false);
 *   keyId, when present, 16 hex digits. None of these members may appear
 *   twice.
 *
 * MANIFEST (what is signed)
 *   The signature covers a canonical text built from the metadata, never
 *   the JSON itself (JSON has no canonical form):
 *
 *     fleetmq-artifact-v1\n
 *     name=<name>\n
 *     version=<version>\n
 *     size=<decimal size>\n
 *     sha256=<lower-case hex>\n
 *     device_types=<a>,<b>\n          (metadata order)
 *     hw_revisions=<r1>,<r2>\n        (empty after '=' for "any")
 *     critical=<0|1>\n
 *     allow_downgrade=<0|1>\n
 *
 *   So the payload (through its hash and size), the compatibility lists,
 *   the version and the downgrade permission cannot be changed without
 *   breaking the signature. Fields cannot contain '\n' or ',' (refused by
 *   the parser), so no two metadata objects map to the same manifest.
 *
 * SIGNATURES AND KEYS
 *   Ed25519 (pure, no pre-hash: OpenSSL's EVP_DigestSign with a NULL
 *   digest), 64-byte signatures, standard base64 with padding. Keys are PEM
 *   files: PKCS#8 private key ("BEGIN PRIVATE KEY") and SubjectPublicKeyInfo
 *   public key ("BEGIN PUBLIC KEY"). keyId = the first 16 hex digits of the
 *   SHA-256 of the public key's DER (SubjectPublicKeyInfo) encoding.
 *   A device holds a keyring of one or more public keys (rotation: ship the
 *   new key next to the old one, sign with the new one, later drop the
 *   old). Verification uses the key whose id equals the metadata's keyId;
 *   metadata without keyId is tried against every key.
 *
 * VERSIONS (anti-downgrade)
 *   version  = release [ "-" prerelease ] [ "+" build ]
 *   release  = number *( "." number )      1-8 numbers of at most 18 digits
 *   prerelease = ident *( "." ident )       ident = [0-9A-Za-z-]+
 *   Releases compare number by number, missing trailing numbers count as 0
 *   (1.2 == 1.2.0). With equal releases a version without pre-release is
 *   greater than one with (1.2.0-rc.1 < 1.2.0); pre-releases compare
 *   identifier by identifier: numeric ones numerically, others by ASCII,
 *   numeric < alphanumeric, and a shorter list of equal prefix is smaller
 *   (rc < rc.1 < rc.2 < rc.10 < rcx). Build metadata is ignored. A leading
 *   "v" is not accepted.
 *
 * ERRORS
 *   Every function returns an enum fleetmq_sig_status (0 = success) and,
 *   where it takes (err, errlen), writes a one-line English reason there
 *   ("" on success; truncated to errlen). These statuses are local (never
 *   on the wire); fleetmq_sig_strerror() names them.
 *
 * Memory: strings and structs returned to the caller come from fm_malloc
 * (fleetmq_alloc.h) and are freed with fm_free / the matching _free.
 * Thread-safety: functions keep no state; a keyring may be shared by
 * threads for verification once loaded.
 */
#ifndef FLEETMQ_ARTIFACT_SIG_H
#define FLEETMQ_ARTIFACT_SIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define FLEETMQ_SHA256_HEX_BYTES 64          /* hex digits, without NUL */
#define FLEETMQ_KEY_ID_HEX_BYTES 16          /* hex digits, without NUL */
#define FLEETMQ_SIGNATURE_BYTES 64           /* raw Ed25519 signature */
#define FLEETMQ_ARTIFACT_NAME_MAX_BYTES 128
#define FLEETMQ_ARTIFACT_VERSION_MAX_BYTES 64
#define FLEETMQ_ARTIFACT_LIST_MAX 64         /* device types / hw revisions */
#define FLEETMQ_ARTIFACT_MANIFEST_HEADER "fleetmq-artifact-v1"

enum fleetmq_sig_status {
	FLEETMQ_SIG_OK = 0,
	FLEETMQ_SIG_ERR_ARGS = 1,            /* NULL / invalid argument */
	FLEETMQ_SIG_ERR_METADATA = 2,        /* metadata field missing or invalid */
	FLEETMQ_SIG_ERR_KEY = 3,             /* key file unreadable, not PEM, not Ed25519 */
	FLEETMQ_SIG_ERR_NO_SIGNATURE = 4,    /* metadata carries no signature */
	FLEETMQ_SIG_ERR_UNKNOWN_KEY = 5,     /* keyId matches no key of the keyring (or it is empty) */
	FLEETMQ_SIG_ERR_BAD_SIGNATURE = 6,   /* signature does not verify (tampered metadata or wrong key) */
	FLEETMQ_SIG_ERR_IO = 7,              /* cannot read / write a file */
	FLEETMQ_SIG_ERR_CRYPTO = 8,          /* unexpected OpenSSL failure */
	FLEETMQ_SIG_ERR_NOMEM = 9,
	FLEETMQ_SIG_ERR_VERSION = 10,        /* not a valid version string */
};

/* Short, stable name of a status ("bad signature"); never NULL. */
const char *fleetmq_sig_strerror(int status);

/* ================================================================
 * Metadata
 * ================================================================ */

struct fleetmq_artifact_meta {
	char *name;
	char *version;
	char **device_types;                 /* device_type_count owned strings */
	size_t device_type_count;
	char **hw_revisions;                 /* empty = any */
	size_t hw_revision_count;
	uint64_t size;
	char sha256[FLEETMQ_SHA256_HEX_BYTES + 1];   /* lower-case hex */
	bool critical;
	bool allow_downgrade;
	char *signature;                     /* base64; NULL = unsigned */
	char key_id[FLEETMQ_KEY_ID_HEX_BYTES + 1];   /* "" = not given */
};

/* Parse and validate a metadata (or update job document) object into *out
 * (which is overwritten; free it with fleetmq_artifact_meta_free, also after
 * an error). signature/keyId are optional here; verification requires them.
 * Returns FLEETMQ_SIG_OK, _ARGS, _METADATA (err names the field) or _NOMEM. */
int fleetmq_artifact_meta_parse(const cJSON *obj, struct fleetmq_artifact_meta *out,
		char *err, size_t errlen);

/* Release what m owns and zero it. NULL is harmless; calling twice too. */
void fleetmq_artifact_meta_free(struct fleetmq_artifact_meta *m);

/* The canonical manifest of m (see MANIFEST) as a new NUL-terminated
 * string in *out (caller fm_free's it). Returns _OK, _ARGS, _NOMEM. */
int fleetmq_artifact_manifest(const struct fleetmq_artifact_meta *m, char **out);

/* Parse obj and build its manifest in one step. Returns as
 * fleetmq_artifact_meta_parse(). */
int fleetmq_artifact_manifest_from_json(const cJSON *obj, char **out, char *err, size_t errlen);

/* True if the artifact fits a device of this type and hw revision
 * (hw_revision may be NULL/"" only if the artifact accepts any). */
bool fleetmq_artifact_fits_type(const struct fleetmq_artifact_meta *m, const char *device_type);
bool fleetmq_artifact_fits_hw(const struct fleetmq_artifact_meta *m, const char *hw_revision);

/* ================================================================
 * Keys and signatures
 * ================================================================ */

/* Generate an Ed25519 key pair and write it as PEM: private_path (mode
 * 0600, PKCS#8, unencrypted) and public_path (0644). Existing files are
 * replaced. Returns _OK, _ARGS, _IO, _CRYPTO. */
int fleetmq_sig_keygen(const char *private_path, const char *public_path, char *err, size_t errlen);

/* keyId of the PEM public key (or private key: its public half) in
 * pem[0..len) into out (17 bytes: 16 hex + NUL). Returns _OK, _ARGS, _KEY. */
int fleetmq_sig_key_id_pem(const char *pem, size_t len, char out[FLEETMQ_KEY_ID_HEX_BYTES + 1],
		char *err, size_t errlen);

/* Same, reading the PEM file at path. Adds _IO. */
int fleetmq_sig_key_id_file(const char *path, char out[FLEETMQ_KEY_ID_HEX_BYTES + 1],
		char *err, size_t errlen);

/* Sign the metadata object in place: validate it, build its manifest, sign
 * it with the PEM private key at private_key_path and set (replacing any
 * old ones) "signature" and "keyId". Returns _OK, _ARGS, _METADATA, _IO,
 * _KEY, _CRYPTO, _NOMEM. obj is unchanged on error. */
int fleetmq_artifact_sign(cJSON *obj, const char *private_key_path, char *err, size_t errlen);

/* A set of trusted public keys (opaque). */
struct fleetmq_sig_keyring;

/* New empty keyring in *out. Returns _OK, _ARGS, _NOMEM. */
int fleetmq_sig_keyring_new(struct fleetmq_sig_keyring **out);

/* Add the PEM public key in pem[0..len) / in the file at path. A key whose
 * id is already present is not added twice (success). Returns _OK, _ARGS,
 * _KEY (not PEM, not Ed25519), _IO (file), _NOMEM. */
int fleetmq_sig_keyring_add_pem(struct fleetmq_sig_keyring *kr, const char *pem, size_t len,
		char *err, size_t errlen);
int fleetmq_sig_keyring_add_file(struct fleetmq_sig_keyring *kr, const char *path,
		char *err, size_t errlen);

/* Number of keys; the id of key i (borrowed, valid until the keyring is
 * freed) or NULL if i is out of range. */
size_t fleetmq_sig_keyring_count(const struct fleetmq_sig_keyring *kr);
const char *fleetmq_sig_keyring_key_id(const struct fleetmq_sig_keyring *kr, size_t i);

/* Free the keyring and its keys. NULL is harmless. */
void fleetmq_sig_keyring_free(struct fleetmq_sig_keyring *kr);

/* Verify m's signature over its manifest with the keyring (see SIGNATURES
 * AND KEYS). Returns _OK, _ARGS, _NO_SIGNATURE, _UNKNOWN_KEY,
 * _BAD_SIGNATURE (also for a signature that is not 64 bytes of base64),
 * _NOMEM, _CRYPTO. */
int fleetmq_artifact_verify(const struct fleetmq_artifact_meta *m, const struct fleetmq_sig_keyring *kr,
		char *err, size_t errlen);

/* ================================================================
 * Hashing
 * ================================================================ */

/* Streaming SHA-256 of the file at path into hex (65 bytes, lower case) and
 * its size into *size (may be NULL). Returns _OK, _ARGS, _IO, _CRYPTO. */
int fleetmq_sha256_file(const char *path, char hex[FLEETMQ_SHA256_HEX_BYTES + 1], uint64_t *size,
		char *err, size_t errlen);

/* SHA-256 of buf[0..len) into hex. Returns _OK, _ARGS, _CRYPTO. */
int fleetmq_sha256_hex(const void *buf, size_t len, char hex[FLEETMQ_SHA256_HEX_BYTES + 1]);

/* ================================================================
 * Versions
 * ================================================================ */

/* True if s is a valid version (see VERSIONS). */
bool fleetmq_version_valid(const char *s);

/* Compare versions a and b: *result = -1, 0 or 1 for a < b, a == b, a > b.
 * Returns _OK, _ARGS (NULL), _VERSION (either one invalid). */
int fleetmq_version_compare(const char *a, const char *b, int *result);

#endif
