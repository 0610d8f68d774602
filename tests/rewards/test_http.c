/* test_http: grpo.http.post against a tiny HTTP server on 127.0.0.1 that
 * this test runs on a thread: success, retried 500s, persistent 500s,
 * timeouts on a silent server and on a slow body, garbage and empty replies,
 * an oversized body and a refused connection. Every failure must come back
 * as r.error in the script, never as a crash or a raised error. */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "rtest.h"
#include "test.h"

static int listen_fd;
static int port;
static atomic_int stop, flaky_count;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits up to s seconds; returns 1 early if the client hung up. */
static int wait_or_hangup(int fd, double s) {
    double end = now_s() + s;
    while (now_s() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) > 0) {
            char c;
            if (recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) return 1;
        }
    }
    return 0;
}

static void send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void reply(int fd, int status, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                     strlen(body));
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

/* Reads the request head and body; fills path, returns the body (static). */
static const char *read_request(int fd, char *path, size_t pn) {
    static char buf[65536];
    size_t len = 0;
    char *end = NULL;
    while (!end && len < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0) return NULL;
        len += (size_t)r;
        buf[len] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    if (!end) return NULL;
    sscanf(buf, "%*s %255s", path);
    (void)pn;
    const char *cl = strcasestr(buf, "Content-Length:");
    size_t want = cl ? (size_t)atol(cl + 15) : 0;
    size_t have = len - (size_t)(end + 4 - buf);
    while (have < want && len < sizeof buf - 1) {
        ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
        have += (size_t)r;
        buf[len] = 0;
    }
    return end + 4;
}

static void handle(int fd) {
    char path[256] = "";
    const char *body = read_request(fd, path, sizeof path);
    if (!body) return;
    if (!strcmp(path, "/ok")) {
        char out[512];
        snprintf(out, sizeof out, "{\"score\": 0.75, \"echo_len\": %zu}", strlen(body));
        reply(fd, 200, out);
    } else if (!strcmp(path, "/echo")) {
        reply(fd, 200, body);
    } else if (!strcmp(path, "/500")) {
        reply(fd, 500, "internal error");
    } else if (!strcmp(path, "/flaky")) {
        if (atomic_fetch_add(&flaky_count, 1) < 2) reply(fd, 503, "busy");
        else reply(fd, 200, "{\"score\": 1}");
    } else if (!strcmp(path, "/404")) {
        reply(fd, 404, "no");
    } else if (!strcmp(path, "/silent")) {
        wait_or_hangup(fd, 5);
    } else if (!strcmp(path, "/slowbody")) {
        const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"score\":";
        send_all(fd, head, strlen(head));
        for (int i = 0; i < 50 && !wait_or_hangup(fd, 0.1); i++) send_all(fd, " ", 1);
    } else if (!strcmp(path, "/garbage")) {
        const char g[] = "\x01\x02 not http at all \xff\xfe\r\n\r\n";
        send_all(fd, g, sizeof g - 1);
    } else if (!strcmp(path, "/notjson")) {
        reply(fd, 200, "<html>hello</html>");
    } else if (!strcmp(path, "/big")) {
        static char big[200001];
        memset(big, 'x', sizeof big - 1);
        reply(fd, 200, big);
    } /* "/close": hang up without a reply */
}

static void *server(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int fd = accept(listen_fd, NULL, NULL);
        if (fd < 0) continue;
        handle(fd);
        shutdown(fd, SHUT_RDWR);
        close(fd);
    }
    return NULL;
}

static int start_server(pthread_t *t) {
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof a) || listen(listen_fd, 16)) return -1;
    socklen_t al = sizeof a;
    getsockname(listen_fd, (struct sockaddr *)&a, &al);
    port = ntohs(a.sin_port);
    return pthread_create(t, NULL, server, NULL);
}

static const char *SCRIPT =
    "return { name = 'judge', score = function(s)\n"
    "  local r = grpo.http.post{ url = s.url, body = { completion = s.completion },\n"
    "                            headers = { ['X-Test'] = '1' }, timeout = s.timeout,\n"
    "                            retries = s.retries, backoff = 0.01, max_bytes = s.max_bytes }\n"
    "  local extras = { ok = r.ok, status = r.status, error = r.error, attempts = r.attempts,\n"
    "                   body_len = #r.body, has_json = r.json ~= nil }\n"
    "  if r.ok and r.json and r.json.score then return r.json.score, extras end\n"
    "  return nil, extras\n"
    "end }\n";

typedef struct Want {
    const char *path;
    double timeout;
    int retries;
    int max_bytes;
    int ok;             /* expect r.ok */
    int status;         /* expected status (-1: any) */
    int attempts;       /* expected attempts (-1: any) */
    const char *error;  /* substring of r.error, NULL: no error */
    double max_s;       /* upper bound on the call's duration */
} Want;

