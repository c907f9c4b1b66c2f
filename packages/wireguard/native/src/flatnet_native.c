/*
 * flatnet data-plane I/O: TUN devices and batched UDP for the userspace WireGuard backend.
 *
 * Everything here exists to cut per-packet cost: one readiness wakeup (uv_poll on Node's own
 * loop) drains up to `batch` packets with read()/recvmmsg() into memory the JavaScript side
 * allocated once, and JavaScript is entered once per batch with only a count. No JS objects are
 * created per packet; sources and destinations travel as fixed 24-byte records (ADDR_BYTES).
 *
 * Address record layout (ADDR_BYTES = 24):
 *   [0, 16)  address: IPv4 in bytes 0..3 (rest zero), IPv6 in all 16
 *   [16, 18) port, network byte order
 *   [18]     family: 4 or 6 (0 = empty)
 *   [19]     reserved, zero
 *   [20, 24) IPv6 scope id, host byte order (0 when none)
 *
 * Error handling on the hot path never throws: failures are counted per reason in the handle's
 * stats, the way drops are counted in the rest of the data plane. Only set-up calls throw.
 */
#include <node_api.h>
#include <uv.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/errqueue.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/*
 * ChaCha20-Poly1305 comes from the OpenSSL inside Node: its headers ship with Node's (include/node/
 * openssl, found first on node-gyp's include path), and the node binary exports the symbols, so
 * nothing is linked. Both are only assumed where they exist: without the headers the AEAD calls
 * are left out, and the symbols are weak, so a Node without OpenSSL loads the addon and the
 * TypeScript side falls back to node:crypto.
 */
#if defined(__has_include)
#if __has_include(<openssl/evp.h>)
#define HAVE_NODE_OPENSSL 1
#include <openssl/evp.h>
#pragma weak EVP_CIPHER_CTX_new
#pragma weak EVP_CIPHER_CTX_free
#pragma weak EVP_CIPHER_CTX_ctrl
#pragma weak EVP_CipherInit_ex
#pragma weak EVP_CipherUpdate
#pragma weak EVP_CipherFinal_ex
#pragma weak EVP_chacha20_poly1305
#endif
#endif

#ifndef SOL_UDP
#define SOL_UDP 17
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif
#ifndef SO_EE_ORIGIN_ICMP
#define SO_EE_ORIGIN_ICMP 2
#endif
#ifndef SO_EE_ORIGIN_ICMP6
#define SO_EE_ORIGIN_ICMP6 3
#endif

#define ADDR_BYTES 24
#define MAX_BATCH 1024
/* The kernel refuses more segments per GSO send than this on older kernels (64 until 6.2). */
#define GSO_MAX_SEGMENTS 64
/* Largest UDP payload an IPv4 datagram can carry; a GSO train must fit in one. */
#define GSO_MAX_BYTES 65507
#define CTL_RECV_SIZE CMSG_SPACE(sizeof(int))
#define CTL_SEND_SIZE CMSG_SPACE(sizeof(uint16_t))
#define HANDLE_MAGIC 0x666e6574u
/* Consecutive error wakeups that clear nothing before a socket's reader gives up. */
#define MAX_FRUITLESS_ERROR_WAKEUPS 1000
#define VNET_HDR_LEN 10
/* One TUN read with offloads: the virtio_net_hdr, then up to a 64 KiB TSO super-packet. */
#define TSO_BUF_SIZE (VNET_HDR_LEN + 65535 + 1)

/* KIND_ANY: what an entry point that takes either kind asks for. */
enum { KIND_ANY = 0, KIND_TUN = 1, KIND_UDP = 2 };

typedef struct {
  double rx_packets, rx_bytes, rx_batches, rx_errors, rx_truncated;
  double tx_packets, tx_bytes, tx_errors, tx_would_block, tx_gso_sends;
  double icmp_errors, socket_errors, poll_restarts;
  double rx_tso_packets;
  int last_rx_errno, last_tx_errno, last_icmp_errno;
} stats_t;

typedef struct handle {
  uint32_t magic;
  int kind;
  int fd;
  int family; /* UDP: AF_INET or AF_INET6 */
  int vnet_hdr;
  /*
   * TUN offloads handled here (tunEnableOffloads): reads split TSO super-packets and complete
   * partial checksums, so readers see plain packets; writes get a zero virtio_net_hdr.
   */
  int offload;
  uint8_t* tso_buf;
  uint32_t tso_len;  /* bytes of the super-packet still being split (header included), 0: none */
  uint32_t tso_next; /* its next segment */
  int no_coalesce;   /* a coalesced write failed: write packets one by one */
  napi_env env;

  uv_poll_t poll;
  int poll_inited;
  int refed;

  /* Lifetime: freed when both the JS external is finalized and libuv/cleanup are done. */
  int closed;
  int finalized;
  int released;
  int hook_running;
  napi_async_cleanup_hook_handle hook;

  /* Reader state, valid while `reading`. */
  int reading;
  uint32_t gen; /* bumped per startRead, so a drain loop notices its reader was replaced */
  int in_cb;
  int release_pending;
  napi_ref cb_ref, buf_ref, lens_ref, offs_ref, addrs_ref;
  napi_async_context actx;
  uint8_t* buf;
  size_t buf_len;
  uint32_t* lens;
  uint32_t* offs;
  uint8_t* addrs;
  size_t out_cap;
  uint32_t batch, slot;
  uint32_t fruitless_error_wakeups;

  /* UDP receive scratch, sized to `batch` at reader start. */
  struct mmsghdr* rmsgs;
  struct iovec* riov;
  struct sockaddr_storage* rnames;
  unsigned char* rctl;
  uint32_t rcap;

  /* UDP send scratch, grown on demand and then reused. */
  struct mmsghdr* smsgs;
  struct iovec* siov;
  struct sockaddr_storage* snames;
  unsigned char* sctl;
  uint32_t* sfirst;
  uint32_t* scount;
  uint32_t scap;

  int gso, gro, recverr;
  stats_t st;
} handle_t;

/* ---------- small N-API helpers ---------- */

#define NAPI_OK(call)                                   \
  do {                                                  \
    if ((call) != napi_ok) return throw_last(env);      \
  } while (0)

static napi_value throw_last(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    const napi_extended_error_info* info = NULL;
    napi_get_last_error_info(env, &info);
    napi_throw_error(env, "ERR_NATIVE", info && info->error_message ? info->error_message : "N-API call failed");
  }
  return NULL;
}

static napi_value throw_arg(napi_env env, const char* msg) {
  napi_throw_type_error(env, "ERR_INVALID_ARGUMENT", msg);
  return NULL;
}

static const char* errno_code(int err) {
  const char* name = uv_err_name(-err);
  if (name == NULL || strncmp(name, "Unknown", 7) == 0) return "EUNKNOWN";
  return name;
}

/* Throws an Error carrying code (errno name), errno and syscall, like Node's own system errors. */
static napi_value throw_sys(napi_env env, int err, const char* syscall, const char* fmt, ...)
    __attribute__((format(printf, 4, 5)));
static napi_value throw_sys(napi_env env, int err, const char* syscall, const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  napi_value code, message, error, num, sc;
  if (napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok)
    return throw_last(env);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  napi_throw(env, error);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return 1;
}

static int is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 1;
  return t == napi_undefined || t == napi_null;
}

static int get_u32(napi_env env, napi_value v, uint32_t* out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) return 0;
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= 0 && d <= 4294967295.0) || d != (double)(uint32_t)d) return 0;
  *out = (uint32_t)d;
  return 1;
}

static int get_bool(napi_env env, napi_value v) {
  bool b = false;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, v, &b);
  return b;
}

/* Any TypedArray or Buffer of the wanted element type, as a data pointer and element count. */
static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void** data, size_t* len) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return 0;
  napi_typedarray_type type;
  size_t length, offset;
  napi_value ab;
  if (napi_get_typedarray_info(env, v, &type, &length, data, &ab, &offset) != napi_ok) return 0;
  if (type != want && !(want == napi_uint8_array && type == napi_uint8_clamped_array)) return 0;
  *len = length;
  if (*data == NULL) *data = (void*)"";
  return 1;
}

static handle_t* get_handle(napi_env env, napi_value v) {
  napi_valuetype t;
  void* p = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_get_value_external(env, v, &p) != napi_ok || p == NULL) return NULL;
  handle_t* h = p;
  return h->magic == HANDLE_MAGIC ? h : NULL;
}

/*
 * The `want` arguments of an entry point whose first is a handle of `kind`; NULL, with the
 * exception thrown, when there is no such handle.
 */
static handle_t* handle_args(napi_env env, napi_callback_info info, size_t want, napi_value* argv, int kind) {
  if (!get_args(env, info, want, argv)) {
    throw_last(env);
    return NULL;
  }
  handle_t* h = get_handle(env, argv[0]);
  if (h && (kind == KIND_ANY || h->kind == kind)) return h;
  throw_arg(env, kind == KIND_TUN ? "not a TUN handle" : kind == KIND_UDP ? "not a UDP handle" : "not a device handle");
  return NULL;
}

static napi_value num(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}

static void set_num(napi_env env, napi_value obj, const char* key, double d) {
  napi_set_named_property(env, obj, key, num(env, d));
}

/* ---------- handle lifetime ---------- */

static void free_receive_scratch(handle_t* h) {
  free(h->rmsgs);
  free(h->riov);
  free(h->rnames);
  free(h->rctl);
  h->rmsgs = NULL;
  h->riov = NULL;
  h->rnames = NULL;
  h->rctl = NULL;
  h->rcap = 0;
}

/* UDP receive scratch for `batch` messages, kept for later readers; 0 when out of memory. */
static int reserve_receive_scratch(handle_t* h, uint32_t batch) {
  if (h->rcap >= batch) return 1;
  free_receive_scratch(h);
  h->rmsgs = calloc(batch, sizeof *h->rmsgs);
  h->riov = calloc(batch, sizeof *h->riov);
  h->rnames = calloc(batch, sizeof *h->rnames);
  h->rctl = calloc(batch, CTL_RECV_SIZE);
  if (!h->rmsgs || !h->riov || !h->rnames || !h->rctl) return 0;
  h->rcap = batch;
  return 1;
}

static void free_scratch(handle_t* h) {
  free_receive_scratch(h);
  free(h->smsgs);
  free(h->siov);
  free(h->snames);
  free(h->sctl);
  free(h->sfirst);
  free(h->scount);
  free(h->tso_buf);
  h->tso_buf = NULL;
}

static void maybe_free(handle_t* h) {
  if (!h->finalized || !h->released) return;
  free_scratch(h);
  h->magic = 0;
  free(h);
}

/* Drops the JS objects a reader pinned. Only on the JS thread with a live env. */
static void release_reader_refs(handle_t* h) {
  napi_env env = h->env;
  napi_ref* refs[] = {&h->cb_ref, &h->buf_ref, &h->lens_ref, &h->offs_ref, &h->addrs_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i]) napi_delete_reference(env, *refs[i]);
    *refs[i] = NULL;
  }
  if (h->actx) napi_async_destroy(env, h->actx);
  h->actx = NULL;
  h->buf = NULL;
  h->lens = NULL;
  h->offs = NULL;
  h->addrs = NULL;
  h->release_pending = 0;
}

