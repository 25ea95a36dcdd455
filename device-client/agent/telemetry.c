/*
 * telemetry.c - system health for the agent's telemetry batches.
 *
 * Pure parsers for /proc/stat (CPU time), /proc/meminfo, /proc/net/dev and
 * /proc/uptime texts, a sampler that reads them (root configurable, so
 * tests can feed fixtures) plus statvfs() of the state directory, and a
 * reader for the application metrics file ("name value" lines that device
 * applications keep on tmpfs). CPU percent is the busy share of the jiffies
 * elapsed since the previous sample, so the first sample has none (-1).
 *
 * Must never: write anything (samples live in memory and leave through the
 * library's TelemetryBatch), or fail hard: a missing /proc file just leaves
 * its metrics out (value -1).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent.h"
#include "fleetmq_alloc.h"

#define PROC_MAX_BYTES (1024u * 1024u)

int agent__parse_proc_stat(const char *text, struct agent_cpu_times *out)
{
	unsigned long long v[10] = { 0 };
	int n;

	memset(out, 0, sizeof(*out));
	if(!text || strncmp(text, "cpu ", 4) != 0) return -1;
	n = sscanf(text + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
			&v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
	if(n < 4) return -1;
	/* user nice system idle iowait irq softirq steal guest guest_nice;
	 * guest time is already counted in user/nice */
	out->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
	out->busy = out->total - v[3] - v[4];
	out->valid = true;
	return 0;
}

double agent__cpu_percent(const struct agent_cpu_times *prev, const struct agent_cpu_times *now)
{
	uint64_t dt, db;

	if(!prev || !now || !prev->valid || !now->valid || now->total <= prev->total || now->busy < prev->busy) return -1;
	dt = now->total - prev->total;
	db = now->busy - prev->busy;
	if(db > dt) db = dt;
	return 100.0 * (double)db / (double)dt;
}

static bool meminfo_field(const char *text, const char *name, double *out)
{
	const char *p = text;
	size_t n = strlen(name);

	while(p && *p){
		if(!strncmp(p, name, n) && p[n] == ':'){
			unsigned long long kb;
			if(sscanf(p + n + 1, "%llu", &kb) == 1){
				*out = (double)kb * 1024.0;
				return true;
			}
			return false;
		}
		p = strchr(p, '\n');
		if(p) p++;
	}
	return false;
}

int agent__parse_meminfo(const char *text, double *total_bytes, double *available_bytes)
{
	double free_b = 0, buffers = 0, cached = 0;

	if(!text || !meminfo_field(text, "MemTotal", total_bytes)) return -1;
	if(!meminfo_field(text, "MemAvailable", available_bytes)){
		/* kernels before 3.14: approximate */
		meminfo_field(text, "MemFree", &free_b);
		meminfo_field(text, "Buffers", &buffers);
		meminfo_field(text, "Cached", &cached);
		*available_bytes = free_b + buffers + cached;
	}
	return 0;
}

int agent__parse_net_dev(const char *text, double *rx_bytes, double *tx_bytes)
{
	const char *p = text;
	int lines = 0;

	*rx_bytes = *tx_bytes = 0;
	if(!text) return -1;
	while(p && *p){
		const char *colon, *eol = strchr(p, '\n');
		char name[64];
		size_t nlen;
		unsigned long long rx, tx, skip[7];

		colon = strchr(p, ':');
		if(colon && (!eol || colon < eol)){
			const char *s = p;
			while(*s == ' ') s++;
			nlen = (size_t)(colon - s);
			if(nlen < sizeof(name)){
				memcpy(name, s, nlen);
				name[nlen] = '\0';
				/* rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes ... */
				if(sscanf(colon + 1, "%llu %llu %llu %llu %llu %llu %llu %llu %llu",
						&rx, &skip[0], &skip[1], &skip[2], &skip[3], &skip[4], &skip[5], &skip[6], &tx) == 9){
					lines++;
					if(strcmp(name, "lo") != 0){
						*rx_bytes += (double)rx;
						*tx_bytes += (double)tx;
					}
				}
			}
		}
		p = eol ? eol + 1 : NULL;
	}
	return lines > 0 ? 0 : -1;
}

