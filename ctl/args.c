/*
 * args: agoractl's command-line options (see args.h).
 */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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

char *
args_read_file(const char *path, long max, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f) {
		fprintf(stderr, "agoractl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0) {
		fprintf(stderr, "agoractl: %s: cannot read it\n", path);
		goto out;
	}
	if (n > max) {
		fprintf(stderr, "agoractl: %s: larger than %ld bytes\n", path, max);
		goto out;
	}
	if (!(buf = malloc((size_t)n + 1)) || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "agoractl: %s: read error\n", path);
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	*len = (size_t)n;
out:
	fclose(f);
	return buf;
}