static void stop_reader(handle_t* h, int env_alive) {
  if (!h->reading && !h->release_pending) return;
  h->reading = 0;
  if (h->poll_inited) uv_poll_stop(&h->poll);
  if (!env_alive) return; /* the env frees its references itself when it goes away */
  /* The drain loop still runs below the JS callback; it releases once the callback returns. */
  if (h->in_cb)
    h->release_pending = 1;
  else
    release_reader_refs(h);
}

static void on_poll_closed(uv_handle_t* uvh) {
  handle_t* h = uvh->data;
  h->released = 1;
  if (h->hook_running) napi_remove_async_cleanup_hook(h->hook);
  h->hook = NULL;
  maybe_free(h);
}

static void close_handle(handle_t* h, int env_alive) {
  if (h->closed) return;
  stop_reader(h, env_alive);
  h->closed = 1;
  if (h->fd >= 0) {
    close(h->fd);
    h->fd = -1;
  }
  if (!h->hook_running && h->hook) {
    napi_remove_async_cleanup_hook(h->hook);
    h->hook = NULL;
  }
  if (h->poll_inited) {
    uv_close((uv_handle_t*)&h->poll, on_poll_closed);
  } else {
    h->released = 1;
    if (h->hook_running && h->hook) napi_remove_async_cleanup_hook(h->hook);
    h->hook = NULL;
  }
}

/*
 * Runs when the env (main thread or a worker) is torn down with the handle still open: the poll
 * handle must be closed before the loop is, or the worker aborts on a live handle.
 */
static void cleanup_hook(napi_async_cleanup_hook_handle hook, void* arg) {
  handle_t* h = arg;
  h->hook_running = 1;
  if (h->closed) {
    napi_remove_async_cleanup_hook(hook);
    h->hook = NULL;
    return;
  }
  close_handle(h, 0);
  /* released without a poll handle: maybe_free waits for the finalizer */
  maybe_free(h);
}

static void finalize_handle(napi_env env, void* data, void* hint) {
  handle_t* h = data;
  h->finalized = 1;
  if (!h->closed) close_handle(h, 1);
  maybe_free(h);
}

static napi_value wrap_handle(napi_env env, handle_t* h) {
  napi_value ext;
  if (napi_create_external(env, h, finalize_handle, NULL, &ext) != napi_ok) {
    close(h->fd);
    free(h);
    return throw_last(env);
  }
  if (napi_add_async_cleanup_hook(env, cleanup_hook, h, &h->hook) != napi_ok) h->hook = NULL;
  return ext;
}

/* A handle owning `fd`; NULL when out of memory, with `fd` closed and the error thrown. */
static handle_t* new_handle(napi_env env, int kind, int fd) {
  handle_t* h = calloc(1, sizeof *h);
  if (!h) {
    close(fd);
    throw_sys(env, ENOMEM, "malloc", "out of memory");
    return NULL;
  }
  h->magic = HANDLE_MAGIC;
  h->kind = kind;
  h->fd = fd;
  h->env = env;
  h->refed = 1;
  return h;
}

/* ---------- packet-path failures: counted, never thrown ---------- */

static inline void rx_failed(handle_t* h, int err) {
  h->st.rx_errors++;
  h->st.last_rx_errno = err;
}

static inline void tx_failed(handle_t* h, int err) {
  h->st.tx_errors++;
  h->st.last_tx_errno = err;
}

/* ---------- calling JavaScript from the poll callback ---------- */

/* value > 0: a batch of that many entries; value < 0: the reader stopped on error -value. */
static void call_js(handle_t* h, int32_t value) {
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, arg;
  if (napi_get_reference_value(env, h->cb_ref, &cb) == napi_ok && cb != NULL) {
    /* napi_make_callback insists on an object receiver */
    napi_get_global(env, &recv);
    napi_create_int32(env, value, &arg);
    h->in_cb = 1;
    napi_status s = napi_make_callback(env, h->actx, recv, cb, 1, &arg, NULL);
    h->in_cb = 0;
    if (s == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
  if (h->release_pending && !h->reading) release_reader_refs(h);
}

static void report_and_stop(handle_t* h, int err) {
  /* Keep the refs alive across the call so the callback can still see its buffers. */
  h->reading = 0;
  if (h->poll_inited) uv_poll_stop(&h->poll);
  h->release_pending = 1;
  call_js(h, -err);
  if (h->release_pending && !h->in_cb) release_reader_refs(h);
}

/* Hands a batch of n > 0 entries, already in the reader's buffers, to JavaScript. */
static inline void deliver_batch(handle_t* h, uint32_t n) {
  h->st.rx_packets += n;
  h->st.rx_batches++;
  call_js(h, (int32_t)n);
}

/* ---------- address records ---------- */

static void encode_addr(uint8_t* e, const struct sockaddr_storage* ss) {
  memset(e, 0, ADDR_BYTES);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in* sin = (const struct sockaddr_in*)ss;
    memcpy(e, &sin->sin_addr, 4);
    memcpy(e + 16, &sin->sin_port, 2);
    e[18] = 4;
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6* sin6 = (const struct sockaddr_in6*)ss;
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      memcpy(e, sin6->sin6_addr.s6_addr + 12, 4);
      e[18] = 4;
    } else {
      memcpy(e, sin6->sin6_addr.s6_addr, 16);
      memcpy(e + 20, &sin6->sin6_scope_id, 4);
      e[18] = 6;
    }
    memcpy(e + 16, &sin6->sin6_port, 2);
  }
}

/* Returns 0 or a positive errno. An IPv4 record on an IPv6 socket becomes a v4-mapped address. */
static int decode_addr(const uint8_t* e, int sock_family, struct sockaddr_storage* ss, socklen_t* len) {
  if (e[18] == 4) {
    if (sock_family == AF_INET) {
      struct sockaddr_in* sin = (struct sockaddr_in*)ss;
      memset(sin, 0, sizeof *sin);
      sin->sin_family = AF_INET;
      memcpy(&sin->sin_addr, e, 4);
      memcpy(&sin->sin_port, e + 16, 2);
      *len = sizeof *sin;
    } else {
      struct sockaddr_in6* sin6 = (struct sockaddr_in6*)ss;
      memset(sin6, 0, sizeof *sin6);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_addr.s6_addr[10] = 0xff;
      sin6->sin6_addr.s6_addr[11] = 0xff;
      memcpy(sin6->sin6_addr.s6_addr + 12, e, 4);
      memcpy(&sin6->sin6_port, e + 16, 2);
      *len = sizeof *sin6;
    }
    return 0;
  }
  if (e[18] == 6) {
    if (sock_family != AF_INET6) return EAFNOSUPPORT;
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)ss;
    memset(sin6, 0, sizeof *sin6);
    sin6->sin6_family = AF_INET6;
    memcpy(sin6->sin6_addr.s6_addr, e, 16);
    memcpy(&sin6->sin6_port, e + 16, 2);
    memcpy(&sin6->sin6_scope_id, e + 20, 4);
    *len = sizeof *sin6;
    return 0;
  }
  return EDESTADDRREQ;
}

/* ---------- UDP error clearing ---------- */

/*
 * An ICMP error leaves EPOLLERR raised on the socket (pending SO_ERROR, or a queued error with
 * IP_RECVERR). libuv answers EPOLLERR by stopping the poll handle, which would stall the tunnel
 * silently; the reader clears both here and restarts the poll.
 */
static int udp_clear_errors(handle_t* h) {
  int cleared = 0;
  if (h->recverr) {
    for (int i = 0; i < 256; i++) {
      unsigned char ctl[512];
      unsigned char data[64];
      struct sockaddr_storage from;
      struct iovec iov = {data, sizeof data};
      struct msghdr m = {0};
      m.msg_name = &from;
      m.msg_namelen = sizeof from;
      m.msg_iov = &iov;
      m.msg_iovlen = 1;
      m.msg_control = ctl;
      m.msg_controllen = sizeof ctl;
      ssize_t r = recvmsg(h->fd, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
      if (r < 0) {
        if (errno == EINTR) continue;
        break;
      }
      cleared++;
      for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if ((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
            (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
          struct sock_extended_err ee;
          memcpy(&ee, CMSG_DATA(c), sizeof ee);
          if (ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6) h->st.icmp_errors++;
          h->st.last_icmp_errno = (int)ee.ee_errno;
        }
      }
    }
  }
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr != 0) {
    h->st.socket_errors++;
    h->st.last_rx_errno = soerr;
    cleared++;
  }
  return cleared;
}

/* ---------- readers ---------- */

static void on_poll(uv_poll_t* p, int status, int events);

static int restart_poll(handle_t* h) {
  int r = uv_poll_start(&h->poll, UV_READABLE, on_poll);
  if (r == 0 && !h->refed) uv_unref((uv_handle_t*)&h->poll);
  return r;
}

/* Packet n of a TUN reader's batch, at n * slot in its buffer, is in place: len bytes. */
static inline void tun_slot_filled(handle_t* h, uint32_t n, uint32_t len) {
  h->lens[n] = len;
  if (h->offs) h->offs[n] = n * h->slot;
  h->st.rx_bytes += len;
}

/* ---------- TUN offloads: checksums and TSO splitting ---------- */

/* The Internet checksum, summed in host byte order (RFC 1071 §2(B)); fold and complement it last. */
static uint64_t csum_add(uint64_t sum, const uint8_t* p, size_t len) {
  while (len >= 4) {
    uint32_t w;
    memcpy(&w, p, 4);
    sum += w;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t w;
    memcpy(&w, p, 2);
    sum += w;
    p += 2;
    len -= 2;
  }
  if (len) {
    uint16_t w = 0;
    memcpy(&w, p, 1);
    sum += w;
  }
  return sum;
}

static uint16_t csum_fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)sum;
}

