/* nats_auth.c — the roles' NATS permissions, credentials files and the
 * server's authorization block (see nats_auth.h, ADR 014).
 *
 * The subjects come from the code of each role: commands are requests on
 * orion.cmd.<aggregate>.<id> answered on the requester's _INBOX; events and
 * snapshots are published on orion.evt.<aggregate>.<id> and
 * orion.snap.<aggregate>.<id> (JetStream acks the publish to an _INBOX);
 * reads go through the JetStream API of the two streams (stream info, message
 * get, direct get, ordered consumers with their flow control), and the
 * consumers of the saga, payment and mail roles are durable pull consumers
 * (create, next, ack) that only their role may use. */
#include "nats_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define FILE_MAX (64 * 1024)

/* Every role verifies both streams when it connects (es_store_open). */
#define STREAM_INFO "$JS.API.STREAM.INFO.ORION_EVT", "$JS.API.STREAM.INFO.ORION_SNAP"
/* Reading events: last message of a subject, direct gets, ordered consumers
 * (created without a name, deleted by name on unsubscribe, flow control). */
#define EVT_READ                                                                                             \
	"$JS.API.STREAM.MSG.GET.ORION_EVT", "$JS.API.DIRECT.GET.ORION_EVT",                                  \
	        "$JS.API.DIRECT.GET.ORION_EVT.>", "$JS.API.CONSUMER.CREATE.ORION_EVT",                       \
	        "$JS.API.CONSUMER.INFO.ORION_EVT.*", "$JS.API.CONSUMER.DELETE.ORION_EVT.*",                  \
	        "$JS.FC.ORION_EVT.>"
/* Reading snapshots (the actors). */
#define SNAP_READ                                                                                            \
	"$JS.API.STREAM.MSG.GET.ORION_SNAP", "$JS.API.DIRECT.GET.ORION_SNAP",                                \
	        "$JS.API.DIRECT.GET.ORION_SNAP.>"
/* A durable pull consumer of a role: create or update, fetch, ack. */
#define DURABLE(name)                                                                                        \
	"$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT." name, "$JS.API.CONSUMER.CREATE.ORION_EVT." name,        \
	        "$JS.API.CONSUMER.CREATE.ORION_EVT." name ".>", "$JS.API.CONSUMER.MSG.NEXT.ORION_EVT." name, \
	        "$JS.ACK.ORION_EVT." name ".>"
/* The events and snapshots of an aggregate. */
#define WRITER(aggregate) "orion.evt." aggregate ".>", "orion.snap." aggregate ".>"
/* No role deletes another's durable (the ordered consumers' deletes are allowed by name). */
#define NO_DURABLE_DELETE                                                                                    \
	"$JS.API.CONSUMER.DELETE.ORION_EVT.orion_checkout",                                                  \
	        "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_payment",                                           \
	        "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_mail",                                              \
	        "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_mail_alerts",                                       \
	        "$JS.API.CONSUMER.DELETE.ORION_EVT.orion_mail_resends"
#define INBOX "_INBOX.>"
/* The keystore of the customers' data keys (ADR 027): reading keys, and
 * storing a new one (the gateway, at registration). Only ops (and the
 * erasure, as ops) erases one. */
#define KEYS_READ                                                                                            \
	"$JS.API.STREAM.INFO.ORION_KEYS", "$JS.API.STREAM.MSG.GET.ORION_KEYS",                               \
	        "$JS.API.DIRECT.GET.ORION_KEYS", "$JS.API.DIRECT.GET.ORION_KEYS.>"
#define KEYS_CREATE "orion.keys.data.*"

static const char *const all[] = {">", NULL};
static const char *const inbox[] = {INBOX, NULL};
static const char *const no_durable_delete[] = {NO_DURABLE_DELETE, NULL};

/* The gateway's commands: the aggregates its routes act on and the payment
 * service ("pay"); never the payment aggregate's own or the mail log's. */
