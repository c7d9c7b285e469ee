/* Makes the gRPC servers inside TensorFlow listen on one address instead of every interface (Linux, glibc).
 *
 * TensorFlow's tf.data service servers (and its distributed-runtime servers) hand gRPC the fixed address
 * "0.0.0.0:PORT"; gRPC turns that wildcard into one dual-stack socket bound to [::], which accepts
 * connections on every interface, IPv4 and IPv6. No configuration field or environment variable changes
 * it. This library redirects the `bind` calls that TensorFlow's shared libraries make: their entries in
 * the global offset table (the pointers through which a library calls `bind` in the C library) are
 * pointed at `redirected_bind`, which replaces a wildcard address by the address set with
 * `two_stream_set_listen_address` and leaves every other address alone. The Python side
 * (two_stream_tf/listen_address.py) sets the address only while it starts a server, and afterwards checks
 * in /proc/net/tcp and /proc/net/tcp6 where the server really listens.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t address_lock = PTHREAD_MUTEX_INITIALIZER;
static int listen_family = 0; /* 0: no redirection; AF_INET or AF_INET6: the family of the address below */
static struct in_addr listen_v4;
static struct in6_addr listen_v6;

/* Sets the address wildcard binds are redirected to ("" or NULL: none). Returns 0, or -1 if not an IP. */
int two_stream_set_listen_address(const char *address) {
  struct in_addr v4;
  struct in6_addr v6;
  int family = 0;
  if (address != NULL && address[0] != '\0') {
    if (inet_pton(AF_INET, address, &v4) == 1) {
      family = AF_INET;
    } else if (inet_pton(AF_INET6, address, &v6) == 1) {
      family = AF_INET6;
    } else {
      return -1;
    }
  }
  pthread_mutex_lock(&address_lock);
  listen_family = family;
  if (family == AF_INET) listen_v4 = v4;
  if (family == AF_INET6) listen_v6 = v6;
  pthread_mutex_unlock(&address_lock);
  return 0;
}

static int is_wildcard(const struct sockaddr *address, socklen_t length) {
  if (address == NULL) return 0;
  if (address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
    return ((const struct sockaddr_in *)address)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (address->sa_family == AF_INET6 && length >= sizeof(struct sockaddr_in6)) {
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)address)->sin6_addr);
  }
  return 0;
}

int redirected_bind(int socket_fd, const struct sockaddr *address, socklen_t length) {
  if (!is_wildcard(address, length)) return bind(socket_fd, address, length);
  pthread_mutex_lock(&address_lock);
  int family = listen_family;
  struct in_addr v4 = listen_v4;
  struct in6_addr v6 = listen_v6;
  pthread_mutex_unlock(&address_lock);
  if (family == 0) return bind(socket_fd, address, length);

  if (address->sa_family == AF_INET) {
    if (family != AF_INET) {
      /* An IPv6 listening address cannot serve an IPv4 socket: refuse rather than listen everywhere. */
      errno = EADDRNOTAVAIL;
      return -1;
    }
    struct sockaddr_in local;
    memcpy(&local, address, sizeof(local));
    local.sin_addr = v4;
    return bind(socket_fd, (const struct sockaddr *)&local, sizeof(local));
  }
  struct sockaddr_in6 local;
  memcpy(&local, address, sizeof(local));
  if (family == AF_INET6) {
    local.sin6_addr = v6;
  } else {
    /* An IPv4 address on gRPC's dual-stack socket: its IPv4-mapped form (::ffff:a.b.c.d). */
    memset(&local.sin6_addr, 0, sizeof(local.sin6_addr));
    local.sin6_addr.s6_addr[10] = 0xff;
    local.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&local.sin6_addr.s6_addr[12], &v4, 4);
  }
  return bind(socket_fd, (const struct sockaddr *)&local, sizeof(local));
}

struct patch_request {
  const char *name_part; /* patch only objects whose path contains this */
  uintptr_t own_base;    /* this library's load address: never patched (its bind is the real one) */
  int patched;           /* slots now pointing at redirected_bind */
  int failed;            /* slots that could not be written */
};

static uintptr_t absolute(uintptr_t base, uintptr_t pointer) {
  /* glibc relocates most dynamic-section pointers when it loads an object; other loaders do not. */
  return pointer < base ? pointer + base : pointer;
}