static void put_be16(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t* p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/*
 * Checks that the super-packet at h->tso_buf (r bytes with its header) is one this code splits:
 * TCP over IPv4 (any options) or IPv6 without extension headers, the TCP header where the header
 * says, and every segment fitting a reader slot. Anything else is dropped (counted): only TSO4/6
 * were offered, so nothing else is expected.
 */
static int tso_valid(handle_t* h, const struct virtio_net_hdr* vh, uint32_t r) {
  const uint8_t* pkt = h->tso_buf + VNET_HDR_LEN;
  uint32_t len = r - VNET_HDR_LEN;
  uint32_t th = vh->csum_start;
  int type = vh->gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (len < 40 || !(vh->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || vh->gso_size == 0) return 0;
  if (type == VIRTIO_NET_HDR_GSO_TCPV4) {
    if (pkt[0] >> 4 != 4 || pkt[9] != IPPROTO_TCP || th != (uint32_t)(pkt[0] & 15) * 4 || th < 20) return 0;
  } else if (type == VIRTIO_NET_HDR_GSO_TCPV6) {
    if (pkt[0] >> 4 != 6 || pkt[6] != IPPROTO_TCP || th != 40) return 0;
  } else {
    return 0;
  }
  if (th + 20 > len) return 0;
  uint32_t hl = th + (uint32_t)(pkt[th + 12] >> 4) * 4;
  if (hl < th + 20 || hl >= len || hl + vh->gso_size > h->slot) return 0;
  return 1;
}

/*
 * Cuts the pending super-packet into MSS-sized TCP segments, each a complete packet in the
 * reader's slots from `n` on, as the kernel's own TSO would have put them on the wire: IPv4 ids
 * counting up, sequence numbers advancing, FIN and PSH only on the last segment, CWR only on the
 * first, and full checksums. Stops when the slots run out; returns the new count.
 */
static uint32_t tso_emit(handle_t* h, uint32_t n) {
  struct virtio_net_hdr vh;
  memcpy(&vh, h->tso_buf, sizeof vh);
  const uint8_t* pkt = h->tso_buf + VNET_HDR_LEN;
  uint32_t len = h->tso_len - VNET_HDR_LEN;
  uint32_t th = vh.csum_start;
  uint32_t hl = th + (uint32_t)(pkt[th + 12] >> 4) * 4;
  uint32_t mss = vh.gso_size;
  uint32_t payload = len - hl;
  uint32_t segs = (payload + mss - 1) / mss;
  if (hl + mss > h->slot) {
    /* left over from a reader with bigger slots */
    h->tso_len = 0;
    rx_failed(h, EMSGSIZE);
    return n;
  }
  int v4 = pkt[0] >> 4 == 4;
  uint32_t id0 = v4 ? ((uint32_t)pkt[4] << 8) | pkt[5] : 0;
  uint32_t seq0 = get_be32(pkt + th + 4);
  uint32_t i = h->tso_next;
  for (; i < segs && n < h->batch; i++, n++) {
    uint32_t chunk = payload - i * mss < mss ? payload - i * mss : mss;
    uint32_t total = hl + chunk;
    uint8_t* out = h->buf + (size_t)n * h->slot;
    memcpy(out, pkt, hl);
    memcpy(out + hl, pkt + hl + (size_t)i * mss, chunk);
    uint64_t sum;
    if (v4) {
      put_be16(out + 2, total);
      put_be16(out + 4, id0 + i);
      out[10] = out[11] = 0;
      uint16_t c = (uint16_t)~csum_fold(csum_add(0, out, th));
      memcpy(out + 10, &c, 2);
      sum = csum_add(0, out + 12, 8);
    } else {
      put_be16(out + 4, total - 40);
      sum = csum_add(0, out + 8, 32);
    }
    uint8_t* tcp = out + th;
    uint32_t seq = seq0 + i * mss;
    tcp[4] = (uint8_t)(seq >> 24);
    tcp[5] = (uint8_t)(seq >> 16);
    tcp[6] = (uint8_t)(seq >> 8);
    tcp[7] = (uint8_t)seq;
    if (i + 1 < segs) tcp[13] &= (uint8_t)~0x09; /* FIN, PSH */
    if (i > 0) tcp[13] &= (uint8_t)~0x80;        /* CWR */
    tcp[16] = tcp[17] = 0;
    sum += htons(IPPROTO_TCP) + htons((uint16_t)(total - th));
    uint16_t c = (uint16_t)~csum_fold(csum_add(sum, tcp, total - th));
    memcpy(tcp + 16, &c, 2);
    tun_slot_filled(h, n, total);
  }
  h->tso_next = i;
  if (i == segs) h->tso_len = 0;
  return n;
}

/* One read of an offloading TUN (r bytes, header included) into the slots from `n`; returns the new count. */
static uint32_t offload_packet(handle_t* h, uint32_t r, uint32_t n) {
  struct virtio_net_hdr vh;
  if (r < VNET_HDR_LEN) return n;
  memcpy(&vh, h->tso_buf, sizeof vh);
  uint8_t* pkt = h->tso_buf + VNET_HDR_LEN;
  uint32_t len = r - VNET_HDR_LEN;
  if (vh.gso_type != VIRTIO_NET_HDR_GSO_NONE) {
    if (!tso_valid(h, &vh, r)) {
      rx_failed(h, EPROTO);
      return n;
    }
    h->st.rx_tso_packets++;
    h->tso_len = r;
    h->tso_next = 0;
    return tso_emit(h, n);
  }
  if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    /* The checksum field holds the pseudo-header sum; the rest is ours to add (skb_checksum_help). */
    uint32_t start = vh.csum_start, at = (uint32_t)vh.csum_start + vh.csum_offset;
    if (start > len || at + 2 > len) {
      rx_failed(h, EPROTO);
      return n;
    }
    uint16_t c = (uint16_t)~csum_fold(csum_add(0, pkt + start, len - start));
    if (c == 0) c = 0xffff;
    memcpy(pkt + at, &c, 2);
  }
  if (len > h->slot) {
    h->st.rx_truncated++;
    return n;
  }
  memcpy(h->buf + (size_t)n * h->slot, pkt, len);
  tun_slot_filled(h, n, len);
  return n + 1;
}

/* One read() into p, retried on EINTR; -1 when there is nothing more now, *err set if that is an error. */
static inline ssize_t tun_read(handle_t* h, void* p, size_t len, int* err) {
  for (;;) {
    ssize_t r = read(h->fd, p, len);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) *err = errno;
    return -1;
  }
}

/* Fills up to `batch` slots, one packet per read straight into its slot; returns the count. */
static uint32_t tun_fill_plain(handle_t* h, int* err) {
  uint32_t n = 0;
  while (n < h->batch) {
    ssize_t r = tun_read(h, h->buf + (size_t)n * h->slot, h->slot, err);
    if (r < 0) break;
    tun_slot_filled(h, n, (uint32_t)r);
    n++;
  }
  return n;
}

/* The same with offloads: each read goes through tso_buf and may fill many slots, or none. */
static uint32_t tun_fill_offload(handle_t* h, int* err) {
  uint32_t n = 0;
  while (n < h->batch) {
    if (h->tso_len) {
      n = tso_emit(h, n);
      continue;
    }
    ssize_t r = tun_read(h, h->tso_buf, TSO_BUF_SIZE, err);
    if (r < 0) break;
    n = offload_packet(h, (uint32_t)r, n);
  }
  return n;
}

static void drain_tun(handle_t* h) {
  uint32_t gen = h->gen;
  for (;;) {
    int err = 0;
    uint32_t n = h->offload ? tun_fill_offload(h, &err) : tun_fill_plain(h, &err);
    if (n > 0) deliver_batch(h, n);
    if (err && h->reading && h->gen == gen) {
      rx_failed(h, err);
      /* EBADFD/EIO: the interface was deleted or detached; nothing more will arrive. */
      if (err == EBADFD || err == EIO || err == EBADF) report_and_stop(h, err);
      return;
    }
    /* Segments of a super-packet left over (offloads only) wait for no readiness event: deliver them now. */
    if (!h->tso_len || !h->reading || h->gen != gen) return;
  }
}

static int is_socket_error(int err) {
  switch (err) {
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
    case EMSGSIZE:
    case EPROTO:
    case ENOPROTOOPT:
    case ECONNRESET:
    case ETIMEDOUT:
    case EACCES:
    case EPERM:
      return 1;
    default:
      return 0;
  }
}

static void drain_udp(handle_t* h) {
  uint32_t gen = h->gen;
  uint32_t batch = h->batch;
  int r;
  for (int attempts = 0;; attempts++) {
    for (uint32_t i = 0; i < batch; i++) {
      h->riov[i].iov_base = h->buf + (size_t)i * h->slot;
      h->riov[i].iov_len = h->slot;
      struct msghdr* m = &h->rmsgs[i].msg_hdr;
      m->msg_name = &h->rnames[i];
      m->msg_namelen = sizeof(struct sockaddr_storage);
      m->msg_iov = &h->riov[i];
      m->msg_iovlen = 1;
      m->msg_control = h->gro ? h->rctl + (size_t)i * CTL_RECV_SIZE : NULL;
      m->msg_controllen = h->gro ? CTL_RECV_SIZE : 0;
      m->msg_flags = 0;
      h->rmsgs[i].msg_len = 0;
    }
    r = recvmmsg(h->fd, h->rmsgs, batch, MSG_DONTWAIT, NULL);
    if (r >= 0) break;
    int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (is_socket_error(err) && attempts < 16) {
      /* recvmmsg reported (and so cleared) a pending ICMP error; the data behind it is intact */
      h->st.socket_errors++;
      h->st.last_rx_errno = err;
      udp_clear_errors(h);
      continue;
    }
    rx_failed(h, err);
    return;
  }
  h->fruitless_error_wakeups = 0;
  uint32_t out = 0;
  for (int i = 0; i < r && h->reading && h->gen == gen; i++) {
    struct msghdr* m = &h->rmsgs[i].msg_hdr;
    uint32_t len = h->rmsgs[i].msg_len;
    if (m->msg_flags & MSG_TRUNC) {
      h->st.rx_truncated++;
      continue;
    }
    int gso = 0;
    if (h->gro) {
      for (struct cmsghdr* c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&gso, CMSG_DATA(c), sizeof gso);
      }
    }
    uint8_t rec[ADDR_BYTES];
    encode_addr(rec, &h->rnames[i]);
    uint32_t base = (uint32_t)i * h->slot;
    uint32_t seg = (gso > 0 && (uint32_t)gso < len) ? (uint32_t)gso : len;
    uint32_t off = 0;
    do {
      uint32_t l = len - off < seg ? len - off : seg;
      if (out == h->out_cap) {
        /* more segments than the caller's arrays hold: hand over what is there and go on */
        deliver_batch(h, out);
        out = 0;
        if (!h->reading || h->gen != gen) return;
      }
      h->offs[out] = base + off;
      h->lens[out] = l;
      memcpy(h->addrs + (size_t)out * ADDR_BYTES, rec, ADDR_BYTES);
      out++;
      h->st.rx_bytes += l;
      off += l;
    } while (off < len);
  }
  if (out > 0 && h->reading && h->gen == gen) deliver_batch(h, out);
}

/*
 * libuv stopped a socket's poll handle on EPOLLERR (status < 0): clear what raised it and keep
 * listening. Returns 0 when the reader was stopped instead.
 */
static int udp_recover_poll(handle_t* h, int status) {
  int cleared = udp_clear_errors(h);
  h->st.poll_restarts++;
  if (cleared == 0 && ++h->fruitless_error_wakeups > MAX_FRUITLESS_ERROR_WAKEUPS) {
    report_and_stop(h, -status);
    return 0;
  }
  if (cleared) h->fruitless_error_wakeups = 0;
  int r = restart_poll(h);
  if (r < 0) {
    report_and_stop(h, -r);
    return 0;
  }
  return 1;
}

