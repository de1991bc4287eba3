/* IFD handler libraries: dlopen once per real path, resolve the entry points, share. */
#include "driver.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* dlsym hands back a data pointer; POSIX guarantees it can hold a function's. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)), "function pointers must fit void *");

/*
 * Under AddressSanitizer a driver stays mapped after its last reader goes:
 * LeakSanitizer checks at exit, and it can only name (and the tests' list of
 * third-party leaks only match) frames of libraries still mapped then. So
 * there, a driver loaded again keeps its static state, and a library
 * replaced at the same path is not read again until scardd restarts.
 */
#if defined(__SANITIZE_ADDRESS__)
#define KEEP_DRIVERS_MAPPED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEP_DRIVERS_MAPPED 1
#endif
#endif
#ifndef KEEP_DRIVERS_MAPPED
#define KEEP_DRIVERS_MAPPED 0
#endif

/* Loaded libraries; loading may happen from the main and the hotplug threads. */
static struct driver *registry;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
							  ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Stores the symbol's address into the function-pointer field at dst. */
static bool resolve(void *handle, const char *name, void *dst)
{
	void *sym = dlsym(handle, name);
	memcpy(dst, &sym, sizeof sym);
	return sym;
}

static const char *resolve_ops(void *handle, int *version, struct ifd_ops *ops)
{
	if (resolve(handle, "IFDHCreateChannelByName", &ops->create_channel_by_name))
		*version = 3;
	else if (dlsym(handle, "IFDHCreateChannel"))
		*version = 2;
	else
		return "exports neither IFDHCreateChannelByName nor IFDHCreateChannel";

	if (!resolve(handle, "IFDHCreateChannel", &ops->create_channel))
		return "IFDHCreateChannel";
	if (!resolve(handle, "IFDHCloseChannel", &ops->close_channel))
		return "IFDHCloseChannel";
	if (!resolve(handle, "IFDHGetCapabilities", &ops->get_capabilities))
		return "IFDHGetCapabilities";
	if (!resolve(handle, "IFDHSetCapabilities", &ops->set_capabilities))
		return "IFDHSetCapabilities";
	if (!resolve(handle, "IFDHPowerICC", &ops->power_icc))
		return "IFDHPowerICC";
	if (!resolve(handle, "IFDHTransmitToICC", &ops->transmit_to_icc))
		return "IFDHTransmitToICC";
	if (!resolve(handle, "IFDHICCPresence", &ops->icc_presence))
		return "IFDHICCPresence";
	/* Same name, two signatures: the API version says which one it is. */
	if (!resolve(handle, "IFDHControl",
		     *version == 3 ? (void *)&ops->control_v3 : (void *)&ops->control_v2))
		return "IFDHControl";
	resolve(handle, "IFDHSetProtocolParameters", &ops->set_protocol_parameters);
	return NULL;
}

static struct driver *find_loaded(const char *real)
{
	for (struct driver *d = registry; d; d = d->next)
		if (strcmp(d->path, real) == 0)
			return d;
	return NULL;
}

static struct driver *open_driver(const char *real, char *err, size_t errlen)
{
	void *handle = dlopen(real, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		const char *why = dlerror();
		/* Drivers log through the host's log_msg/log_xxd (pcsc-lite ABI). */
		bool host = why && strstr(why, "undefined symbol: log_");
		set_err(err, errlen, "cannot load driver: %s%s", why ? why : real,
			host ? " (the program must export log_msg and log_xxd)" : "");
		return NULL;
	}
	struct driver *drv = calloc(1, sizeof *drv);
	if (!drv || !(drv->path = strdup(real))) {
		set_err(err, errlen, "cannot load driver %s: out of memory", real);
		goto fail;
	}
	const char *missing = resolve_ops(handle, &drv->api_version, &drv->ops);
	if (missing) {
		if (drv->api_version == 0)
			set_err(err, errlen, "%s is not an IFD handler: %s", real, missing);
		else
			set_err(err, errlen, "%s is not a usable IFD handler: %s missing", real,
				missing);
		goto fail;
	}
	if (pthread_mutex_init(&drv->lock, NULL) != 0) {
		set_err(err, errlen, "cannot load driver %s: mutex init failed", real);
		goto fail;
	}
	drv->handle = handle;
	drv->refs = 1;
	return drv;
fail:
	if (drv)
		free(drv->path);
	free(drv);
	dlclose(handle);
	return NULL;
}

struct driver *driver_load(const char *path, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;

	if (!path || !*path) {
		set_err(err, errlen, "no driver path given");
		return NULL;
	}
	/* Keyed by real path so two names for one file share one handle. */
	if (!realpath(path, real)) {
		set_err(err, errlen, "driver %s: %s", path, strerror(errno));
		return NULL;
	}
	if (stat(real, &st) < 0 || !S_ISREG(st.st_mode)) {
		set_err(err, errlen, "driver %s: not a regular file", path);
		return NULL;
	}
	pthread_mutex_lock(&registry_lock);
	struct driver *drv = find_loaded(real);
	if (drv) {
		drv->refs++;
	} else if ((drv = open_driver(real, err, errlen))) {
		drv->next = registry;
		registry = drv;
	}
	pthread_mutex_unlock(&registry_lock);
	return drv;
}

static void unlink_driver(struct driver *drv)
{
	for (struct driver **p = &registry; *p; p = &(*p)->next) {
		if (*p == drv) {
			*p = drv->next;
			return;
		}
	}
}

void driver_unref(struct driver *drv)
{
	if (!drv)
		return;
	pthread_mutex_lock(&registry_lock);
	bool last = --drv->refs == 0;
	if (last)
		unlink_driver(drv);
	pthread_mutex_unlock(&registry_lock);
	if (!last)
		return;
	if (!KEEP_DRIVERS_MAPPED)
		dlclose(drv->handle);
	pthread_mutex_destroy(&drv->lock);
	free(drv->path);
	free(drv);
}