static const char *const gateway_pub[] = {"orion.cmd.cart.*",
                                          "orion.cmd.order.*",
                                          "orion.cmd.stock.*",
                                          "orion.cmd.product.*",
                                          "orion.cmd.sku.*",
                                          "orion.cmd.user.*",
                                          "orion.cmd.pay.*",
                                          "orion.cmd.mail.*",
                                          STREAM_INFO,
                                          EVT_READ,
                                          KEYS_READ,
                                          KEYS_CREATE,
                                          NULL};
static const char *const gateway_pub_deny[] = {"orion.evt.>", "orion.snap.>", NO_DURABLE_DELETE, NULL};
static const char *const projector_pub[] = {STREAM_INFO, EVT_READ, NULL};
static const char *const cart_pub[] = {WRITER("cart"), STREAM_INFO, EVT_READ, SNAP_READ, NULL};
static const char *const cart_sub[] = {"orion.cmd.cart.*", INBOX, NULL};
static const char *const order_pub[] = {WRITER("order"), STREAM_INFO, EVT_READ, SNAP_READ, NULL};
static const char *const order_sub[] = {"orion.cmd.order.*", INBOX, NULL};
static const char *const stock_pub[] = {WRITER("stock"), STREAM_INFO, EVT_READ, SNAP_READ, NULL};
static const char *const stock_sub[] = {"orion.cmd.stock.*", INBOX, NULL};
static const char *const product_pub[] = {WRITER("product"), WRITER("sku"), STREAM_INFO,
                                          EVT_READ,          SNAP_READ,     NULL};
static const char *const product_sub[] = {"orion.cmd.product.*", "orion.cmd.sku.*", INBOX, NULL};
static const char *const user_pub[] = {WRITER("user"), STREAM_INFO, EVT_READ, SNAP_READ, NULL};
static const char *const user_sub[] = {"orion.cmd.user.*", INBOX, NULL};
static const char *const checkout_pub[] = {"orion.cmd.stock.*",
                                           "orion.cmd.order.*",
                                           "orion.cmd.cart.*",
                                           STREAM_INFO,
                                           EVT_READ,
                                           DURABLE("orion_checkout"),
                                           NULL};
static const char *const payment_pub[] = {WRITER("payment"),
                                          "orion.cmd.payment.*",
                                          "orion.cmd.order.*",
                                          STREAM_INFO,
                                          EVT_READ,
                                          SNAP_READ,
                                          DURABLE("orion_payment"),
                                          NULL};
static const char *const payment_sub[] = {"orion.cmd.payment.*", "orion.cmd.pay.*", INBOX, NULL};
static const char *const mail_pub[] = {WRITER("mail"),
                                       STREAM_INFO,
                                       EVT_READ,
                                       KEYS_READ,
                                       DURABLE("orion_mail"),
                                       DURABLE("orion_mail_alerts"),
                                       DURABLE("orion_mail_resends"),
                                       NULL};
static const char *const mail_pub_deny[] = {"orion.cmd.>", NO_DURABLE_DELETE, NULL};
/* RequestResend on the delivery logs (the mail role serves the mail aggregate) */
static const char *const mail_sub[] = {"orion.cmd.mail.*", INBOX, NULL};
static const char *const timers_pub[] = {"orion.cmd.order.*", STREAM_INFO, NULL};