/* One readiness wakeup of either kind of reader. */
static void on_poll(uv_poll_t* p, int status, int events) {
  handle_t* h = p->data;
  if (!h->reading) return;
  if (h->kind == KIND_TUN) {
    /* EPOLLERR on a TUN fd: the interface is gone */
    if (status < 0)
      report_and_stop(h, EBADFD);
    else
      drain_tun(h);
    return;
  }
  if (status < 0 && !udp_recover_poll(h, status)) return;
  drain_udp(h);
}

/* startRead(handle, callback, buffer, lengths, offsets|null, addrs|null, batch, slotSize) */
static napi_value start_read(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  handle_t* h = handle_args(env, info, 8, argv, KIND_ANY);
  if (!h) return NULL;
  if (h->closed) return throw_sys(env, EBADF, "read", "the device is closed");
  if (h->reading) return throw_sys(env, EBUSY, "read", "the device is already being read");
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function) return throw_arg(env, "callback must be a function");
  void *buf, *lens, *offs = NULL, *addrs = NULL;
  size_t buf_len, lens_n, offs_n = 0, addrs_n = 0;
  uint32_t batch, slot;
  if (!get_typed(env, argv[2], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[3], napi_uint32_array, &lens, &lens_n)) return throw_arg(env, "lengths must be a Uint32Array");
  if (!is_nullish(env, argv[4]) && !get_typed(env, argv[4], napi_uint32_array, &offs, &offs_n))
    return throw_arg(env, "offsets must be a Uint32Array");
  if (!is_nullish(env, argv[5]) && !get_typed(env, argv[5], napi_uint8_array, &addrs, &addrs_n))
    return throw_arg(env, "addrs must be a Uint8Array");
  if (!get_u32(env, argv[6], &batch) || batch < 1 || batch > MAX_BATCH) return throw_arg(env, "batch must be an integer in 1..1024");
  if (!get_u32(env, argv[7], &slot) || slot < 1 || slot > (1u << 20)) return throw_arg(env, "slotSize must be an integer in 1..1048576");
  if ((uint64_t)batch * slot > buf_len) return throw_arg(env, "buffer is smaller than batch * slotSize");
  size_t cap = lens_n;
  if (h->kind == KIND_UDP) {
    if (!offs || !addrs) return throw_arg(env, "a UDP reader needs offsets and addrs");
    if (offs_n < cap) cap = offs_n;
    if (addrs_n / ADDR_BYTES < cap) cap = addrs_n / ADDR_BYTES;
    if (cap < 1) return throw_arg(env, "lengths, offsets and addrs must hold at least one entry");
  } else {
    if (offs && offs_n < cap) cap = offs_n;
    if (cap < batch) return throw_arg(env, "lengths (and offsets) must hold at least batch entries");
  }

  if (h->kind == KIND_UDP && !reserve_receive_scratch(h, batch))
    return throw_sys(env, ENOMEM, "malloc", "out of memory for the receive batch");
  /* replacing the handler from inside the callback: the old reader's refs go now */
  if (h->release_pending) release_reader_refs(h);
  if (!h->poll_inited) {
    uv_loop_t* loop = NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return throw_last(env);
    int r = uv_poll_init(loop, &h->poll, h->fd);
    if (r < 0) return throw_sys(env, -r, "uv_poll_init", "cannot watch the device: %s", uv_strerror(r));
    h->poll.data = h;
    h->poll_inited = 1;
  }

  napi_value resource_name;
  NAPI_OK(napi_create_string_utf8(env, h->kind == KIND_TUN ? "flatnet.TunRead" : "flatnet.UdpRecv", NAPI_AUTO_LENGTH,
                                  &resource_name));
  NAPI_OK(napi_async_init(env, NULL, resource_name, &h->actx));
  NAPI_OK(napi_create_reference(env, argv[1], 1, &h->cb_ref));
  NAPI_OK(napi_create_reference(env, argv[2], 1, &h->buf_ref));
  NAPI_OK(napi_create_reference(env, argv[3], 1, &h->lens_ref));
  if (offs) NAPI_OK(napi_create_reference(env, argv[4], 1, &h->offs_ref));
  if (addrs) NAPI_OK(napi_create_reference(env, argv[5], 1, &h->addrs_ref));
  h->buf = buf;
  h->buf_len = buf_len;
  h->lens = lens;
  h->offs = offs;
  h->addrs = addrs;
  h->out_cap = cap;
  h->batch = batch;
  h->slot = slot;
  h->fruitless_error_wakeups = 0;
  h->gen++;
  h->reading = 1;
  int r = restart_poll(h);
  if (r < 0) {
    h->reading = 0;
    release_reader_refs(h);
    return throw_sys(env, -r, "uv_poll_start", "cannot watch the device: %s", uv_strerror(r));
  }
  return NULL;
}

static napi_value stop_read(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_ANY);
  if (!h) return NULL;
  stop_reader(h, 1);
  return NULL;
}

static napi_value set_ref(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle_t* h = handle_args(env, info, 2, argv, KIND_ANY);
  if (!h) return NULL;
  h->refed = get_bool(env, argv[1]);
  if (h->poll_inited && !h->closed) {
    if (h->refed)
      uv_ref((uv_handle_t*)&h->poll);
    else
      uv_unref((uv_handle_t*)&h->poll);
  }
  return NULL;
}

static napi_value close_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_ANY);
  if (!h) return NULL;
  close_handle(h, 1);
  return NULL;
}

static napi_value get_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_ANY);
  if (!h) return NULL;
  return num(env, h->fd);
}

static napi_value stats_fn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_ANY);
  if (!h) return NULL;
  napi_value o;
  NAPI_OK(napi_create_object(env, &o));
  stats_t* s = &h->st;
  set_num(env, o, "rxPackets", s->rx_packets);
  set_num(env, o, "rxBytes", s->rx_bytes);
  set_num(env, o, "rxBatches", s->rx_batches);
  set_num(env, o, "rxErrors", s->rx_errors);
  set_num(env, o, "rxTruncated", s->rx_truncated);
  set_num(env, o, "txPackets", s->tx_packets);
  set_num(env, o, "txBytes", s->tx_bytes);
  set_num(env, o, "txErrors", s->tx_errors);
  set_num(env, o, "txWouldBlock", s->tx_would_block);
  set_num(env, o, "txGsoSends", s->tx_gso_sends);
  set_num(env, o, "icmpErrors", s->icmp_errors);
  set_num(env, o, "socketErrors", s->socket_errors);
  set_num(env, o, "pollRestarts", s->poll_restarts);
  set_num(env, o, "rxTsoPackets", s->rx_tso_packets);
  set_num(env, o, "lastRxErrno", s->last_rx_errno);
  set_num(env, o, "lastTxErrno", s->last_tx_errno);
  set_num(env, o, "lastIcmpErrno", s->last_icmp_errno);
  return o;
}

/* ---------- TUN ---------- */

/* The kernel's dev_valid_name rules, checked here so that the error names the real problem. */
static const char* invalid_ifname(const char* name, size_t len) {
  if (len >= IFNAMSIZ) return "longer than 15 bytes";
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return "\".\" and \"..\" are reserved";
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)name[i];
    if (c == '/' || c == ':' || isspace(c) || c < 0x20 || c == 0x7f) return "contains '/', ':', whitespace or a control character";
  }
  return NULL;
}

static int read_name(napi_env env, napi_value v, char* out, int allow_empty) {
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    throw_arg(env, "interface name must be a string");
    return 0;
  }
  char tmp[256];
  napi_get_value_string_utf8(env, v, tmp, sizeof tmp, &len);
  if (len == 0 && !allow_empty) {
    throw_arg(env, "interface name must not be empty");
    return 0;
  }
  const char* why = invalid_ifname(tmp, len);
  if (why) {
    char msg[400];
    snprintf(msg, sizeof msg, "invalid interface name \"%s\": %s", tmp, why);
    throw_arg(env, msg);
    return 0;
  }
  memcpy(out, tmp, len + 1);
  return 1;
}

/* tunOpen(name, multiQueue, vnetHdr) -> { handle, name } */
static napi_value tun_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return throw_last(env);
  char name[IFNAMSIZ];
  if (!read_name(env, argv[0], name, 1)) return NULL;
  int mq = get_bool(env, argv[1]);
  int vnet = get_bool(env, argv[2]);

  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENODEV || e == ENXIO)
      return throw_sys(env, e, "open",
                       "cannot open /dev/net/tun: the kernel module tun is not loaded or /dev/net/tun is missing "
                       "(modprobe tun; in a container, pass the device in)");
    if (e == EPERM || e == EACCES)
      return throw_sys(env, e, "open", "cannot open /dev/net/tun: needs CAP_NET_ADMIN (run as root)");
    return throw_sys(env, e, "open", "cannot open /dev/net/tun: %s", strerror(e));
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (mq ? IFF_MULTI_QUEUE : 0) | (vnet ? IFF_VNET_HDR : 0);
  memcpy(ifr.ifr_name, name, strlen(name) + 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    const char* shown = name[0] ? name : "(kernel-chosen name)";
    if (e == EPERM || e == EACCES)
      return throw_sys(env, e, "ioctl(TUNSETIFF)", "cannot create TUN device %s: needs CAP_NET_ADMIN (run as root)", shown);
    if (e == EBUSY)
      return throw_sys(env, e, "ioctl(TUNSETIFF)",
                       "TUN device %s is already attached to another file descriptor (to share it, every opener "
                       "must ask for multiQueue)",
                       shown);
    if (e == EINVAL && name[0] && if_nametoindex(name) != 0)
      return throw_sys(env, e, "ioctl(TUNSETIFF)",
                       "interface %s exists but is not a TUN device with the same flags (multiQueue and vnetHdr must "
                       "match how it was created)",
                       name);
    if (e == ENFILE || e == EMFILE)
      return throw_sys(env, e, "ioctl(TUNSETIFF)", "cannot create TUN device %s: too many devices or files", shown);
    return throw_sys(env, e, "ioctl(TUNSETIFF)", "cannot create TUN device %s: %s", shown, strerror(e));
  }
  handle_t* h = new_handle(env, KIND_TUN, fd);
  if (!h) return NULL;
  h->vnet_hdr = vnet;
  napi_value ext = wrap_handle(env, h);
  if (!ext) return NULL;
  napi_value result, kname;
  NAPI_OK(napi_create_object(env, &result));
  NAPI_OK(napi_create_string_utf8(env, ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ), &kname));
  napi_set_named_property(env, result, "handle", ext);
  napi_set_named_property(env, result, "name", kname);
  return result;
}