static void run(RewardSet *rs, const Want *w) {
    char url[256], row[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, w->path);
    if (!strcmp(w->path, "refused")) snprintf(url, sizeof url, "http://127.0.0.1:1/x");
    snprintf(row, sizeof row, "{\"url\":\"%s\",\"timeout\":%g,\"retries\":%d,\"max_bytes\":%d}", url, w->timeout,
             w->retries, w->max_bytes ? w->max_bytes : 1 << 20);
    cJSON *j = cJSON_Parse(row);
    RewardSample s = {.prompt = "", .completion = "the completion", .row = j, .prompt_tokens = -1,
                      .completion_tokens = -1};
    RewardResult r;
    Err err = {0};
    double t0 = now_s();
    reward_set_score(rs, &s, 1, &r, NULL, &err);
    double dt = now_s() - t0;
    cJSON *x = r.extras ? cJSON_Parse(r.extras) : NULL;
    CHECK(x != NULL, "%s: no extras (error %s)", w->path, r.error ? r.error : "-");
    if (x) {
        const cJSON *e = cJSON_GetObjectItem(x, "error");
        int ok = cJSON_IsTrue(cJSON_GetObjectItem(x, "ok"));
        int status = (int)cJSON_GetObjectItem(x, "status")->valuedouble;
        int attempts = (int)cJSON_GetObjectItem(x, "attempts")->valuedouble;
        CHECK(ok == w->ok, "%s: ok %d", w->path, ok);
        CHECK(w->status < 0 || status == w->status, "%s: status %d", w->path, status);
        CHECK(w->attempts < 0 || attempts == w->attempts, "%s: attempts %d", w->path, attempts);
        if (w->error)
            CHECK(cJSON_IsString(e) && strstr(e->valuestring, w->error), "%s: error %s", w->path,
                  cJSON_IsString(e) ? e->valuestring : "(none)");
        else
            CHECK(!e, "%s: unexpected error %s", w->path, e->valuestring);
    }
    CHECK(!r.error, "%s: the script failed: %s", w->path, r.error);
    CHECK(dt < w->max_s, "%s: took %.2f s", w->path, dt);
    if (!strcmp(w->path, "/ok") || !strcmp(w->path, "/flaky"))
        CHECK(r.has_value && r.value == (w->path[1] == 'o' ? 0.75 : 1), "%s: value %g", w->path, r.value);
    cJSON_Delete(x);
    cJSON_Delete(j);
    reward_results_clear(&r, 1);
}

int main(void) {
    pthread_t t;
    if (start_server(&t)) TEST_SKIP("cannot listen on 127.0.0.1");
    Err err = {0};
    RewardOpts o = {.workers = 1};
    RewardSet *rs = rt_load("judge.lua", SCRIPT, &o, &err);
    CHECK(rs != NULL, "load: %s", err.msg);
    if (rs) {
        const Want wants[] = {
            {"/ok", 5, 2, 0, 1, 200, 1, NULL, 5},
            {"/flaky", 5, 3, 0, 1, 200, 3, NULL, 5},
            {"/500", 5, 2, 0, 0, 500, 3, "HTTP 500", 5},
            {"/404", 5, 2, 0, 0, 404, 1, "HTTP 404", 5},
            {"/silent", 0.3, 1, 0, 0, 0, 2, "timed out", 3},
            {"/slowbody", 0.3, 0, 0, 0, 0, 1, "timed out", 3},
            {"/garbage", 2, 0, 0, 0, 0, 1, "", 3},
            {"/close", 2, 1, 0, 0, 0, 2, "", 3},
            {"/notjson", 2, 0, 0, 1, 200, 1, NULL, 3},
            {"/big", 2, 2, 1000, 0, 0, 1, "larger than 1000 bytes", 3},
            {"refused", 1, 1, 0, 0, 0, 2, "127.0.0.1:1", 3},
        };
        for (size_t i = 0; i < sizeof wants / sizeof wants[0]; i++) run(rs, &wants[i]);
        /* argument mistakes raise inside the script (contained as a sample error) */
        RewardSet *bad = rt_load("bad.lua", "return { score = function() return grpo.http.post{} end }", &o, &err);
        RewardResult r;
        rt_score1(bad, "x", &r);
        CHECK(r.error && strstr(r.error, "'url' (a string) is required"), "bad args: %s", r.error ? r.error : "-");
        reward_results_clear(&r, 1);
        reward_set_free(bad);
    }
    reward_set_free(rs);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    close(listen_fd);
    return test_report();
}
