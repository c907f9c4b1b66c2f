/*
 * flatnet-cni-shim: the native front end of the flatnet CNI plugin (type "flatnet").
 *
 * A runtime starts one plugin process per call, three per container for podman (VERSION, ADD,
 * DEL). Starting Node costs 25 to 35 ms each time; this front end starts in about one. It does
 * no CNI work itself: it hands the call, as it came, to the agent, which runs the plugin (the
 * TypeScript of @flatnet/cni, the same code as the Node plugin) and returns what the plugin
 * would have printed and its exit status.
 *
 *   runtime --env CNI_*, stdin--> shim --POST /v1/cni/exec (agent socket)--> agent: runPlugin()
 *                                  |  <--{exitCode, stdout, stderr} (base64)--'
 *                                  |
 *                                  '--(agent not reachable, input too large to forward,
 *                                      an answer it cannot read)--> exec flatnet-js beside
 *                                      this file: the Node plugin, same environment, the same
 *                                      stdin bytes (from a memfd); it answers every error case
 *                                      the spec's way (e.g. code 101, agent unreachable)
 *
 * The socket is the network config's top-level "agentSocket" (default below, the same as
 * NET_CONFIG_DEFAULTS.agentSocket); a config this scanner cannot read still goes to the default
 * socket, whose agent then reports what is wrong with it exactly as the Node plugin would.
 *
 * Wire format (HTTP/1.1 over the unix socket, one request per connection):
 *
 *   POST /v1/cni/exec          {"env":{"CNI_COMMAND":"ADD",...every CNI_* variable},
 *                               "stdin":"<base64 of standard input>"}
 *   200                        {"exitCode":0,"stdout":"<base64>","stderr":"<base64>"}
 *
 * Every value in the answer is a number or base64, so no JSON string escape needs decoding.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Protocol constants: must match @flatnet/cni (net-config.ts, stdin.ts) and the agent's API. */
#define DEFAULT_AGENT_SOCKET "/run/flatnet/agent.sock"
#define EXEC_PATH "/v1/cni/exec"
/* The Node plugin's bound on standard input (STDIN_DEFAULTS.maxBytes). */
#define STDIN_MAX_BYTES (4 * 1024 * 1024)
#define STDIN_TIMEOUT_MS 10000
/* The agent's request bound is 1 MiB; base64 adds a third, env and framing the rest. */
#define FORWARD_MAX_STDIN (640 * 1024)
#define FALLBACK_PROGRAM "flatnet-js"

/* Tuning constants. */
#define ANSWER_MAX_BYTES (8 * 1024 * 1024)
/* The plugin's own timeouts (timeoutMs + policyWaitMs) end a call long before this. */
#define ANSWER_TIMEOUT_MS 300000
#define CONNECT_TIMEOUT_MS 2000

extern char **environ;

struct buf {
  char *data;
  size_t len, cap;
};

static int buf_reserve(struct buf *b, size_t more) {
  if (b->len + more <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + more) cap *= 2;
  char *d = realloc(b->data, cap);
  if (!d) return -1;
  b->data = d;
  b->cap = cap;
  return 0;
}

static int buf_add(struct buf *b, const void *p, size_t n) {
  if (buf_reserve(b, n)) return -1;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

static int buf_str(struct buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd to be ready for `events` until `deadline`; 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline) {
  for (;;) {
    long long left = deadline - now_ms();
    if (left <= 0) return 0;
    struct pollfd p = {.fd = fd, .events = events};
    int r = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
    if (r > 0) return 1;
    if (r == 0) return 0;
    if (errno != EINTR) return -1;
  }
}

enum stdin_state { STDIN_OK, STDIN_TOO_LARGE, STDIN_TIMEOUT, STDIN_ERROR };

/* Reads standard input to its end, at most STDIN_MAX_BYTES + 1 bytes (enough to tell "too large"). */
static enum stdin_state read_stdin(struct buf *in) {
  long long deadline = now_ms() + STDIN_TIMEOUT_MS;
  for (;;) {
    if (in->len > STDIN_MAX_BYTES) return STDIN_TOO_LARGE;
    int ready = wait_fd(0, POLLIN, deadline);
    if (ready == 0) return STDIN_TIMEOUT;
    if (ready < 0) return STDIN_ERROR;
    if (buf_reserve(in, 65536)) return STDIN_ERROR;
    size_t room = in->cap - in->len;
    if (room > (size_t)STDIN_MAX_BYTES + 1 - in->len) room = (size_t)STDIN_MAX_BYTES + 1 - in->len;
    ssize_t n = read(0, in->data + in->len, room);
    if (n == 0) return STDIN_OK;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return STDIN_ERROR;
    }
    in->len += (size_t)n;
  }
}

