/* test_mail.c — the mail actor (mail/mail.c) against a real nats-server and
 * a real SMTP server (aiosmtpd writing into a Maildir).
 *
 * Order events come from the order actor run in-process, driven over the
 * command bus. Emails are counted by parsing the files the SMTP server (or
 * the Maildir sink) wrote. "Exactly once" is checked after the consumer is
 * quiescent (nothing pending, nothing awaiting an ack): from then on no
 * further email can be sent, so the counts are final. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "evstore-internal.h"
#include "bus-internal.h"
#include "actor.h"
#include "bus.h"
#include "harness.h"
#include "log.h"
#include "lost_delivery.h"
#include "mail.h"
#include "metrics.h"
#include "mail_log.h"
#include "mails.h"
#include "mime.h"
#include "order_token.h"
#include "product.h"
#include "stock.h"
#include "user.h"

#define HOSTILE    "<script>alert(\"pwned\")</script> & 'co'"
#define PUBLIC_URL "http://shop.test:8080"
#define HASH       "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define WAIT_MS    20000

static natsd *server;
static es_store *store;
static kit_hub *hub;
static act_runtime *orders;
static mail_service *mail;
static pid_t smtpd;
static int smtp_port;
/* smtp_port bound, not listening, until a server starts on it: nothing else (another
 * test's server, in a parallel process) can take the port while these tests keep SMTP
 * down, and a connection to it is refused as by a server that is down. */
static int smtp_hold = -1;
static char *work_dir;
static char smtp_dir[512], state_dir[512], sink_dir[512], smtp_url[64];
static uint8_t key[ORDER_TOKEN_KEY_BYTES];
static unsigned max_attempts;  /* 0: the default; set by a test before start_mail */
static int64_t sweep_after_ms; /* 0: the default; set by a test before start_mail */
static unsigned workers;       /* 0: the default; set by a test before start_mail */

static void fake_smtp_stop(void);
static void release_smtp_port(void);

static void setup(void)
{
	max_attempts = 0;
	sweep_after_ms = 0;
	workers = 0;
	cr_assert_geq(sodium_init(), 0);
	server = th_natsd_start("mail");
	es_options eo;
	es_options_init(&eo);
	eo.url = natsd_url(server);
	cr_assert_eq(es_store_open(&eo, &store), ORN_OK);
	cr_assert_eq(kit_hub_create(store, &hub), ORN_OK);
	act_options ao;
	act_options_init(&ao);
	cr_assert_eq(act_runtime_start(store, &order_kind, &ao, &orders), ORN_OK);
	cr_assert_eq(order_token_key_derive((const uint8_t *)"test-secret", 11, key), ORN_OK);
	work_dir = th_tempdir("mail");
	snprintf(smtp_dir, sizeof smtp_dir, "%s/smtp", work_dir);
	snprintf(state_dir, sizeof state_dir, "%s/state/mail", work_dir);
	snprintf(sink_dir, sizeof sink_dir, "%s/maildir", work_dir);
	struct sockaddr_in held = {.sin_family = AF_INET, .sin_port = 0};
	socklen_t held_len = sizeof held;
	int one = 1;
	held.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	smtp_hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(smtp_hold, 0);
	setsockopt(smtp_hold, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	cr_assert_eq(bind(smtp_hold, (struct sockaddr *)&held, sizeof held), 0);
	cr_assert_eq(getsockname(smtp_hold, (struct sockaddr *)&held, &held_len), 0);
	smtp_port = ntohs(held.sin_port);
	cr_assert_gt(smtp_port, 0);
	snprintf(smtp_url, sizeof smtp_url, "smtp://127.0.0.1:%d", smtp_port);
}

static void teardown(void)
{
	mail_stop(mail);
	mail = NULL;
	fake_smtp_stop();
	act_runtime_stop(orders);
	orders = NULL;
	kit_hub_destroy(hub);
	hub = NULL;
	es_store_close(store);
	store = NULL;
	th_natsd_stop(server);
	server = NULL;
	if (smtpd > 0) {
		th_kill(smtpd, SIGTERM);
		if (th_wait_exit(smtpd, 5000) < 0)
			th_kill(smtpd, SIGKILL);
		smtpd = 0;
	}
	release_smtp_port();
	th_rmrf(work_dir);
	free(work_dir);
	work_dir = NULL;
}

TestSuite(mail, .init = setup, .fini = teardown, .timeout = 120);

/* ---- servers ---- */

static bool port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bool open = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
	if (fd >= 0)
		close(fd);
	return open;
}

/* The hold on smtp_port given up: a server is about to listen there. */
static void release_smtp_port(void)
{
	if (smtp_hold >= 0)
		close(smtp_hold);
	smtp_hold = -1;
}

static void start_smtpd(void)
{
	release_smtp_port();
	char listen[64], path[600], log_path[600];
	const char *subdirs[] = {"", "/tmp", "/new", "/cur"};
	for (size_t i = 0; i < ORN_ARRAY_LEN(subdirs); i++) {
		snprintf(path, sizeof path, "%s%s", smtp_dir, subdirs[i]);
		cr_assert(mkdir(path, 0700) == 0 || errno == EEXIST);
	}
	snprintf(listen, sizeof listen, "127.0.0.1:%d", smtp_port);
	snprintf(log_path, sizeof log_path, "%s/aiosmtpd.log", work_dir);
	char *argv[] = {"/usr/bin/python3",          "-m",     "aiosmtpd", "-n", "-l", listen, "-c",
	                "aiosmtpd.handlers.Mailbox", smtp_dir, NULL};
	smtpd = th_spawn(argv, NULL, log_path);
	int64_t until = th_now_ms() + 15000;
	while (!port_open(smtp_port) && th_now_ms() < until)
		th_sleep_ms(50);
	cr_assert(port_open(smtp_port), "aiosmtpd did not come up");
}

static void start_mail(const char *url, const char *maildir)
{
	mail_options o;
	mail_options_init(&o);
	o.max_attempts = max_attempts;
	o.smtp_url = url;
	o.maildir = maildir;
	o.from = "Orion Shop <shop@orion.test>";
	o.public_url = PUBLIC_URL;
	memcpy(o.token_key, key, sizeof key);
	o.state_dir = state_dir;
	o.retry_max_ms = 1000;
	o.sweep_after_ms = sweep_after_ms;
	if (workers > 0)
		o.workers = workers;
	cr_assert_eq(mail_start(store, hub, &o, &mail), ORN_OK);
}

/* Stops the mail actor, deletes its durable consumer (MAIL_CONSUMER or
 * MAIL_ALERTS_CONSUMER) and starts it again: every commit is redelivered, so
 * only the markers and the delivery log stop a resend. */
static void restart_mail_redelivering(const char *consumer, const char *url, const char *maildir)
{
	mail_stop(mail);
	mail = NULL;
	cr_assert_eq(js_DeleteConsumer(es_store_jetstream(store), ES_STREAM, consumer, NULL, NULL), NATS_OK);
	start_mail(url, maildir);
}

