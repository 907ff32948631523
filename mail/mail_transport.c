/* mail_transport.c — how an email leaves (mail-internal.h): SMTP over
 * libcurl, or a file in the Maildir when no SMTP server is configured.
 *
 * Each worker keeps one curl easy handle for its life, so libcurl keeps its
 * SMTP connection open between emails (connection reuse is on: no
 * CURLOPT_FORBID_REUSE) and the next email skips the TCP connect, the
 * greeting, EHLO and STARTTLS; a connection the server closed is noticed by
 * libcurl and opened again. orion_email_smtp_connections_total counts the
 * connections opened. */
#include "mail-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "metrics.h"

#define CONNECT_TIMEOUT_MS 3000L
#define SEND_TIMEOUT_MS    10000L
#define MAILDIR_PATH_MAX   4096

struct mail_transport {
	const mail_service *m;
	unsigned index;
	CURL *curl; /* NULL in Maildir mode */
};

typedef struct upload {
	const char *data;
	size_t len, off;
} upload;

const char *mail_transport_name(const mail_service *m)
{
	return m->smtp_url != NULL ? "smtp" : "maildir";
}

orn_rc mail_transport_create(const mail_service *m, unsigned index, mail_transport **out)
{
	mail_transport *t = calloc(1, sizeof *t);
	*out = NULL;
	if (t == NULL)
		return ORN_ENOMEM;
	t->m = m;
	t->index = index;
	if (m->smtp_url != NULL && (t->curl = curl_easy_init()) == NULL) {
		free(t);
		return ORN_ENOMEM;
	}
	*out = t;
	return ORN_OK;
}

void mail_transport_destroy(mail_transport *t)
{
	if (t == NULL)
		return;
	if (t->curl != NULL)
		curl_easy_cleanup(t->curl); /* says QUIT on the open connection */
	free(t);
}

static size_t upload_read(char *out, size_t size, size_t count, void *closure)
{
	upload *u = closure;
	size_t n = size * count;
	if (n > u->len - u->off)
		n = u->len - u->off;
	memcpy(out, u->data + u->off, n);
	u->off += n;
	return n;
}

/* What a send's failure was, for the log line (every one is retried). */
static orn_rc curl_rc(CURLcode code)
{
	return code == CURLE_OK                   ? ORN_OK
	       : code == CURLE_OPERATION_TIMEDOUT ? ORN_ETIMEOUT
	       : code == CURLE_OUT_OF_MEMORY      ? ORN_ENOMEM
	       : code == CURLE_COULDNT_CONNECT    ? ORN_EUNAVAILABLE
	                                          : ORN_EIO;
}

/* Sends over SMTP on the worker's connection; ORN_OK once the server
 * accepted the data (250). */
static orn_rc smtp_send(mail_transport *t, const char *to, const mail_message *msg, char *detail, size_t cap)
{
	const mail_service *m = t->m;
	char rcpt[ORDER_EMAIL_MAX + 2], sender[ORDER_EMAIL_MAX + 2];
	struct curl_slist *recipients = NULL;
	upload u = {msg->data, msg->len, 0};
	long response = 0, connects = 0;
	CURLcode code;

	snprintf(rcpt, sizeof rcpt, "<%s>", to);
	snprintf(sender, sizeof sender, "<%s>", m->envelope_from);
	recipients = curl_slist_append(NULL, rcpt);
	if (recipients == NULL)
		return ORN_ENOMEM;
	/* curl_easy_reset keeps the handle's open connection */
	curl_easy_reset(t->curl);
	curl_easy_setopt(t->curl, CURLOPT_URL, m->smtp_url);
	curl_easy_setopt(t->curl, CURLOPT_MAIL_FROM, sender);
	curl_easy_setopt(t->curl, CURLOPT_MAIL_RCPT, recipients);
	curl_easy_setopt(t->curl, CURLOPT_READFUNCTION, upload_read);
	curl_easy_setopt(t->curl, CURLOPT_READDATA, &u);
	curl_easy_setopt(t->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(t->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg->len);
	/* Credentials in the URL: TLS or nothing, so a stripped STARTTLS can
	 * never turn into a cleartext AUTH (see mail.h). */
	curl_easy_setopt(t->curl, CURLOPT_USE_SSL,
	                 m->smtp_tls_required ? (long)CURLUSESSL_ALL : (long)CURLUSESSL_TRY);
	curl_easy_setopt(t->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	curl_easy_setopt(t->curl, CURLOPT_TIMEOUT_MS, SEND_TIMEOUT_MS);
	curl_easy_setopt(t->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->curl, CURLOPT_FORBID_REUSE, 0L);
	code = curl_easy_perform(t->curl);
	curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &response);
	curl_easy_getinfo(t->curl, CURLINFO_NUM_CONNECTS, &connects);
	curl_slist_free_all(recipients);
	if (connects > 0)
		orn_metrics_counter_add(
		        orn_metrics_global(), "orion_email_smtp_connections_total",
		        "SMTP connections opened (each worker keeps one open between emails).", NULL,
		        (uint64_t)connects);
	snprintf(detail, cap, "%s (smtp %ld)", curl_easy_strerror(code), response);
	return curl_rc(code);
}

static orn_rc write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return ORN_EIO;
		data += n;
		len -= (size_t)n;
	}
	return ORN_OK;
}

static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Writes the message into tmp/, fsyncs it and renames it into new/ under a
 * name fixed per email ("<order>.<status>", or the alert's mail id): a second
 * copy replaces the first. */
static orn_rc maildir_write(mail_transport *t, const char *file, const mail_message *msg, char *detail,
                            size_t cap)
{
	const mail_service *m = t->m;
	char tmp[MAILDIR_PATH_MAX], dest[MAILDIR_PATH_MAX], newdir[MAILDIR_PATH_MAX];
	orn_rc rc = ORN_EIO;
	int fd = -1;

	snprintf(detail, cap, "maildir");
	if ((size_t)snprintf(tmp, sizeof tmp, "%s/tmp/%s.%ld.%u.orion", m->maildir, file, (long)getpid(),
	                     t->index) >= sizeof tmp ||
	    (size_t)snprintf(dest, sizeof dest, "%s/new/%s.orion", m->maildir, file) >= sizeof dest ||
	    (size_t)snprintf(newdir, sizeof newdir, "%s/new", m->maildir) >= sizeof newdir)
		return ORN_EINVAL;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto fail;
	if ((rc = write_all(fd, msg->data, msg->len)) != ORN_OK)
		goto fail;
	rc = ORN_EIO;
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, dest) != 0)
		goto fail;
	sync_dir(newdir);
	return ORN_OK;
fail:
	snprintf(detail, cap, "maildir: %s", strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return rc;
}

orn_rc mail_transport_send(mail_transport *t, const char *to, const char *file, const mail_message *msg,
                           char *detail, size_t cap)
{
	return t->curl != NULL ? smtp_send(t, to, msg, detail, cap)
	                       : maildir_write(t, file, msg, detail, cap);
}