/* linkSet(name, mtu (0 = leave), up (bool|undefined)) through ioctls on a plain socket. */
static napi_value link_set(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return throw_last(env);
  char name[IFNAMSIZ];
  if (!read_name(env, argv[0], name, 0)) return NULL;
  uint32_t mtu = 0;
  if (!is_nullish(env, argv[1]) && (!get_u32(env, argv[1], &mtu) || mtu > 65535))
    return throw_arg(env, "mtu must be an integer in 68..65535");
  int set_up = !is_nullish(env, argv[2]);
  int up = get_bool(env, argv[2]);
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_sys(env, errno, "socket", "cannot open a control socket: %s", strerror(errno));
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, strlen(name) + 1);
  if (mtu) {
    ifr.ifr_mtu = (int)mtu;
    if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
      int e = errno;
      close(s);
      if (e == ENODEV) return throw_sys(env, e, "ioctl(SIOCSIFMTU)", "no interface named %s (in this network namespace)", name);
      if (e == EPERM || e == EACCES) return throw_sys(env, e, "ioctl(SIOCSIFMTU)", "setting the MTU of %s needs CAP_NET_ADMIN (run as root)", name);
      if (e == EINVAL) return throw_sys(env, e, "ioctl(SIOCSIFMTU)", "MTU %u is out of range for %s", mtu, name);
      return throw_sys(env, e, "ioctl(SIOCSIFMTU)", "cannot set the MTU of %s: %s", name, strerror(e));
    }
  }
  if (set_up) {
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
      int e = errno;
      close(s);
      if (e == ENODEV) return throw_sys(env, e, "ioctl(SIOCGIFFLAGS)", "no interface named %s (in this network namespace)", name);
      return throw_sys(env, e, "ioctl(SIOCGIFFLAGS)", "cannot read the flags of %s: %s", name, strerror(e));
    }
    if (up)
      ifr.ifr_flags |= IFF_UP;
    else
      ifr.ifr_flags &= ~IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
      int e = errno;
      close(s);
      if (e == EPERM || e == EACCES) return throw_sys(env, e, "ioctl(SIOCSIFFLAGS)", "setting %s up needs CAP_NET_ADMIN (run as root)", name);
      return throw_sys(env, e, "ioctl(SIOCSIFFLAGS)", "cannot set %s %s: %s", name, up ? "up" : "down", strerror(e));
    }
  }
  close(s);
  return NULL;
}

/* tunSetOffload(handle, flags): TUN_F_* bits; needs a device opened with vnetHdr. */
static napi_value tun_set_offload(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  handle_t* h = handle_args(env, info, 2, argv, KIND_TUN);
  if (!h) return NULL;
  uint32_t flags;
  if (!get_u32(env, argv[1], &flags)) return throw_arg(env, "flags must be an unsigned integer");
  if (h->closed) return throw_sys(env, EBADF, "ioctl(TUNSETOFFLOAD)", "the device is closed");
  if (flags && !h->vnet_hdr) return throw_arg(env, "offloads need a device opened with vnetHdr");
  if (ioctl(h->fd, TUNSETOFFLOAD, (unsigned long)flags) < 0) {
    int e = errno;
    return throw_sys(env, e, "ioctl(TUNSETOFFLOAD)", "the kernel refused offload flags 0x%x: %s", flags, strerror(e));
  }
  return NULL;
}

/*
 * tunEnableOffloads(handle): TSO and checksum offload for a device opened with vnetHdr, with the
 * virtio_net_hdr handled here: the kernel may then hand over TCP super-packets of up to 64 KiB
 * (one read instead of dozens), which readers still see as MTU-sized packets with full
 * checksums; writes go out with a zero header (a plain packet, checksums verified as usual).
 */
static napi_value tun_enable_offloads(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_TUN);
  if (!h) return NULL;
  if (h->closed) return throw_sys(env, EBADF, "ioctl(TUNSETOFFLOAD)", "the device is closed");
  if (!h->vnet_hdr) return throw_arg(env, "offloads need a device opened with vnetHdr");
  if (h->reading) return throw_sys(env, EBUSY, "ioctl(TUNSETOFFLOAD)", "enable offloads before reading");
  if (!h->tso_buf && !(h->tso_buf = malloc(TSO_BUF_SIZE))) return throw_sys(env, ENOMEM, "malloc", "out of memory");
  unsigned long flags = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (ioctl(h->fd, TUNSETOFFLOAD, flags) < 0) {
    int e = errno;
    return throw_sys(env, e, "ioctl(TUNSETOFFLOAD)", "the kernel refused TSO offloads: %s", strerror(e));
  }
  h->offload = 1;
  h->tso_len = 0;
  return NULL;
}

/* Returns 1 when written, 0 when the device would block, -errno (counted) otherwise. */
static int tun_write_one(handle_t* h, const uint8_t* p, size_t len) {
  static const uint8_t zero_hdr[VNET_HDR_LEN];
  struct iovec iov[2] = {{(void*)zero_hdr, VNET_HDR_LEN}, {(void*)p, len}};
  for (;;) {
    ssize_t r = h->offload ? writev(h->fd, iov, 2) : write(h->fd, p, len);
    if (r >= 0) {
      h->st.tx_packets++;
      h->st.tx_bytes += (double)len;
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      h->st.tx_would_block++;
      return 0;
    }
    tx_failed(h, errno);
    return -errno;
  }
}

static int check_range(size_t buf_len, uint32_t off, uint32_t len) {
  return (uint64_t)off + len <= buf_len;
}

/* tunWrite(handle, buffer, offset, length) -> 1 | 0 | -errno */
static napi_value tun_write(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  handle_t* h = handle_args(env, info, 4, argv, KIND_TUN);
  if (!h) return NULL;
  void* buf;
  size_t buf_len;
  uint32_t off, len;
  if (!get_typed(env, argv[1], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_u32(env, argv[2], &off) || !get_u32(env, argv[3], &len) || !check_range(buf_len, off, len))
    return throw_arg(env, "offset/length out of the buffer's range");
  if (h->closed) return num(env, -EBADF);
  return num(env, tun_write_one(h, (uint8_t*)buf + off, len));
}

/*
 * Writing with offloads: runs of TCP segments of one flow that follow each other in a batch are
 * written as one GSO super-packet, so the kernel runs its TCP receive path once per run rather
 * than once per segment (what GRO does for a NIC). The rules are the kernel's GRO rules: same
 * addresses, ports, IP fields, TCP header but for the sequence number, ACK only (PSH allowed on
 * the last), consecutive sequence numbers, equal payloads with at most a shorter last one. A
 * super-packet's checksum is left for the kernel to complete (CHECKSUM_PARTIAL, not verified on
 * local delivery), so every segment's checksums are verified here first: one that fails is
 * written alone, for the kernel to judge as before.
 */
typedef struct {
  uint32_t iphl, hl, payload, seq;
  int v6;
} tcp_seg_t;

#define TCP_FLAG_PSH 0x08
#define TCP_FLAG_ACK 0x10
#define GRO_MAX_SEGMENTS 64

/* Cheap checks: an unfragmented TCP segment with a payload, flags ACK or ACK|PSH. */
static int tcp_parse(const uint8_t* p, uint32_t len, tcp_seg_t* t) {
  if (len < 41) return 0;
  if (p[0] >> 4 == 4) {
    uint32_t ihl = (uint32_t)(p[0] & 15) * 4;
    if (ihl < 20 || p[9] != IPPROTO_TCP || (((uint32_t)p[2] << 8) | p[3]) != len) return 0;
    if ((p[6] & 0x3f) != 0 || p[7] != 0) return 0; /* MF or a fragment offset */
    t->iphl = ihl;
    t->v6 = 0;
  } else if (p[0] >> 4 == 6) {
    if (p[6] != IPPROTO_TCP || 40 + (((uint32_t)p[4] << 8) | p[5]) != len) return 0;
    t->iphl = 40;
    t->v6 = 1;
  } else {
    return 0;
  }
  if (t->iphl + 20 > len) return 0;
  const uint8_t* tcp = p + t->iphl;
  uint32_t thl = (uint32_t)(tcp[12] >> 4) * 4;
  if (thl < 20 || t->iphl + thl >= len) return 0;
  if (tcp[13] != TCP_FLAG_ACK && tcp[13] != (TCP_FLAG_ACK | TCP_FLAG_PSH)) return 0;
  t->hl = t->iphl + thl;
  t->payload = len - t->hl;
  t->seq = get_be32(tcp + 4);
  return 1;
}

/* The IPv4 header checksum (if any) and the TCP checksum both verify. */
static int tcp_csum_ok(const uint8_t* p, uint32_t len, const tcp_seg_t* t) {
  if (!t->v6 && csum_fold(csum_add(0, p, t->iphl)) != 0xffff) return 0;
  uint64_t sum = t->v6 ? csum_add(0, p + 8, 32) : csum_add(0, p + 12, 8);
  sum += htons(IPPROTO_TCP) + htons((uint16_t)(len - t->iphl));
  return csum_fold(csum_add(sum, p + t->iphl, len - t->iphl)) == 0xffff;
}

/* `b` may follow `a` in one super-packet: every header byte alike but lengths, ids, checksums, seq and PSH. */
static int tcp_same_flow(const uint8_t* a, const tcp_seg_t* ta, const uint8_t* b, const tcp_seg_t* tb) {
  if (ta->v6 != tb->v6 || ta->hl != tb->hl || ta->iphl != tb->iphl) return 0;
  if (ta->v6) {
    if (memcmp(a, b, 4) != 0 || memcmp(a + 6, b + 6, 34) != 0) return 0;
  } else {
    if (a[1] != b[1] || a[6] != b[6] || memcmp(a + 8, b + 8, 2) != 0 || memcmp(a + 12, b + 12, ta->iphl - 12) != 0) return 0;
  }
  const uint8_t* x = a + ta->iphl;
  const uint8_t* y = b + tb->iphl;
  return memcmp(x, y, 4) == 0 && memcmp(x + 8, y + 8, 5) == 0 && memcmp(x + 14, y + 14, 2) == 0 &&
         memcmp(x + 18, y + 18, ta->hl - ta->iphl - 18) == 0;
}

/* Writes packets first..first+n-1 (one flow, checked) as one GSO super-packet; as tun_write_one. */
static int tun_write_gso(handle_t* h, const uint8_t* buf, const uint32_t* o, const uint32_t* l, uint32_t first, uint32_t n,
                         const tcp_seg_t* t, uint32_t total) {
  uint8_t head[VNET_HDR_LEN + 120];
  struct iovec iov[GRO_MAX_SEGMENTS + 1];
  const uint8_t* p = buf + o[first];
  struct virtio_net_hdr vh;
  memset(&vh, 0, sizeof vh);
  vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  vh.gso_type = t->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
  vh.hdr_len = (uint16_t)t->hl;
  vh.gso_size = (uint16_t)t->payload;
  vh.csum_start = (uint16_t)t->iphl;
  vh.csum_offset = 16;
  memcpy(head, &vh, VNET_HDR_LEN);
  uint8_t* ip = head + VNET_HDR_LEN;
  memcpy(ip, p, t->hl);
  uint64_t sum;
  if (t->v6) {
    put_be16(ip + 4, total - 40);
    sum = csum_add(0, ip + 8, 32);
  } else {
    put_be16(ip + 2, total);
    ip[10] = ip[11] = 0;
    uint16_t c = (uint16_t)~csum_fold(csum_add(0, ip, t->iphl));
    memcpy(ip + 10, &c, 2);
    sum = csum_add(0, ip + 12, 8);
  }
  uint8_t* tcp = ip + t->iphl;
  tcp[13] = buf[o[first + n - 1] + t->iphl + 13];
  /* CHECKSUM_PARTIAL: the field holds the pseudo-header sum, uncomplemented */
  sum += htons(IPPROTO_TCP) + htons((uint16_t)(total - t->iphl));
  uint16_t c = csum_fold(sum);
  memcpy(tcp + 16, &c, 2);
  iov[0].iov_base = head;
  iov[0].iov_len = VNET_HDR_LEN + t->hl;
  for (uint32_t k = 0; k < n; k++) {
    iov[k + 1].iov_base = (void*)(buf + o[first + k] + t->hl);
    iov[k + 1].iov_len = l[first + k] - t->hl;
  }
  for (;;) {
    ssize_t r = writev(h->fd, iov, (int)n + 1);
    if (r >= 0) {
      h->st.tx_packets += n;
      for (uint32_t k = 0; k < n; k++) h->st.tx_bytes += l[first + k];
      h->st.tx_gso_sends++;
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      h->st.tx_would_block++;
      return 0;
    }
    /* the caller writes these packets one by one instead */
    h->st.last_tx_errno = errno;
    return -errno;
  }
}

/* How many packets from `first` on go out as one super-packet (1: write it alone), and its length. */
static uint32_t gro_run(const uint8_t* buf, const uint32_t* o, const uint32_t* l, uint32_t first, uint32_t count,
                        tcp_seg_t* t, uint32_t* total) {
  const uint8_t* p = buf + o[first];
  if (!tcp_parse(p, l[first], t) || (p[t->iphl + 13] & TCP_FLAG_PSH)) return 1;
  uint32_t n = 1, next = t->seq + t->payload;
  *total = l[first];
  while (first + n < count && n < GRO_MAX_SEGMENTS) {
    const uint8_t* q = buf + o[first + n];
    tcp_seg_t u;
    if (!tcp_parse(q, l[first + n], &u) || u.seq != next || u.payload > t->payload || *total + u.payload > 65535 ||
        !tcp_same_flow(p, t, q, &u))
      break;
    if (n == 1 && !tcp_csum_ok(p, l[first], t)) return 1;
    if (!tcp_csum_ok(q, l[first + n], &u)) break;
    *total += u.payload;
    next += u.payload;
    n++;
    if (u.payload < t->payload || (q[u.iphl + 13] & TCP_FLAG_PSH)) break;
  }
  return n;
}

/* tunWriteBatch(handle, buffer, offsets, lengths, count) -> packets processed (stops early only on EAGAIN) */
static napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  handle_t* h = handle_args(env, info, 5, argv, KIND_TUN);
  if (!h) return NULL;
  void *buf, *offs, *lens;
  size_t buf_len, offs_n, lens_n;
  uint32_t count;
  if (!get_typed(env, argv[1], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[2], napi_uint32_array, &offs, &offs_n)) return throw_arg(env, "offsets must be a Uint32Array");
  if (!get_typed(env, argv[3], napi_uint32_array, &lens, &lens_n)) return throw_arg(env, "lengths must be a Uint32Array");
  if (!get_u32(env, argv[4], &count) || count > offs_n || count > lens_n) return throw_arg(env, "count exceeds offsets/lengths");
  const uint32_t* o = offs;
  const uint32_t* l = lens;
  for (uint32_t i = 0; i < count; i++)
    if (!check_range(buf_len, o[i], l[i])) return throw_arg(env, "an offset/length pair is out of the buffer's range");
  if (h->closed) return num(env, 0);
  uint32_t i = 0;
  while (i < count) {
    uint32_t n = 1, total = 0;
    tcp_seg_t t;
    if (h->offload && !h->no_coalesce) n = gro_run(buf, o, l, i, count, &t, &total);
    int r = n > 1 ? tun_write_gso(h, buf, o, l, i, n, &t, total) : tun_write_one(h, (uint8_t*)buf + o[i], l[i]);
    if (r == 0) break;
    if (r < 0 && n > 1) {
      /* a kernel that refuses the super-packet gets plain packets from now on, these included */
      h->no_coalesce = 1;
      continue;
    }
    i += n;
  }
  return num(env, i);
}

