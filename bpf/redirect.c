//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// skiff's redirection of a pod's outbound TCP connections into its sidecar.
//
//   cgroup/connect4, cgroup/connect6
//     A TCP connect to a destination (IP, port) in the services map is
//     rewritten to the sidecar (127.0.0.1:15001; ::1 for IPv6 destinations;
//     ::ffff:127.0.0.1 for IPv4-mapped destinations of dual-stack sockets)
//     and the original destination is saved under the socket cookie.
//     Never for the sidecar's UID, never for loopback destinations, never
//     for the pod's excluded ports and CIDRs; with one exception: a connect
//     to 127.0.0.1:PROBE_PORT, whatever the UID, so that the sidecar can
//     check that redirection is in place. That one is redirected only once
//     the agent has armed it (settings.probe_ip4), and its original
//     destination is recorded as probe_ip4:PROBE_PORT, an address derived
//     from the agent's site: the sidecar reads it back and so knows that
//     its own site's programs (with its site's services) redirect the pod.
//   sockops
//     When such a connection is established, its original destination
//     moves to pair_orig, keyed by network namespace cookie and 4-tuple.
//   cgroup/getsockopt
//     getsockopt(SOL_IP or SOL_IPV6, SO_ORIGINAL_DST) on the sidecar's
//     accepted socket is answered from pair_orig, so the sidecar needs no
//     privileges and reads the destination as after an iptables REDIRECT.
//
// Addresses are kept as 16 bytes, IPv4 as ::ffff:a.b.c.d, in network byte
// order; ports in host byte order. docs/ebpf.md describes every map.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 // also IP6T_SO_ORIGINAL_DST

// The sidecar's redirect self-check: a connect to PROBE_ADDR:PROBE_PORT is
// always redirected. contract.RedirectProbeHost and RedirectProbePort (a
// test checks they agree).
#define PROBE_PORT 15002
#define PROBE_ADDR 0x7f000001 // 127.0.0.1

// Indexes into counters.
enum prog_index {
	PROG_CONNECT4 = 0,
	PROG_CONNECT6 = 1,
	PROG_SOCKOPS = 2,
	PROG_GETSOCKOPT = 3,
	PROG_COUNT = 4,
};

enum outcome {
	REDIRECTED = 0,
	PASSED = 1,
	FAILED = 2,
};

// pod_config.flags
#define POD_EXCLUDE_PORTS 1
#define POD_EXCLUDE_CIDRS 2

#define MAX_LEVELS 32

// barrier_var (bpf_helpers.h) keeps clang from folding a context field
// load into pointer arithmetic on the context, which the verifier refuses.
#define READ_SK_IP6(dst, src)                                                                                          \
	do {                                                                                                           \
		__u32 w0 = (src)[0], w1 = (src)[1], w2 = (src)[2], w3 = (src)[3];                                      \
		barrier_var(w0);                                                                                       \
		barrier_var(w1);                                                                                       \
		barrier_var(w2);                                                                                       \
		barrier_var(w3);                                                                                       \
		(dst)[0] = w0;                                                                                         \
		(dst)[1] = w1;                                                                                         \
		(dst)[2] = w2;                                                                                         \
		(dst)[3] = w3;                                                                                         \
	} while (0)

struct settings {
	__u32 sidecar_ip4;    // network order
	__u32 sidecar_ip6[4]; // network order
	__u16 sidecar_port;   // host order; 0 disables redirection
	__u16 pad;
	__u32 exclude_uid;
	__u32 pod_levels; // bit n: some pod config is keyed by a cgroup at level n
	__u32 probe_ip4;  // network order: the site's self-check address; 0: not armed
};

struct svc_key {
	__u32 ip[4];
	__u16 port;
	__u16 pad;
};

struct svc_value {
	__u32 flags; // reserved
};

struct orig_dst {
	__u32 ip[4];
	__u16 port;
	__u16 family; // of the original connect: AF_INET (connect4 or mapped) or AF_INET6
};

