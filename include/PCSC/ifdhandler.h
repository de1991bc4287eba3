/*
 * The IFD handler (reader driver) interface, version 3 (scardd).
 *
 * A driver is a shared library exporting the IFDH* functions below; the
 * daemon loads it and calls it from one worker thread per reader. Values and
 * signatures are those pcsc-lite's pcscd uses, so one driver binary works
 * with both daemons.
 */
#ifndef _ifd_handler_h_
#define _ifd_handler_h_

#include <pcsclite.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef long RESPONSECODE;

/* Protocol header passed by value to IFDHTransmitToICC. Protocol is the
 * T number (0 or 1), not an SCARD_PROTOCOL_* bit. */
typedef struct _SCARD_IO_HEADER {
	DWORD Protocol;
	DWORD Length;
} SCARD_IO_HEADER, *PSCARD_IO_HEADER;

/* Capability tags for IFDHGetCapabilities / IFDHSetCapabilities. */
#define TAG_IFD_ATR 0x0303
#define TAG_IFD_SLOTNUM 0x0180
#define TAG_IFD_SLOT_THREAD_SAFE 0x0FAC
#define TAG_IFD_THREAD_SAFE 0x0FAD
#define TAG_IFD_SLOTS_NUMBER 0x0FAE
#define TAG_IFD_SIMULTANEOUS_ACCESS 0x0FAF
#define TAG_IFD_POLLING_THREAD 0x0FB0
#define TAG_IFD_POLLING_THREAD_KILLABLE 0x0FB1
#define TAG_IFD_STOP_POLLING_THREAD 0x0FB2
#define TAG_IFD_POLLING_THREAD_WITH_TIMEOUT 0x0FB3
#define TAG_IFD_DEVICE_REMOVED 0x0FB4

/* Driver API versions. */
#define IFD_HVERSION_1_0 0x00010000
#define IFD_HVERSION_2_0 0x00020000
#define IFD_HVERSION_3_0 0x00030000

/* IFDHPowerICC actions. */
#define IFD_POWER_UP 500
#define IFD_POWER_DOWN 501
#define IFD_RESET 502

/* IFDHSetProtocolParameters flags: which PPS bytes are given. */
#define IFD_NEGOTIATE_PTS1 1
#define IFD_NEGOTIATE_PTS2 2
#define IFD_NEGOTIATE_PTS3 4

/* Return codes. */
#define IFD_SUCCESS 0
#define IFD_ERROR_TAG 600
#define IFD_ERROR_SET_FAILURE 601
#define IFD_ERROR_VALUE_READ_ONLY 602
#define IFD_ERROR_PTS_FAILURE 605
#define IFD_ERROR_NOT_SUPPORTED 606
#define IFD_PROTOCOL_NOT_SUPPORTED 607
#define IFD_ERROR_POWER_ACTION 608
#define IFD_ERROR_SWALLOW 609
#define IFD_ERROR_EJECT 610
#define IFD_ERROR_CONFISCATE 611
#define IFD_COMMUNICATION_ERROR 612
#define IFD_RESPONSE_TIMEOUT 613
#define IFD_NOT_SUPPORTED 614
#define IFD_ICC_PRESENT 615
#define IFD_ICC_NOT_PRESENT 616
#define IFD_NO_SUCH_DEVICE 617
#define IFD_ERROR_INSUFFICIENT_BUFFER 618

/* Lun = (reader index << 16) | slot. */

PCSC_API RESPONSECODE IFDHCreateChannelByName(DWORD Lun, LPSTR DeviceName);
PCSC_API RESPONSECODE IFDHCreateChannel(DWORD Lun, DWORD Channel);
PCSC_API RESPONSECODE IFDHCloseChannel(DWORD Lun);
PCSC_API RESPONSECODE IFDHGetCapabilities(DWORD Lun, DWORD Tag, PDWORD Length, PUCHAR Value);
PCSC_API RESPONSECODE IFDHSetCapabilities(DWORD Lun, DWORD Tag, DWORD Length, PUCHAR Value);
PCSC_API RESPONSECODE IFDHSetProtocolParameters(DWORD Lun, DWORD Protocol, UCHAR Flags, UCHAR PTS1,
						UCHAR PTS2, UCHAR PTS3);
PCSC_API RESPONSECODE IFDHPowerICC(DWORD Lun, DWORD Action, PUCHAR Atr, PDWORD AtrLength);
PCSC_API RESPONSECODE IFDHTransmitToICC(DWORD Lun, SCARD_IO_HEADER SendPci, PUCHAR TxBuffer,
					DWORD TxLength, PUCHAR RxBuffer, PDWORD RxLength,
					PSCARD_IO_HEADER RecvPci);
#ifdef IFDHANDLERv2
/* Old drivers: no control code; also carries raw transmits. */
PCSC_API RESPONSECODE IFDHControl(DWORD Lun, PUCHAR TxBuffer, DWORD TxLength, PUCHAR RxBuffer,
				  PDWORD RxLength);
#else
PCSC_API RESPONSECODE IFDHControl(DWORD Lun, DWORD dwControlCode, PUCHAR TxBuffer, DWORD TxLength,
				  PUCHAR RxBuffer, DWORD RxLength, LPDWORD pdwBytesReturned);
#endif
PCSC_API RESPONSECODE IFDHICCPresence(DWORD Lun);

#ifdef __cplusplus
}
#endif

#endif /* _ifd_handler_h_ */