/* ---------- UDP ---------- */

static int parse_ip(const char* text, struct sockaddr_storage* ss, socklen_t* len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in* sin = (struct sockaddr_in*)ss;
  if (inet_pton(AF_INET, text, &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    *len = sizeof *sin;
    return 1;
  }
  struct sockaddr_in6* sin6 = (struct sockaddr_in6*)ss;
  char tmp[INET6_ADDRSTRLEN + IFNAMSIZ + 2];
  if (strlen(text) >= sizeof tmp) return 0;
  strcpy(tmp, text);
  char* pct = strchr(tmp, '%');
  if (pct) {
    *pct = 0;
    const char* scope = pct + 1;
    char* end;
    unsigned long idx = strtoul(scope, &end, 10);
    if (*scope == 0) return 0;
    if (*end != 0) idx = if_nametoindex(scope);
    if (idx == 0) return 0;
    sin6->sin6_scope_id = (uint32_t)idx;
  }
  if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1) return 0;
  sin6->sin6_family = AF_INET6;
  *len = sizeof *sin6;
  return 1;
}

static int get_opt_u32(napi_env env, napi_value obj, const char* key, uint32_t* out, int* present) {
  napi_value v;
  *present = 0;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  if (is_nullish(env, v)) return 1;
  *present = 1;
  return get_u32(env, v, out);
}

static int get_opt_bool(napi_env env, napi_value obj, const char* key) {
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return 0;
  return get_bool(env, v);
}

static void set_buffer_size(int fd, int force_opt, int opt, uint32_t size) {
  int v = (int)size;
  /* The *FORCE variants pass net.core.[rw]mem_max, which is often far too small for a tunnel. */
  if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) < 0) setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

/*
 * udpOpen(address, port, { receiveBufferSize, sendBufferSize, ipv6Only, fwmark, gso, gro, recvErr })
 *   -> handle
 */
static napi_value udp_open(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return throw_last(env);
  char addr_text[128];
  size_t alen;
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  if (t != napi_string) return throw_arg(env, "address must be a string");
  napi_get_value_string_utf8(env, argv[0], addr_text, sizeof addr_text, &alen);
  uint32_t port;
  if (!get_u32(env, argv[1], &port) || port > 65535) return throw_arg(env, "port must be an integer in 0..65535");
  napi_typeof(env, argv[2], &t);
  if (t != napi_object) return throw_arg(env, "options must be an object");
  struct sockaddr_storage ss;
  socklen_t sl;
  if (!parse_ip(addr_text, &ss, &sl)) {
    char msg[200];
    snprintf(msg, sizeof msg, "invalid IP address \"%s\"", addr_text);
    return throw_arg(env, msg);
  }
  uint32_t rcvbuf = 7u << 20, sndbuf = 7u << 20, fwmark = 0;
  int present;
  if (!get_opt_u32(env, argv[2], "receiveBufferSize", &rcvbuf, &present) || (present && rcvbuf > (1u << 30)))
    return throw_arg(env, "receiveBufferSize must be an integer up to 1 GiB");
  if (!get_opt_u32(env, argv[2], "sendBufferSize", &sndbuf, &present) || (present && sndbuf > (1u << 30)))
    return throw_arg(env, "sendBufferSize must be an integer up to 1 GiB");
  int has_mark = 0;
  if (!get_opt_u32(env, argv[2], "fwmark", &fwmark, &has_mark)) return throw_arg(env, "fwmark must be a 32-bit unsigned integer");
  int v6only = get_opt_bool(env, argv[2], "ipv6Only");
  int want_gso = get_opt_bool(env, argv[2], "gso");
  int want_gro = get_opt_bool(env, argv[2], "gro");
  int recverr = get_opt_bool(env, argv[2], "recvErr");

  if (ss.ss_family == AF_INET)
    ((struct sockaddr_in*)&ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6*)&ss)->sin6_port = htons((uint16_t)port);
  int family = ss.ss_family;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) {
    int e = errno;
    if (e == EAFNOSUPPORT) return throw_sys(env, e, "socket", "IPv%d is not available on this host", family == AF_INET ? 4 : 6);
    return throw_sys(env, e, "socket", "cannot create a UDP socket: %s", strerror(e));
  }
  int one = 1, zero = 0;
  if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one);
  set_buffer_size(fd, SO_RCVBUFFORCE, SO_RCVBUF, rcvbuf);
  set_buffer_size(fd, SO_SNDBUFFORCE, SO_SNDBUF, sndbuf);
  if (has_mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &fwmark, sizeof fwmark) < 0) {
    int e = errno;
    close(fd);
    if (e == EPERM) return throw_sys(env, e, "setsockopt(SO_MARK)", "setting fwmark needs CAP_NET_ADMIN (run as root)");
    return throw_sys(env, e, "setsockopt(SO_MARK)", "cannot set fwmark: %s", strerror(e));
  }
  if (recverr) {
    if (family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one);
    /* also covers IPv4 peers of a dual-stack socket */
    setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one);
  }
  if (bind(fd, (struct sockaddr*)&ss, sl) < 0) {
    int e = errno;
    close(fd);
    const char* fmt = family == AF_INET6 ? "[%s]:%u" : "%s:%u";
    char where[200];
    snprintf(where, sizeof where, fmt, addr_text, port);
    if (e == EADDRINUSE) return throw_sys(env, e, "bind", "UDP address %s is already in use", where);
    if (e == EADDRNOTAVAIL) return throw_sys(env, e, "bind", "cannot bind UDP %s: the address is not assigned to any interface here", where);
    if (e == EACCES || e == EPERM) return throw_sys(env, e, "bind", "binding UDP %s needs CAP_NET_BIND_SERVICE (run as root)", where);
    return throw_sys(env, e, "bind", "cannot bind UDP %s: %s", where, strerror(e));
  }
  handle_t* h = new_handle(env, KIND_UDP, fd);
  if (!h) return NULL;
  h->family = family;
  h->recverr = recverr;
  if (want_gso) {
    /* setting a zero segment size is a no-op that only succeeds where the kernel knows UDP_SEGMENT */
    int z = 0;
    h->gso = setsockopt(fd, SOL_UDP, UDP_SEGMENT, &z, sizeof z) == 0;
  }
  if (want_gro) h->gro = setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0;
  return wrap_handle(env, h);
}

