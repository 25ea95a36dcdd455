/*
 * fake_broker.c - see fake_broker.h.
 *
 * Implements the Mosquitto functions the plugin links against with the
 * broker's documented contracts (ownership of published payloads and
 * properties, NULL returns, MOSQ_ERR_* codes), nothing more.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
#include <sanitizer/lsan_interface.h>
#endif
#endif

#include "fake_broker.h"

struct fake_broker_stats fake_stats;
const char *fake_broker_extra_yaml;

/* ---------------------------------------------------------------- allocation */

void *mosquitto_malloc(size_t size) { return malloc(size); }
void *mosquitto_calloc(size_t nmemb, size_t size) { return calloc(nmemb, size); }
void *mosquitto_realloc(void *ptr, size_t size) { return realloc(ptr, size); }
void mosquitto_free(void *mem) { free(mem); }
char *mosquitto_strdup(const char *s) { return s ? strdup(s) : NULL; }

/* ---------------------------------------------------------------- logging */

void mosquitto_log_printf(int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	/* Format for real: a bad argument (NULL %s, wrong type) must show up. */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fake_stats.logs++;
	if(getenv("FUZZ_VERBOSE")) fprintf(stderr, "[log %d] %s\n", level, buf);
}

/* ---------------------------------------------------------------- clients */

const char *mosquitto_client_id(const struct mosquitto *client)
{
	return client ? client->id : NULL;
}

const char *mosquitto_client_username(const struct mosquitto *client)
{
	return client && client->has_username ? client->username : NULL;
}

int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will) { return MOSQ_ERR_SUCCESS; }
int mosquitto_kick_client_by_username(const char *username, bool with_will) { return MOSQ_ERR_SUCCESS; }

void fake_client_set(struct mosquitto *c, const char *id, const char *username)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id ? id : "");
	if(username){
		snprintf(c->username, sizeof(c->username), "%s", username);
		c->has_username = true;
	}
}

/* ---------------------------------------------------------------- UTF-8 */

bool fake_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while(i < len){
		unsigned c = p[i], need, cp, k;
		if(c == 0) return false;
		if(c < 0x80){ i++; continue; }
		if(c >= 0xc2 && c <= 0xdf){ need = 1; cp = c & 0x1f; }
		else if(c >= 0xe0 && c <= 0xef){ need = 2; cp = c & 0x0f; }
		else if(c >= 0xf0 && c <= 0xf4){ need = 3; cp = c & 0x07; }
		else return false;
		if(len - i <= need) return false;
		for(k = 1; k <= need; k++){
			if((p[i + k] & 0xc0) != 0x80) return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff))
				|| (cp >= 0xd800 && cp <= 0xdfff)) return false;
		i += need + 1;
	}
	return true;
}

/* ---------------------------------------------------------------- properties */

struct mqtt5__property {
	struct mqtt5__property *next;
	int identifier;
	bool is_string;
	void *value;
	uint16_t len;
};

static const mosquitto_property *prop_find(const mosquitto_property *p, int identifier, bool skip_first)
{
	if(p && skip_first) p = p->next;
	for(; p; p = p->next){
		if(p->identifier == identifier) return p;
	}
	return NULL;
}

const mosquitto_property *mosquitto_property_read_string(const mosquitto_property *proplist, int identifier,
		char **value, bool skip_first)
{
	const mosquitto_property *p = prop_find(proplist, identifier, skip_first);

	if(!p || !p->is_string) return NULL;
	if(value){
		*value = malloc((size_t)p->len + 1);
		if(!*value) return NULL;
		memcpy(*value, p->value, p->len);
		(*value)[p->len] = '\0';
	}
	return p;
}

const mosquitto_property *mosquitto_property_read_binary(const mosquitto_property *proplist, int identifier,
		void **value, uint16_t *len, bool skip_first)
{
	const mosquitto_property *p = prop_find(proplist, identifier, skip_first);

	if(!p || p->is_string) return NULL;
	if(value){
		/* As libmosquitto: len bytes, plus a NUL it adds for convenience. */
		*value = malloc((size_t)p->len + 1);
		if(!*value) return NULL;
		memcpy(*value, p->value, p->len);
		((char *)*value)[p->len] = '\0';
		if(len) *len = p->len;
	}
	return p;
}

