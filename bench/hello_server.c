/* hello_server.c — the ceiling for scripts/bench-catalog: a bare libevent
 * evhttp server that answers GET / with 200 "hello\n" (text/plain).
 *
 *   hello_server PORT     listens on 127.0.0.1:PORT
 *
 * One thread, one event loop, like Orion's gateway; no routing, no JSON, no
 * read model. Anything other than GET / gets 404. SIGTERM or SIGINT stops the
 * loop; the process then exits with status 0. It prints "hello_server
 * listening on 127.0.0.1:PORT" once the socket is bound. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static const char HELLO[] = "hello\n";

static void on_request(struct evhttp_request *req, void *arg)
{
	(void)arg;
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || !path || strcmp(path, "/") != 0) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
	evbuffer_add_reference(evhttp_request_get_output_buffer(req), HELLO, sizeof HELLO - 1, NULL, NULL);
	evhttp_send_reply(req, HTTP_OK, "OK", NULL);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: hello_server PORT\n");
		return 2;
	}
	char *end = NULL;
	errno = 0;
	long port = strtol(argv[1], &end, 10);
	if (errno != 0 || !end || *end != '\0' || port < 1 || port > 65535) {
		fprintf(stderr, "hello_server: bad port '%s'\n", argv[1]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);

	struct event_base *base = event_base_new();
	struct evhttp *http = base ? evhttp_new(base) : NULL;
	if (!http) {
		fprintf(stderr, "hello_server: cannot create the event loop\n");
		return 1;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(http, on_request, NULL);
	if (!evhttp_bind_socket_with_handle(http, "127.0.0.1", (ev_uint16_t)port)) {
		fprintf(stderr, "hello_server: cannot listen on 127.0.0.1:%ld\n", port);
		return 1;
	}
	struct event *term = evsignal_new(base, SIGTERM, on_signal, base);
	struct event *intr = evsignal_new(base, SIGINT, on_signal, base);
	if (!term || !intr || event_add(term, NULL) != 0 || event_add(intr, NULL) != 0) {
		fprintf(stderr, "hello_server: cannot install the signal handlers\n");
		return 1;
	}
	printf("hello_server listening on 127.0.0.1:%ld\n", port);
	fflush(stdout);

	int rc = event_base_dispatch(base);
	event_free(term);
	event_free(intr);
	evhttp_free(http);
	event_base_free(base);
	return rc < 0 ? 1 : 0;
}