/* --- the config's "agentSocket": a top-level JSON string without escapes, or nothing ------- */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* Past a JSON string starting at p (on its opening quote); NULL if unterminated. */
static const char *skip_string(const char *p, const char *end) {
  for (p++; p < end; p++) {
    if (*p == '\\') {
      p++;
      continue;
    }
    if (*p == '"') return p + 1;
  }
  return NULL;
}

/* Past one JSON value (strings, containers with nesting, literals); NULL if malformed. */
static const char *skip_value(const char *p, const char *end) {
  p = skip_ws(p, end);
  if (p >= end) return NULL;
  if (*p == '"') return skip_string(p, end);
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < end) {
      if (*p == '"') {
        p = skip_string(p, end);
        if (!p) return NULL;
        continue;
      }
      if (*p == '{' || *p == '[') depth++;
      if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      p++;
    }
    return NULL;
  }
  while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') p++;
  return p;
}

/* Copies the top-level "agentSocket" into out; 1 found, 0 absent, -1 unreadable. */
static int config_agent_socket(const char *p, size_t len, char *out, size_t outlen) {
  const char *end = p + len;
  p = skip_ws(p, end);
  if (p >= end || *p != '{') return -1;
  p++;
  for (;;) {
    p = skip_ws(p, end);
    if (p < end && *p == '}') return 0;
    if (p >= end || *p != '"') return -1;
    const char *key = p + 1;
    const char *after = skip_string(p, end);
    if (!after) return -1;
    size_t keylen = (size_t)(after - 1 - key);
    p = skip_ws(after, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    if (keylen == 11 && memcmp(key, "agentSocket", 11) == 0) {
      if (p >= end || *p != '"') return -1;
      const char *v = p + 1;
      const char *vend = skip_string(p, end);
      if (!vend) return -1;
      size_t vlen = (size_t)(vend - 1 - v);
      if (vlen == 0 || vlen >= outlen || memchr(v, '\\', vlen)) return -1;
      memcpy(out, v, vlen);
      out[vlen] = 0;
      return 1;
    }
    p = skip_value(p, end);
    if (!p) return -1;
    p = skip_ws(p, end);
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    if (p < end && *p == '}') return 0;
    return -1;
  }
}

/* --- encoding ----------------------------------------------------------------------------- */

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int base64_add(struct buf *b, const unsigned char *s, size_t n) {
  if (buf_reserve(b, (n + 2) / 3 * 4)) return -1;
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    *o++ = B64[s[i] >> 2];
    *o++ = B64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
    *o++ = B64[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
    *o++ = B64[s[i + 2] & 63];
  }
  if (i < n) {
    *o++ = B64[s[i] >> 2];
    if (i + 1 < n) {
      *o++ = B64[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
      *o++ = B64[(s[i + 1] & 15) << 2];
    } else {
      *o++ = B64[(s[i] & 3) << 4];
      *o++ = '=';
    }
    *o++ = '=';
  }
  b->len = (size_t)(o - b->data);
  return 0;
}

static int b64_value(char c) {
  const char *p = c ? strchr(B64, c) : NULL;
  return p ? (int)(p - B64) : -1;
}

/* Decodes [s, s+n) into out (at least n/4*3 bytes); the decoded length, or -1. */
static ssize_t base64_decode(const char *s, size_t n, unsigned char *out) {
  if (n % 4) return -1;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 4) {
    int v[4];
    for (size_t k = 0; k < 4; k++) v[k] = s[i + k] == '=' ? 0 : b64_value(s[i + k]);
    if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return -1;
    unsigned triple = (unsigned)(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out[o++] = (unsigned char)(triple >> 16);
    if (s[i + 2] != '=') out[o++] = (unsigned char)(triple >> 8);
    if (s[i + 3] != '=') out[o++] = (unsigned char)triple;
  }
  return (ssize_t)o;
}

/* A JSON string: quotes, backslashes and control characters escaped; other bytes as they are. */
static int json_string_add(struct buf *b, const char *s) {
  if (buf_str(b, "\"")) return -1;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '"' || *p == '\\') {
      esc[0] = '\\';
      esc[1] = (char)*p;
      if (buf_add(b, esc, 2)) return -1;
    } else if (*p < 0x20) {
      snprintf(esc, sizeof esc, "\\u%04x", *p);
      if (buf_str(b, esc)) return -1;
    } else if (buf_add(b, p, 1)) {
      return -1;
    }
  }
  return buf_str(b, "\"");
}