static const struct {
	const char *name;
	na_permissions perms;
} roles[NA_ROLE_COUNT] = {
        [NA_OPS] = {"ops", {all, NULL, all, NULL, false}},
        [NA_GATEWAY] = {"gateway", {gateway_pub, gateway_pub_deny, inbox, NULL, false}},
        [NA_PROJECTOR] = {"projector", {projector_pub, no_durable_delete, inbox, NULL, false}},
        [NA_CART] = {"cart", {cart_pub, no_durable_delete, cart_sub, NULL, true}},
        [NA_ORDER] = {"order", {order_pub, no_durable_delete, order_sub, NULL, true}},
        [NA_STOCK] = {"stock", {stock_pub, no_durable_delete, stock_sub, NULL, true}},
        [NA_PRODUCT] = {"product", {product_pub, no_durable_delete, product_sub, NULL, true}},
        [NA_USER] = {"user", {user_pub, no_durable_delete, user_sub, NULL, true}},
        [NA_CHECKOUT] = {"checkout", {checkout_pub, no_durable_delete, inbox, NULL, false}},
        [NA_PAYMENT] = {"payment", {payment_pub, no_durable_delete, payment_sub, NULL, true}},
        [NA_MAIL] = {"mail", {mail_pub, mail_pub_deny, mail_sub, NULL, true}},
        [NA_TIMERS] = {"timers", {timers_pub, no_durable_delete, inbox, NULL, false}},
};

const char *na_role_name(na_role r)
{
	return (unsigned)r < NA_ROLE_COUNT ? roles[r].name : NULL;
}

bool na_role_parse(const char *name, na_role *out)
{
	for (unsigned i = 0; name != NULL && i < NA_ROLE_COUNT; i++)
		if (strcmp(roles[i].name, name) == 0) {
			*out = (na_role)i;
			return true;
		}
	return false;
}

const na_permissions *na_role_permissions(na_role r)
{
	return (unsigned)r < NA_ROLE_COUNT ? &roles[r].perms : NULL;
}

/* Printable ASCII without spaces: what a credentials line can hold. */
static bool token_valid(const char *s, size_t len, size_t cap)
{
	if (len == 0 || len >= cap)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	return true;
}

void na_credentials_wipe(na_credentials *c)
{
	sodium_memzero(c, sizeof *c);
}

/* The next whitespace-separated token of [*p, end) (out params). */
static bool next_token(const char **p, const char *end, const char **tok, size_t *len)
{
	while (*p < end && (**p == ' ' || **p == '\t' || **p == '\r'))
		(*p)++;
	*tok = *p;
	while (*p < end && **p != ' ' && **p != '\t' && **p != '\r')
		(*p)++;
	*len = (size_t)(*p - *tok);
	return *len > 0;
}

orn_rc na_credentials_parse(const char *text, size_t len, na_credentials *out)
{
	const char *end = text + len;
	na_credentials_wipe(out);
	for (const char *line = text; line < end;) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *line_end = nl != NULL ? nl : end;
		const char *p = line, *tok[4];
		size_t tok_len[4];
		int n = 0;
		while (n < 4 && next_token(&p, line_end, &tok[n], &tok_len[n]))
			n++;
		line = nl != NULL ? nl + 1 : end;
		if (n == 0 || tok[0][0] == '#')
			continue;
		char name[32];
		na_role role;
		if (n != 3 || tok_len[0] >= sizeof name)
			goto bad;
		memcpy(name, tok[0], tok_len[0]);
		name[tok_len[0]] = '\0';
		if (!na_role_parse(name, &role) || out->role[role].present)
			goto bad;
		if (!token_valid(tok[1], tok_len[1], NA_USER_MAX) ||
		    !token_valid(tok[2], tok_len[2], NA_PASSWORD_MAX)) {
			na_credentials_wipe(out);
			return ORN_EINVAL;
		}
		na_credential *c = &out->role[role];
		memcpy(c->user, tok[1], tok_len[1]);
		memcpy(c->password, tok[2], tok_len[2]);
		c->present = true;
	}
	return ORN_OK;
bad:
	na_credentials_wipe(out);
	return ORN_EDECODE;
}

