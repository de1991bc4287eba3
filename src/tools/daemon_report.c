/* Fetching and splitting scardd's status report (see daemon_report.h). */
#include "daemon_report.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

#define REPORT_TIMEOUT_MS 3000

bool daemon_read_full(int fd, uint8_t *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = poll(&pfd, 1, REPORT_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		ssize_t k = read(fd, buf + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return false;
		got += (size_t)k;
	}
	return true;
}

static char *ask(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path))
		return NULL;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	char *text = NULL;
	struct wire_params params;
	wire_params_init(&params);
	struct wire_header hdr = { .size = 0, .cmd = WIRE_SCARDD_STATUS };
	uint8_t head[WIRE_HEADER_SIZE], len_buf[4];
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    wire_encode_header(&params, &hdr, head, sizeof(head)) != sizeof(head) ||
	    send(fd, head, sizeof(head), MSG_NOSIGNAL) != (ssize_t)sizeof(head) ||
	    !daemon_read_full(fd, len_buf, sizeof(len_buf)))
		goto out;
	uint32_t len = wire_get_u32(params.order, len_buf);
	if (len > WIRE_SCARDD_STATUS_MAX || !(text = malloc((size_t)len + 1)))
		goto out;
	if (!daemon_read_full(fd, (uint8_t *)text, len)) {
		free(text);
		text = NULL;
		goto out;
	}
	text[len] = '\0';
out:
	close(fd);
	return text;
}

bool daemon_report_parse(char *text, struct daemon_report *r)
{
	memset(r, 0, sizeof(*r));
	r->text = text;
	size_t lines = 0;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	r->lines = calloc(lines + 1, sizeof(*r->lines));
	if (!r->lines)
		return false;
	char *save = NULL;
	for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
		struct report_line *l = &r->lines[r->n];
		char *fsave = NULL;
		l->kind = strtok_r(ln, "\t", &fsave);
		if (!l->kind)
			continue;
		for (char *f = strtok_r(NULL, "\t", &fsave); f && l->n < REPORT_MAX_FIELDS;
		     f = strtok_r(NULL, "\t", &fsave)) {
			char *eq = strchr(f, '=');
			if (!eq)
				continue;
			*eq = '\0';
			l->key[l->n] = f;
			l->value[l->n++] = eq + 1;
		}
		r->n++;
	}
	return !!report_first(r, "scardd");
}

bool daemon_report_fetch(const char *path, struct daemon_report *r)
{
	memset(r, 0, sizeof(*r));
	char *text = ask(path);
	if (!text)
		return false;
	if (!daemon_report_parse(text, r)) {
		daemon_report_free(r);
		return false;
	}
	return true;
}

void daemon_report_free(struct daemon_report *r)
{
	free(r->lines);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

const struct report_line *report_first(const struct daemon_report *r, const char *kind)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->lines[i].kind, kind))
			return &r->lines[i];
	return NULL;
}

const char *report_get(const struct report_line *l, const char *key)
{
	for (size_t i = 0; l && i < l->n; i++)
		if (!strcmp(l->key[i], key))
			return l->value[i];
	return "";
}