static int ensure_send_scratch(handle_t* h, uint32_t n) {
  if (h->scap >= n) return 1;
  uint32_t cap = h->scap ? h->scap : 64;
  while (cap < n) cap *= 2;
  struct mmsghdr* m = realloc(h->smsgs, cap * sizeof *m);
  if (m) h->smsgs = m;
  struct iovec* v = realloc(h->siov, cap * sizeof *v);
  if (v) h->siov = v;
  struct sockaddr_storage* a = realloc(h->snames, cap * sizeof *a);
  if (a) h->snames = a;
  unsigned char* c = realloc(h->sctl, cap * CTL_SEND_SIZE);
  if (c) h->sctl = c;
  uint32_t* f = realloc(h->sfirst, cap * sizeof *f);
  if (f) h->sfirst = f;
  uint32_t* k = realloc(h->scount, cap * sizeof *k);
  if (k) h->scount = k;
  if (!m || !v || !a || !c || !f || !k) return 0;
  h->scap = cap;
  return 1;
}

/*
 * Builds one message per datagram, or with GSO one message per train of datagrams that are
 * contiguous in `buf`, go to the same destination and share a size (the last may be shorter):
 * the kernel then cuts the train into datagrams itself, one syscall and one route lookup for up
 * to 64 of them. Datagrams whose address record cannot be used are counted and skipped.
 * Returns the number of messages built.
 */
static uint32_t build_send(handle_t* h, const uint8_t* buf, const uint32_t* o, const uint32_t* l, const uint8_t* addrs,
                           int single, uint32_t from, uint32_t count, int use_gso, int count_errors) {
  uint32_t m = 0;
  uint32_t i = from;
  while (i < count) {
    const uint8_t* rec = addrs + (single ? 0 : (size_t)i * ADDR_BYTES);
    socklen_t nl;
    int e = decode_addr(rec, h->family, &h->snames[m], &nl);
    if (e) {
      if (count_errors) tx_failed(h, e);
      i++;
      continue;
    }
    uint32_t seg = l[i], total = seg, n = 1;
    if (use_gso && seg > 0) {
      while (i + n < count && n < GSO_MAX_SEGMENTS) {
        uint32_t j = i + n;
        if (o[j] != o[i] + total || l[j] > seg || l[j] == 0 || total + l[j] > GSO_MAX_BYTES) break;
        if (!single && memcmp(addrs + (size_t)j * ADDR_BYTES, rec, ADDR_BYTES) != 0) break;
        total += l[j];
        n++;
        if (l[j] < seg) break;
      }
    }
    h->siov[m].iov_base = (void*)(buf + o[i]);
    h->siov[m].iov_len = total;
    struct msghdr* mh = &h->smsgs[m].msg_hdr;
    memset(mh, 0, sizeof *mh);
    mh->msg_name = &h->snames[m];
    mh->msg_namelen = nl;
    mh->msg_iov = &h->siov[m];
    mh->msg_iovlen = 1;
    if (n > 1) {
      unsigned char* ctl = h->sctl + (size_t)m * CTL_SEND_SIZE;
      memset(ctl, 0, CTL_SEND_SIZE);
      mh->msg_control = ctl;
      mh->msg_controllen = CTL_SEND_SIZE;
      struct cmsghdr* c = CMSG_FIRSTHDR(mh);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      uint16_t gs = (uint16_t)seg;
      memcpy(CMSG_DATA(c), &gs, sizeof gs);
    }
    h->sfirst[m] = i;
    h->scount[m] = n;
    m++;
    i += n;
  }
  return m;
}

/*
 * udpSendBatch(handle, buffer, offsets, lengths, addrs, count) -> datagrams processed.
 * `addrs` holds one record per datagram, or exactly one record for all of them. Returns count
 * unless the socket buffer filled up (EAGAIN): then the index of the first datagram not sent.
 * Datagrams that failed for other reasons are counted in stats and skipped.
 */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  handle_t* h = handle_args(env, info, 6, argv, KIND_UDP);
  if (!h) return NULL;
  void *buf, *offs, *lens, *addrs;
  size_t buf_len, offs_n, lens_n, addrs_n;
  uint32_t count;
  if (!get_typed(env, argv[1], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[2], napi_uint32_array, &offs, &offs_n)) return throw_arg(env, "offsets must be a Uint32Array");
  if (!get_typed(env, argv[3], napi_uint32_array, &lens, &lens_n)) return throw_arg(env, "lengths must be a Uint32Array");
  if (!get_typed(env, argv[4], napi_uint8_array, &addrs, &addrs_n)) return throw_arg(env, "addrs must be a Uint8Array");
  if (!get_u32(env, argv[5], &count) || count > offs_n || count > lens_n) return throw_arg(env, "count exceeds offsets/lengths");
  int single = addrs_n == ADDR_BYTES;
  if (!single && addrs_n / ADDR_BYTES < count) return throw_arg(env, "addrs must hold one record per datagram, or exactly one");
  const uint32_t* o = offs;
  const uint32_t* l = lens;
  for (uint32_t i = 0; i < count; i++)
    if (!check_range(buf_len, o[i], l[i]) || l[i] > 65535) return throw_arg(env, "an offset/length pair is out of the buffer's range");
  if (h->closed) return num(env, 0);
  if (count == 0) return num(env, 0);
  if (!ensure_send_scratch(h, count)) return throw_sys(env, ENOMEM, "malloc", "out of memory for the send batch");

  uint32_t m = build_send(h, buf, o, l, addrs, single, 0, count, h->gso, 1);
  uint32_t j = 0;
  while (j < m) {
    int r = sendmmsg(h->fd, h->smsgs + j, m - j, MSG_DONTWAIT);
    if (r > 0) {
      for (uint32_t k = j; k < j + (uint32_t)r; k++) {
        h->st.tx_packets += h->scount[k];
        h->st.tx_bytes += (double)h->siov[k].iov_len;
        if (h->scount[k] > 1) h->st.tx_gso_sends++;
      }
      j += (uint32_t)r;
      continue;
    }
    int e = r == 0 ? EAGAIN : errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EWOULDBLOCK) {
      h->st.tx_would_block++;
      return num(env, h->sfirst[j]);
    }
    if (h->scount[j] > 1 && (e == EIO || e == EINVAL || e == EMSGSIZE)) {
      /* EIO: the device cannot checksum a GSO train; others: this train does not fit the path */
      if (e == EIO) h->gso = 0;
      /* datagrams skipped for bad records were counted by the first build */
      m = build_send(h, buf, o, l, addrs, single, h->sfirst[j], count, 0, 0);
      j = 0;
      continue;
    }
    h->st.tx_errors += h->scount[j];
    h->st.last_tx_errno = e;
    j++;
  }
  return num(env, count);
}

/* udpSend(handle, buffer, offset, length, addrs, index) -> 1 | 0 (would block) | -errno (counted) */
static napi_value udp_send(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  handle_t* h = handle_args(env, info, 6, argv, KIND_UDP);
  if (!h) return NULL;
  void *buf, *addrs;
  size_t buf_len, addrs_n;
  uint32_t off, len, idx;
  if (!get_typed(env, argv[1], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_u32(env, argv[2], &off) || !get_u32(env, argv[3], &len) || !check_range(buf_len, off, len))
    return throw_arg(env, "offset/length out of the buffer's range");
  if (!get_typed(env, argv[4], napi_uint8_array, &addrs, &addrs_n)) return throw_arg(env, "addrs must be a Uint8Array");
  if (!get_u32(env, argv[5], &idx) || (uint64_t)(idx + 1) * ADDR_BYTES > addrs_n) return throw_arg(env, "address index out of range");
  if (h->closed) return num(env, -EBADF);
  struct sockaddr_storage ss;
  socklen_t sl;
  int e = decode_addr((uint8_t*)addrs + (size_t)idx * ADDR_BYTES, h->family, &ss, &sl);
  if (e) {
    tx_failed(h, e);
    return num(env, -e);
  }
  for (;;) {
    ssize_t r = sendto(h->fd, (uint8_t*)buf + off, len, MSG_DONTWAIT, (struct sockaddr*)&ss, sl);
    if (r >= 0) {
      h->st.tx_packets++;
      h->st.tx_bytes += len;
      return num(env, 1);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      h->st.tx_would_block++;
      return num(env, 0);
    }
    tx_failed(h, errno);
    return num(env, -errno);
  }
}

/* udpInfo(handle) -> { address, port, family, gso, gro, recvErr, receiveBufferSize, sendBufferSize } */
static napi_value udp_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  handle_t* h = handle_args(env, info, 1, argv, KIND_UDP);
  if (!h) return NULL;
  if (h->closed) return throw_sys(env, EBADF, "getsockname", "the socket is closed");
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(h->fd, (struct sockaddr*)&ss, &sl) < 0) return throw_sys(env, errno, "getsockname", "getsockname: %s", strerror(errno));
  char text[INET6_ADDRSTRLEN + 1] = "";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in* sin = (struct sockaddr_in*)&ss;
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    port = ntohs(sin->sin_port);
  } else {
    struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&ss;
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    port = ntohs(sin6->sin6_port);
  }
  int rcv = 0, snd = 0;
  socklen_t il = sizeof rcv;
  getsockopt(h->fd, SOL_SOCKET, SO_RCVBUF, &rcv, &il);
  il = sizeof snd;
  getsockopt(h->fd, SOL_SOCKET, SO_SNDBUF, &snd, &il);
  napi_value o, s, b;
  NAPI_OK(napi_create_object(env, &o));
  NAPI_OK(napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &s));
  napi_set_named_property(env, o, "address", s);
  set_num(env, o, "port", port);
  set_num(env, o, "family", h->family == AF_INET ? 4 : 6);
  napi_get_boolean(env, h->gso, &b);
  napi_set_named_property(env, o, "gso", b);
  napi_get_boolean(env, h->gro, &b);
  napi_set_named_property(env, o, "gro", b);
  napi_get_boolean(env, h->recverr, &b);
  napi_set_named_property(env, o, "recvErr", b);
  set_num(env, o, "receiveBufferSize", rcv);
  set_num(env, o, "sendBufferSize", snd);
  return o;
}

/* ---------- WireGuard transport AEAD ---------- */

#ifdef HAVE_NODE_OPENSSL

#define WG_HEADER 16
#define WG_TAG 16
#define WG_KEY 32
#define WG_TRANSPORT_TYPE 4

/*
 * One cipher context per thread (each Node env runs on its own thread), set up once: creating
 * and initialising a context is most of what a per-packet node:crypto call costs. Freed with the
 * env that made it.
 */
static __thread EVP_CIPHER_CTX* aead_ctx;

static void free_aead_ctx(void* arg) {
  (void)arg;
  EVP_CIPHER_CTX_free(aead_ctx);
  aead_ctx = NULL;
}

static int have_openssl(void) {
  return &EVP_CIPHER_CTX_new != NULL && &EVP_CIPHER_CTX_free != NULL && &EVP_CIPHER_CTX_ctrl != NULL &&
         &EVP_CipherInit_ex != NULL && &EVP_CipherUpdate != NULL && &EVP_CipherFinal_ex != NULL &&
         &EVP_chacha20_poly1305 != NULL;
}

