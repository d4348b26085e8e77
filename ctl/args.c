/*
 * args: agoractl's command-line options (see args.h).
 */
#include "args.h"

#include <stdio.h>
#include <string.h>

const char *
args_opt(int argc, char **argv, int from, const char *name)
{
	for (int i = from; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 ? argv[i + 1] : "";
	return NULL;
}

int
args_known(int argc, char **argv, int from, const char *const *known)
{
	for (int i = from; i < argc; i++) {
		int ok = 0;

		if (strncmp(argv[i], "--", 2) != 0)
			continue;
		for (const char *const *k = known; *k; k++)
			ok |= strcmp(argv[i], *k) == 0;
		if (!ok) {
			fprintf(stderr, "agoractl: unknown option %s\n", argv[i]);
			return 0;
		}
	}
	return 1;
}