// A connection from the application's end (client) to the sidecar (server).
struct pair_key {
	__u64 netns;
	__u32 client_ip[4];
	__u32 server_ip[4];
	__u16 client_port;
	__u16 server_port;
	__u32 pad;
};

struct pod_config {
	__u32 flags;
	__u32 level; // of the cgroup the config is keyed by
};

struct port_key {
	__u64 cgroup;
	__u16 port;
	__u16 pad[3];
};

// LPM trie key: 64 bits of cgroup id, always matched whole, then the
// address prefix (an IPv4 /n is a prefix of 96+n bits of ::ffff:0:0/96).
struct cidr_key {
	__u32 prefixlen;
	__u32 cgroup[2]; // low, high 32 bits
	__u32 ip[4];
};

struct counters {
	__u64 redirected;
	__u64 passed;
	__u64 errors;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct svc_key);
	__type(value, struct svc_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cookie_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pair_key);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pair_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pod_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} excl_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__type(key, struct cidr_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} excl_cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROG_COUNT);
	__type(key, __u32);
	__type(value, struct counters);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

static __always_inline void count(__u32 prog, enum outcome what)
{
	struct counters *c = bpf_map_lookup_elem(&counters, &prog);
	if (!c)
		return;
	// Per-CPU values: programs do not migrate while they run.
	if (what == REDIRECTED)
		c->redirected++;
	else if (what == PASSED)
		c->passed++;
	else
		c->errors++;
}

static __always_inline void set_mapped(__u32 ip[4], __u32 ip4)
{
	ip[0] = 0;
	ip[1] = 0;
	ip[2] = bpf_htonl(0xffff);
	ip[3] = ip4;
}

static __always_inline int is_mapped(const __u32 ip[4])
{
	return ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff);
}

// Loopback and unspecified destinations stay on the host: 127.0.0.0/8,
// 0.0.0.0, ::1, :: (and their mapped forms).
static __always_inline int is_local(const __u32 ip[4])
{
	if (is_mapped(ip))
		return (ip[3] & bpf_htonl(0xff000000)) == bpf_htonl(0x7f000000) || ip[3] == 0;
	return ip[0] == 0 && ip[1] == 0 && ip[2] == 0 && (ip[3] == 0 || ip[3] == bpf_htonl(1));
}

// is_probe reports whether the destination is the sidecar's self-check,
// PROBE_ADDR:PROBE_PORT (or its ::ffff: form from a dual-stack socket).
static __always_inline int is_probe(const __u32 ip[4], __u16 port)
{
	return port == PROBE_PORT && is_mapped(ip) && ip[3] == bpf_htonl(PROBE_ADDR);
}

// excluded reports whether the pod of the calling task excludes the
// destination. The pod's config is keyed by the id of the cgroup the agent
// attached to, which may be an ancestor of the task's cgroup (a container
// cgroup under a pod cgroup); settings.pod_levels says which levels to
// look at, deepest first.
static __always_inline int excluded(const __u32 ip[4], __u16 port, __u32 levels)
{
	if (!levels)
		return 0;
	for (int i = MAX_LEVELS - 1; i >= 0; i--) {
		if (!(levels & (1u << i)))
			continue;
		__u64 cg = bpf_get_current_ancestor_cgroup_id(i);
		if (!cg)
			continue;
		struct pod_config *pod = bpf_map_lookup_elem(&pods, &cg);
		if (!pod)
			continue;
		if (pod->flags & POD_EXCLUDE_PORTS) {
			struct port_key pk = {.cgroup = cg, .port = port};
			if (bpf_map_lookup_elem(&excl_ports, &pk))
				return 1;
		}
		if (pod->flags & POD_EXCLUDE_CIDRS) {
			struct cidr_key ck = {
				.prefixlen = 64 + 128,
				.cgroup = {(__u32)cg, (__u32)(cg >> 32)},
				.ip = {ip[0], ip[1], ip[2], ip[3]},
			};
			if (bpf_map_lookup_elem(&excl_cidrs, &ck))
				return 1;
		}
		return 0;
	}
	return 0;
}