static EVP_CIPHER_CTX* get_aead_ctx(napi_env env) {
  if (aead_ctx) return aead_ctx;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  if (!c) return NULL;
  if (EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, NULL, NULL, 1) != 1) {
    EVP_CIPHER_CTX_free(c);
    return NULL;
  }
  aead_ctx = c;
  napi_add_env_cleanup_hook(env, free_aead_ctx, NULL);
  return c;
}

static void put_le32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

/* The RFC 8439 nonce WireGuard uses: 4 zero bytes, then the 64-bit counter little-endian. */
static void counter_nonce(uint8_t nonce[12], const uint8_t counter_le[8]) {
  memset(nonce, 0, 4);
  memcpy(nonce + 4, counter_le, 8);
}

/*
 * sealBatch(key, counterLo, counterHi, receiver, buffer, offsets, lengths, count) -> sealed.
 * Message i is built in place at buffer[offsets[i]]: its lengths[i] plaintext bytes (padding
 * included) already sit after a 16-byte gap for the header, and 16 bytes after them are free for
 * the tag. Counters run from counterLo/counterHi upwards, one per message in order; the caller
 * has reserved them (the limit REJECT_AFTER_MESSAGES is its to enforce). Returns the number
 * sealed: count, or fewer if OpenSSL fails (never seen; the rest are left unsent).
 */
static napi_value seal_batch(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  if (!get_args(env, info, 8, argv)) return throw_last(env);
  void *key, *buf, *offs, *lens;
  size_t key_len, buf_len, offs_n, lens_n;
  uint32_t lo, hi, receiver, count;
  if (!get_typed(env, argv[0], napi_uint8_array, &key, &key_len) || key_len != WG_KEY) return throw_arg(env, "key must be 32 bytes");
  if (!get_u32(env, argv[1], &lo) || !get_u32(env, argv[2], &hi)) return throw_arg(env, "counterLo/counterHi must be unsigned 32-bit integers");
  if (!get_u32(env, argv[3], &receiver)) return throw_arg(env, "receiver must be an unsigned 32-bit integer");
  if (!get_typed(env, argv[4], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[5], napi_uint32_array, &offs, &offs_n)) return throw_arg(env, "offsets must be a Uint32Array");
  if (!get_typed(env, argv[6], napi_uint32_array, &lens, &lens_n)) return throw_arg(env, "lengths must be a Uint32Array");
  if (!get_u32(env, argv[7], &count) || count > offs_n || count > lens_n) return throw_arg(env, "count exceeds offsets/lengths");
  const uint32_t* o = offs;
  const uint32_t* l = lens;
  for (uint32_t i = 0; i < count; i++)
    if ((uint64_t)o[i] + WG_HEADER + l[i] + WG_TAG > buf_len || l[i] > 65535)
      return throw_arg(env, "a message does not fit the buffer (header + length + tag)");
  EVP_CIPHER_CTX* c = get_aead_ctx(env);
  if (!c) return throw_sys(env, ENOMEM, "EVP_CIPHER_CTX_new", "cannot set up ChaCha20-Poly1305");
  if (EVP_CipherInit_ex(c, NULL, NULL, key, NULL, 1) != 1) return num(env, 0);
  uint32_t i = 0;
  for (; i < count; i++) {
    uint8_t* m = (uint8_t*)buf + o[i];
    uint8_t nonce[12];
    m[0] = WG_TRANSPORT_TYPE;
    m[1] = m[2] = m[3] = 0;
    put_le32(m + 4, receiver);
    put_le32(m + 8, lo);
    put_le32(m + 12, hi);
    counter_nonce(nonce, m + 8);
    uint8_t* body = m + WG_HEADER;
    int outl = 0, fin = 0;
    if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, 1) != 1) break;
    if (l[i] > 0 && EVP_CipherUpdate(c, body, &outl, body, (int)l[i]) != 1) break;
    if (EVP_CipherFinal_ex(c, body + outl, &fin) != 1) break;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, WG_TAG, body + l[i]) != 1) break;
    if (++lo == 0) hi++;
  }
  return num(env, i);
}

/*
 * openBatch(keys, keyIndex, buffer, offsets, lengths, count, out, outOffsets, results)
 *   -> messages that authenticated.
 * Message i is the whole transport message buffer[offsets[i], offsets[i] + lengths[i]); it is
 * opened with key keyIndex[i] of `keys` (32 bytes each; keyIndex null: key 0 for all) and the
 * counter in its header. results[i] is the plaintext length, written to out[outOffsets[i]], or
 * -1 when it does not authenticate (or is shorter than header + tag); then those bytes of `out`
 * are zeroed, so no unauthenticated plaintext is left behind. Replay is not checked here: that is
 * the caller's, after authentication.
 */
static napi_value open_batch(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!get_args(env, info, 9, argv)) return throw_last(env);
  void *keys, *kidx = NULL, *buf, *offs, *lens, *out, *oofs, *res;
  size_t keys_len, kidx_n = 0, buf_len, offs_n, lens_n, out_len, oofs_n, res_n;
  uint32_t count;
  if (!get_typed(env, argv[0], napi_uint8_array, &keys, &keys_len) || keys_len < WG_KEY || keys_len % WG_KEY != 0)
    return throw_arg(env, "keys must hold one or more 32-byte keys");
  if (!is_nullish(env, argv[1]) && !get_typed(env, argv[1], napi_uint8_array, &kidx, &kidx_n))
    return throw_arg(env, "keyIndex must be a Uint8Array or null");
  if (!get_typed(env, argv[2], napi_uint8_array, &buf, &buf_len)) return throw_arg(env, "buffer must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[3], napi_uint32_array, &offs, &offs_n)) return throw_arg(env, "offsets must be a Uint32Array");
  if (!get_typed(env, argv[4], napi_uint32_array, &lens, &lens_n)) return throw_arg(env, "lengths must be a Uint32Array");
  if (!get_u32(env, argv[5], &count) || count > offs_n || count > lens_n) return throw_arg(env, "count exceeds offsets/lengths");
  if (!get_typed(env, argv[6], napi_uint8_array, &out, &out_len)) return throw_arg(env, "out must be a Buffer or Uint8Array");
  if (!get_typed(env, argv[7], napi_uint32_array, &oofs, &oofs_n) || count > oofs_n) return throw_arg(env, "outOffsets must be a Uint32Array of count entries");
  if (!get_typed(env, argv[8], napi_int32_array, &res, &res_n) || count > res_n) return throw_arg(env, "results must be an Int32Array of count entries");
  if (kidx && count > kidx_n) return throw_arg(env, "keyIndex must hold count entries");
  const uint32_t* o = offs;
  const uint32_t* l = lens;
  const uint32_t* oo = oofs;
  const uint8_t* ki = kidx;
  size_t nkeys = keys_len / WG_KEY;
  for (uint32_t i = 0; i < count; i++) {
    if (!check_range(buf_len, o[i], l[i]) || l[i] > 65535) return throw_arg(env, "an offset/length pair is out of the buffer's range");
    if (l[i] >= WG_HEADER + WG_TAG && (uint64_t)oo[i] + (l[i] - WG_HEADER - WG_TAG) > out_len)
      return throw_arg(env, "a plaintext does not fit out at its outOffset");
    if (ki && ki[i] >= nkeys) return throw_arg(env, "a keyIndex entry is past the last key");
  }
  EVP_CIPHER_CTX* c = get_aead_ctx(env);
  if (!c) return throw_sys(env, ENOMEM, "EVP_CIPHER_CTX_new", "cannot set up ChaCha20-Poly1305");
  int32_t* r = res;
  uint32_t ok = 0;
  int keyed = -1;
  for (uint32_t i = 0; i < count; i++) {
    r[i] = -1;
    if (l[i] < WG_HEADER + WG_TAG) continue;
    const uint8_t* m = (const uint8_t*)buf + o[i];
    int k = ki ? ki[i] : 0;
    int plain = (int)(l[i] - WG_HEADER - WG_TAG);
    uint8_t* dst = (uint8_t*)out + oo[i];
    uint8_t nonce[12], tag[WG_TAG];
    counter_nonce(nonce, m + 8);
    /* the tag is copied first: the plaintext may overwrite the message (in place) */
    memcpy(tag, m + WG_HEADER + plain, WG_TAG);
    int outl = 0, fin = 0;
    if (EVP_CipherInit_ex(c, NULL, NULL, k == keyed ? NULL : (const uint8_t*)keys + (size_t)k * WG_KEY, nonce, 0) != 1) {
      keyed = -1;
      continue;
    }
    keyed = k;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, WG_TAG, tag) != 1) continue;
    int good = plain == 0 || EVP_CipherUpdate(c, dst, &outl, m + WG_HEADER, plain) == 1;
    good = good && EVP_CipherFinal_ex(c, dst + outl, &fin) == 1;
    if (!good) {
      memset(dst, 0, (size_t)plain);
      continue;
    }
    r[i] = plain;
    ok++;
  }
  return num(env, ok);
}

#endif /* HAVE_NODE_OPENSSL */

/* ---------- module ---------- */

static void export_fn(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  napi_set_named_property(env, exports, name, fn);
}

NAPI_MODULE_INIT() {
  export_fn(env, exports, "tunOpen", tun_open);
  export_fn(env, exports, "tunSetOffload", tun_set_offload);
  export_fn(env, exports, "tunEnableOffloads", tun_enable_offloads);
  export_fn(env, exports, "tunWrite", tun_write);
  export_fn(env, exports, "tunWriteBatch", tun_write_batch);
  export_fn(env, exports, "linkSet", link_set);
  export_fn(env, exports, "udpOpen", udp_open);
  export_fn(env, exports, "udpSend", udp_send);
  export_fn(env, exports, "udpSendBatch", udp_send_batch);
  export_fn(env, exports, "udpInfo", udp_info);
  export_fn(env, exports, "startRead", start_read);
  export_fn(env, exports, "stopRead", stop_read);
  export_fn(env, exports, "setRef", set_ref);
  export_fn(env, exports, "close", close_fn);
  export_fn(env, exports, "fd", get_fd);
  export_fn(env, exports, "stats", stats_fn);
#ifdef HAVE_NODE_OPENSSL
  if (have_openssl()) {
    export_fn(env, exports, "sealBatch", seal_batch);
    export_fn(env, exports, "openBatch", open_batch);
  }
#endif
  napi_value constants;
  napi_create_object(env, &constants);
  set_num(env, constants, "ADDR_BYTES", ADDR_BYTES);
  set_num(env, constants, "MAX_BATCH", MAX_BATCH);
  set_num(env, constants, "TUN_F_CSUM", TUN_F_CSUM);
  set_num(env, constants, "TUN_F_TSO4", TUN_F_TSO4);
  set_num(env, constants, "TUN_F_TSO6", TUN_F_TSO6);
  set_num(env, constants, "TUN_F_TSO_ECN", TUN_F_TSO_ECN);
  set_num(env, constants, "TUN_F_USO4", TUN_F_USO4);
  set_num(env, constants, "TUN_F_USO6", TUN_F_USO6);
  napi_set_named_property(env, exports, "constants", constants);
  return exports;
}