static int prop_add(mosquitto_property **proplist, int identifier, const void *value, uint16_t len, bool is_string)
{
	mosquitto_property *p, **tail;

	if(!proplist) return MOSQ_ERR_INVAL;
	if(len && !value) return MOSQ_ERR_INVAL;
	p = calloc(1, sizeof(*p));
	if(!p) return MOSQ_ERR_NOMEM;
	p->identifier = identifier;
	p->is_string = is_string;
	p->len = len;
	p->value = malloc(len ? len : 1);
	if(!p->value){
		free(p);
		return MOSQ_ERR_NOMEM;
	}
	if(len) memcpy(p->value, value, len);
	for(tail = proplist; *tail; tail = &(*tail)->next){}
	*tail = p;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_property_add_binary(mosquitto_property **proplist, int identifier, const void *value, uint16_t len)
{
	if(identifier != MQTT_PROP_CORRELATION_DATA && identifier != MQTT_PROP_AUTHENTICATION_DATA) return MOSQ_ERR_INVAL;
	return prop_add(proplist, identifier, value, len, false);
}

int fake_property_add_string(void **proplist, int identifier, const char *value)
{
	size_t len = value ? strlen(value) : 0;

	if(len > UINT16_MAX) return MOSQ_ERR_INVAL;
	return prop_add((mosquitto_property **)proplist, identifier, value, (uint16_t)len, true);
}

void mosquitto_property_free_all(mosquitto_property **properties)
{
	mosquitto_property *p, *next;

	if(!properties) return;
	for(p = *properties; p; p = next){
		next = p->next;
		free(p->value);
		free(p);
	}
	*properties = NULL;
}

/* ---------------------------------------------------------------- publish */

static bool pub_topic_ok(const char *topic)
{
	size_t len = strlen(topic);

	return len > 0 && len <= UINT16_MAX && !strpbrk(topic, "+#") && fake_utf8_valid(topic, len);
}

int mosquitto_broker_publish(const char *clientid, const char *topic, int payloadlen, void *payload,
		int qos, bool retain, mosquitto_property *properties)
{
	const volatile unsigned char *p = payload;
	unsigned sum = 0;
	int i;

	if(topic == NULL || payloadlen < 0 || (payloadlen > 0 && payload == NULL) || qos < 0 || qos > 2){
		return MOSQ_ERR_INVAL;
	}
	/* The broker drops a message whose topic it would refuse from a client;
	 * the plugin must never produce one (a response silently lost). */
	if(!pub_topic_ok(topic)){
		fprintf(stderr, "fake_broker: plugin published to an invalid topic '%s'\n", topic);
		abort();
	}
	/* delivery.direct: a client id that cannot exist loses the message */
	if(clientid && (!clientid[0] || !fake_utf8_valid(clientid, strlen(clientid)))){
		fprintf(stderr, "fake_broker: plugin published '%s' to an impossible client id\n", topic);
		abort();
	}
	/* Read every byte: ASan reports a payload shorter than payloadlen. */
	for(i = 0; i < payloadlen; i++) sum += p[i];
	(void)sum;
	fake_stats.published++;
	fake_stats.published_bytes += (uint64_t)payloadlen;
	free(payload);
	mosquitto_property_free_all(&properties);
	return MOSQ_ERR_SUCCESS;
}

/* ---------------------------------------------------------------- callbacks */

#define MAX_CALLBACKS 16

struct callback {
	bool used;
	int event;
	MOSQ_FUNC_generic_callback fn;
	char *topic;                   /* CONTROL: the registered topic */
	void *userdata;
};

static struct callback callbacks[MAX_CALLBACKS];

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event, MOSQ_FUNC_generic_callback cb_func,
		const void *event_data, void *userdata)
{
	int i, free_slot = -1;

	if(!cb_func) return MOSQ_ERR_INVAL;
	if(event == MOSQ_EVT_CONTROL && !event_data) return MOSQ_ERR_INVAL;
	for(i = 0; i < MAX_CALLBACKS; i++){
		if(!callbacks[i].used){
			if(free_slot < 0) free_slot = i;
			continue;
		}
		if(callbacks[i].event == event && callbacks[i].fn == cb_func
				&& (event != MOSQ_EVT_CONTROL || !strcmp(callbacks[i].topic, event_data))){
			return MOSQ_ERR_ALREADY_EXISTS;
		}
	}
	if(free_slot < 0) return MOSQ_ERR_NOMEM;
	callbacks[free_slot].used = true;
	callbacks[free_slot].event = event;
	callbacks[free_slot].fn = cb_func;
	callbacks[free_slot].topic = event == MOSQ_EVT_CONTROL ? strdup(event_data) : NULL;
	callbacks[free_slot].userdata = userdata;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event, MOSQ_FUNC_generic_callback cb_func,
		const void *event_data)
{
	int i;

	for(i = 0; i < MAX_CALLBACKS; i++){
		if(callbacks[i].used && callbacks[i].event == event && callbacks[i].fn == cb_func
				&& (event != MOSQ_EVT_CONTROL || (event_data && !strcmp(callbacks[i].topic, event_data)))){
			free(callbacks[i].topic);
			memset(&callbacks[i], 0, sizeof(callbacks[i]));
			return MOSQ_ERR_SUCCESS;
		}
	}
	return MOSQ_ERR_NOT_FOUND;
}

