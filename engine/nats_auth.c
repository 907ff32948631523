/* nats_auth.c — the roles' NATS permissions, credentials files and the
 * server's authorization block (see nats_auth.h, ADR 014).
 *
 * The subjects are the engine's: commands are requests on
 * orion.cmd.<aggregate>.<id> answered on the requester's _INBOX; commits and
 * snapshots are published on orion.evt.<aggregate>.<id> and
 * orion.snap.<aggregate>.<id> (JetStream acks the publish to an _INBOX);
 * reads go through the JetStream API of the two streams (stream info, message
 * get, direct get, ordered consumers with their flow control), and durable
 * consumers are pulled (create, next, ack) by their role only. */
#include "nats_auth-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define FILE_MAX       (64 * 1024)
#define SUBJECT_MAX    160
#define PERMISSION_MAX 256 /* subjects in one list */

/* Every role verifies both streams when it connects (es_store_open). */
static const char *const stream_info[] = {"$JS.API.STREAM.INFO.ORION_EVT", "$JS.API.STREAM.INFO.ORION_SNAP",
                                          NULL};
/* Reading events: last message of a subject, direct gets, ordered consumers
 * (created without a name, deleted by name on unsubscribe, flow control). */
static const char *const evt_read[] = {"$JS.API.STREAM.MSG.GET.ORION_EVT",
                                       "$JS.API.DIRECT.GET.ORION_EVT",
                                       "$JS.API.DIRECT.GET.ORION_EVT.>",
                                       "$JS.API.CONSUMER.CREATE.ORION_EVT",
                                       "$JS.API.CONSUMER.INFO.ORION_EVT.*",
                                       "$JS.API.CONSUMER.DELETE.ORION_EVT.*",
                                       "$JS.FC.ORION_EVT.>",
                                       NULL};
/* Reading snapshots (the actors). */
static const char *const snap_read[] = {"$JS.API.STREAM.MSG.GET.ORION_SNAP", "$JS.API.DIRECT.GET.ORION_SNAP",
                                        "$JS.API.DIRECT.GET.ORION_SNAP.>", NULL};
/* Reading another stream by subject (the keystore). */
static const char *const stream_read[] = {"$JS.API.STREAM.INFO.%s", "$JS.API.STREAM.MSG.GET.%s",
                                          "$JS.API.DIRECT.GET.%s", "$JS.API.DIRECT.GET.%s.>", NULL};
/* A durable pull consumer of a role: create or update, pull, ack. */
static const char *const durable_subjects[] = {"$JS.API.CONSUMER.DURABLE.CREATE.ORION_EVT.%s",
                                               "$JS.API.CONSUMER.CREATE.ORION_EVT.%s",
                                               "$JS.API.CONSUMER.CREATE.ORION_EVT.%s.>",
                                               "$JS.API.CONSUMER.MSG.NEXT.ORION_EVT.%s",
                                               "$JS.ACK.ORION_EVT.%s.>",
                                               NULL};
#define INBOX "_INBOX.>"

/* ---- permissions ---- */

/* A list being built; on allocation failure it stays failed. */
typedef struct subjects {
	const char **items;
	size_t count;
	bool failed;
} subjects;

/* Adds pattern with its "%s" (if any) replaced by arg. */
static void add(subjects *l, const char *pattern, const char *arg)
{
	char subject[SUBJECT_MAX];
	const char *hole = strstr(pattern, "%s");
	if (l->failed)
		return;
	if (l->items == NULL && (l->items = calloc(PERMISSION_MAX + 1, sizeof *l->items)) == NULL) {
		l->failed = true;
		return;
	}
	if (hole != NULL)
		snprintf(subject, sizeof subject, "%.*s%s%s", (int)(hole - pattern), pattern, arg, hole + 2);
	else
		snprintf(subject, sizeof subject, "%s", pattern);
	if (l->count >= PERMISSION_MAX || (l->items[l->count] = strdup(subject)) == NULL) {
		l->failed = true;
		return;
	}
	l->count++;
}

static void add_all(subjects *l, const char *const *list)
{
	for (size_t i = 0; list != NULL && list[i] != NULL; i++)
		add(l, list[i], "");
}

/* Each subject of fmts with name, for each name of names. */
static void add_each(subjects *l, const char *const *fmts, const char *const *names)
{
	for (size_t n = 0; names != NULL && names[n] != NULL; n++)
		for (size_t f = 0; fmts[f] != NULL; f++)
			add(l, fmts[f], names[n]);
}

static void list_free(const char **items)
{
	for (size_t i = 0; items != NULL && items[i] != NULL; i++)
		free((char *)items[i]);
	free(items);
}

