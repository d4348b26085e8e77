/*
 * pages: the dashboards' HTML pages and static assets, read from the web
 * directory (analytics/web: plain HTML/CSS/JS, Chart.js's dist file copied
 * into vendor/ by `make`).
 *
 *   /  /models  /providers  /live  /spend  /reconciliation   the pages
 *   /static/NAME, /static/vendor/NAME                         their assets
 *
 * Names are checked against a strict pattern (letters, digits, '-', '_',
 * dots only inside a name, one optional "vendor/" folder), so no path can
 * leave the directory; the resolved file must still lie under it (symlinks
 * included) and be a regular file of at most PAGES_MAX_FILE bytes. Files
 * are kept in memory and re-read only when their size, mtime or inode
 * change (an fstat per request: editing a page needs no restart). Answers
 * carry an ETag (304 on If-None-Match), Cache-Control and, for pages, a
 * Content-Security-Policy that allows nothing but this origin.
 */
#include "pages.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define PAGES_MAX_FILE (4 << 20)	/* largest file served */
#define PAGES_MAX_CACHED 64		/* files kept in memory */
#define PAGES_NAME_MAX 96

struct page_file {
	char name[PAGES_NAME_MAX];
	char *data;
	size_t len;
	struct timespec mtime;
	ino_t ino;
	char etag[64];
};

static char web_dir[PATH_MAX];
static int web_dir_set, web_dir_tried;
static struct page_file cache[PAGES_MAX_CACHED];
static int ncached;

static const struct {
	const char *path, *file;
} routes[] = {
	{ "/", "share.html" },
	{ "/models", "models.html" },
	{ "/providers", "providers.html" },
	{ "/live", "live.html" },
	{ "/spend", "spend.html" },
	{ "/reconciliation", "reconciliation.html" },
};

static const struct {
	const char *ext, *ctype;
} types[] = {
	{ ".html", "text/html; charset=utf-8" },
	{ ".js", "text/javascript; charset=utf-8" },
	{ ".css", "text/css; charset=utf-8" },
	{ ".svg", "image/svg+xml" },
	{ ".png", "image/png" },
	{ ".ico", "image/x-icon" },
};

static const char page_csp[] =
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

static int
dir_usable(const char *dir)
{
	char probe[PATH_MAX];
	struct stat st;

	if (snprintf(probe, sizeof(probe), "%s/share.html", dir) >= (int)sizeof(probe))
		return 0;
	return stat(probe, &st) == 0 && S_ISREG(st.st_mode);
}

static int
dir_set(const char *dir)
{
	if (!realpath(dir, web_dir) || !dir_usable(web_dir))
		return -1;
	web_dir_set = 1;
	log_info("dashboards: serving %s", web_dir);
	return 0;
}

/* No directory given: AGORA_WEB_DIR, else the repository's analytics/web
 * seen from the binary (build/agora-analytics), else ./analytics/web. */
static void
dir_default(void)
{
	const char *env = getenv("AGORA_WEB_DIR");
	char exe[PATH_MAX], cand[PATH_MAX + 32];
	ssize_t n;

	if (env && env[0] && dir_set(env) == 0)
		return;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = '\0';
		*strrchr(exe, '/') = '\0';
		snprintf(cand, sizeof(cand), "%s/../analytics/web", exe);
		if (dir_set(cand) == 0)
			return;
		snprintf(cand, sizeof(cand), "%s/web", exe);
		if (dir_set(cand) == 0)
			return;
	}
	if (dir_set("analytics/web") < 0)
		log_warn("dashboards: no web directory found (set web_dir)");
}

int
pages_init(const char *dir)
{
	if (dir && dir[0]) {
		if (dir_set(dir) == 0)
			return 0;
		log_error("dashboards: web_dir %s: no share.html there", dir);
		return -1;
	}
	dir_default();
	return web_dir_set ? 0 : -1;
}

/* One name segment: [A-Za-z0-9_-] runs joined by single dots, not starting
 * with a dot. */
static int
segment_ok(const char *s, size_t n)
{
	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.' && s[i + 1] == '.')
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

/* A servable asset name: "NAME" or "vendor/NAME". */
int
pages_name_ok(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n >= PAGES_NAME_MAX)
		return 0;
	if (strncmp(name, "vendor/", 7) == 0)
		name += 7, n -= 7;
	return strchr(name, '.') && segment_ok(name, n);
}

static const char *
content_type(const char *name)
{
	const char *dot = strrchr(name, '.');

	for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].ctype;
	return NULL;
}