// wanted reports whether a TCP connect goes to the sidecar: the self-check
// whatever the UID once armed; otherwise a destination in services, unless
// the sidecar's UID makes it, it is loopback, or the pod excludes it.
static __always_inline int wanted(const __u32 ip[4], __u16 port, const struct settings *s)
{
	if (is_probe(ip, port))
		return s->probe_ip4 != 0;
	if ((__u32)bpf_get_current_uid_gid() == s->exclude_uid)
		return 0;
	if (is_local(ip))
		return 0;
	struct svc_key key = {.ip = {ip[0], ip[1], ip[2], ip[3]}, .port = port};
	if (!bpf_map_lookup_elem(&services, &key))
		return 0;
	return !excluded(ip, port, s->pod_levels);
}

// decide saves the original destination and returns the settings when the
// connect is to be redirected; NULL leaves it untouched.
static __always_inline struct settings *decide(struct bpf_sock_addr *ctx, const __u32 ip[4], __u16 port,
					       __u16 family, __u32 prog)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return NULL; // not counted: UDP, raw and MPTCP are none of our business
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&settings, &zero);
	if (!s || !s->sidecar_port)
		goto pass;
	if (!wanted(ip, port, s))
		goto pass;
	struct orig_dst orig = {.ip = {ip[0], ip[1], ip[2], ip[3]}, .port = port, .family = family};
	if (is_probe(ip, port))
		orig.ip[3] = s->probe_ip4; // still ::ffff:127.x.y.z: the site's self-check address
	__u64 cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&cookie_orig, &cookie, &orig, BPF_ANY)) {
		count(prog, FAILED); // fail open: the connect goes where it was headed
		return NULL;
	}
	count(prog, REDIRECTED);
	return s;
pass:
	count(prog, PASSED);
	return NULL;
}

SEC("cgroup/connect4")
int skiff_connect4(struct bpf_sock_addr *ctx)
{
	__u32 ip[4];
	set_mapped(ip, ctx->user_ip4);
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	struct settings *s = decide(ctx, ip, port, AF_INET, PROG_CONNECT4);
	if (s) {
		ctx->user_ip4 = s->sidecar_ip4;
		ctx->user_port = (__u32)bpf_htons(s->sidecar_port);
	}
	return 1;
}

SEC("cgroup/connect6")
int skiff_connect6(struct bpf_sock_addr *ctx)
{
	__u32 ip[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	int mapped = is_mapped(ip);
	struct settings *s = decide(ctx, ip, port, mapped ? AF_INET : AF_INET6, PROG_CONNECT6);
	if (!s)
		return 1;
	if (mapped) {
		// A dual-stack socket headed for an IPv4 address: keep it IPv4
		// so that it reaches the sidecar's IPv4 listener.
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = s->sidecar_ip4;
	} else {
		ctx->user_ip6[0] = s->sidecar_ip6[0];
		ctx->user_ip6[1] = s->sidecar_ip6[1];
		ctx->user_ip6[2] = s->sidecar_ip6[2];
		ctx->user_ip6[3] = s->sidecar_ip6[3];
	}
	ctx->user_port = (__u32)bpf_htons(s->sidecar_port);
	return 1;
}

SEC("sockops")
int skiff_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct orig_dst *found = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!found) {
		count(PROG_SOCKOPS, PASSED);
		return 1;
	}
	struct orig_dst orig = *found;
	struct pair_key key = {.netns = bpf_get_netns_cookie(skops)};
	__u32 family = skops->family;
	barrier_var(family);
	if (family == AF_INET) {
		__u32 local4 = skops->local_ip4;
		barrier_var(local4);
		__u32 remote4 = skops->remote_ip4;
		barrier_var(remote4);
		set_mapped(key.client_ip, local4);
		set_mapped(key.server_ip, remote4);
	} else {
		READ_SK_IP6(key.client_ip, skops->local_ip6);
		READ_SK_IP6(key.server_ip, skops->remote_ip6);
	}
	__u32 lport = skops->local_port;
	barrier_var(lport);
	__u32 rport = skops->remote_port;
	barrier_var(rport);
	key.client_port = (__u16)lport;           // host order
	key.server_port = (__u16)bpf_ntohl(rport); // network order, upper half
	bpf_map_delete_elem(&cookie_orig, &cookie);
	if (bpf_map_update_elem(&pair_orig, &key, &orig, BPF_ANY)) {
		count(PROG_SOCKOPS, FAILED);
		return 1;
	}
	count(PROG_SOCKOPS, REDIRECTED);
	return 1;
}

