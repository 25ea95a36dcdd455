/*
 * cli_output.c - how the CLI prints: JSON, text tables, times, sizes and
 * progress bars.
 *
 * Pure formatting: nothing here talks to the network or reads files. Every
 * formatter writes into a caller-supplied buffer with its size.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fleetmq_alloc.h"

/* ---------------------------------------------------------------- JSON */

void cli_print_json(const cJSON *v)
{
	char *s = cJSON_PrintUnformatted(v);

	if(s) puts(s);
	cJSON_free(s);
}

static void json_pretty_rec(FILE *out, const cJSON *v, int depth, int indent)
{
	const cJSON *c;
	bool obj = cJSON_IsObject(v);
	char *s;

	if(!obj && !cJSON_IsArray(v)){
		s = cJSON_PrintUnformatted(v);
		fputs(s ? s : "?", out);
		cJSON_free(s);
		return;
	}
	if(!v->child){
		fputs(obj ? "{}" : "[]", out);
		return;
	}
	fputc(obj ? '{' : '[', out);
	for(c = v->child; c; c = c->next){
		fprintf(out, "\n%*s", indent + 2 * (depth + 1), "");
		if(obj){
			cJSON *key = cJSON_CreateString(c->string);
			s = key ? cJSON_PrintUnformatted(key) : NULL;
			fprintf(out, "%s: ", s ? s : "?");
			cJSON_free(s);
			cJSON_Delete(key);
		}
		json_pretty_rec(out, c, depth + 1, indent);
		if(c->next) fputc(',', out);
	}
	fprintf(out, "\n%*s%c", indent + 2 * depth, "", obj ? '}' : ']');
}

void cli_print_json_pretty(FILE *out, const cJSON *v, int indent)
{
	fprintf(out, "%*s", indent, "");
	json_pretty_rec(out, v, 0, indent);
	fputc('\n', out);
}

const char *cli_jstr(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : "";
}

double cli_jnum(const cJSON *o, const char *key, double dflt)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

uint64_t cli_ju64(const cJSON *o, const char *key)
{
	double d = cli_jnum(o, key, 0);
	return d > 0 ? (uint64_t)d : 0;
}

/* ---------------------------------------------------------------- times, sizes, bars */

void cli_format_age(char *buf, size_t len, uint64_t then_ms, uint64_t now)
{
	uint64_t s;

	if(then_ms == 0){
		snprintf(buf, len, "-");
		return;
	}
	s = now > then_ms ? (now - then_ms) / 1000u : 0;
	if(s < 1) snprintf(buf, len, "just now");
	else if(s < 60) snprintf(buf, len, "%" PRIu64 "s ago", s);
	else if(s < 3600) snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s ago", s / 60, s % 60);
	else if(s < 86400) snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m ago", s / 3600, (s % 3600) / 60);
	else snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h ago", s / 86400, (s % 86400) / 3600);
}

void cli_format_time(char *buf, size_t len, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000u);
	struct tm tm;

	if(ms == 0 || !gmtime_r(&t, &tm)){
		snprintf(buf, len, "-");
		return;
	}
	if(strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm) == 0) snprintf(buf, len, "-");
}

void cli_format_bytes(char *buf, size_t len, uint64_t n)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = -1;

	if(n < 1024){
		snprintf(buf, len, "%" PRIu64 " B", n);
		return;
	}
	while(v >= 1024.0 && u < 3){
		v /= 1024.0;
		u++;
	}
	snprintf(buf, len, "%.1f %s", v, units[u]);
}

void cli_format_bar(char *buf, size_t len, uint64_t part, uint64_t total, int width)
{
	int filled = 0, i;
	size_t p = 0;

	if(len < (size_t)width + 3){
		if(len) buf[0] = '\0';
		return;
	}
	if(total > 0){
		filled = (int)((part * (uint64_t)width + total / 2) / total);
		if(filled == 0 && part > 0) filled = 1;    /* something is there: show it */
		if(filled > width) filled = width;
	}
	buf[p++] = '[';
	for(i = 0; i < width; i++) buf[p++] = i < filled ? '#' : '.';
	buf[p++] = ']';
	buf[p] = '\0';
}

/* ---------------------------------------------------------------- tables */

struct cli_table {
	int ncols;
	char **cells;          /* row-major, header row first */
	size_t nrows;          /* including the header */
	size_t cap;
};

struct cli_table *cli_table_new(int ncols, const char *const *headers)
{
	struct cli_table *t = fm_calloc(1, sizeof(*t));