/* A fake SMTP server on smtp_port that offers AUTH but no STARTTLS (what a
 * server looks like once an attacker stripped the offer) and records every
 * line a client sends, sessions side by side. */
#define FAKE_SESSIONS 32
static struct {
	int listen_fd;
	pthread_t thread;
	bool running;
	atomic_bool stopping;
	pthread_mutex_t lock;
	char transcript[16384];
	size_t len;
	int sessions_ended;
	int accept_delay_ms; /* before the 250 that accepts a message: a slow server */
	pthread_t sessions[FAKE_SESSIONS];
	size_t session_count;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fake_record(const char *line)
{
	pthread_mutex_lock(&fake.lock);
	int n = snprintf(fake.transcript + fake.len, sizeof fake.transcript - fake.len, "%s\n", line);
	if (n > 0 && (size_t)n < sizeof fake.transcript - fake.len)
		fake.len += (size_t)n;
	pthread_mutex_unlock(&fake.lock);
}

static void fake_reply(int fd, const char *text)
{
	size_t n = strlen(text);
	(void)!write(fd, text, n);
}

/* Serves one client until it closes the connection, says QUIT or the server stops. */
static void fake_session(int fd)
{
	char in[4096], line[1024];
	size_t used = 0;
	bool in_data = false;
	fake_reply(fd, "220 fake.test ESMTP\r\n");
	while (!atomic_load(&fake.stopping)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, in + used, sizeof in - used - 1);
		if (n <= 0)
			return;
		used += (size_t)n;
		char *nl;
		while ((nl = memchr(in, '\n', used)) != NULL) {
			size_t len = (size_t)(nl - in);
			snprintf(line, sizeof line, "%.*s",
			         (int)(len > 0 && in[len - 1] == '\r' ? len - 1 : len), in);
			memmove(in, nl + 1, used - len - 1);
			used -= len + 1;
			fake_record(line);
			if (in_data) {
				if (strcmp(line, ".") == 0) {
					in_data = false;
					for (int waited = 0;
					     waited < fake.accept_delay_ms && !atomic_load(&fake.stopping);
					     waited += 50)
						th_sleep_ms(50);
					fake_reply(fd, "250 2.0.0 queued\r\n");
				}
			} else if (strncasecmp(line, "EHLO", 4) == 0 || strncasecmp(line, "HELO", 4) == 0) {
				fake_reply(fd,
				           "250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 10000000\r\n");
			} else if (strncasecmp(line, "AUTH", 4) == 0) {
				fake_reply(fd,
				           strchr(line + 5, ' ') != NULL ? "235 2.7.0 ok\r\n" : "334 \r\n");
			} else if (strncasecmp(line, "DATA", 4) == 0) {
				in_data = true;
				fake_reply(fd, "354 go on\r\n");
			} else if (strncasecmp(line, "QUIT", 4) == 0) {
				fake_reply(fd, "221 bye\r\n");
				return;
			} else {
				fake_reply(fd, strchr(line, ' ') == NULL && strlen(line) > 8
				                       ? "235 2.7.0 ok\r\n"
				                       : "250 ok\r\n");
			}
		}
		if (used == sizeof in - 1)
			return; /* a line too long for a fake */
	}
}

static void *fake_session_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	fake_session(fd);
	close(fd);
	pthread_mutex_lock(&fake.lock);
	fake.sessions_ended++;
	pthread_mutex_unlock(&fake.lock);
	return NULL;
}

/* Accepts sessions and serves each in a thread of its own (at most
 * FAKE_SESSIONS in all), as a real server serves clients side by side. */