struct sockaddr_in_ {
	__u16 family;
	__be16 port;
	__be32 addr;
	__u8 zero[8];
};

struct sockaddr_in6_ {
	__u16 family;
	__be16 port;
	__be32 flowinfo;
	__u32 addr[4];
	__u32 scope_id;
};

SEC("cgroup/getsockopt")
int skiff_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->optname != SO_ORIGINAL_DST)
		return 1;
	int level = ctx->level;
	if (level != SOL_IP && level != SOL_IPV6)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		goto pass;
	// The sidecar's accepted socket: the application's end is its peer.
	// Each field is read into a register on its own: the verifier refuses
	// the pointer arithmetic on sk that clang otherwise emits.
	struct pair_key key = {.netns = bpf_get_netns_cookie(ctx)};
	__u32 family = sk->family;
	barrier_var(family);
	if (family == AF_INET) {
		__u32 dst4 = sk->dst_ip4;
		barrier_var(dst4);
		__u32 src4 = sk->src_ip4;
		barrier_var(src4);
		set_mapped(key.client_ip, dst4);
		set_mapped(key.server_ip, src4);
	} else {
		READ_SK_IP6(key.client_ip, sk->dst_ip6);
		READ_SK_IP6(key.server_ip, sk->src_ip6);
	}
	__u16 dport = sk->dst_port;
	barrier_var(dport);
	__u32 sport = sk->src_port;
	barrier_var(sport);
	key.client_port = bpf_ntohs(dport); // network order
	key.server_port = (__u16)sport;     // host order
	struct orig_dst *orig = bpf_map_lookup_elem(&pair_orig, &key);
	if (!orig)
		goto pass; // not ours: keep the kernel's answer (conntrack's, or an error)

	if (level == SOL_IP) {
		struct sockaddr_in_ *sin = ctx->optval;
		if ((void *)(sin + 1) > ctx->optval_end || !is_mapped(orig->ip))
			goto fail; // buffer too small, or an IPv6 destination asked for as IPv4
		sin->family = AF_INET;
		sin->port = bpf_htons(orig->port);
		sin->addr = orig->ip[3];
		__builtin_memset(sin->zero, 0, sizeof(sin->zero));
		ctx->optlen = sizeof(*sin);
	} else {
		struct sockaddr_in6_ *sin6 = ctx->optval;
		if ((void *)(sin6 + 1) > ctx->optval_end)
			goto fail;
		sin6->family = AF_INET6;
		sin6->port = bpf_htons(orig->port);
		sin6->flowinfo = 0;
		sin6->addr[0] = orig->ip[0];
		sin6->addr[1] = orig->ip[1];
		sin6->addr[2] = orig->ip[2];
		sin6->addr[3] = orig->ip[3];
		sin6->scope_id = 0;
		ctx->optlen = sizeof(*sin6);
	}
	// clang 14 merges the adjacent 4-byte optlen and retval stores into one
	// 8-byte context store, which the verifier refuses; keep them apart.
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	count(PROG_GETSOCKOPT, REDIRECTED);
	return 1;
fail:
	count(PROG_GETSOCKOPT, FAILED);
	return 1;
pass:
	count(PROG_GETSOCKOPT, PASSED);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