static char *read_proc(const char *root, const char *leaf)
{
	char path[512];
	char *text = NULL;

	snprintf(path, sizeof(path), "%s/%s", root, leaf);
	if(agent__read_file(path, PROC_MAX_BYTES, &text, NULL) != 0) return NULL;
	return text;
}

void agent__sysinfo_sample(const char *proc_root, const char *disk_path, struct agent_cpu_times *prev,
		struct agent_sysinfo *out)
{
	struct agent_cpu_times now;
	struct statvfs vfs;
	char *text;

	memset(out, 0, sizeof(*out));
	out->cpu_percent = out->mem_used_percent = out->disk_used_percent = -1;
	out->mem_total_bytes = out->mem_available_bytes = -1;
	out->disk_total_bytes = out->disk_free_bytes = -1;
	out->uptime_s = out->net_rx_bytes = out->net_tx_bytes = out->load1 = -1;
	if(!proc_root) proc_root = "/proc";

	if((text = read_proc(proc_root, "stat")) != NULL){
		if(agent__parse_proc_stat(text, &now) == 0){
			out->cpu_percent = agent__cpu_percent(prev, &now);
			*prev = now;
		}
		fm_free(text);
	}
	if((text = read_proc(proc_root, "meminfo")) != NULL){
		if(agent__parse_meminfo(text, &out->mem_total_bytes, &out->mem_available_bytes) == 0
				&& out->mem_total_bytes > 0){
			out->mem_used_percent = 100.0 * (1.0 - out->mem_available_bytes / out->mem_total_bytes);
		}
		fm_free(text);
	}
	if((text = read_proc(proc_root, "uptime")) != NULL){
		if(sscanf(text, "%lf", &out->uptime_s) != 1) out->uptime_s = -1;
		fm_free(text);
	}
	if((text = read_proc(proc_root, "loadavg")) != NULL){
		if(sscanf(text, "%lf", &out->load1) != 1) out->load1 = -1;
		fm_free(text);
	}
	if((text = read_proc(proc_root, "net/dev")) != NULL){
		if(agent__parse_net_dev(text, &out->net_rx_bytes, &out->net_tx_bytes) != 0){
			out->net_rx_bytes = out->net_tx_bytes = -1;
		}
		fm_free(text);
	}
	if(disk_path && statvfs(disk_path, &vfs) == 0 && vfs.f_blocks > 0){
		out->disk_total_bytes = (double)vfs.f_blocks * (double)vfs.f_frsize;
		out->disk_free_bytes = (double)vfs.f_bavail * (double)vfs.f_frsize;
		out->disk_used_percent = 100.0 * (1.0 - (double)vfs.f_bavail / (double)vfs.f_blocks);
	}
}

size_t agent__read_app_metrics(const char *path, char (*names)[64], double *values, size_t cap)
{
	char *text = NULL, *line, *save = NULL;
	size_t n = 0;

	if(!path || !path[0] || agent__read_file(path, 256u * 1024u, &text, NULL) != 0) return 0;
	for(line = strtok_r(text, "\n", &save); line && n < cap; line = strtok_r(NULL, "\n", &save)){
		char name[64];
		double v;
		char *end;
		const char *p = line;
		size_t len;

		while(*p == ' ' || *p == '\t') p++;
		if(*p == '#' || !*p) continue;
		len = strcspn(p, " \t");
		if(len == 0 || len >= sizeof(name)) continue;
		memcpy(name, p, len);
		name[len] = '\0';
		p += len;
		v = strtod(p, &end);
		if(end == p) continue;
		while(*end == ' ' || *end == '\t' || *end == '\r') end++;
		if(*end) continue;
		memcpy(names[n], name, sizeof(name));
		values[n] = v;
		n++;
	}
	fm_free(text);
	return n;
}
