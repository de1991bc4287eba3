/*
 * IFD handler libraries (driver API v2 and v3), loaded with dlopen.
 * A library is loaded once per path and shared by every reader that names it.
 */
#ifndef SCARDD_DRIVER_H
#define SCARDD_DRIVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <ifdhandler.h>

struct ifd_ops {
	RESPONSECODE (*create_channel_by_name)(DWORD lun, LPSTR device); /* v3 only */
	RESPONSECODE (*create_channel)(DWORD lun, DWORD channel);
	RESPONSECODE (*close_channel)(DWORD lun);
	RESPONSECODE (*get_capabilities)(DWORD lun, DWORD tag, PDWORD len, PUCHAR value);
	RESPONSECODE (*set_capabilities)(DWORD lun, DWORD tag, DWORD len, PUCHAR value);
	RESPONSECODE(*set_protocol_parameters)
	(DWORD lun, DWORD protocol, UCHAR flags, UCHAR pts1, UCHAR pts2, UCHAR pts3); /* optional */
	RESPONSECODE (*power_icc)(DWORD lun, DWORD action, PUCHAR atr, PDWORD atr_len);
	RESPONSECODE(*transmit_to_icc)
	(DWORD lun, SCARD_IO_HEADER send_pci, PUCHAR tx, DWORD tx_len, PUCHAR rx, PDWORD rx_len,
	 PSCARD_IO_HEADER recv_pci);
	RESPONSECODE (*icc_presence)(DWORD lun);
	RESPONSECODE(*control_v3)
	(DWORD lun, DWORD code, PUCHAR tx, DWORD tx_len, PUCHAR rx, DWORD rx_len, PDWORD returned);
	RESPONSECODE (*control_v2)(DWORD lun, PUCHAR tx, DWORD tx_len, PUCHAR rx, PDWORD rx_len);
};

struct driver {
	char *path;
	void *handle;
	int api_version; /* 2 or 3 */
	struct ifd_ops ops;
	/* Serializes calls into a driver that is not thread-safe (all readers of
	 * this library share it), as pcsc-lite does. */
	pthread_mutex_t lock;
	int refs;
	struct driver *next; /* registry list */
};

/*
 * Loads path (or returns the already loaded one, with its count raised).
 * NULL on failure with a reason in err: file missing, dlopen error, or
 * neither IFDHCreateChannelByName nor IFDHCreateChannel exported, or a
 * required symbol missing.
 */
struct driver *driver_load(const char *path, char *err, size_t errlen);
/* Drops one reference; the last one dlcloses the library. */
void driver_unref(struct driver *drv);

#endif