orn_rc na_credentials_load(const char *path, na_credentials *out)
{
	char *text = NULL;
	orn_rc rc = ORN_OK;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? ORN_ENOTFOUND : ORN_EIO;
	if (fstat(fd, &sb) != 0 || sb.st_size > FILE_MAX) {
		rc = ORN_EIO;
		goto done;
	}
	if ((sb.st_mode & 077) != 0)
		log_warn("the NATS credentials file is readable by other users", "path", path);
	text = malloc((size_t)sb.st_size + 1);
	if (text == NULL) {
		rc = ORN_ENOMEM;
		goto done;
	}
	size_t got = 0;
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, text + got, (size_t)sb.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	rc = na_credentials_parse(text, got, out);
	if (rc != ORN_OK)
		log_error("malformed NATS credentials file (lines: ROLE USER PASSWORD)", "path", path);
done:
	if (text != NULL) {
		sodium_memzero(text, (size_t)sb.st_size);
		free(text);
	}
	close(fd);
	return rc;
}

/* Writes text to path through a temporary file of mode 0600 and a rename. */
static orn_rc write_private(const char *path, const char *text, bool exclusive)
{
	char tmp[4096];
	orn_rc rc = ORN_OK;
	int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	if (n < 0 || (size_t)n >= sizeof tmp)
		return ORN_EINVAL;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return ORN_EIO;
	size_t len = strlen(text), done = 0;
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = ORN_EIO;
			break;
		}
		done += (size_t)w;
	}
	if (rc == ORN_OK && fsync(fd) != 0)
		rc = ORN_EIO;
	close(fd);
	/* link() fails if path exists: a concurrent first start keeps the first file. */
	if (rc == ORN_OK && (exclusive ? link(tmp, path) : rename(tmp, path)) != 0)
		rc = exclusive && errno == EEXIST ? ORN_ECONFLICT : ORN_EIO;
	unlink(tmp);
	return rc;
}