static int is_slot_relocation(ElfW(Xword) info, int jump_table) {
  if (jump_table) return 1; /* every entry of the PLT relocation table is a jump slot */
#if defined(__x86_64__)
  return ELF64_R_TYPE(info) == R_X86_64_GLOB_DAT;
#elif defined(__aarch64__)
  return ELF64_R_TYPE(info) == R_AARCH64_GLOB_DAT;
#else
  (void)info;
  return 0;
#endif
}

static void patch_slot(struct patch_request *request, uintptr_t slot_address) {
  void **slot = (void **)slot_address;
  if (*slot == (void *)&redirected_bind) {
    request->patched++;
    return;
  }
  long page_size = sysconf(_SC_PAGESIZE);
  uintptr_t page = slot_address & ~(uintptr_t)(page_size - 1);
  /* The slot may sit in the RELRO part made read-only after loading; it stays writable afterwards. */
  if (mprotect((void *)page, (size_t)page_size, PROT_READ | PROT_WRITE) != 0) {
    request->failed++;
    return;
  }
  *slot = (void *)&redirected_bind;
  request->patched++;
}

static void patch_table(struct patch_request *request, uintptr_t base, const ElfW(Rela) * table, size_t size,
                        int jump_table, const ElfW(Sym) * symbols, const char *names) {
  for (size_t i = 0; i < size / sizeof(ElfW(Rela)); i++) {
    const ElfW(Rela) *relocation = &table[i];
    if (!is_slot_relocation(relocation->r_info, jump_table)) continue;
    size_t symbol = ELF64_R_SYM(relocation->r_info);
    if (symbol == 0 || strcmp(names + symbols[symbol].st_name, "bind") != 0) continue;
    patch_slot(request, base + relocation->r_offset);
  }
}

static int patch_object(struct dl_phdr_info *object, size_t size, void *data) {
  (void)size;
  struct patch_request *request = data;
  uintptr_t base = object->dlpi_addr;
  if (base == request->own_base || object->dlpi_name == NULL ||
      strstr(object->dlpi_name, request->name_part) == NULL) {
    return 0;
  }
  const ElfW(Dyn) *dynamic = NULL;
  for (int i = 0; i < object->dlpi_phnum; i++) {
    if (object->dlpi_phdr[i].p_type == PT_DYNAMIC) dynamic = (const ElfW(Dyn) *)(base + object->dlpi_phdr[i].p_vaddr);
  }
  if (dynamic == NULL) return 0;
  const ElfW(Sym) *symbols = NULL;
  const char *names = NULL;
  const ElfW(Rela) *jump_table = NULL, *table = NULL;
  size_t jump_table_size = 0, table_size = 0;
  for (const ElfW(Dyn) *entry = dynamic; entry->d_tag != DT_NULL; entry++) {
    switch (entry->d_tag) {
      case DT_SYMTAB: symbols = (const ElfW(Sym) *)absolute(base, entry->d_un.d_ptr); break;
      case DT_STRTAB: names = (const char *)absolute(base, entry->d_un.d_ptr); break;
      case DT_JMPREL: jump_table = (const ElfW(Rela) *)absolute(base, entry->d_un.d_ptr); break;
      case DT_PLTRELSZ: jump_table_size = entry->d_un.d_val; break;
      case DT_RELA: table = (const ElfW(Rela) *)absolute(base, entry->d_un.d_ptr); break;
      case DT_RELASZ: table_size = entry->d_un.d_val; break;
      default: break;
    }
  }
  if (symbols == NULL || names == NULL) return 0;
  if (jump_table != NULL) patch_table(request, base, jump_table, jump_table_size, 1, symbols, names);
  if (table != NULL) patch_table(request, base, table, table_size, 0, symbols, names);
  return 0;
}

/* Points the `bind` slots of every loaded object whose path contains `name_part` at redirected_bind.
 * Returns the number of slots that now point there, or -1 if a slot could not be written. */
int two_stream_redirect_bind(const char *name_part) {
  Dl_info own;
  if (dladdr((void *)&redirected_bind, &own) == 0) return -1;
  struct patch_request request = {name_part, (uintptr_t)own.dli_fbase, 0, 0};
  dl_iterate_phdr(patch_object, &request);
  return request.failed ? -1 : request.patched;
}
