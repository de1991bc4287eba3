/*
 * Windows-style scalar types used by the PC/SC API (scardd).
 *
 * The widths follow the Linux pcsc-lite ABI: DWORD and LONG are C longs, so
 * they are 8 bytes on LP64 and 4 bytes on ILP32. Applications built against
 * pcsc-lite's headers and against these must see the same layout.
 */
#ifndef __wintypes_h__
#define __wintypes_h__

#ifdef __cplusplus
extern "C" {
#endif

/* Some platform headers define BYTE as a macro; leave theirs alone. */
#ifndef BYTE
typedef unsigned char BYTE;
#endif
typedef unsigned char UCHAR;
typedef UCHAR *PUCHAR;
typedef unsigned short USHORT;
typedef unsigned short WORD;
typedef short BOOL;

typedef unsigned long ULONG;
typedef ULONG *PULONG;
typedef unsigned long DWORD;
typedef DWORD *PDWORD;
typedef DWORD *LPDWORD;
typedef long LONG;

typedef void *LPVOID;
typedef const void *LPCVOID;
typedef BYTE *LPBYTE;
typedef const BYTE *LPCBYTE;
typedef char *LPSTR;
typedef const char *LPCSTR;

/* Kept because old drivers and applications still spell strings this way. */
typedef LPSTR LPTSTR;
typedef LPCSTR LPCTSTR;
typedef const char *LPCWSTR;

#ifdef __cplusplus
}
#endif

#endif /* __wintypes_h__ */