int fake_broker_fire(int event, void *event_data)
{
	const char *control_topic = NULL;
	int i, rc = -1;

	if(event == MOSQ_EVT_CONTROL) control_topic = ((struct mosquitto_evt_control *)event_data)->topic;
	for(i = 0; i < MAX_CALLBACKS; i++){
		if(!callbacks[i].used || callbacks[i].event != event) continue;
		if(control_topic && strcmp(control_topic, callbacks[i].topic)) continue;
		rc = callbacks[i].fn(event, event_data, callbacks[i].userdata);
	}
	return rc;
}

void fake_broker_tick(void)
{
	struct mosquitto_evt_tick ed;

	memset(&ed, 0, sizeof(ed));
	fake_broker_fire(MOSQ_EVT_TICK, &ed);
}

void fake_broker_message(struct mosquitto *client, const char *topic, const void *payload, size_t len)
{
	struct mosquitto_evt_message ed;
	char *t = strdup(topic);
	void *copy = len ? malloc(len) : NULL;

	if(!t || (len && !copy)) abort();
	if(len) memcpy(copy, payload, len);
	memset(&ed, 0, sizeof(ed));
	ed.client = client;
	ed.topic = t;
	ed.payload = copy;
	ed.payloadlen = (uint32_t)len;
	ed.qos = 1;
	fake_broker_fire(MOSQ_EVT_MESSAGE, &ed);
	free(copy);
	free(t);
}

void fake_broker_control(struct mosquitto *client, const char *topic, const void *payload, size_t len,
		const void *props)
{
	struct mosquitto_evt_control ed;
	void *copy = len ? malloc(len) : NULL;

	if(len && !copy) abort();
	if(len) memcpy(copy, payload, len);
	memset(&ed, 0, sizeof(ed));
	ed.client = client;
	ed.topic = topic;
	ed.payload = copy;
	ed.payloadlen = (uint32_t)len;
	ed.properties = props;
	ed.qos = 1;
	fake_broker_fire(MOSQ_EVT_CONTROL, &ed);
	free(copy);
}

/* ---------------------------------------------------------------- lifecycle */

static char tmpdir[256];
static char config_path[320];
static char db_path[320];
static void *plugin_userdata;
static bool started;
static char fake_identifier_storage;
#define fake_identifier ((mosquitto_plugin_id_t *)&fake_identifier_storage)

void *fake_broker_plugin(void)
{
	return plugin_userdata;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	if(!f || fwrite(data, 1, len, f) != len || fclose(f) != 0){
		fprintf(stderr, "fake_broker: cannot write %s: %s\n", path, strerror(errno));
		abort();
	}
}