static void *fake_main(void *unused)
{
	while (!atomic_load(&fake.stopping)) {
		struct pollfd p = {.fd = fake.listen_fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		int fd = accept(fake.listen_fd, NULL, NULL);
		if (fd < 0)
			continue;
		if (fake.session_count == FAKE_SESSIONS ||
		    pthread_create(&fake.sessions[fake.session_count], NULL, fake_session_main,
		                   (void *)(intptr_t)fd) != 0) {
			close(fd);
			continue;
		}
		fake.session_count++;
	}
	for (size_t i = 0; i < fake.session_count; i++)
		pthread_join(fake.sessions[i], NULL);
	fake.session_count = 0;
	return NULL;
}

static void fake_smtp_start(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)smtp_port)};
	int one = 1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fake.len = 0;
	fake.transcript[0] = '\0';
	fake.sessions_ended = 0;
	atomic_store(&fake.stopping, false);
	release_smtp_port();
	fake.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fake.listen_fd, 0);
	setsockopt(fake.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	cr_assert_eq(bind(fake.listen_fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(fake.listen_fd, 8), 0);
	cr_assert_eq(pthread_create(&fake.thread, NULL, fake_main, NULL), 0);
	fake.running = true;
}

static void fake_smtp_stop(void)
{
	if (!fake.running)
		return;
	atomic_store(&fake.stopping, true);
	pthread_join(fake.thread, NULL);
	close(fake.listen_fd);
	fake.running = false;
}

/* Waits until a session has ended or the transcript holds needle; returns a
 * copy of the transcript (free it). */
static char *fake_wait(const char *needle)
{
	int64_t until = th_now_ms() + WAIT_MS;
	for (;;) {
		pthread_mutex_lock(&fake.lock);
		bool done = fake.sessions_ended > 0 || strstr(fake.transcript, needle) != NULL;
		char *copy = done ? strdup(fake.transcript) : NULL;
		pthread_mutex_unlock(&fake.lock);
		if (copy != NULL)
			return copy;
		cr_assert_lt(th_now_ms(), until, "the fake SMTP server waited in vain");
		th_sleep_ms(20);
	}
}

/* Waits until the consumer named durable has delivered everything and
 * holds no unacked (or nak'd) commit: after that it sends nothing more. */
static void wait_consumer_quiescent(const char *durable)
{
	int64_t until = th_now_ms() + WAIT_MS;
	for (;;) {
		jsConsumerInfo *ci = NULL;
		jsErrCode jerr = 0;
		natsStatus st =
		        js_GetConsumerInfo(&ci, es_store_jetstream(store), ES_STREAM, durable, NULL, &jerr);
		bool done = st == NATS_OK && ci->NumPending == 0 && ci->NumAckPending == 0;
		jsConsumerInfo_Destroy(ci);
		if (done)
			return;
		cr_assert_lt(th_now_ms(), until, "the mail consumer never became quiescent");
		th_sleep_ms(50);
	}
}

static void wait_quiescent(void)
{
	wait_consumer_quiescent(MAIL_CONSUMER);
}

/* ---- orders ---- */

static void send_command(const char *order_id, const order_command *c, const char *command_id)
{
	mp_writer *w = mp_writer_create();
	env_envelope cmd;
	bus_reply reply;
	cr_assert_eq(order_command_encode(w, c), ORN_OK);
	cr_assert_eq(bus_command_init(&cmd, order_command_type(c->kind), c->data.time_ms, command_id, NULL,
	                              "test", mp_writer_data(w), mp_writer_size(w)),
	             ORN_OK);
	cr_assert_eq(bus_send_on(es_store_connection(store), ORDER_AGGREGATE, order_id, &cmd, 10000, &reply),
	             ORN_OK);
	cr_assert_eq(reply.outcome, BUS_ACCEPTED, "%s on %s: %s %s", order_command_type(c->kind), order_id,
	             reply.code, reply.detail);
	bus_reply_dispose(&reply);
	mp_writer_destroy(w);
}

static order_command *command(order_command_kind kind)
{
	static order_command c;
	memset(&c, 0, sizeof c);
	c.kind = kind;
	c.data.time_ms = orn_now_ms();
	return &c;
}

static void token_of(const char *order_id, char token[ORDER_TOKEN_MAX])
{
	cr_assert_eq(order_token_make(key, order_id, token), ORN_OK);
}

/* How long after its placing an order awaits confirmation (the confirmation
 * email is retried until then). */
static int64_t place_deadline_ms = 15 * 60 * 1000;

static void place(const char *order_id, const char *first_name)
{
	order_command *c = command(ORDER_PLACE);
	char token[ORDER_TOKEN_MAX], id[96];
	token_of(order_id, token);
	strcpy(c->data.customer_id, "u1");
	strcpy(c->data.customer_email, "ann@example.com");
	strcpy(c->data.request_hash, HASH);
	order_token_hash(token, strlen(token), c->data.token_hash);
	strcpy(c->data.currency, "EUR");
	c->data.ttl_ms = place_deadline_ms;
	order_line *l = &c->data.lines[0];
	strcpy(l->product_id, "p1");
	snprintf(l->name, sizeof l->name, "%s", first_name);
	l->unit_price_cents = 1250;
	l->quantity = 2;
	l = &c->data.lines[1];
	strcpy(l->product_id, "p2");
	strcpy(l->name, "Teapot");
	l->unit_price_cents = 3000;
	l->quantity = 1;
	c->data.line_count = 2;
	snprintf(id, sizeof id, "%s:place", order_id);
	send_command(order_id, c, id);
}

static void reserve(const char *order_id)
{
	char id[96];
	snprintf(id, sizeof id, "%s:reserved", order_id);
	send_command(order_id, command(ORDER_MARK_RESERVED), id);
}

/* Confirms with the token the email carried (token_hint) or the derived one. */
static void confirm(const char *order_id, const char *token)
{
	order_command *c = command(ORDER_CONFIRM);
	char id[96];
	order_token_hash(token, strlen(token), c->data.token_hash);
	c->data.ttl_ms = 30 * 60 * 1000;
	snprintf(id, sizeof id, "%s:confirm", order_id);
	send_command(order_id, c, id);
}

static void cancel(const char *order_id)
{
	order_command *c = command(ORDER_CANCEL);
	char id[96];
	strcpy(c->data.reason, ORDER_REASON_CUSTOMER);
	snprintf(id, sizeof id, "%s:cancel", order_id);
	send_command(order_id, c, id);
}

/* ---- reading the received emails ---- */

typedef struct received {
	char *content;
	char message_id[128], subject[256], to[256];
} received;

static void header_value(const char *content, const char *name, char *out, size_t cap)
{
	size_t n = strlen(name);
	out[0] = '\0';
	for (const char *p = content; *p != '\0';) {
		if ((*p == '\n') || (*p == '\r' && p[1] == '\n'))
			return; /* end of the headers */
		if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
			const char *v = p + n + 1;
			while (*v == ' ')
				v++;
			size_t len = strcspn(v, "\r\n");
			snprintf(out, cap, "%.*s", (int)len, v);
			return;
		}
		const char *nl = strchr(p, '\n');
		if (nl == NULL)
			return;
		p = nl + 1;
	}
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *data = calloc(1, (size_t)size + 1);
	cr_assert_eq(fread(data, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	return data;
}

/* Every message under root/new and root/cur; returns the count (at most cap). */
static size_t read_mailbox(const char *root, received *out, size_t cap)
{
	size_t count = 0;
	const char *subdirs[] = {"new", "cur"};
	for (size_t s = 0; s < 2; s++) {
		char dir[600];
		snprintf(dir, sizeof dir, "%s/%s", root, subdirs[s]);
		DIR *d = opendir(dir);
		if (d == NULL)
			continue;
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			cr_assert_lt(count, cap);
			char path[900];
			snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
			received *r = &out[count++];
			r->content = read_all(path);
			header_value(r->content, "Message-ID", r->message_id, sizeof r->message_id);
			header_value(r->content, "Subject", r->subject, sizeof r->subject);
			header_value(r->content, "To", r->to, sizeof r->to);
		}
		closedir(d);
	}
	return count;
}

static void free_mailbox(received *r, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(r[i].content);
}

static size_t count_of(const char *root, const char *message_id)
{
	received r[64];
	size_t n = read_mailbox(root, r, 64), hits = 0;
	for (size_t i = 0; i < n; i++)
		hits += strcmp(r[i].message_id, message_id) == 0;
	free_mailbox(r, n);
	return hits;
}

static size_t total_of(const char *root)
{
	received r[64];
	size_t n = read_mailbox(root, r, 64);
	free_mailbox(r, n);
	return n;
}

static void wait_for(const char *root, const char *message_id)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (count_of(root, message_id) == 0) {
		cr_assert_lt(th_now_ms(), until, "no email %s arrived", message_id);
		th_sleep_ms(50);
	}
}

/* The decoded body of the part of type in an email as stored. */
static char *part_of(const char *content, const char *type)
{
	char *body = mime_part(content, type, NULL, 0);
	cr_assert_not_null(body, "no decodable %s part in:\n%s", type, content);
	return body;
}

static received *find(received *r, size_t n, const char *message_id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(r[i].message_id, message_id) == 0)
			return &r[i];
	cr_assert_fail("no email %s", message_id);
	return NULL;
}

/* ---- tests ---- */