void na_permissions_dispose(na_permissions *p)
{
	list_free(p->pub_allow);
	list_free(p->pub_deny);
	list_free(p->sub_allow);
	memset(p, 0, sizeof *p);
}

/* out's lists from those built (theirs now); ORN_ENOMEM if one could not be. */
static orn_rc permissions_set(na_permissions *out, subjects *pub, subjects *deny, subjects *sub)
{
	out->pub_allow = pub->items;
	out->pub_deny = deny->items;
	out->sub_allow = sub->items;
	if (pub->failed || deny->failed || sub->failed) {
		na_permissions_dispose(out);
		return ORN_ENOMEM;
	}
	return ORN_OK;
}

static const char *const command[] = {"orion.cmd.%s.*", NULL};

/* Starts out's lists (out wiped); an `all` role's are everything: true then. */
static bool start_lists(const na_grants *g, na_permissions *out, subjects *pub, subjects *sub)
{
	memset(out, 0, sizeof *out);
	if (!g->all)
		return false;
	add(pub, ">", "");
	add(sub, ">", "");
	return true;
}

orn_rc na_permissions_of(const na_role *role, const na_role *roles, size_t count, na_permissions *out)
{
	static const char *const writer[] = {"orion.evt.%s.>", "orion.snap.%s.>", NULL};
	static const char *const no_delete[] = {"$JS.API.CONSUMER.DELETE.ORION_EVT.%s", NULL};
	const na_grants *g = role->grants;
	subjects pub = {0}, deny = {0}, sub = {0};
	if (!start_lists(g, out, &pub, &sub)) {
		add_each(&pub, writer, g->appends);
		add_each(&pub, command, g->sends);
		add_all(&pub, stream_info);
		if (g->reads)
			add_all(&pub, evt_read);
		if (g->reads_snapshots)
			add_all(&pub, snap_read);
		add_each(&pub, durable_subjects, g->durables);
		add_each(&pub, stream_read, g->reads_streams);
		add_all(&pub, g->publishes);
		if (g->never_appends) {
			add(&deny, "orion.evt.>", "");
			add(&deny, "orion.snap.>", "");
		}
		if (g->never_sends)
			add(&deny, "orion.cmd.>", "");
		for (size_t i = 0; i < count; i++) /* no role deletes a durable, its own included */
			add_each(&deny, no_delete, roles[i].grants->durables);
		add(&sub, INBOX, "");
	}
	return permissions_set(out, &pub, &deny, &sub);
}

bool na_role_serves(const na_role *role)
{
	const na_grants *g = role->grants;
	return g->all || (g->serves != NULL && g->serves[0] != NULL);
}

orn_rc na_serve_permissions_of(const na_role *role, na_permissions *out)
{
	const na_grants *g = role->grants;
	subjects pub = {0}, deny = {0}, sub = {0};
	if (!start_lists(g, out, &pub, &sub)) {
		add(&deny, ">", ""); /* its answers go out by the response permission alone */
		add_each(&sub, command, g->serves);
		out->allow_responses = true;
	}
	return permissions_set(out, &pub, &deny, &sub);
}