static void remove_db(void)
{
	char p[400];

	unlink(db_path);
	snprintf(p, sizeof(p), "%s-wal", db_path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", db_path);
	unlink(p);
}

static void plugin_up(void)
{
	struct mosquitto_opt opt;
	int versions[] = { 4, 5 };

	if(mosquitto_plugin_version(2, versions) != 5) abort();
	opt.key = (char *)"config_file";
	opt.value = config_path;
	if(mosquitto_plugin_init(fake_identifier, &plugin_userdata, &opt, 1) != MOSQ_ERR_SUCCESS || !plugin_userdata){
		fprintf(stderr, "fake_broker: mosquitto_plugin_init failed (config %s)\n", config_path);
		abort();
	}
}

static void plugin_down(void)
{
	struct mosquitto_opt opt;

	opt.key = (char *)"config_file";
	opt.value = config_path;
	mosquitto_plugin_cleanup(plugin_userdata, &opt, 1);
	plugin_userdata = NULL;
}

static void cleanup_at_exit(void)
{
	char p[400];

	if(!started) return;
	plugin_down();
	remove_db();
	unlink(config_path);
	snprintf(p, sizeof(p), "%s/artifacts/fw.bin", tmpdir); unlink(p);
	snprintf(p, sizeof(p), "%s/artifacts/fw.bin.json", tmpdir); unlink(p);
	snprintf(p, sizeof(p), "%s/artifacts/tiny", tmpdir); unlink(p);
	snprintf(p, sizeof(p), "%s/artifacts", tmpdir); rmdir(p);
	rmdir(tmpdir);
	started = false;
}

void fake_broker_start(void)
{
	char yaml[4096], p[400];
	unsigned char blob[3000];
	const char *base = getenv("TMPDIR");
	size_t i;
	int n;

	if(started) return;
	snprintf(tmpdir, sizeof(tmpdir), "%s/fleetmq-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
	if(!mkdtemp(tmpdir)){
		perror("mkdtemp");
		abort();
	}
	snprintf(db_path, sizeof(db_path), "%s/fleetmq.db", tmpdir);
	snprintf(config_path, sizeof(config_path), "%s/fleetmq.yaml", tmpdir);
	snprintf(p, sizeof(p), "%s/artifacts", tmpdir);
	if(mkdir(p, 0700) != 0) abort();
	for(i = 0; i < sizeof(blob); i++) blob[i] = (unsigned char)(i * 7 + 3);
	snprintf(p, sizeof(p), "%s/artifacts/fw.bin", tmpdir);
	write_file(p, blob, sizeof(blob));
	snprintf(p, sizeof(p), "%s/artifacts/fw.bin.json", tmpdir);
	{
		static const char meta[] = "{\"name\":\"fw.bin\",\"size\":3000,\"sha256\":"
			"\"0000000000000000000000000000000000000000000000000000000000000000\"}";
		write_file(p, meta, strlen(meta));
	}
	snprintf(p, sizeof(p), "%s/artifacts/tiny", tmpdir);
	write_file(p, "", 0);

	n = snprintf(yaml, sizeof(yaml),
			"topic_prefix: fleet\n"
			"store:\n"
			"  path: %s\n"
			"  synchronous: normal\n"
			"  group_commit: true\n"
			"shadow:\n"
			"  max_document_bytes: 4096\n"
			"  max_depth: 6\n"
			"  max_payload_bytes: 16384\n"
			"presence:\n"
			"  silence_threshold_ms: 100\n"
			"  check_interval_ms: 50\n"
			"  offline_grace_ms: 0\n"
			"  flush_interval_ms: 1000\n"
			"security:\n"
			"  operator_usernames: [ops]\n"
			"  require_username_match: true\n"
			"  other_topics: defer\n"
			"control:\n"
			"  max_payload_bytes: 65536\n"
			"jobs:\n"
			"  max_in_progress_per_device: 2\n"
			"  fanout_batch: 10\n"
			"  release_batch: 5\n"
			"  check_interval_ms: 10\n"
			"  max_document_bytes: 4096\n"
			"artifacts:\n"
			"  dir: %s/artifacts\n"
			"  max_chunk_bytes: 1024\n"
			"log:\n"
			"  rejections: true\n"
			"%s",
			db_path, tmpdir, fake_broker_extra_yaml ? fake_broker_extra_yaml : "");
	if(n < 0 || (size_t)n >= sizeof(yaml)) abort();
	write_file(config_path, yaml, (size_t)n);
	plugin_up();
	started = true;
	atexit(cleanup_at_exit);
}

/* With the plugin torn down, nothing it allocated in the inputs since the
 * last reset may still be allocated: whatever LeakSanitizer finds now leaked
 * in one of them. This check is what finds leaks in long runs, where
 * libFuzzer's own per-input check is off (-detect_leaks=0) or has switched
 * itself off because the world keeps state between inputs. */
static void leak_check(void)
{
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(leak_sanitizer)
	if(__lsan_do_recoverable_leak_check()){
		fprintf(stderr, "fake_broker: memory leaked in one of the inputs since the previous reset "
				"(the allocation stack above names the code)\n");
		abort();
	}
#endif
#endif
}

void fake_broker_reset(void)
{
	if(!started){
		fake_broker_start();
		return;
	}
	plugin_down();
	leak_check();
	remove_db();
	plugin_up();
	fake_stats.resets++;
}
