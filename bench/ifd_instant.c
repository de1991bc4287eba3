/*
 * ifd_instant: an IFD handler (driver API v3) whose card answers at once, so
 * that a benchmark measures the daemon and not a reader.
 *
 * Every slot always holds a card. Power-up and reset return a fixed ATR that
 * offers T=0 and T=1 (both daemons negotiate T=1), a transmit answers 90 00,
 * a presence check answers "present". The request path touches no file and
 * takes no lock; the driver says it is thread-safe, per reader and per slot.
 *
 * reader.conf: DEVICENAME is free text; "slots=N" in it (1..16) gives the
 * reader N slots, default 1. Several stanzas may name this library: each is
 * a reader of its own. Loads in scardd and in pcsc-lite's pcscd alike.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* the meson build sets it for the whole project */
#endif
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <ifdhandler.h>
#include <reader.h>

#define MAX_SLOTS 16
#define MAX_READERS 64

/* TD1 offers T=0, TD2 T=1; TCK = 0x80 ^ 0x80 ^ 0x01. */
static const UCHAR atr[] = { 0x3B, 0x80, 0x80, 0x01, 0x01 };
static const UCHAR status_ok[] = { 0x90, 0x00 };
static const char vendor_name[] = "scardd bench";

/* Slot count per open reader (Lun >> 16); read at open and by
 * IFDHGetCapabilities, never on the request path. */
static pthread_mutex_t readers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	DWORD index;
	unsigned slots;
	unsigned opens; /* pcscd opens a multi-slot reader once per slot */
} readers[MAX_READERS];

static unsigned parse_slots(const char *device)
{
	const char *p = device ? strstr(device, "slots=") : NULL;
	if (!p)
		return 1;
	long n = strtol(p + strlen("slots="), NULL, 10);
	return n < 1 ? 1 : n > MAX_SLOTS ? MAX_SLOTS : (unsigned)n;
}

static RESPONSECODE open_reader(DWORD Lun, unsigned slots)
{
	RESPONSECODE rc = IFD_COMMUNICATION_ERROR;
	pthread_mutex_lock(&readers_lock);
	int free_at = -1;
	for (int i = 0; i < MAX_READERS; i++) {
		if (readers[i].opens && readers[i].index == Lun >> 16) {
			readers[i].opens++;
			rc = IFD_SUCCESS;
			goto out;
		}
		if (!readers[i].opens && free_at < 0)
			free_at = i;
	}
	if (free_at >= 0) {
		readers[free_at].index = Lun >> 16;
		readers[free_at].slots = slots;
		readers[free_at].opens = 1;
		rc = IFD_SUCCESS;
	}
out:
	pthread_mutex_unlock(&readers_lock);
	return rc;
}

/* The slot count of the reader behind Lun, 0 if it is not open. */
static unsigned reader_slots(DWORD Lun)
{
	unsigned slots = 0;
	pthread_mutex_lock(&readers_lock);
	for (int i = 0; i < MAX_READERS; i++)
		if (readers[i].opens && readers[i].index == Lun >> 16)
			slots = readers[i].slots;
	pthread_mutex_unlock(&readers_lock);
	return slots;
}

static RESPONSECODE put_value(PUCHAR Value, PDWORD Length, const void *src, size_t n)
{
	if (!Length)
		return IFD_COMMUNICATION_ERROR;
	if (*Length < n || !Value) {
		*Length = n;
		return IFD_ERROR_INSUFFICIENT_BUFFER;
	}
	memcpy(Value, src, n);
	*Length = n;
	return IFD_SUCCESS;
}

RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName)
{
	return open_reader(Lun, parse_slots(DeviceName));
}

RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel)
{
	(void)Channel;
	return open_reader(Lun, 1);
}

RESPONSECODE IFDHCloseChannel(DWORD Lun)
{
	RESPONSECODE rc = IFD_COMMUNICATION_ERROR;
	pthread_mutex_lock(&readers_lock);
	for (int i = 0; i < MAX_READERS; i++) {
		if (readers[i].opens && readers[i].index == Lun >> 16) {
			readers[i].opens--;
			rc = IFD_SUCCESS;
			break;
		}
	}
	pthread_mutex_unlock(&readers_lock);
	return rc;
}

RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value)
{
	unsigned slots = reader_slots(Lun);
	if (slots == 0)
		return IFD_COMMUNICATION_ERROR;
	UCHAR byte;
	switch (Tag) {
	case TAG_IFD_ATR: return put_value(Value, Length, atr, sizeof atr);
	case TAG_IFD_SLOTS_NUMBER: byte = (UCHAR)slots; return put_value(Value, Length, &byte, 1);
	case TAG_IFD_SIMULTANEOUS_ACCESS:
		byte = MAX_READERS;
		return put_value(Value, Length, &byte, 1);
	case TAG_IFD_THREAD_SAFE:
	case TAG_IFD_SLOT_THREAD_SAFE: byte = 1; return put_value(Value, Length, &byte, 1);
	case SCARD_ATTR_VENDOR_NAME:
		return put_value(Value, Length, vendor_name, sizeof vendor_name);
	default: return IFD_ERROR_TAG;
	}
}

RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value)
{
	(void)Lun;
	(void)Length;
	(void)Value;
	return Tag == TAG_IFD_DEVICE_REMOVED ? IFD_SUCCESS : IFD_ERROR_TAG;
}

RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1,
				       UCHAR PTS2, UCHAR PTS3)
{
	(void)Lun;
	(void)Protocol;
	(void)Flags;
	(void)PTS1;
	(void)PTS2;
	(void)PTS3;
	return IFD_SUCCESS;
}

RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength)
{
	(void)Lun;
	switch (Action) {
	case IFD_POWER_DOWN:
		if (AtrLength)
			*AtrLength = 0;
		return IFD_SUCCESS;
	case IFD_POWER_UP:
	case IFD_RESET:
		if (!Atr || !AtrLength || *AtrLength < sizeof atr)
			return IFD_COMMUNICATION_ERROR;
		memcpy(Atr, atr, sizeof atr);
		*AtrLength = sizeof atr;
		return IFD_SUCCESS;
	default: return IFD_NOT_SUPPORTED;
	}
}

RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer, DWORD TxLength,
			       PUCHAR RxBuffer, PDWORD RxLength, PSCARD_IO_HEADER RecvPci)
{
	(void)Lun;
	(void)TxBuffer;
	(void)TxLength;
	if (!RxBuffer || !RxLength || *RxLength < sizeof status_ok) {
		if (RxLength)
			*RxLength = 0;
		return IFD_ERROR_INSUFFICIENT_BUFFER;
	}
	memcpy(RxBuffer, status_ok, sizeof status_ok);
	*RxLength = sizeof status_ok;
	if (RecvPci)
		RecvPci->Protocol = SendPci.Protocol;
	return IFD_SUCCESS;
}

RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
			 PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned)
{
	(void)Lun;
	(void)dwControlCode;
	(void)TxBuffer;
	(void)TxLength;
	(void)RxBuffer;
	(void)RxLength;
	if (pdwBytesReturned)
		*pdwBytesReturned = 0;
	return IFD_ERROR_NOT_SUPPORTED;
}

RESPONSECODE IFDHICCPresence(DWORD Lun)
{
	(void)Lun;
	return IFD_ICC_PRESENT;
}