Test(mail, the_confirmation_email_arrives_with_the_link_and_escaped_names)
{
	char token[ORDER_TOKEN_MAX], link[256];
	start_smtpd();
	start_mail(smtp_url, NULL);
	place("o1", HOSTILE);
	reserve("o1");
	wait_for(smtp_dir, "<o1.awaiting_confirmation@orion>");

	received r[8];
	size_t n = read_mailbox(smtp_dir, r, 8);
	received *m = find(r, n, "<o1.awaiting_confirmation@orion>");
	cr_assert_str_eq(m->to, "ann@example.com");
	cr_assert_str_eq(m->subject, "Please confirm your order o1");
	cr_assert_not_null(strstr(m->content, "multipart/alternative"));
	cr_assert_not_null(strstr(m->content, "X-Orion-Event-Time: "));
	char *text = part_of(m->content, "text/plain"), *html = part_of(m->content, "text/html");
	token_of("o1", token);
	snprintf(link, sizeof link, PUBLIC_URL "/api/v1/orders/o1/confirm?token=%s", token);
	cr_assert_not_null(strstr(text, link), "no link in:\n%s", text);
	cr_assert_not_null(strstr(html, link));
	cr_assert_not_null(strstr(text, HOSTILE));
	cr_assert_null(strstr(html, "<script>"));
	cr_assert_not_null(
	        strstr(html, "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
	cr_assert_not_null(strstr(text, "55.00 EUR")); /* 2 x 12.50 + 30.00 */

	/* the token in the link is the one the order accepts */
	const char *t = strstr(text, "token=") + strlen("token=");
	char from_mail[ORDER_TOKEN_MAX];
	snprintf(from_mail, sizeof from_mail, "%.*s", (int)strcspn(t, "\r\n"), t);
	confirm("o1", from_mail);
	wait_for(smtp_dir, "<o1.awaiting_payment@orion>");
	wait_quiescent();
	free(text);
	free(html);
	free_mailbox(r, n);
	cr_assert_eq(total_of(smtp_dir), 2); /* OrderPlaced sends nothing */
}

/* The value of the counter name in this process's metrics, 0 if absent. */
static double counter_value(const char *name)
{
	size_t len = 0;
	double v = 0;
	char *text = orn_metrics_render(orn_metrics_global(), &len), needle[128];
	cr_assert_not_null(text);
	snprintf(needle, sizeof needle, "\n%s ", name);
	const char *at = strstr(text, needle);
	if (at != NULL)
		v = strtod(at + strlen(needle), NULL);
	free(text);
	return v;
}

/* ADR 024: a worker keeps its SMTP connection between emails (libcurl's
 * reuse), and aiosmtpd takes the second and later transactions on it. */
Test(mail, one_worker_sends_several_emails_on_one_smtp_connection)
{
	static const char *const ids[] = {"o-c1", "o-c2", "o-c3", "o-c4", "o-c5"};
	char marker[64];
	workers = 1;
	start_smtpd();
	start_mail(smtp_url, NULL);
	for (size_t i = 0; i < ORN_ARRAY_LEN(ids); i++) {
		place(ids[i], "Blue mug");
		reserve(ids[i]);
		snprintf(marker, sizeof marker, "<%s.awaiting_confirmation@orion>", ids[i]);
		wait_for(smtp_dir, marker); /* one after the other: each on the connection left open */
	}
	wait_quiescent();
	cr_assert_eq(total_of(smtp_dir), ORN_ARRAY_LEN(ids));
	cr_assert_eq(counter_value("orion_email_smtp_connections_total"), 1.0,
	             "five emails, one connection opened");
}

Test(mail, a_cancel_sends_exactly_one_cancelled_email_with_the_reason)
{
	start_smtpd();
	start_mail(smtp_url, NULL);
	place("o2", "Blue mug");
	reserve("o2");
	cancel("o2");
	wait_for(smtp_dir, "<o2.cancelled@orion>");
	wait_quiescent();
	cr_assert_eq(count_of(smtp_dir, "<o2.cancelled@orion>"), 1);
	cr_assert_eq(count_of(smtp_dir, "<o2.awaiting_confirmation@orion>"), 1);

	received r[8];
	size_t n = read_mailbox(smtp_dir, r, 8);
	received *m = find(r, n, "<o2.cancelled@orion>");
	cr_assert_str_eq(m->subject, "Order o2 was cancelled");
	char *text = part_of(m->content, "text/plain");
	cr_assert_not_null(strstr(text, "Reason: customer"));
	cr_assert_not_null(strstr(text, "Blue mug"));
	free(text);
	free_mailbox(r, n);
}

Test(mail, a_restart_and_a_full_redelivery_send_nothing_twice)
{
	start_smtpd();
	start_mail(smtp_url, NULL);
	place("o3", "Blue mug");
	reserve("o3");
	wait_for(smtp_dir, "<o3.awaiting_confirmation@orion>");
	wait_quiescent();

	/* a plain restart: the consumer goes on where it was */
	mail_stop(mail);
	mail = NULL;
	start_mail(smtp_url, NULL);
	cancel("o3");
	wait_for(smtp_dir, "<o3.cancelled@orion>");
	wait_quiescent();

	/* a restart whose consumer redelivers every commit: only the markers stop a resend */
	restart_mail_redelivering(MAIL_CONSUMER, smtp_url, NULL);
	wait_quiescent();
	cr_assert_eq(count_of(smtp_dir, "<o3.awaiting_confirmation@orion>"), 1);
	cr_assert_eq(count_of(smtp_dir, "<o3.cancelled@orion>"), 1);
	cr_assert_eq(total_of(smtp_dir), 2);
}

Test(mail, an_email_whose_event_the_consumer_lost_is_sent_by_the_sweeper)
{
	start_smtpd();
	start_mail(smtp_url, NULL); /* creates the durable consumer */
	mail_stop(mail);
	mail = NULL;
	place("o-lost", "Blue mug");
	reserve("o-lost");
	cr_assert_eq(tld_lose_all(store, MAIL_CONSUMER, "orion.evt.order.>", "orion.evt.order.o-lost"), 2,
	             "the consumer held the two commits, now lost");
	sweep_after_ms = 500;
	start_mail(smtp_url, NULL);
	wait_for(smtp_dir, "<o-lost.awaiting_confirmation@orion>");
	wait_quiescent();
	cr_assert_eq(total_of(smtp_dir), 1);
}

Test(mail, sweeping_emails_that_went_out_sends_nothing_twice)
{
	sweep_after_ms = 300;
	start_smtpd();
	start_mail(smtp_url, NULL);
	place("o-swept", "Blue mug");
	reserve("o-swept");
	cancel("o-swept");
	wait_for(smtp_dir, "<o-swept.awaiting_confirmation@orion>");
	wait_for(smtp_dir, "<o-swept.cancelled@orion>");
	wait_quiescent();
	th_sleep_ms(1500); /* every commit falls due and is swept */
	cr_assert_eq(count_of(smtp_dir, "<o-swept.awaiting_confirmation@orion>"), 1);
	cr_assert_eq(count_of(smtp_dir, "<o-swept.cancelled@orion>"), 1);
	cr_assert_eq(total_of(smtp_dir), 2);
}

static mail_log_state wait_log(const char *marker, mail_log_status status);

Test(mail, while_smtp_is_down_emails_wait_and_then_arrive_once)
{
	start_mail(smtp_url, NULL); /* nothing listens on the port yet */
	place("o4", "Blue mug");
	reserve("o4");
	place("o5", "Teacup");
	reserve("o5");
	cancel("o5");
	char token[ORDER_TOKEN_MAX];
	token_of("o4", token);
	confirm("o4", token);
	th_sleep_ms(3000); /* the scenario: the server comes up later */
	cr_assert_eq(total_of(smtp_dir), 0);
	start_smtpd();
	wait_for(smtp_dir, "<o4.awaiting_payment@orion>");
	wait_for(smtp_dir, "<o5.cancelled@orion>");
	wait_quiescent();
	cr_assert_eq(count_of(smtp_dir, "<o4.awaiting_payment@orion>"), 1);
	cr_assert_eq(count_of(smtp_dir, "<o5.cancelled@orion>"), 1);
	/* the confirmations no longer mattered (one order confirmed, one
	 * cancelled): they were given up, not sent late (ADR 023) */
	cr_assert_eq(count_of(smtp_dir, "<o4.awaiting_confirmation@orion>"), 0);
	cr_assert_eq(count_of(smtp_dir, "<o5.awaiting_confirmation@orion>"), 0);
	cr_assert_eq(total_of(smtp_dir), 2);
	mail_log_state s = wait_log("o4/awaiting_confirmation", MAIL_LOG_STATUS_FAILED);
	cr_assert_not_null(strstr(s.last_error, "no longer needed"), "%s", s.last_error);
	wait_log("o5/awaiting_confirmation", MAIL_LOG_STATUS_FAILED);
}

Test(mail, without_smtp_the_emails_land_in_the_maildir_once_each)
{
	char path[700];
	start_mail(NULL, sink_dir);
	place("o6", HOSTILE);
	reserve("o6");
	cancel("o6");
	wait_for(sink_dir, "<o6.awaiting_confirmation@orion>");
	wait_for(sink_dir, "<o6.cancelled@orion>");
	wait_quiescent();
	snprintf(path, sizeof path, "%s/new/o6.cancelled.orion", sink_dir);
	cr_assert_eq(access(path, F_OK), 0);

	restart_mail_redelivering(MAIL_CONSUMER, "", sink_dir);
	wait_quiescent();
	cr_assert_eq(count_of(sink_dir, "<o6.awaiting_confirmation@orion>"), 1);
	cr_assert_eq(count_of(sink_dir, "<o6.cancelled@orion>"), 1);
	cr_assert_eq(total_of(sink_dir), 2);

	received r[4];
	size_t n = read_mailbox(sink_dir, r, 4);
	received *m = find(r, n, "<o6.awaiting_confirmation@orion>");
	cr_assert_str_eq(m->to, "ann@example.com");
	char *html = part_of(m->content, "text/html");
	cr_assert_null(strstr(html, "<script>"));
	free(html);
	free_mailbox(r, n);
}

Test(mail, credentials_in_the_url_require_tls_so_nothing_goes_out_in_clear)
{
	char url[96];
	fake_smtp_start();
	snprintf(url, sizeof url, "smtp://ann:s3cret@127.0.0.1:%d", smtp_port);
	start_mail(url, NULL);
	place("o7", "Mug");
	reserve("o7");
	char *transcript = fake_wait("AUTH"); /* curl gives up on the server (or, wrongly, logs in) */
	cr_assert_not_null(strstr(transcript, "EHLO"), "transcript:\n%s", transcript);
	cr_assert_null(strstr(transcript, "AUTH"), "cleartext AUTH:\n%s", transcript);
	cr_assert_null(strstr(transcript, "MAIL FROM"), "cleartext mail:\n%s", transcript);
	free(transcript);
}

Test(mail, without_credentials_smtp_goes_on_in_clear_when_no_tls_is_offered)
{
	fake_smtp_start();
	start_mail(smtp_url, NULL);
	place("o8", "Mug");
	reserve("o8");
	char *transcript = fake_wait("\n.\n"); /* the end of the data */
	cr_assert_not_null(strstr(transcript, "MAIL FROM:<shop@orion.test>"), "transcript:\n%s", transcript);
	cr_assert_not_null(strstr(transcript, "Message-ID: <o8.awaiting_confirmation@orion>"),
	                   "transcript:\n%s", transcript);
	free(transcript);
}

/* The transcript's count of needle (a copy taken under the lock). */
static int fake_count(const char *needle)
{
	int n = 0;
	pthread_mutex_lock(&fake.lock);
	for (const char *at = fake.transcript; (at = strstr(at, needle)) != NULL; at += strlen(needle))
		n++;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

/* A slow server keeps the worker inside the SMTP transaction, with nothing in
 * the log or the markers yet, when the sweeper finds the email due: without
 * the in-process claim both would send it. */
Test(mail, a_worker_and_the_sweeper_never_send_one_email_at_once)
{
	fake.accept_delay_ms = 2500;
	fake_smtp_start();
	sweep_after_ms = 300;
	start_mail(smtp_url, NULL);
	place("o-slow", "Mug");
	reserve("o-slow");
	free(fake_wait("\n.\n")); /* the worker's message is in, its acceptance 2.5 s away */
	th_sleep_ms(6000);        /* the sweeper's checks while it waits, and after */
	cr_assert_eq(fake_count("Message-ID: <o-slow.awaiting_confirmation@orion>"), 1, "transcript:\n%s",
	             fake.transcript);
	cr_assert_eq(fake_count("\nDATA\n"), 1);
	fake.accept_delay_ms = 0;
}

Test(mail, an_existing_consumer_with_another_configuration_is_updated)
{
	jsConsumerConfig cc;
	jsConsumerInfo *ci = NULL;
	jsConsumerConfig_Init(&cc);
	cc.Durable = MAIL_CONSUMER;
	cc.FilterSubject = "orion.evt.order.>";
	cc.AckPolicy = js_AckExplicit;
	cc.AckWait = 5LL * 1000 * 1000 * 1000;
	cr_assert_eq(js_AddConsumer(&ci, es_store_jetstream(store), ES_STREAM, &cc, NULL, NULL), NATS_OK);
	jsConsumerInfo_Destroy(ci);
	ci = NULL;
	start_mail(NULL, sink_dir);
	cr_assert_eq(js_GetConsumerInfo(&ci, es_store_jetstream(store), ES_STREAM, MAIL_CONSUMER, NULL, NULL),
	             NATS_OK);
	cr_assert_eq(ci->Config->AckWait, 30LL * 1000 * 1000 * 1000);
	cr_assert_eq(ci->Config->MaxDeliver, -1);
	jsConsumerInfo_Destroy(ci);
}

Test(mail, bad_options_are_refused)
{
	mail_options o;
	mail_options_init(&o);
	o.maildir = sink_dir;
	cr_assert_eq(mail_start(store, hub, &o, &mail), ORN_EINVAL); /* no state dir */
	cr_assert_null(mail);
	o.state_dir = state_dir;
	o.maildir = NULL;
	cr_assert_eq(mail_start(store, hub, &o, &mail), ORN_EINVAL); /* neither SMTP nor Maildir */
	o.maildir = sink_dir;
	o.from = "shop@orion.test\r\nBcc: eve@evil.test";
	cr_assert_eq(mail_start(store, hub, &o, &mail), ORN_EINVAL);
	o.from = "shop@orion.test";
	o.public_url = "http://x\r\n";
	cr_assert_eq(mail_start(store, hub, &o, &mail), ORN_EINVAL);
	cr_assert_eq(mail_start(NULL, hub, &o, &mail), ORN_EINVAL);
	mail_stop(NULL);
}

/* ---- the delivery log ---- */

static orn_rc log_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	mail_log_event ev;
	if (mail_log_event_decode(e->type, e->payload, e->payload_len, &ev) == ORN_OK)
		mail_log_evolve(closure, &ev);
	return ORN_OK;
}

/* The delivery log of the email whose marker key is key, from the stream. */
static mail_log_state log_of(const char *marker, uint64_t *version)
{
	char id[MAIL_LOG_ID_MAX];
	mail_log_state s;
	es_position at;
	cr_assert_eq(mail_log_id(id, marker), ORN_OK);
	mail_log_state_init(&s);
	cr_assert_eq(es_load(store, MAIL_LOG_AGGREGATE, id, 0, log_fold, &s, &at), ORN_OK);
	if (version != NULL)
		*version = at.version;
	return s;
}

/* Waits until the log of key is in status. */
static mail_log_state wait_log(const char *marker, mail_log_status status)
{
	int64_t until = th_now_ms() + WAIT_MS * 2;
	for (;;) {
		mail_log_state s = log_of(marker, NULL);
		if (s.status == status)
			return s;
		cr_assert_lt(th_now_ms(), until, "the log of %s stays %s (%u attempts)", marker,
		             mail_log_status_name(s.status), s.attempts);
		th_sleep_ms(50);
	}
}

/* The events of the log of key, counted by kind. */
typedef struct log_counts {
	size_t failed_attempts, delivered, failed;
} log_counts;

static orn_rc count_fold(void *closure, uint64_t seq, const char *subject, const env_envelope *e)
{
	log_counts *c = closure;
	c->failed_attempts += strcmp(e->type, MAIL_LOG_EV_ATTEMPT_FAILED) == 0;
	c->delivered += strcmp(e->type, MAIL_LOG_EV_DELIVERED) == 0;
	c->failed += strcmp(e->type, MAIL_LOG_EV_FAILED) == 0;
	return ORN_OK;
}

static log_counts counts_of(const char *marker)
{
	char id[MAIL_LOG_ID_MAX];
	log_counts c = {0};
	es_position at;
	cr_assert_eq(mail_log_id(id, marker), ORN_OK);
	cr_assert_eq(es_load(store, MAIL_LOG_AGGREGATE, id, 0, count_fold, &c, &at), ORN_OK);
	return c;
}

/* The mail read model fed from the stream by a projector runner. */
static void with_read_model(void (*check)(proj_mail *model))
{
	char dir[600];
	proj_env_options eo;
	proj_env *env = NULL;
	proj_mail *model = NULL;
	proj_runner *runner = NULL;
	proj_runner_options ro;
	uint64_t head = 0;
	snprintf(dir, sizeof dir, "%s/lmdb", work_dir);
	cr_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
	proj_env_options_init(&eo);
	eo.path = dir;
	cr_assert_eq(proj_env_open(&eo, &env), ORN_OK);
	cr_assert_eq(proj_mail_create(env, &model), ORN_OK);
	proj_runner_options_init(&ro);
	cr_assert_eq(proj_runner_start(store, env, proj_mail_def(model), 1, &ro, &runner), ORN_OK);
	jsStreamInfo *si = NULL;
	cr_assert_eq(js_GetStreamInfo(&si, es_store_jetstream(store), ES_STREAM, NULL, NULL), NATS_OK);
	head = si->State.LastSeq;
	jsStreamInfo_Destroy(si);
	cr_assert_eq(proj_runner_wait(runner, head, WAIT_MS), ORN_OK);
	check(model);
	proj_runner_stop(runner);
	proj_mail_destroy(model);
	proj_env_close(env);
}

static proj_mail_page page;

static void delivered_entry_is_listed(proj_mail *model)
{
	char id[MAIL_LOG_ID_MAX];
	proj_mail_query q = {.order_id = "o11", .limit = 10};
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_OK);
	cr_assert_eq(page.count, 1);
	cr_assert_eq(mail_log_id(id, "o11/awaiting_confirmation"), ORN_OK);
	cr_assert_str_eq(page.items[0].id, id);
	cr_assert_eq(page.items[0].log.status, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_eq(page.items[0].log.attempts, 1);
	cr_assert_gt(page.items[0].log.delivered_at_ms, 0);
	cr_assert_str_eq(page.items[0].log.subject.recipient, "ann@example.com");
}

Test(mail, a_delivered_email_is_logged_once_with_its_time_and_attempt_one)
{
	start_smtpd();
	start_mail(smtp_url, NULL);
	int64_t before = orn_now_ms();
	place("o11", "Blue mug");
	reserve("o11");
	wait_for(smtp_dir, "<o11.awaiting_confirmation@orion>");
	mail_log_state s = wait_log("o11/awaiting_confirmation", MAIL_LOG_STATUS_DELIVERED);
	wait_quiescent();
	cr_assert_eq(s.attempts, 1);
	cr_assert_geq(s.delivered_at_ms, before);
	cr_assert_str_eq(s.subject.order_id, "o11");
	cr_assert_str_eq(s.subject.kind, "awaiting_confirmation");
	log_counts c = counts_of("o11/awaiting_confirmation");
	cr_assert_eq(c.delivered, 1);
	cr_assert_eq(c.failed_attempts, 0);

	/* a full redelivery logs nothing more */
	restart_mail_redelivering(MAIL_CONSUMER, smtp_url, NULL);
	wait_quiescent();
	c = counts_of("o11/awaiting_confirmation");
	cr_assert_eq(c.delivered, 1);
	cr_assert_eq(count_of(smtp_dir, "<o11.awaiting_confirmation@orion>"), 1);
	with_read_model(delivered_entry_is_listed);
}

static void failed_entry_is_listed(proj_mail *model)
{
	char id[MAIL_LOG_ID_MAX];
	proj_mail_query q = {.has_status = true, .status = MAIL_LOG_STATUS_FAILED, .limit = 10};
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_OK);
	cr_assert_eq(page.count, 2, "the cancelled email and the confirmation given up");
	cr_assert_eq(mail_log_id(id, "o12/cancelled"), ORN_OK);
	size_t i = strcmp(page.items[0].id, id) == 0 ? 0 : 1;
	cr_assert_str_eq(page.items[i].id, id);
	cr_assert_eq(page.items[i].log.attempts, 3);
	cr_assert_str_neq(page.items[i].log.last_error, "");
	q.status = MAIL_LOG_STATUS_DELIVERED;
	cr_assert_eq(proj_mail_list(model, &q, &page), ORN_OK);
	cr_assert_eq(page.count, 1);
	cr_assert_str_eq(page.items[0].log.subject.order_id, "o13");
}

Test(mail, smtp_down_beyond_the_bound_fails_the_email_and_nothing_else_is_blocked)
{
	max_attempts = 3;
	start_mail(smtp_url, NULL); /* nothing listens on the port */
	place("o12", "Blue mug");
	reserve("o12");
	cancel("o12"); /* the cancelled email has the attempt bound (a confirmation has its deadline) */
	mail_log_state s = wait_log("o12/cancelled", MAIL_LOG_STATUS_FAILED);
	cr_assert_eq(s.attempts, 3);
	cr_assert_not_null(strstr(s.last_error, "smtp"), "last error: %s", s.last_error);
	log_counts c = counts_of("o12/cancelled");
	cr_assert_eq(c.failed_attempts, 3);
	cr_assert_eq(c.failed, 1);
	wait_log("o12/awaiting_confirmation", MAIL_LOG_STATUS_FAILED); /* given up: the order is cancelled */
	wait_quiescent(); /* the failed email's commit was acked: it holds nothing up */

	/* SMTP back: the next order's email goes out; the failed one stays failed */
	start_smtpd();
	place("o13", "Teacup");
	reserve("o13");
	wait_for(smtp_dir, "<o13.awaiting_confirmation@orion>");
	wait_log("o13/awaiting_confirmation", MAIL_LOG_STATUS_DELIVERED);
	wait_quiescent();
	cr_assert_eq(count_of(smtp_dir, "<o12.cancelled@orion>"), 0);
	cr_assert_eq(counts_of("o12/cancelled").failed_attempts, 3);
	with_read_model(failed_entry_is_listed);
}

Test(mail, a_restart_does_not_reset_the_attempt_count)
{
	max_attempts = 5;
	start_mail(smtp_url, NULL); /* nothing listens on the port */
	place("o14", "Blue mug");
	reserve("o14");
	cancel("o14");
	int64_t until = th_now_ms() + WAIT_MS;
	while (log_of("o14/cancelled", NULL).attempts < 2) {
		cr_assert_lt(th_now_ms(), until, "no two attempts were logged");
		th_sleep_ms(20);
	}
	mail_stop(mail);
	mail = NULL;
	uint32_t at_restart = log_of("o14/cancelled", NULL).attempts;
	cr_assert_lt(at_restart, 5);
	start_mail(smtp_url, NULL);
	mail_log_state s = wait_log("o14/cancelled", MAIL_LOG_STATUS_FAILED);
	cr_assert_eq(s.attempts, 5, "the count went on from %u", at_restart);
	cr_assert_eq(counts_of("o14/cancelled").failed_attempts, 5);
}

Test(mail, a_confirmation_is_retried_past_the_bound_until_its_orders_deadline)
{
	max_attempts = 2;
	place_deadline_ms = 4000;
	start_mail(smtp_url, NULL); /* nothing listens on the port */
	place("o15", "Blue mug");
	reserve("o15");
	int64_t until = th_now_ms() + WAIT_MS;
	mail_log_state s;
	while ((s = log_of("o15/awaiting_confirmation", NULL)).attempts <= 2) {
		cr_assert_lt(th_now_ms(), until, "no attempt past the bound");
		th_sleep_ms(50);
	}
	cr_assert_eq(s.status, MAIL_LOG_STATUS_PENDING, "the bound does not end a confirmation");
	s = wait_log("o15/awaiting_confirmation", MAIL_LOG_STATUS_FAILED);
	cr_assert_gt(s.attempts, 2);
}

/* ---- low-stock alerts ---- */

static void append(const char *aggregate, const char *id, const char *type, mp_writer *payload,
                   const char *msg_id)
{
	mp_writer *commit = mp_writer_create();
	env_envelope e;
	es_append_result r;
	uint64_t version = 0;
	memset(&e, 0, sizeof e);
	snprintf(e.type, sizeof e.type, "%s", type);
	e.schema = 1;
	e.time_ms = orn_now_ms();
	snprintf(e.causation, sizeof e.causation, "%s", msg_id);
	e.payload = mp_writer_data(payload);
	e.payload_len = mp_writer_size(payload);
	env_commit_begin(commit, 1);
	cr_assert_eq(env_encode(commit, &e), ORN_OK);
	cr_assert_eq(es_head(store, aggregate, id, &version), ORN_OK);
	cr_assert_eq(es_append(store, aggregate, id, &(es_position){version, version}, msg_id,
	                       mp_writer_data(commit), mp_writer_size(commit), &r),
	             ORN_OK);
	mp_writer_destroy(commit);
	mp_writer_reset(payload);
}

static void register_user(mp_writer *w, const char *email, user_role role)
{
	user_event e;
	char user_key[USER_KEY_MAX], msg_id[64];
	memset(&e, 0, sizeof e);
	e.kind = USER_REGISTERED;
	snprintf(e.fields.user_id, sizeof e.fields.user_id, "id-%s", role == USER_ROLE_ADMIN ? "a" : "c");
	snprintf(e.fields.email, sizeof e.fields.email, "%s", email);
	snprintf(e.fields.name, sizeof e.fields.name, "Someone");
	snprintf(e.fields.password_hash, sizeof e.fields.password_hash,
	         "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG");
	e.fields.role = role;
	cr_assert_eq(user_key_for_email(email, user_key, sizeof user_key), ORN_OK);
	cr_assert_eq(user_event_encode(w, &e), ORN_OK);
	snprintf(msg_id, sizeof msg_id, "register-%s", user_key);
	append(USER_AGGREGATE, user_key, USER_EV_REGISTERED, w, msg_id);
}

static void create_product(mp_writer *w, const char *id, const char *sku, const char *name)
{
	product_event e;
	memset(&e, 0, sizeof e);
	e.kind = PRODUCT_CREATED;
	e.present = PRODUCT_FIELDS_ALL;
	snprintf(e.fields.sku, sizeof e.fields.sku, "%s", sku);
	snprintf(e.fields.name, sizeof e.fields.name, "%s", name);
	e.fields.price_cents = 1250;
	snprintf(e.fields.currency, sizeof e.fields.currency, "EUR");
	snprintf(e.fields.category, sizeof e.fields.category, "mugs");
	cr_assert_eq(product_event_encode(w, &e), ORN_OK);
	append(PRODUCT_AGGREGATE, id, PRODUCT_EV_CREATED, w, "create-product");
}

/* LowStockDetected as the stock aggregate emits it (its own codec). */
static void low_stock_detected(mp_writer *w, const char *product_id, int64_t available, const char *msg_id)
{
	stock_event e;
	memset(&e, 0, sizeof e);
	e.kind = STOCK_LOW_DETECTED;
	e.threshold = 5;
	e.available = available;
	e.on_hand = available + 1;
	e.reserved = 1;
	cr_assert_eq(stock_event_encode(w, &e), ORN_OK);
	append(STOCK_AGGREGATE, product_id, stock_event_type(STOCK_LOW_DETECTED), w, msg_id);
}

static void adjusted(mp_writer *w, const char *product_id, int64_t delta, int64_t on_hand, const char *msg_id)
{
	stock_event e;
	memset(&e, 0, sizeof e);
	e.kind = STOCK_ADJUSTED;
	e.delta = delta;
	e.on_hand = on_hand;
	snprintf(e.reason, sizeof e.reason, "restock");
	cr_assert_eq(stock_event_encode(w, &e), ORN_OK);
	append(STOCK_AGGREGATE, product_id, stock_event_type(STOCK_ADJUSTED), w, msg_id);
}

/* The alerts the SMTP server holds for to, by subject. */
static size_t alerts_to(const char *to, const char *subject)
{
	received r[64];
	size_t n = read_mailbox(smtp_dir, r, 64), hits = 0;
	for (size_t i = 0; i < n; i++)
		hits += strcmp(r[i].to, to) == 0 && strcmp(r[i].subject, subject) == 0;
	free_mailbox(r, n);
	return hits;
}

static void wait_total(size_t n)
{
	int64_t until = th_now_ms() + WAIT_MS;
	while (total_of(smtp_dir) < n) {
		cr_assert_lt(th_now_ms(), until, "%zu emails, not %zu", total_of(smtp_dir), n);
		th_sleep_ms(50);
	}
}

static void wait_all_quiescent(void)
{
	wait_consumer_quiescent(MAIL_ALERTS_CONSUMER);
	wait_quiescent();
}

Test(mail, a_low_stock_crossing_emails_every_admin_exactly_once_and_a_new_crossing_again)
{
	mp_writer *w = mp_writer_create();
	const char *subject = "Low stock: Blue mug (3 left)";
	start_smtpd();
	register_user(w, "root@orion.test", USER_ROLE_ADMIN);
	register_user(w, "ops@orion.test", USER_ROLE_ADMIN);
	register_user(w, "ann@example.com", USER_ROLE_CUSTOMER);
	create_product(w, "p1", "MUG-1", "Blue mug");
	adjusted(w, "p1", 10, 10, "stock-1");
	start_mail(smtp_url, NULL);
	low_stock_detected(w, "p1", 3, "low-1");
	wait_total(2);
	wait_all_quiescent();
	cr_assert_eq(alerts_to("root@orion.test", subject), 1);
	cr_assert_eq(alerts_to("ops@orion.test", subject), 1);
	cr_assert_eq(alerts_to("ann@example.com", subject), 0);

	received r[8];
	size_t n = read_mailbox(smtp_dir, r, 8);
	char *text = part_of(r[0].content, "text/plain");
	cr_assert_not_null(strstr(text, "SKU: MUG-1"), "%s", text);
	cr_assert_not_null(strstr(text, "threshold 5"), "%s", text);
	cr_assert_not_null(strstr(text, PUBLIC_URL "/api/v1/admin/products/p1"), "%s", text);
	free(text);
	free_mailbox(r, n);

	/* a redelivery of the event (the consumer recreated) sends nothing */
	restart_mail_redelivering(MAIL_ALERTS_CONSUMER, smtp_url, NULL);
	/* a second event of the same crossing (no re-arm in between) sends nothing either */
	low_stock_detected(w, "p1", 2, "low-1b");
	wait_all_quiescent();
	cr_assert_eq(total_of(smtp_dir), 2);

	/* re-armed (back above the threshold), then a new crossing: one more each */
	adjusted(w, "p1", 10, 13, "stock-2");
	low_stock_detected(w, "p1", 3, "low-2");
	wait_total(4);
	wait_all_quiescent();
	cr_assert_eq(alerts_to("root@orion.test", subject), 2);
	cr_assert_eq(alerts_to("ops@orion.test", subject), 2);
	cr_assert_eq(alerts_to("ann@example.com", subject), 0);
	cr_assert_eq(total_of(smtp_dir), 4);
	mp_writer_destroy(w);
}

Test(mail, alerts_are_logged_with_kind_low_stock)
{
	mp_writer *w = mp_writer_create();
	char user_key[USER_KEY_MAX], marker[256];
	register_user(w, "root@orion.test", USER_ROLE_ADMIN);
	create_product(w, "p2", "MUG-2", "Grüne Tasse");
	start_mail(NULL, sink_dir);
	low_stock_detected(w, "p2", 1, "low-p2");
	uint64_t seq = 0;
	cr_assert_eq(es_head(store, STOCK_AGGREGATE, "p2", &seq), ORN_OK);
	cr_assert_eq(user_key_for_email("root@orion.test", user_key, sizeof user_key), ORN_OK);
	snprintf(marker, sizeof marker, "low_stock/p2/%llu/%s", (unsigned long long)seq, user_key);
	mail_log_state s = wait_log(marker, MAIL_LOG_STATUS_DELIVERED);
	cr_assert_str_eq(s.subject.kind, MAIL_LOG_KIND_LOW_STOCK);
	cr_assert_str_eq(s.subject.product_id, "p2");
	cr_assert_str_eq(s.subject.order_id, "");
	cr_assert_str_eq(s.subject.recipient, "root@orion.test");
	cr_assert_eq(s.attempts, 1);
	received r[4];
	size_t n = read_mailbox(sink_dir, r, 4);
	cr_assert_eq(n, 1);
	cr_assert_not_null(strstr(r[0].subject, "=?UTF-8?B?"), "a non-ASCII subject is encoded: %s",
	                   r[0].subject);
	free_mailbox(r, n);
	mp_writer_destroy(w);
}

Test(mail, an_alert_whose_event_the_consumer_lost_is_sent_by_the_sweeper)
{
	mp_writer *w = mp_writer_create();
	start_smtpd();
	register_user(w, "root@orion.test", USER_ROLE_ADMIN);
	create_product(w, "p9", "MUG-9", "Green mug");
	start_mail(smtp_url, NULL); /* creates the durable consumers */
	wait_all_quiescent();
	mail_stop(mail);
	mail = NULL;
	low_stock_detected(w, "p9", 3, "low-9");
	cr_assert_eq(tld_lose_all(store, MAIL_ALERTS_CONSUMER, "orion.evt.stock.>", "orion.evt.stock.p9"), 1,
	             "the alert consumer held the crossing, now lost");
	sweep_after_ms = 500;
	start_mail(smtp_url, NULL);
	wait_total(1);
	wait_all_quiescent();
	cr_assert_eq(alerts_to("root@orion.test", "Low stock: Green mug (3 left)"), 1);
	cr_assert_eq(total_of(smtp_dir), 1);
	mp_writer_destroy(w);
}

Test(mail, sweeping_alerts_that_went_out_sends_nothing_twice)
{
	mp_writer *w = mp_writer_create();
	sweep_after_ms = 300;
	start_smtpd();
	register_user(w, "root@orion.test", USER_ROLE_ADMIN);
	create_product(w, "p8", "MUG-8", "Red mug");
	start_mail(smtp_url, NULL);
	low_stock_detected(w, "p8", 2, "low-8");
	wait_total(1);
	wait_all_quiescent();
	th_sleep_ms(1500); /* the event falls due and is swept */
	cr_assert_eq(alerts_to("root@orion.test", "Low stock: Red mug (2 left)"), 1);
	cr_assert_eq(total_of(smtp_dir), 1);
	mp_writer_destroy(w);
}