orn_rc na_serve_user(const char *user, const char *password, char out_user[NA_USER_MAX],
                     char out_password[NA_PASSWORD_MAX])
{
	static const char context[] = "orion nats serve user v1";
	unsigned char derived[24];
	int n = snprintf(out_user, NA_USER_MAX, "%s-serve", user);
	if (n < 0 || n >= NA_USER_MAX || password == NULL)
		return ORN_EINVAL;
	crypto_generichash(derived, sizeof derived, (const unsigned char *)password, strlen(password),
	                   (const unsigned char *)context, sizeof context - 1);
	sodium_bin2base64(out_password, NA_PASSWORD_MAX, derived, sizeof derived,
	                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(derived, sizeof derived);
	return ORN_OK;
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

const na_credential *na_credentials_find(const na_credentials *c, const char *role)
{
	for (size_t i = 0; c != NULL && role != NULL && i < c->count; i++)
		if (strcmp(c->items[i].role, role) == 0)
			return &c->items[i];
	return NULL;
}

static bool listed(const char *const *names, const char *name)
{
	for (size_t i = 0; names != NULL && names[i] != NULL; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

orn_rc na_credentials_parse(const char *text, size_t len, const char *const *roles, na_credentials *out)
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
		char name[NA_ROLE_MAX];
		if (n != 3 || tok_len[0] >= sizeof name)
			goto bad;
		memcpy(name, tok[0], tok_len[0]);
		name[tok_len[0]] = '\0';
		if ((roles != NULL && !listed(roles, name)) || na_credentials_find(out, name) != NULL ||
		    out->count >= NA_ROLES_MAX)
			goto bad;
		if (!token_valid(tok[1], tok_len[1], NA_USER_MAX) ||
		    !token_valid(tok[2], tok_len[2], NA_PASSWORD_MAX)) {
			na_credentials_wipe(out);
			return ORN_EINVAL;
		}
		na_credential *c = &out->items[out->count++];
		memcpy(c->role, name, tok_len[0] + 1);
		memcpy(c->user, tok[1], tok_len[1]);
		memcpy(c->password, tok[2], tok_len[2]);
	}
	return ORN_OK;
bad:
	na_credentials_wipe(out);
	return ORN_EDECODE;
}

orn_rc na_credentials_load(const char *path, const char *const *roles, na_credentials *out)
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
	rc = na_credentials_parse(text, got, roles, out);
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

orn_rc na_credentials_ensure(const char *path, const char *const *roles, na_credentials *out)
{
	orn_rc rc = na_credentials_load(path, roles, out);
	if (rc != ORN_ENOTFOUND)
		return rc;
	size_t cap = 128 + NA_ROLES_MAX * (NA_ROLE_MAX + NA_USER_MAX + NA_PASSWORD_MAX);
	char *text = calloc(1, cap);
	if (text == NULL)
		return ORN_ENOMEM;
	size_t len =
	        (size_t)snprintf(text, cap, "# Orion NATS credentials: ROLE USER PASSWORD (keep private)\n");
	na_credentials_wipe(out);
	for (size_t i = 0; roles[i] != NULL && out->count < NA_ROLES_MAX; i++) {
		unsigned char random[24];
		na_credential *c = &out->items[out->count++];
		randombytes_buf(random, sizeof random);
		snprintf(c->role, sizeof c->role, "%s", roles[i]);
		snprintf(c->user, sizeof c->user, "orion-%s", roles[i]);
		sodium_bin2base64(c->password, sizeof c->password, random, sizeof random,
		                  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
		sodium_memzero(random, sizeof random);
		len += (size_t)snprintf(text + len, cap - len, "%s %s %s\n", c->role, c->user, c->password);
	}
	rc = write_private(path, text, true);
	sodium_memzero(text, cap);
	free(text);
	if (rc == ORN_ECONFLICT) /* created meanwhile by another process */
		return na_credentials_load(path, roles, out);
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

static void put_list(text_buf *b, const char *key, const char **list)
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

/* One user of the authorization block. */
static void put_user(text_buf *b, const char *role, const char *what, const char *user, const char *password,
                     const na_permissions *p)
{
	puts_(b, "    # role ");
	puts_(b, role);
	puts_(b, what);
	puts_(b, "\n    {user: ");
	put_quoted(b, user);
	puts_(b, ", password: ");
	put_quoted(b, password);
	puts_(b, ", permissions: {\n      publish: {\n");
	put_list(b, "allow", p->pub_allow);
	put_list(b, "deny", p->pub_deny);
	puts_(b, "      }\n      subscribe: {\n");
	put_list(b, "allow", p->sub_allow);
	puts_(b, "      }\n");
	if (p->allow_responses)
		puts_(b, "      allow_responses: true\n");
	puts_(b, "    }}\n");
}

char *na_render_authorization(const na_credentials *c, const na_role *roles, size_t count)
{
	text_buf b = {0};
	unsigned users = 0;
	puts_(&b, "# Orion: one NATS user per role (ADR 014), generated from the roles' grants.\n"
	          "authorization {\n  users: [\n");
	for (size_t i = 0; i < count; i++) {
		const na_credential *u = na_credentials_find(c, roles[i].name);
		na_permissions p;
		if (u == NULL)
			continue;
		if (na_permissions_of(&roles[i], roles, count, &p) != ORN_OK) {
			b.failed = true;
			break;
		}
		users++;
		put_user(&b, roles[i].name, "", u->user, u->password, &p);
		na_permissions_dispose(&p);
		if (!na_role_serves(&roles[i]))
			continue;
		char user[NA_USER_MAX], password[NA_PASSWORD_MAX];
		if (na_serve_user(u->user, u->password, user, password) != ORN_OK ||
		    na_serve_permissions_of(&roles[i], &p) != ORN_OK) {
			b.failed = true;
			break;
		}
		put_user(&b, roles[i].name, " (its commands)", user, password, &p);
		sodium_memzero(password, sizeof password);
		na_permissions_dispose(&p);
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

orn_rc na_write_server_config(const na_credentials *c, const na_role *roles, size_t count, const char *path)
{
	char *text = na_render_authorization(c, roles, count);
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