/* --- the agent ---------------------------------------------------------------------------- */

static int connect_agent(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return -1;
  strcpy(addr.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
  if (errno == EINPROGRESS || errno == EAGAIN) {
    int err = 0;
    socklen_t len = sizeof err;
    if (wait_fd(fd, POLLOUT, now_ms() + CONNECT_TIMEOUT_MS) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return fd;
  }
  close(fd);
  return -1;
}

static int write_all(int fd, const char *p, size_t n, long long deadline) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN && wait_fd(fd, POLLOUT, deadline) == 1) continue;
    return -1;
  }
  return 0;
}

static int build_request(struct buf *req, const struct buf *in) {
  struct buf body = {0};
  int bad = buf_str(&body, "{\"env\":{");
  int first = 1;
  for (char **e = environ; *e && !bad; e++) {
    if (strncmp(*e, "CNI_", 4) != 0) continue;
    char *eq = strchr(*e, '=');
    if (!eq) continue;
    *eq = 0;
    bad = (!first && buf_str(&body, ",")) || json_string_add(&body, *e) || buf_str(&body, ":") || json_string_add(&body, eq + 1);
    *eq = '=';
    first = 0;
  }
  bad = bad || buf_str(&body, "},\"stdin\":\"") || base64_add(&body, (const unsigned char *)in->data, in->len) || buf_str(&body, "\"}");
  char head[256];
  snprintf(head, sizeof head, "POST " EXEC_PATH " HTTP/1.1\r\nHost: flatnet-agent\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", body.len);
  bad = bad || buf_str(req, head) || buf_add(req, body.data, body.len);
  free(body.data);
  return bad ? -1 : 0;
}

/* The value after `"name":` in the JSON body: a pointer to it, or NULL. */
static const char *field(const char *body, const char *end, const char *name) {
  char key[32];
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *p = memmem(body, (size_t)(end - body), key, strlen(key));
  return p ? skip_ws(p + strlen(key), end) : NULL;
}

/* Writes one base64 field of the answer to fd; 0, or -1 if it is missing or not base64. */
static int emit_field(const char *body, const char *end, const char *name, int fd) {
  const char *v = field(body, end, name);
  if (!v || v >= end || *v != '"') return -1;
  const char *close = memchr(v + 1, '"', (size_t)(end - v - 1));
  if (!close) return -1;
  size_t n = (size_t)(close - v - 1);
  unsigned char *out = malloc(n / 4 * 3 + 1);
  if (!out) return -1;
  ssize_t len = base64_decode(v + 1, n, out);
  int r = len < 0 ? -1 : write_all(fd, (const char *)out, (size_t)len, now_ms() + ANSWER_TIMEOUT_MS);
  free(out);
  return r;
}

/*
 * Hands the call to the agent. Returns the plugin's exit status (0..255) once its output is
 * written, or -1 when nothing was written and the Node plugin should take the call instead.
 */
