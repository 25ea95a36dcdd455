/*
 * fleetmq-config-doc - print the broker plugin's configuration reference.
 *
 * Writes the Markdown table of every fleetmq.yaml key, generated from the
 * plugin's own option table (broker-plugin/plugin_config.c), to stdout.
 * docs/CONFIG.md embeds this output between its GENERATED markers, and the
 * ctest docs_config_in_sync fails when the two differ.
 *
 * Usage: fleetmq-config-doc [plugin]
 */
#include <stdio.h>
#include <string.h>

#include "fleetmq_plugin.h"

int main(int argc, char **argv)
{
	if(argc > 2 || (argc == 2 && strcmp(argv[1], "plugin") != 0)){
		fprintf(stderr, "usage: %s [plugin]\n", argv[0]);
		return 2;
	}
	fleetmq_cfg_print_markdown(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, stdout);
	if(fflush(stdout) != 0 || ferror(stdout)){
		perror("fleetmq-config-doc: stdout");
		return 1;
	}
	return 0;
}