orn_rc na_credentials_ensure(const char *path, na_credentials *out)
{
	orn_rc rc = na_credentials_load(path, out);
	if (rc != ORN_ENOTFOUND)
		return rc;
	size_t cap = 128 + NA_ROLE_COUNT * (32 + NA_USER_MAX + NA_PASSWORD_MAX);
	char *text = calloc(1, cap);
	if (text == NULL)
		return ORN_ENOMEM;
	size_t len =
	        (size_t)snprintf(text, cap, "# Orion NATS credentials: ROLE USER PASSWORD (keep private)\n");
	na_credentials_wipe(out);
	for (unsigned i = 0; i < NA_ROLE_COUNT; i++) {
		unsigned char random[24];
		na_credential *c = &out->role[i];
		randombytes_buf(random, sizeof random);
		snprintf(c->user, sizeof c->user, "orion-%s", roles[i].name);
		sodium_bin2base64(c->password, sizeof c->password, random, sizeof random,
		                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		sodium_memzero(random, sizeof random);
		c->present = true;
		len += (size_t)snprintf(text + len, cap - len, "%s %s %s\n", roles[i].name, c->user,
		                        c->password);
	}
	rc = write_private(path, text, true);
	sodium_memzero(text, cap);
	free(text);
	if (rc == ORN_ECONFLICT) /* created meanwhile by another process */
		return na_credentials_load(path, out);
	if (rc != ORN_OK) {
		na_credentials_wipe(out);
		log_error("cannot write the NATS credentials file", "path", path);
		return rc;
	}
	log_info("NATS credentials generated", "path", path);
	return ORN_OK;
}

/* A growing text buffer; on allocation failure it stays failed. */
typedef struct text_buf {
	char *data;
	size_t len, cap;
	bool failed;
} text_buf;

static void put(text_buf *b, const char *s, size_t n)
{
	if (b->failed)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (b->len + n + 1 > cap)
			cap *= 2;
		char *data = malloc(cap);
		if (data == NULL) {
			b->failed = true;
			return;
		}
		if (b->data != NULL) {
			memcpy(data, b->data, b->len);
			sodium_memzero(b->data, b->cap);
			free(b->data);
		}
		b->data = data;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void puts_(text_buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* A double-quoted string with '"' and '\' escaped. */
static void put_quoted(text_buf *b, const char *s)
{
	put(b, "\"", 1);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			put(b, "\\", 1);
		put(b, s, 1);
	}
	put(b, "\"", 1);
}

static void put_list(text_buf *b, const char *key, const char *const *list)
{
	if (list == NULL || list[0] == NULL)
		return;
	puts_(b, "        ");
	puts_(b, key);
	puts_(b, ": [");
	for (size_t i = 0; list[i] != NULL; i++) {
		if (i > 0)
			puts_(b, ", ");
		put_quoted(b, list[i]);
	}
	puts_(b, "]\n");
}

char *na_render_authorization(const na_credentials *c)
{
	text_buf b = {0};
	unsigned users = 0;
	puts_(&b, "# Orion: one NATS user per role (ADR 014), generated from the role table.\n"
	          "authorization {\n  users: [\n");
	for (unsigned i = 0; i < NA_ROLE_COUNT; i++) {
		const na_credential *u = &c->role[i];
		const na_permissions *p = &roles[i].perms;
		if (!u->present)
			continue;
		users++;
		puts_(&b, "    # role ");
		puts_(&b, roles[i].name);
		puts_(&b, "\n    {user: ");
		put_quoted(&b, u->user);
		puts_(&b, ", password: ");
		put_quoted(&b, u->password);
		puts_(&b, ", permissions: {\n      publish: {\n");
		put_list(&b, "allow", p->pub_allow);
		put_list(&b, "deny", p->pub_deny);
		puts_(&b, "      }\n      subscribe: {\n");
		put_list(&b, "allow", p->sub_allow);
		put_list(&b, "deny", p->sub_deny);
		puts_(&b, "      }\n");
		if (p->allow_responses)
			puts_(&b, "      allow_responses: true\n");
		puts_(&b, "    }}\n");
	}
	puts_(&b, "  ]\n}\n");
	if (b.failed || users == 0) {
		if (b.data != NULL) {
			sodium_memzero(b.data, b.cap);
			free(b.data);
		}
		return NULL;
	}
	return b.data;
}

orn_rc na_write_server_config(const na_credentials *c, const char *path)
{
	char *text = na_render_authorization(c);
	if (text == NULL)
		return ORN_ENOMEM;
	size_t len = strlen(text);
	orn_rc rc = write_private(path, text, false);
	sodium_memzero(text, len);
	free(text);
	return rc;
}

orn_rc na_conn_apply(const na_conn *c, natsOptions *opts)
{
	if (c == NULL)
		return ORN_OK;
	if (c->user != NULL && natsOptions_SetUserInfo(opts, c->user, c->password) != NATS_OK)
		return ORN_EINVAL;
	bool tls = c->tls_ca != NULL || c->tls_cert != NULL || c->tls_key != NULL;
	if (!tls)
		return ORN_OK;
	if (natsOptions_SetSecure(opts, true) != NATS_OK)
		return ORN_EINVAL;
	if (c->tls_ca != NULL && natsOptions_LoadCATrustedCertificates(opts, c->tls_ca) != NATS_OK) {
		log_error("cannot load the NATS TLS CA", "path", c->tls_ca, "error", nats_GetLastError(NULL));
		return ORN_EINVAL;
	}
	if ((c->tls_cert != NULL) != (c->tls_key != NULL)) {
		log_error("ORION_NATS_TLS_CERT and ORION_NATS_TLS_KEY go together");
		return ORN_EINVAL;
	}
	if (c->tls_cert != NULL &&
	    natsOptions_LoadCertificatesChain(opts, c->tls_cert, c->tls_key) != NATS_OK) {
		log_error("cannot load the NATS TLS client certificate", "cert", c->tls_cert, "key",
		          c->tls_key, "error", nats_GetLastError(NULL));
		return ORN_EINVAL;
	}
	return ORN_OK;
}