	if(!t) return NULL;
	t->ncols = ncols;
	if(cli_table_add(t, headers) != 0){
		cli_table_free(t);
		return NULL;
	}
	return t;
}

int cli_table_add(struct cli_table *t, const char *const *cells)
{
	int c;

	if(t->nrows == t->cap){
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **n = fm_realloc(t->cells, cap * (size_t)t->ncols * sizeof(*n));
		if(!n) return -1;
		t->cells = n;
		t->cap = cap;
	}
	for(c = 0; c < t->ncols; c++){
		char *s = fm_strdup(cells[c] ? cells[c] : "");
		if(!s){
			while(c-- > 0) fm_free(t->cells[t->nrows * (size_t)t->ncols + (size_t)c]);
			return -1;
		}
		t->cells[t->nrows * (size_t)t->ncols + (size_t)c] = s;
	}
	t->nrows++;
	return 0;
}

void cli_table_print(const struct cli_table *t, FILE *out)
{
	int widths[32] = { 0 };
	size_t r;
	int c;

	if(!t || t->ncols > 32) return;
	for(r = 0; r < t->nrows; r++){
		for(c = 0; c < t->ncols; c++){
			int w = (int)strlen(t->cells[r * (size_t)t->ncols + (size_t)c]);
			if(w > widths[c]) widths[c] = w;
		}
	}
	for(r = 0; r < t->nrows; r++){
		for(c = 0; c < t->ncols; c++){
			const char *s = t->cells[r * (size_t)t->ncols + (size_t)c];
			if(c == t->ncols - 1) fprintf(out, "%s\n", s);
			else fprintf(out, "%-*s  ", widths[c], s);
		}
	}
}

void cli_table_free(struct cli_table *t)
{
	size_t i;

	if(!t) return;
	for(i = 0; i < t->nrows * (size_t)t->ncols; i++) fm_free(t->cells[i]);
	fm_free(t->cells);
	fm_free(t);
}

/* ---------------------------------------------------------------- job executions */

/* "a, b" from an array of strings, "k=v, ..." from an object of strings. */
void cli_format_strings(char *buf, size_t len, const cJSON *v)
{
	const cJSON *it;
	size_t used = 0;
	int n;

	buf[0] = '\0';
	cJSON_ArrayForEach(it, v){
		if(cJSON_IsObject(v)){
			n = snprintf(buf + used, len - used, "%s%s=%s", used ? ", " : "", it->string,
					cJSON_IsString(it) ? it->valuestring : "?");
		}else{
			n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", cJSON_IsString(it) ? it->valuestring : "?");
		}
		if(n < 0 || (size_t)n >= len - used) break;
		used += (size_t)n;
	}
	if(!buf[0]) snprintf(buf, len, "-");
}

void cli_print_executions(const cJSON *execs, const char *first_col)
{
	static const char *const headers[] = { "", "STATUS", "ATTEMPT", "STEP", "PROGRESS", "UPDATED", "DETAILS" };
	const char *h[7];
	struct cli_table *t;
	const cJSON *it;
	uint64_t now = cli_now_ms();
	int i;

	for(i = 0; i < 7; i++) h[i] = headers[i];
	h[0] = first_col;
	t = cli_table_new(7, h);
	if(!t) return;
	cJSON_ArrayForEach(it, execs){
		char attempt[16], progress[16], updated[32], details[300];
		const char *cells[7];
		double p = cli_jnum(it, "progressPercent", -1);
		const char *status = cli_jstr(it, "status");
		bool retry = cli_ju64(it, "retryAtMs") > 0;
		char st[48];

		snprintf(st, sizeof(st), "%s%s", status, retry ? " (retry)" : "");
		snprintf(attempt, sizeof(attempt), "%" PRIu64, cli_ju64(it, "attempt"));
		if(p >= 0) snprintf(progress, sizeof(progress), "%d%%", (int)p);
		else snprintf(progress, sizeof(progress), "-");
		cli_format_age(updated, sizeof(updated), cli_ju64(it, "updatedMs"), now);
		cli_format_strings(details, sizeof(details), cJSON_GetObjectItemCaseSensitive(it, "statusDetails"));
		cells[0] = !strcmp(first_col, "JOB") ? cli_jstr(it, "jobId") : cli_jstr(it, "deviceId");
		cells[1] = st;
		cells[2] = attempt;
		cells[3] = (cli_jstr(it, "step")[0] ? cli_jstr(it, "step") : "-");
		cells[4] = progress;
		cells[5] = updated;
		cells[6] = details;
		cli_table_add(t, cells);
	}
	cli_table_print(t, stdout);
	cli_table_free(t);
}