static struct page_file *
cache_find(const char *name)
{
	for (int i = 0; i < ncached; i++)
		if (strcmp(cache[i].name, name) == 0)
			return &cache[i];
	return NULL;
}

/* The open file lies under web_dir (no symlink led out of it). */
static int
fd_inside(int fd)
{
	char link[64], real[PATH_MAX];
	size_t dl = strlen(web_dir);
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, real, sizeof(real) - 1)) < 0)
		return 0;
	real[n] = '\0';
	return strncmp(real, web_dir, dl) == 0 && real[dl] == '/';
}

static char *
read_all(int fd, size_t len)
{
	char *buf = malloc(len ? len : 1);
	size_t got = 0;

	while (buf && got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	return buf;
}

static int
same_file(const struct page_file *f, const struct stat *st)
{
	return f->ino == st->st_ino && f->len == (size_t)st->st_size &&
	       f->mtime.tv_sec == st->st_mtim.tv_sec && f->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

static void
file_fill(struct page_file *f, const char *name, char *data, const struct stat *st)
{
	snprintf(f->name, sizeof(f->name), "%s", name);
	free(f->data);
	f->data = data;
	f->len = (size_t)st->st_size;
	f->mtime = st->st_mtim;
	f->ino = st->st_ino;
	snprintf(f->etag, sizeof(f->etag), "\"%llx-%llx-%llx\"", (unsigned long long)st->st_ino,
		 (unsigned long long)st->st_mtim.tv_sec * 1000000000ULL + (unsigned long long)st->st_mtim.tv_nsec,
		 (unsigned long long)st->st_size);
}

/* The file from the cache, (re)read when it changed on disk. NULL when it
 * does not exist, is not a regular file under web_dir or is too big. With
 * a full cache the answer is *tmp (the caller frees tmp->data). */
static const struct page_file *
file_get(const char *name, struct page_file *tmp)
{
	struct page_file *f = cache_find(name);
	char path[PATH_MAX + PAGES_NAME_MAX];
	struct stat st;
	char *data;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", web_dir, name);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > PAGES_MAX_FILE || !fd_inside(fd)) {
		close(fd);
		return NULL;
	}
	if (f && same_file(f, &st)) {
		close(fd);
		return f;
	}
	data = read_all(fd, (size_t)st.st_size);
	close(fd);
	if (!data)
		return NULL;
	if (!f && ncached < PAGES_MAX_CACHED)
		f = &cache[ncached++];
	if (!f) {
		memset(tmp, 0, sizeof(*tmp));
		f = tmp;
	}
	file_fill(f, name, data, &st);
	return f;
}

static void
reply_file(struct httpd_req *req, const char *name, int page)
{
	const char *ctype = content_type(name), *inm = httpd_req_header(req, "If-None-Match");
	struct page_file tmp = { .data = NULL };
	const struct page_file *f = ctype ? file_get(name, &tmp) : NULL;

	if (!f) {
		if (page)
			httpd_reply_error(req, 503, "dashboard page %s missing from %s", name, web_dir);
		else
			httpd_reply_error(req, 404, "no such file: %s", name);
		return;
	}
	httpd_add_header(req, "ETag", f->etag);
	httpd_add_header(req, "X-Content-Type-Options", "nosniff");
	httpd_add_header(req, "Cache-Control",
			 strncmp(name, "vendor/", 7) == 0 ? "public, max-age=86400" : "no-cache");
	if (page) {
		httpd_add_header(req, "Content-Security-Policy", page_csp);
		httpd_add_header(req, "Referrer-Policy", "no-referrer");
		httpd_add_header(req, "X-Frame-Options", "DENY");
	}
	if (inm && strcmp(inm, f->etag) == 0)
		httpd_reply(req, 304, NULL, "", 0);
	else
		httpd_reply(req, 200, ctype, f->data, f->len);
	free(tmp.data);
}

int
pages_serve(struct httpd_req *req, const char *path)
{
	if (!web_dir_set && !web_dir_tried++)
		dir_default();
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(path, routes[i].path) == 0) {
			if (!web_dir_set)
				httpd_reply_error(req, 503, "dashboards not installed (web_dir)");
			else
				reply_file(req, routes[i].file, 1);
			return 1;
		}
	}
	if (strncmp(path, "/static/", 8) != 0 || !web_dir_set)
		return 0;
	/* Pages only at their own paths (with their headers), never as assets. */
	if (!pages_name_ok(path + 8) || !content_type(path + 8) || strstr(path, ".html"))
		return 0;
	reply_file(req, path + 8, 0);
	return 1;
}