static int call_agent(const char *socket_path, const struct buf *in) {
  int fd = connect_agent(socket_path);
  if (fd < 0) return -1;
  struct buf req = {0}, ans = {0};
  int status = -1;
  long long deadline = now_ms() + ANSWER_TIMEOUT_MS;
  if (build_request(&req, in) || write_all(fd, req.data, req.len, deadline)) goto done;
  for (;;) {
    if (ans.len > ANSWER_MAX_BYTES || buf_reserve(&ans, 65536)) goto done;
    ssize_t n = read(fd, ans.data + ans.len, ans.cap - ans.len - 1);
    if (n == 0) break;
    if (n > 0) {
      ans.len += (size_t)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN || wait_fd(fd, POLLIN, deadline) != 1) goto done;
  }
  ans.data[ans.len] = 0;
  if (ans.len < 12 || memcmp(ans.data, "HTTP/1.1 200", 12) != 0) goto done;
  char *body = memmem(ans.data, ans.len, "\r\n\r\n", 4);
  if (!body) goto done;
  body += 4;
  const char *end = ans.data + ans.len;
  const char *code = field(body, end, "exitCode");
  if (!code || *code < '0' || *code > '9') goto done;
  long exit_code = strtol(code, NULL, 10);
  if (exit_code < 0 || exit_code > 255) goto done;
  /* Checked whole before anything is written, so a bad answer still falls back cleanly. */
  const char *out = field(body, end, "stdout");
  const char *err = field(body, end, "stderr");
  if (!out || !err) goto done;
  if (emit_field(body, end, "stdout", 1)) {
    status = 1; /* partly written: falling back would print a second answer */
    goto done;
  }
  emit_field(body, end, "stderr", 2);
  status = (int)exit_code;
done:
  close(fd);
  free(req.data);
  free(ans.data);
  return status;
}

/* --- the Node plugin ---------------------------------------------------------------------- */

static void exec_node_plugin(const struct buf *in, char **argv) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash && (size_t)(slash - self) + 1 + strlen(FALLBACK_PROGRAM) < sizeof self) {
      strcpy(slash + 1, FALLBACK_PROGRAM);
      /* The plugin reads the same bytes the runtime sent, from a memory file as its stdin. */
      int mem = memfd_create("flatnet-cni-stdin", 0);
      if (mem >= 0 && write_all(mem, in->data ? in->data : "", in->len, now_ms() + STDIN_TIMEOUT_MS) == 0 && lseek(mem, 0, SEEK_SET) == 0 && dup2(mem, 0) == 0) {
        close(mem);
        argv[0] = self;
        execv(self, argv);
      }
    }
  }
  const char *msg = "{\"cniVersion\":\"1.1.0\",\"code\":105,\"msg\":\"the flatnet agent is not reachable and the Node plugin (" FALLBACK_PROGRAM ") beside flatnet cannot be started; reinstall with `flatnet cni install`\"}\n";
  if (write(1, msg, strlen(msg)) < 0) _exit(1);
  _exit(1);
}

int main(int argc, char **argv) {
  (void)argc;
  struct buf in = {0};
  enum stdin_state state = read_stdin(&in);
  if (state == STDIN_TIMEOUT) {
    /* As the Node plugin answers it (stdin.ts): the spec's I/O error, nothing was done. */
    printf("{\"cniVersion\":\"1.1.0\",\"code\":5,\"msg\":\"standard input did not end within %d ms\",\"details\":\"%zu bytes read; the runtime must close standard input after the network config\"}\n", STDIN_TIMEOUT_MS, in.len);
    return 1;
  }
  if (state == STDIN_OK && in.len <= FORWARD_MAX_STDIN) {
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (config_agent_socket(in.data ? in.data : "", in.len, socket_path, sizeof socket_path) != 1) strcpy(socket_path, DEFAULT_AGENT_SOCKET);
    int status = call_agent(socket_path, &in);
    if (status >= 0) return status;
  }
  /* Too large to forward, unreadable, or no agent: the Node plugin takes the call. */
  exec_node_plugin(&in, argv);
  return 1;
}
